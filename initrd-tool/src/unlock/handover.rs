//! Hand-over to a `cryptsetup` binary in the initramfs for ciphers lethe does not implement.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use luks::secret::Secret;
use luks::unlock::UnlockError;

use super::{Error, Opened, Planned};

/// Where an initramfs keeps cryptsetup.
const CANDIDATES: [&str; 3] = ["/sbin/cryptsetup", "/usr/sbin/cryptsetup", "/bin/cryptsetup"];

fn binary() -> Option<PathBuf> {
    CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Whether `e` is one cryptsetup could get past (a cipher or hash lethe lacks), and a
/// cryptsetup is there to try.
pub fn wanted(e: &UnlockError) -> bool {
    matches!(e, UnlockError::UnsupportedCipher { .. } | UnlockError::UnsupportedHash { .. })
        && binary().is_some()
}

/// `cryptsetup open` with the key on stdin; exit 2 is a wrong key, as cryptsetup documents.
pub fn open(p: &Planned, data: &Path, header: &Path, key: &Secret) -> Result<Opened, Error> {
    let fail = |why: String| Error::Handover { name: p.name.to_string(), why };
    let bin = binary().ok_or_else(|| fail("no cryptsetup in the initramfs".to_owned()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("open").arg("--type").arg("luks").arg("--key-file=-");
    if header != data {
        cmd.arg("--header").arg(header);
    }
    if p.allow_discards {
        cmd.arg("--allow-discards");
    }
    if p.bypass_workqueues {
        cmd.args(["--perf-no_read_workqueue", "--perf-no_write_workqueue"]);
    }
    cmd.arg(data).arg(p.name.as_str()).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means cryptsetup exited early; its status tells why.
        let _ = stdin.write_all(key.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("waiting for cryptsetup: {e}")))?;
    match out.status.code() {
        Some(0) => Ok(Opened::Cryptsetup),
        Some(2) => Err(fail("wrong passphrase".to_owned())),
        _ => Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned())),
    }
}
