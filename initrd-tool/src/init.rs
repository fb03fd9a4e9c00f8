//! (being written) Stage 1 as PID 1.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("initrd-tool init: not written yet");
    ExitCode::from(2)
}
