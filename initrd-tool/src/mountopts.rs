//! fstab-style mount options split into kernel flags and the file system's own data string.

use rustix::mount::MountFlags;

/// Flags for mount(2) and the comma-joined rest for the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MountFlags,
    pub data: String,
}

/// Splits `options` (each one option; "defaults" and userspace `x-*`
/// options are dropped, as mount(8) does for the kernel).
pub fn parse(options: &[String]) -> MountOptions {
    let mut flags = MountFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for o in options {
        let o = o.as_str();
        match o {
            "defaults" | "rw" | "auto" | "noauto" | "nofail" | "nouser" | "async" | "atime" | "suid"
            | "dev" | "exec" => {}
            "ro" => flags |= MountFlags::RDONLY,
            "nosuid" => flags |= MountFlags::NOSUID,
            "nodev" => flags |= MountFlags::NODEV,
            "noexec" => flags |= MountFlags::NOEXEC,
            "noatime" => flags |= MountFlags::NOATIME,
            "nodiratime" => flags |= MountFlags::NODIRATIME,
            "relatime" => flags |= MountFlags::RELATIME,
            "strictatime" => flags |= MountFlags::STRICTATIME,
            "sync" => flags |= MountFlags::SYNCHRONOUS,
            "dirsync" => flags |= MountFlags::DIRSYNC,
            "lazytime" => flags |= MountFlags::LAZYTIME,
            o if o.starts_with("x-") => {}
            o => data.push(o),
        }
    }
    MountOptions { flags, data: data.join(",") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_data_are_separated() {
        let o: Vec<String> = ["defaults", "ro", "noatime", "compress=zstd", "subvol=@root", "x-gvfs-hide"]
            .map(String::from)
            .into();
        let m = parse(&o);
        assert_eq!(m.flags, MountFlags::RDONLY | MountFlags::NOATIME);
        assert_eq!(m.data, "compress=zstd,subvol=@root");
        assert_eq!(parse(&[]), MountOptions { flags: MountFlags::empty(), data: String::new() });
    }
}
