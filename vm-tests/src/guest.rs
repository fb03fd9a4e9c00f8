//! Busybox guests: an initramfs holding busybox, host programs with their shared libraries, kernel modules and a shell script run as PID 1 (`rdinit=`), and the `LETHE-GUEST` lines the script reports.
//!
//! The scripts live in vm-tests/guest/; each starts with prelude.sh, whose
//! helpers print `LETHE-GUEST PASS name`, `LETHE-GUEST FAIL name: why`,
//! `LETHE-GUEST VALUE name text` and, last, `LETHE-GUEST DONE`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::artifacts::{self, InitrdSpec};
use crate::error::{self, Context, Error, Result};
use crate::harness::Harness;
use crate::qemu::{Boot, Outcome};

/// The prefixes of the script's result lines.
pub const PASS: &str = "LETHE-GUEST PASS ";
pub const FAIL: &str = "LETHE-GUEST FAIL ";
pub const VALUE: &str = "LETHE-GUEST VALUE ";
/// The script's last line, before it powers off.
pub const DONE: &str = "LETHE-GUEST DONE";

/// Where the scripts are in the guest.
const SCRIPT_DIR: &str = "/lethe-guest";
/// The helpers every script starts with.
const PRELUDE: &str = include_str!("../guest/prelude.sh");
/// Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";

/// What goes into a busybox guest's initramfs besides busybox and
/// lethe's `initrd-tool` (/bin/initrd-tool).
#[derive(Debug, Default)]
pub struct GuestSpec<'a> {
    /// Scripts by name (without the prelude), each one a possible `rdinit=`.
    pub scripts: Vec<(&'a str, &'a str)>,
    /// Host programs, stored at the same path with their shared libraries and loader.
    pub programs: Vec<&'a Path>,
    /// Other host files: SRC stored as DEST.
    pub files: Vec<(PathBuf, String)>,
    /// Kernel modules, with their dependencies (busybox's modprobe loads them).
    pub modules: Vec<&'a str>,
}

/// Builds the initramfs `out`; returns its size in bytes.
pub fn build(h: &Harness, dir: &Path, spec: &GuestSpec<'_>, out: &Path) -> Result<u64> {
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        return Err(Error::Setup(format!(
            "{BUSYBOX} is missing: install busybox-static (scripts/install-deps.sh)"
        )));
    }
    if !shared_libraries(busybox)?.is_empty() {
        return Err(Error::Setup(format!(
            "{BUSYBOX} is dynamically linked: install busybox-static (scripts/install-deps.sh)"
        )));
    }
    let mut files = vec![(busybox.to_path_buf(), BUSYBOX.to_owned())];
    let mut libraries = Vec::new();
    for p in &spec.programs {
        if !p.is_file() {
            return Err(Error::Setup(format!(
                "{} is missing (scripts/install-deps.sh installs it)",
                p.display()
            )));
        }
        files.push((p.to_path_buf(), path_str(p)?));
        for l in shared_libraries(p)? {
            if !libraries.contains(&l) {
                libraries.push(l);
            }
        }
    }
    for l in libraries {
        let dest = path_str(&l)?;
        files.push((l, dest));
    }
    for (name, text) in &spec.scripts {
        let script = dir.join(name);
        std::fs::write(&script, format!("{PRELUDE}\n{text}"))
            .context(|| error::at(&script, "cannot write"))?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .context(|| error::at(&script, "cannot chmod"))?;
        files.push((script, format!("{SCRIPT_DIR}/{name}")));
    }
    files.extend(spec.files.iter().cloned());
    // mkinitrd wants a config; /init (lethe) is not what these guests run.
    let config = json!({"version": 1, "root": {"fsType": "tmpfs"}});
    let modules: Vec<String> = spec.modules.iter().map(|m| m.to_string()).collect();
    artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &files, add_modules: &modules },
        out,
    )
}

/// Boots `initrd` running the script `name` as PID 1.
pub fn boot(
    h: &Harness,
    label: &str,
    initrd: &Path,
    disks: &[PathBuf],
    name: &str,
    echo: Option<&str>,
) -> Result<Boot> {
    h.boot_cmdline(label, initrd, disks, &cmdline(name), echo)
}

/// The kernel command line that runs the script `name` as PID 1.
pub fn cmdline(name: &str) -> String {
    format!("console=ttyS0 rdinit={SCRIPT_DIR}/{name} panic=-1")
}

fn path_str(p: &Path) -> Result<String> {
    p.to_str()
        .filter(|s| s.starts_with('/'))
        .map(str::to_owned)
        .ok_or_else(|| Error::Setup(format!("{} is not an absolute UTF-8 path", p.display())))
}

/// The shared libraries and the loader `program` needs, as `ldd` resolves
/// them; none for a static program.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let mut cmd = Command::new("ldd");
    cmd.arg(program);
    let out = cmd.output().context(|| format!("cannot run `{}`", error::display(&cmd)))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(Error::Command {
            command: error::display(&cmd),
            status: out.status.to_string(),
            stderr: stderr.into_owned(),
        });
    }
    parse_ldd(&stdout).map_err(|e| Error::Setup(format!("{}: {e}", program.display())))
}

/// `ldd`'s output as paths: `name => /path (0x…)` and the loader's
/// `/path (0x…)`; the vDSO has no file.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = match line.split_once(" => ") {
            Some((name, rest)) if rest.starts_with("not found") => {
                return Err(format!("ldd cannot find {name}"));
            }
            Some((_, rest)) => rest,
            None => line,
        };
        let path = file.split(" (").next().unwrap_or_default();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if !line.starts_with("linux-vdso") && !line.starts_with("statically linked") {
            return Err(format!("unexpected ldd line {line:?}"));
        }
    }
    Ok(libs)
}

/// What a guest script reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestResults {
    /// The names of the checks that passed.
    pub passed: Vec<String>,
    /// `name: why` of the checks that failed.
    pub failed: Vec<String>,
    pub values: BTreeMap<String, String>,
    /// Whether the script got to its end.
    pub done: bool,
}

impl GuestResults {
    /// The result lines of a console (kernel noise may precede them on a line).
    pub fn from_console(console: &[String]) -> GuestResults {
        let mut r = GuestResults::default();
        for line in console {
            let rest =
                |prefix: &str| line.find(prefix).map(|at| line[at + prefix.len()..].trim_end().to_owned());
            if let Some(name) = rest(PASS) {
                r.passed.push(name);
            } else if let Some(why) = rest(FAIL) {
                r.failed.push(why);
            } else if let Some(v) = rest(VALUE) {
                let (name, text) = v.split_once(' ').unwrap_or((&v, ""));
                r.values.insert(name.to_owned(), text.to_owned());
            } else if line.contains(DONE) {
                r.done = true;
            }
        }
        r
    }
}

/// The checks of a guest boot: the script finished, no check failed, and
/// each of `expected` (name, what it shows) passed. Returns the results for
/// the caller's own checks of the values.
pub fn check(
    findings: &mut Vec<String>,
    label: &str,
    boot: &Boot,
    expected: &[(&str, &str)],
) -> GuestResults {
    let r = GuestResults::from_console(&boot.console);
    if !matches!(boot.outcome, Outcome::GuestDone) || !r.done {
        findings.push(format!("{label}: the guest script did not finish: {}", boot.summary()));
    }
    for f in &r.failed {
        let name = f.split(':').next().unwrap_or_default();
        let what =
            expected.iter().find(|(n, _)| *n == name).map_or(String::new(), |(_, w)| format!(" ({w})"));
        findings.push(format!("{label}: FAIL {f}{what}"));
    }
    for (name, what) in expected {
        let failed = r.failed.iter().any(|f| f.split(':').next() == Some(name));
        if !failed && !r.passed.iter().any(|p| p == name) {
            findings.push(format!("{label}: {name} never passed ({what})"));
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_becomes_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibzfs.so.4 => /lib/x86_64-linux-gnu/libzfs.so.4 (0x00007fe7)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007fe78cee6000)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libzfs.so.4"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibx.so.1 => not found\n").unwrap_err().contains("libx.so.1"));
    }

    #[test]
    fn result_lines_are_collected() {
        let console: Vec<String> = [
            "+ zpool create rpool /dev/vda (exit 0)",
            "LETHE-GUEST PASS setup",
            "[   3.2] zfs: noiseLETHE-GUEST FAIL clone-warns: no \"keeping the old root\" in the output",
            "LETHE-GUEST VALUE snapshots rpool/local/root@blank ",
            "LETHE-GUEST VALUE empty",
            "LETHE-GUEST DONE",
        ]
        .map(String::from)
        .to_vec();
        let r = GuestResults::from_console(&console);
        assert_eq!(r.passed, ["setup"]);
        assert_eq!(r.failed, ["clone-warns: no \"keeping the old root\" in the output"]);
        assert_eq!(r.values["snapshots"], "rpool/local/root@blank");
        assert_eq!(r.values["empty"], "");
        assert!(r.done);
    }
}
