# alice, whose home entries the machines persist.
{
  users.users.alice = {
    isNormalUser = true;
    uid = 1000;
  };
  users.groups.users.gid = 100;
}
