//! lethe's multi-call initramfs binary: dispatches on argv[0] (like busybox) or on its first argument.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: initrd-tool APPLET [ARGS...]

applets:
  init            stage 1 as PID 1 of an initramfs (also run as /init)
  persist-bind    bind-mount persisted state beneath a root
  rollback        reset the root: ZFS rollback, BTRFS from a blank snapshot, tmpfs
  unlock          open the config's LUKS devices (key file, passphrase, ask-password)
  luks            dump a LUKS header, test a key, recover a volume key, close a mapping
  modprobe        load a kernel module by name or alias (the kernel's request_module helper)
  ssh             SSH unlock server: `ssh keygen` makes its host key (`ssh serve` is started by unlock)
  check-config    validate a lethe config file (exit 2 with JSON-path errors)
  mkinitrd        build an initramfs around this binary";

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let argv0 =
        args.first().map(|a| Path::new(a).file_name().unwrap_or_default().to_owned()).unwrap_or_default();
    let applet = if argv0 == "initrd-tool" || argv0.is_empty() {
        if args.len() < 2 {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        args.remove(0);
        args[0].clone()
    } else {
        argv0
    };
    match applet.to_str() {
        Some("init") => initrd_tool::init::main(),
        Some("persist-bind") => persist_bind::cli::main(args),
        Some("rollback") => rollback::cli::main(args),
        Some("unlock") => initrd_tool::unlock::cli::unlock_main(args),
        Some("luks") => initrd_tool::unlock::cli::luks_main(args),
        Some("modprobe") => initrd_tool::modprobe::main(args),
        #[cfg(feature = "ssh")]
        Some("ssh") => initrd_tool::ssh::cli::main(args),
        Some("check-config") => check_config(&args[1..]),
        Some("mkinitrd") => initrd_tool::mkinitrd::main(args),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("initrd-tool: unknown applet {applet:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `check-config FILE`: 0 valid, 2 invalid (every problem with its JSON path).
fn check_config(args: &[OsString]) -> ExitCode {
    let [file] = args else {
        eprintln!("usage: initrd-tool check-config FILE");
        return ExitCode::from(2);
    };
    if file == "--help" || file == "-h" {
        println!(
            "usage: initrd-tool check-config FILE\nExit 0 if FILE is a valid lethe config, else 2 with every problem and its JSON path."
        );
        return ExitCode::SUCCESS;
    }
    match initrd_tool::config::Config::load(Path::new(file)) {
        Ok(_) => {
            println!("{}: valid", Path::new(file).display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}: invalid config:", Path::new(file).display());
            for e in errors.0 {
                eprintln!("  {e}");
            }
            ExitCode::from(2)
        }
    }
}
