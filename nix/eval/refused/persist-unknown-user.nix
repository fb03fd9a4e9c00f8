# A home's entries for a user the system does not have: whose home, whose files?
{
  expect = "users.<name> names no user in users.users: bob";
  machine = {
    boot.initrd.lethe.enable = true;
    fileSystems."/".device = "/dev/vda1";
    environment.persistence."/persist".users.bob.directories = [ "Documents" ];
  };
}
