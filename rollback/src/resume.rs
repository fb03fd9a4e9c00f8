//! Hibernation: whether the resume device still holds an image, in which case the root must not be touched.
//!
//! A rollback under a hibernated system would hand the resumed kernel a
//! file system that changed beneath its page cache. The kernel writes its
//! signature over the swap signature in the last bytes of the swap header
//! page; as long as it is there, an image waits.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::cmdline::Cmdline;

/// The swap header page (x86_64 and aarch64 with 4 KiB pages).
const PAGE: usize = 4096;

/// Signatures of a hibernation image at the end of the first page (libblkid's swsuspend list).
const SIGNATURES: [(&[u8], &str); 5] = [
    (b"S1SUSPEND", "swsusp"),
    (b"S2SUSPEND", "swsusp"),
    (b"ULSUSPEND", "uswsusp"),
    (b"LINHIB0001", "swsusp (old)"),
    (b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c", "TuxOnIce"),
];

/// The hibernation image's kind when `device` holds one at its start (a swap partition).
pub fn image_on(device: &Path) -> io::Result<Option<&'static str>> {
    image_at(device, 0)
}

/// The hibernation image's kind when `device` holds one in the swap header `offset` pages
/// into it: a swap file's, with `resume_offset=` (the kernel's unit is the page).
pub fn image_at(device: &Path, offset: u64) -> io::Result<Option<&'static str>> {
    let Some(start) = offset.checked_mul(PAGE as u64) else { return Ok(None) };
    let mut page = vec![0u8; PAGE];
    let mut f = File::open(device)?;
    if start > 0 {
        f.seek(SeekFrom::Start(start))?;
    }
    let mut read = 0;
    while read < PAGE {
        match f.read(&mut page[read..])? {
            0 => return Ok(None), // less than a page there: no swap header
            n => read += n,
        }
    }
    Ok(signature(&page))
}

/// `resume_offset=` from the command line: where in the resume device the swap header is, in
/// pages (0, the device's start, unless a swap file holds the image).
pub fn resume_offset(cmdline: &Cmdline) -> u64 {
    cmdline.resume_offset.unwrap_or(0)
}

fn signature(page: &[u8]) -> Option<&'static str> {
    let tail = page.get(PAGE - 10..PAGE)?;
    SIGNATURES.iter().find(|(sig, _)| tail.starts_with(sig)).map(|&(_, kind)| kind)
}

/// The resume device this boot would resume from: the one the kernel was
/// told (/sys/power/resume, `major:minor`), else `resume=` on the command
/// line when it is a path or resolvable through /dev/disk/by-*.
pub fn resume_device(cmdline: &Cmdline) -> Option<PathBuf> {
    if let Ok(s) = std::fs::read_to_string("/sys/power/resume") {
        let s = s.trim();
        // Without a node for it here, what the command line names is looked at instead.
        if !s.is_empty()
            && s != "0:0"
            && let Some(node) = device_node(s, Path::new("/sys"), Path::new("/dev"))
        {
            return Some(node);
        }
    }
    let spec = cmdline.resume.as_deref()?;
    let by = |dir: &str, v: &str| Some(Path::new("/dev/disk").join(dir).join(v));
    let path = if let Some(v) = spec.strip_prefix("UUID=") {
        by("by-uuid", v)
    } else if let Some(v) = spec.strip_prefix("PARTUUID=") {
        by("by-partuuid", v)
    } else if let Some(v) = spec.strip_prefix("LABEL=") {
        by("by-label", v)
    } else if spec.starts_with('/') {
        Some(PathBuf::from(spec))
    } else {
        None
    }?;
    path.exists().then_some(path)
}

/// The node of the block device `devno` (`major:minor`): udev's /dev/block link, else the
/// name the kernel gives it in /sys/dev/block/M:m/uevent.
fn device_node(devno: &str, sys: &Path, dev: &Path) -> Option<PathBuf> {
    let (major, minor) = devno.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    let link = dev.join("block").join(devno);
    if link.exists() {
        return Some(link);
    }
    let uevent = std::fs::read_to_string(sys.join("dev/block").join(devno).join("uevent")).ok()?;
    let name = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))?;
    if name.is_empty() || name.starts_with('/') || name.split('/').any(|c| c == "..") {
        return None;
    }
    let node = dev.join(name);
    node.exists().then_some(node)
}

/// A hibernation image waiting on the resume device, if any: (device, kind).
pub fn pending_image(cmdline: &Cmdline) -> Option<(PathBuf, &'static str)> {
    let dev = resume_device(cmdline)?;
    let kind = image_at(&dev, resume_offset(cmdline)).ok()??;
    Some((dev, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_with(sig: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; PAGE];
        p[PAGE - 10..PAGE - 10 + sig.len()].copy_from_slice(sig);
        p
    }

    #[test]
    fn a_swap_signature_is_no_image_a_suspend_signature_is() {
        assert_eq!(signature(&page_with(b"SWAPSPACE2")), None);
        assert_eq!(signature(&page_with(b"S1SUSPEND\0")), Some("swsusp"));
        assert_eq!(signature(&page_with(b"ULSUSPEND\0")), Some("uswsusp"));
        assert_eq!(signature(&vec![0u8; PAGE]), None);
    }

    /// Hibernation to a swap file: `resume=` names the file system's device and
    /// `resume_offset=` the page of the swap file's header on it.
    #[test]
    fn an_image_in_a_swap_file_is_found_at_its_offset() {
        let p = std::env::temp_dir().join(format!("lethe-resume-offset-{}", std::process::id()));
        let mut dev = vec![0u8; 3 * PAGE];
        dev.extend(page_with(b"S1SUSPEND\0"));
        std::fs::write(&p, &dev).unwrap();
        assert_eq!(image_at(&p, 0).unwrap(), None);
        assert_eq!(image_at(&p, 3).unwrap(), Some("swsusp"));
        assert_eq!(image_at(&p, 4).unwrap(), None, "past the end: no swap header");
        assert_eq!(image_at(&p, u64::MAX).unwrap(), None);

        let line = Cmdline::parse(&format!("quiet resume={} resume_offset=3", p.display()));
        assert_eq!(resume_offset(&line), 3);
        if resume_device(&line).as_deref() == Some(p.as_path()) {
            // (A machine that was told another resume device in /sys/power/resume skips this.)
            assert_eq!(pending_image(&line), Some((p.clone(), "swsusp")));
            assert_eq!(pending_image(&Cmdline::parse(&format!("resume={}", p.display()))), None);
        }
        std::fs::remove_file(&p).unwrap();
    }

    /// /sys/power/resume names the device by number; without udev's /dev/block links the node
    /// is the one the kernel names in /sys/dev/block/M:m/uevent.
    #[test]
    fn the_kernels_resume_device_is_found_with_or_without_udev() {
        let d = std::env::temp_dir().join(format!("lethe-resume-node-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (sys, dev) = (d.join("sys"), d.join("dev"));
        std::fs::create_dir_all(sys.join("dev/block/253:2")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(
            sys.join("dev/block/253:2/uevent"),
            "MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\n",
        )
        .unwrap();
        assert_eq!(device_node("253:2", &sys, &dev), None, "no node: nothing to read");
        std::fs::write(dev.join("vda2"), "").unwrap();
        assert_eq!(device_node("253:2", &sys, &dev), Some(dev.join("vda2")));
        std::fs::create_dir_all(dev.join("block")).unwrap();
        std::os::unix::fs::symlink("../vda2", dev.join("block/253:2")).unwrap();
        assert_eq!(device_node("253:2", &sys, &dev), Some(dev.join("block/253:2")));
        assert_eq!(device_node("8:0", &sys, &dev), None);
        assert_eq!(device_node("../../etc", &sys, &dev), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn images_are_read_from_the_device() {
        let p = std::env::temp_dir().join(format!("lethe-resume-{}", std::process::id()));
        std::fs::write(&p, page_with(b"S1SUSPEND\0")).unwrap();
        assert_eq!(image_on(&p).unwrap(), Some("swsusp"));
        std::fs::write(&p, b"short").unwrap();
        assert_eq!(image_on(&p).unwrap(), None);
        std::fs::remove_file(&p).unwrap();
    }
}
