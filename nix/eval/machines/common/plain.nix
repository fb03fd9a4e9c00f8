# What the plain vm-tests machine persists: the machine state and alice's ~/.config.
{
  imports = [
    ./system.nix
    ./alice.nix
  ];
  environment.persistence."/persist".users.alice.directories = [ ".config" ];
}
