//! Building a compressed initramfs around this binary, the config and the kernel modules it needs.

use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: Vec<OsString>) -> ExitCode {
    eprintln!("initrd-tool mkinitrd: not written yet");
    ExitCode::from(2)
}
