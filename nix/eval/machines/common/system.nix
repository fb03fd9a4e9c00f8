# The machine state every vm-tests machine persists from /persist, in
# impermanence's terms: /var/lib/nixos, the machine id, the SSH host key.
{
  environment.persistence."/persist" = {
    hideMounts = true;
    directories = [ "/var/lib/nixos" ];
    files = [
      "/etc/machine-id"
      "/etc/ssh/ssh_host_ed25519_key"
      "/etc/ssh/ssh_host_ed25519_key.pub"
    ];
  };
}
