# One lethe NixOS VM test: boot 1 (the stock config) prepares the disk, then
# the machine reboots into the `lethe` specialisation twice, and the test
# checks what was erased and what was kept.
{ pkgs, module }:
{
  name,
  # systemd stage 1 (true) or the scripted one (false).
  systemd,
  # The lethe machine: a NixOS module for the specialisation.
  machine,
  # Python run on the stock boot, as root: make the disks.
  prepare,
  # Python run for each lethe boot, after machine.start(): unlock, wait.
  boot,
  extraNodes ? { },
}:
pkgs.testers.runNixOSTest {
  name = "lethe-${name}-${if systemd then "systemd" else "scripted"}";
  nodes = extraNodes // {
    machine =
      { lib, pkgs, ... }:
      {
        imports = [ module ];
        virtualisation = {
          emptyDiskImages = [
            1024
            64
          ];
          useBootLoader = true;
          useEFIBoot = true;
          # The store comes from the host, so the root can be erased freely.
          mountHostNixStore = true;
        };
        boot.loader.systemd-boot.enable = true;
        boot.initrd.systemd.enable = systemd;
        boot.supportedFilesystems = [
          "btrfs"
          "vfat"
        ];
        environment.systemPackages = with pkgs; [
          cryptsetup
          btrfs-progs
          dosfstools
        ];
        specialisation.lethe.configuration = {
          imports = [ machine ];
          boot.initrd.lethe.enable = true;
        };
      };
  };
  testScript = ''
    machine.start()
    machine.wait_for_unit("multi-user.target")
    ${prepare}
    machine.succeed("bootctl set-default nixos-generation-1-specialisation-lethe.conf")
    machine.succeed("sync")
    machine.crash()

    # Boot 1: leave a mark on the root and in the persisted state.
    machine.start()
    ${boot}
    machine.wait_for_unit("multi-user.target")
    machine.succeed("touch /etc/lethe-erased-on-reboot")
    machine.succeed("mkdir -p /var/lib/nixos && echo kept > /var/lib/nixos/lethe-kept")
    machine_id = machine.succeed("cat /etc/machine-id")
    machine.succeed("sync")
    machine.crash()

    # Boot 2: the root is new, the persisted state is back.
    machine.start()
    ${boot}
    machine.wait_for_unit("multi-user.target")
    machine.fail("test -e /etc/lethe-erased-on-reboot")
    machine.succeed("grep -qx kept /var/lib/nixos/lethe-kept")
    assert machine.succeed("cat /etc/machine-id") == machine_id, "the machine id changed"
    machine.succeed("findmnt /var/lib/nixos")
  '';
}
