//! The `modprobe` applet: what the kernel runs for `request_module` (dm-crypt asking for
//! `crypto-xts(aes)`, a file system asking for `fs-vfat`), answered from the initramfs' modules.
//!
//! The kernel calls `/sbin/modprobe -q -- NAME`; without it, a cipher module dm-crypt needs and
//! nobody listed would fail the unlock. After switch_root the system's own modprobe is used.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::kmod::{self, LoadReport, ModuleIndex};

/// `modprobe [-q] [-b] [--] NAME...`: loads each (alias resolved, dependencies first); exit 1 if
/// one cannot be loaded.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut quiet = false;
    let mut names = Vec::new();
    let mut options_done = false;
    for a in args.iter().skip(1) {
        let Some(a) = a.to_str() else { continue };
        match a {
            "--" if !options_done => options_done = true,
            "-q" | "--quiet" if !options_done => quiet = true,
            // Blacklists and verbosity mean nothing in an initramfs.
            "-b" | "--use-blacklist" | "-v" | "--verbose" if !options_done => {}
            "-h" | "--help" if !options_done => {
                println!(
                    "usage: modprobe [-q] [--] NAME...\nLoads kernel modules (by name or alias) from the initramfs."
                );
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') && !options_done => {
                eprintln!("modprobe: unsupported option {s}");
                return ExitCode::from(2);
            }
            s => names.push(s.to_owned()),
        }
    }
    if names.is_empty() {
        eprintln!("usage: modprobe [-q] [--] NAME...");
        return ExitCode::from(2);
    }
    let index = match ModuleIndex::load_running() {
        Ok(i) => i,
        Err(e) => {
            if !quiet {
                eprintln!("modprobe: {e}");
            }
            return ExitCode::from(1);
        }
    };
    let mut report = LoadReport::default();
    match kmod::load(&index, &names, &mut report) {
        Ok(()) if report.count(kmod::Outcome::Failed) == 0 => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            if !quiet {
                eprintln!("modprobe: {e}");
            }
            ExitCode::from(1)
        }
    }
}
