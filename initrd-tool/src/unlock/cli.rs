//! The `unlock` and `luks` applets: open the configured devices; dump, test, recover and close.

use std::ffi::OsString;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use luks::header::ReadPathError;
use luks::model::Header;
use luks::secret::{MAX_PASSPHRASE, Secret};
use luks::unlock::{Options, UnlockError};

use super::{Env, Opened, Unlocker};
use crate::askpass::{self, Verdict};
use crate::config::Config;
use crate::crypt::{self, MapName};
use crate::keyfile::{self, Region};

/// cryptsetup's exit statuses, so scripts written for it keep working.
const EXIT_OK: u8 = 0;
const EXIT_USAGE: u8 = 1;
const EXIT_WRONG_KEY: u8 = 2;
const EXIT_DEVICE: u8 = 4;
/// `unlock`: some device stayed closed.
const EXIT_FAILED: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "unlock",
    version,
    about = "Open the LUKS devices of the config as /dev/mapper/NAME: key file, then passphrase",
    after_help = "Key sources per device, in order: its key file (in the initramfs or on a removable device), \
        passphrases that opened earlier devices, then the passphrase asked on the console and through \
        systemd's ask-password agents at once.\nExit status: 0 all open; 1 some device stayed closed; 2 bad \
        arguments or config."
)]
struct UnlockCli {
    /// The lethe config (its `luks` section).
    #[arg(long, value_name = "FILE", default_value = crate::config::PATH)]
    config: PathBuf,
    /// Print what would be opened, with which key sources, and open nothing.
    #[arg(long)]
    dry_run: bool,
    /// Only these devices (names under luks.devices).
    names: Vec<String>,
}

/// `initrd-tool unlock [--config FILE] [--dry-run] [NAME...]`.
pub fn unlock_main(args: Vec<OsString>) -> ExitCode {
    let cli = match UnlockCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => return clap_exit(e, 2),
    };
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(errs) => {
            eprintln!("unlock: invalid config {}:", cli.config.display());
            for e in errs.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(2);
        }
    };
    let luks = cfg.luks.unwrap_or_default();
    let plan = match super::plan(&luks, &cli.names) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("unlock: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.dry_run {
        for p in &plan {
            println!("{}: {p}", p.name);
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = false;
    let mut unlocker = Unlocker::new(Env::system());
    // Under systemd's stage 1 the network is NixOS's; the server only listens on it.
    #[cfg(feature = "ssh")]
    if cfg.ssh.is_some() && Unlocker::may_ask(&plan) {
        unlocker.start_ssh(Path::new("/proc/self/exe"), &cli.config);
    }
    let results = unlocker.run(&plan);
    #[cfg(feature = "ssh")]
    unlocker.stop_ssh();
    for (p, r) in plan.iter().zip(results) {
        match r {
            Ok(Opened::Native { keyslot, key_in_keyring, node }) => {
                let key = if key_in_keyring { "key in the kernel keyring" } else { "key in the table" };
                println!("{}: opened {} (keyslot {keyslot}, {key})", p.name, node.display());
            }
            Ok(Opened::Cryptsetup) => println!("{}: opened by cryptsetup", p.name),
            Ok(Opened::AlreadyOpen) => println!("{}: open already", p.name),
            Err(e) => {
                eprintln!("unlock: {e}");
                failed = true;
            }
        }
    }
    if failed { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS }
}

#[derive(Debug, Parser)]
#[command(
    name = "luks",
    version,
    about = "Inspect LUKS1/LUKS2 headers, test keys, recover the volume key, close mappings",
    after_help = "Exit status as cryptsetup's: 0 ok; 1 bad arguments, no valid LUKS header or other error; \
        2 wrong passphrase or key; 4 missing or unusable device."
)]
struct LuksCli {
    #[command(subcommand)]
    command: LuksCommand,
}

#[derive(Debug, Subcommand)]
enum LuksCommand {
    /// Print the header: version, UUID, segments, keyslots, digests, tokens (no secrets).
    Dump {
        device: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the key opens a keyslot that activates the device (cryptsetup open --test-passphrase).
    OpenTest(KeyArgs),
    /// Print the volume key in hex (cryptsetup luksDump --dump-volume-key): for recovery and tests.
    VolumeKey(KeyArgs),
    /// Remove the mapping /dev/mapper/NAME.
    Close { name: String },
}

#[derive(Debug, Args)]
struct KeyArgs {
    /// The LUKS device or image.
    device: PathBuf,
    /// Read the key from FILE instead of a passphrase from stdin.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Bytes of the key file to skip.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "key_file")]
    keyfile_offset: u64,
    /// Bytes of the key file to read (default: the rest of it).
    #[arg(long, value_name = "N", requires = "key_file")]
    keyfile_size: Option<u64>,
    /// A detached header.
    #[arg(long, value_name = "FILE")]
    header: Option<PathBuf>,
    /// Try only this keyslot (also one whose priority is `ignore`).
    #[arg(long, value_name = "N")]
    key_slot: Option<u32>,
}

/// `initrd-tool luks dump|open-test|volume-key|close`.
pub fn luks_main(args: Vec<OsString>) -> ExitCode {
    let cli = match LuksCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => return clap_exit(e, EXIT_USAGE),
    };
    match cli.command {
        LuksCommand::Dump { device, json } => dump(&device, json),
        LuksCommand::OpenTest(k) => key_command(&k, false),
        LuksCommand::VolumeKey(k) => key_command(&k, true),
        LuksCommand::Close { name } => {
            match MapName::new(&name).map_err(crypt::CryptError::from).and_then(|n| crypt::deactivate(&n)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("luks close: {name}: {e}");
                    ExitCode::from(EXIT_DEVICE)
                }
            }
        }
    }
}

fn clap_exit(e: clap::Error, code: u8) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() { ExitCode::from(code) } else { ExitCode::SUCCESS }
}

/// Reads the header at `path`. As cryptsetup: a device that is missing, unreadable, or
/// neither a block device nor a file is exit 4; what is there but no valid LUKS header is 1.
fn read_header(path: &Path) -> Result<Header, ExitCode> {
    check_device(path)?;
    luks::header::read_path(path).map_err(|e| {
        eprintln!("luks: {e}");
        ExitCode::from(match e {
            ReadPathError::Open { .. } | ReadPathError::Size { .. } => EXIT_DEVICE,
            ReadPathError::Header { .. } => EXIT_USAGE,
        })
    })
}

/// Exit 4 unless `path` is a block device or a regular file (cryptsetup: "does not exist or
/// access denied", "is not compatible").
fn check_device(path: &Path) -> Result<(), ExitCode> {
    let fail = |why: String| {
        eprintln!("luks: {}: {why}", path.display());
        ExitCode::from(EXIT_DEVICE)
    };
    let ft = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?.file_type();
    if !(ft.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&ft)) {
        return Err(fail("not a block device or a file".to_owned()));
    }
    Ok(())
}

/// The exit status when no passphrase was accepted at the prompt: 2 when every try was a
/// wrong passphrase, as cryptsetup's; 1 when the asking itself failed.
fn ask_failed(e: &askpass::AskError) -> ExitCode {
    ExitCode::from(match e {
        askpass::AskError::TriesExhausted { .. } => EXIT_WRONG_KEY,
        _ => EXIT_USAGE,
    })
}

fn dump(device: &Path, json: bool) -> ExitCode {
    let header = match read_header(device) {
        Ok(h) => h,
        Err(code) => return code,
    };
    let out = if json {
        match luks::dump::json(&header).and_then(|v| serde_json::to_string_pretty(&v)) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("luks dump: {}: --json: {e}", device.display());
                return ExitCode::FAILURE;
            }
        }
    } else {
        luks::dump::text(&header)
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()) {
        eprintln!("luks dump: {}: {e}", device.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn key_command(k: &KeyArgs, print_key: bool) -> ExitCode {
    let header_path = k.header.as_deref().unwrap_or(&k.device);
    let header = match read_header(header_path) {
        Ok(h) => h,
        Err(code) => return code,
    };
    // With a detached header, open --test-passphrase still wants the data device.
    if !print_key
        && k.header.is_some()
        && let Err(code) = check_device(&k.device)
    {
        return code;
    }
    let mut dev = match File::open(header_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("luks: cannot open {}: {e}", header_path.display());
            return ExitCode::from(EXIT_DEVICE);
        }
    };
    let opts = Options { keyslot: k.key_slot };
    let key = match &k.key_file {
        Some(f) => File::open(f)
            .map_err(|e| format!("cannot open key file {}: {e}", f.display()))
            .and_then(|mut file| {
                keyfile::read_region(&mut file, Region { offset: k.keyfile_offset, size: k.keyfile_size }, f)
                    .map_err(|e| e.to_string())
            })
            .map(|key| Some(luks::unlock::open(&header, &mut dev, key.as_bytes(), &opts))),
        None if std::io::stdin().is_terminal() => {
            // Typed: ask again on a wrong passphrase, as cryptsetup does.
            let what = header_path.display().to_string();
            let request = askpass::Request::new(
                format!("cryptsetup:{what}"),
                format!("Enter passphrase for {what}"),
                3,
            );
            // The terminal only, as cryptsetup: the ask file goes to a private directory that no
            // agent watches, so no desktop prompt pops up for a command typed in a shell.
            let private = std::env::temp_dir().join(format!("lethe-luks-ask-{}", std::process::id()));
            let _ = std::fs::create_dir(&private);
            let request = askpass::Request {
                console: Some(PathBuf::from("/dev/tty")),
                agent_dir: private.clone(),
                ..request
            };
            let mut result = None;
            let mut verify = |p: &Secret| match luks::unlock::open(&header, &mut dev, p.as_bytes(), &opts) {
                Err(UnlockError::WrongKey { .. }) => Verdict::Reject("wrong passphrase".to_owned()),
                r => {
                    result = Some(r);
                    Verdict::Accept
                }
            };
            let asked = askpass::ask(&request, &mut verify);
            let _ = std::fs::remove_dir_all(&private);
            if let Err(e) = asked {
                eprintln!("luks: {e}");
                return ask_failed(&e);
            }
            Ok(result)
        }
        None => read_piped_passphrase_bytes()
            .map(|pass| Some(luks::unlock::open(&header, &mut dev, pass.as_bytes(), &opts))),
    };
    let result = match key {
        Ok(Some(r)) => r,
        Ok(None) => return ExitCode::from(EXIT_WRONG_KEY),
        Err(e) => {
            eprintln!("luks: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match result {
        Ok(u) => {
            if print_key {
                let mut hex = Secret::with_capacity(u.volume_key.len() * 2 + 1);
                for b in u.volume_key.as_bytes() {
                    let digits = b"0123456789abcdef";
                    let _ = hex.push(digits[usize::from(b >> 4)]);
                    let _ = hex.push(digits[usize::from(b & 15)]);
                }
                let _ = hex.push(b'\n');
                let _ = std::io::stdout().write_all(hex.as_bytes());
            } else {
                eprintln!("Key slot {} unlocked.", u.keyslot);
            }
            ExitCode::from(EXIT_OK)
        }
        Err(e @ UnlockError::WrongKey { .. }) => {
            eprintln!("luks: {}: {e}", k.device.display());
            ExitCode::from(EXIT_WRONG_KEY)
        }
        Err(e) => {
            eprintln!("luks: {}: {e}", k.device.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// A piped passphrase: the first line, as cryptsetup reads one.
fn read_piped_passphrase_bytes() -> Result<Secret, String> {
    let mut pass = Secret::with_capacity(MAX_PASSPHRASE);
    let mut byte = [0u8; 1];
    let mut lock = std::io::stdin().lock();
    loop {
        match lock.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => pass.push(byte[0]).map_err(|_| askpass::too_long())?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read the passphrase from stdin: {e}")),
        }
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_exhausted_tries_are_a_wrong_key() {
        let code = |e| format!("{:?}", ask_failed(&e));
        let wrong = format!("{:?}", ExitCode::from(EXIT_WRONG_KEY));
        let error = format!("{:?}", ExitCode::from(EXIT_USAGE));
        assert_ne!(wrong, error, "ExitCode's Debug tells them apart");
        assert_eq!(code(askpass::AskError::TriesExhausted { tries: 3 }), wrong);
        assert_eq!(code(askpass::AskError::NoSource { id: "cryptsetup:/dev/vda2".into() }), error);
        assert_eq!(code(askpass::AskError::TimedOut { waited: Duration::from_secs(1) }), error);
    }
}
