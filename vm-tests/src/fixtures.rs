//! The configs lethe's NixOS module writes for the scenarios' machines (nix/fixtures/, made by evaluating nix/eval/machines/): what the scenarios boot.

/// A scenario's machine, as `scripts/nix-check.sh --update` evaluated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    BtrfsBlank,
    BtrfsTmpfsUsbkey,
    SshUnlock,
    ZfsLuksBlank,
}

impl Fixture {
    pub const ALL: [Fixture; 4] =
        [Fixture::BtrfsBlank, Fixture::BtrfsTmpfsUsbkey, Fixture::SshUnlock, Fixture::ZfsLuksBlank];

    /// The machine's name in nix/eval/machines and nix/fixtures.
    pub fn name(self) -> &'static str {
        match self {
            Fixture::BtrfsBlank => "btrfs-blank",
            Fixture::BtrfsTmpfsUsbkey => "btrfs-tmpfs-usbkey",
            Fixture::SshUnlock => "ssh-unlock",
            Fixture::ZfsLuksBlank => "zfs-luks-blank",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Fixture::BtrfsBlank => include_str!("../../nix/fixtures/btrfs-blank.json"),
            Fixture::BtrfsTmpfsUsbkey => include_str!("../../nix/fixtures/btrfs-tmpfs-usbkey.json"),
            Fixture::SshUnlock => include_str!("../../nix/fixtures/ssh-unlock.json"),
            Fixture::ZfsLuksBlank => include_str!("../../nix/fixtures/zfs-luks-blank.json"),
        }
    }

    /// The config, as the module wrote it.
    pub fn config(self) -> serde_json::Value {
        // Compiled in, and every fixture is parsed by the tests below.
        serde_json::from_str(self.text()).expect("nix/fixtures/*.json is JSON")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks_disk::MAPPING;
    use crate::{btrfs_tmpfs_usbkey, ssh_unlock, zfs_luks_blank};

    /// The harness makes disks with these names; the module's output must open the same ones.
    #[test]
    fn the_fixtures_name_the_disks_the_scenarios_make() {
        for f in Fixture::ALL {
            assert_eq!(f.config()["version"], 1, "{}", f.name());
        }
        let luks = |f: Fixture| f.config()["luks"]["devices"][MAPPING].clone();
        assert_eq!(luks(Fixture::ZfsLuksBlank)["device"], format!("UUID={}", zfs_luks_blank::FORMAT.uuid));
        assert_eq!(luks(Fixture::SshUnlock)["device"], format!("UUID={}", ssh_unlock::FORMAT.uuid));
        let laptop = luks(Fixture::BtrfsTmpfsUsbkey);
        assert_eq!(laptop["device"], format!("UUID={}", btrfs_tmpfs_usbkey::FORMAT.uuid));
        assert_eq!(laptop["keyFile"]["path"], btrfs_tmpfs_usbkey::KEY_PATH);
        assert_eq!(laptop["keyFile"]["device"], btrfs_tmpfs_usbkey::STICK);
        assert_eq!(laptop["keyFile"]["timeout"], btrfs_tmpfs_usbkey::KEY_TIMEOUT_S);
        assert_eq!(Fixture::SshUnlock.config()["ssh"]["hostKeys"][0], ssh_unlock::HOST_KEY);
        assert_eq!(
            Fixture::SshUnlock.config()["ssh"]["authorizedKeys"][0].as_str().map(str::trim),
            Some(ssh_unlock::CLIENT_PUB.trim())
        );
    }
}
