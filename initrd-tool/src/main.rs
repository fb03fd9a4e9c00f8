//! lethe's multi-call initramfs binary: dispatches on argv[0] (like busybox) or on its first argument.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 =
        args.first().map(|a| Path::new(a).file_name().unwrap_or_default().to_owned()).unwrap_or_default();
    let applet = if argv0 == "initrd-tool" || argv0.is_empty() {
        if args.len() < 2 {
            eprintln!("usage: initrd-tool APPLET [ARGS...]\napplets: persist-bind");
            return ExitCode::from(2);
        }
        args.remove(0);
        args[0].clone()
    } else {
        argv0
    };
    match applet.to_str() {
        Some("persist-bind") => persist_bind::cli::main(args),
        Some("--help" | "-h" | "help") => {
            println!("usage: initrd-tool APPLET [ARGS...]\napplets: persist-bind");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("initrd-tool: unknown applet {:?} (applets: persist-bind)", applet);
            ExitCode::from(2)
        }
    }
}
