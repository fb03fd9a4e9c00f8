# What every test machine persists: /var/lib/nixos and the machine id, from
# /persist (neededForBoot, so stage 1 has it).
{
  environment.persistence."/persist" = {
    hideMounts = true;
    directories = [ "/var/lib/nixos" ];
    files = [ "/etc/machine-id" ];
  };
}
