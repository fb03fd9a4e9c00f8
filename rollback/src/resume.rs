//! Hibernation: whether the resume device still holds an image, in which case the root must not be touched.
//!
//! A rollback under a hibernated system would hand the resumed kernel a
//! file system that changed beneath its page cache. The kernel writes its
//! signature over the swap signature in the last bytes of the swap header
//! page; as long as it is there, an image waits.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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

/// The hibernation image's kind when `device` holds one.
pub fn image_on(device: &Path) -> io::Result<Option<&'static str>> {
    let mut page = vec![0u8; PAGE];
    let mut f = File::open(device)?;
    let mut read = 0;
    while read < PAGE {
        match f.read(&mut page[read..])? {
            0 => return Ok(None), // smaller than a page: no swap header
            n => read += n,
        }
    }
    Ok(signature(&page))
}

fn signature(page: &[u8]) -> Option<&'static str> {
    let tail = page.get(PAGE - 10..PAGE)?;
    SIGNATURES.iter().find(|(sig, _)| tail.starts_with(sig)).map(|&(_, kind)| kind)
}

/// The resume device this boot would resume from: the one the kernel was
/// told (/sys/power/resume, `major:minor`), else `resume=` on the command
/// line when it is a path or resolvable through /dev/disk/by-*.
pub fn resume_device(cmdline: &str) -> Option<PathBuf> {
    if let Ok(s) = std::fs::read_to_string("/sys/power/resume") {
        let s = s.trim();
        if !s.is_empty() && s != "0:0" {
            return Some(PathBuf::from(format!("/dev/block/{s}"))).filter(|p| p.exists());
        }
    }
    let spec = cmdline.split_ascii_whitespace().filter_map(|w| w.strip_prefix("resume=")).next_back()?;
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

/// A hibernation image waiting on the resume device, if any: (device, kind).
pub fn pending_image(cmdline: &str) -> Option<(PathBuf, &'static str)> {
    let dev = resume_device(cmdline)?;
    let kind = image_on(&dev).ok()??;
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
