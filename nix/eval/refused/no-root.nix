# No fileSystems."/": lethe cannot know what to mount or roll back.
{
  expect = "fileSystems.\"/\" is not set";
  machine = {
    boot.initrd.lethe.enable = true;
  };
}
