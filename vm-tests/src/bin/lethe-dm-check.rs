//! The dm-crypt scenario's driver in the busybox guest (static): opens, queries and closes LUKS volumes with lethe's own `initrd_tool::crypt` and `luks` code.
//!
//! - `lethe-dm-check open NAME DEVICE (--volume-key-file F | --key-file F) [--header H]
//!   [--read-only] [--allow-discards] [--no-read-workqueue] [--no-write-workqueue]
//!   [--no-keyring]`: reads the header (DEVICE's, or the detached H) with `luks::header`, takes
//!   the volume key from F (as `cryptsetup luksDump --dump-volume-key` wrote it) or unlocks it
//!   with `luks::unlock` from the key file, activates it with `crypt::activate` and prints the
//!   `Active` as one JSON line.
//! - `lethe-dm-check close NAME`: `crypt::deactivate`.
//! - `lethe-dm-check status NAME`: `crypt::status` as one JSON line (no key material).
//!
//! Errors go to stderr with exit status 1; usage errors exit 2.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use initrd_tool::crypt::{self, Activation, MapName};
use luks::model::{Header, Segment, SegmentKind};
use luks::secret::{MAX_KEY, MAX_KEY_FILE, Secret};

#[derive(Debug, Parser)]
#[command(name = "lethe-dm-check")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Opens DEVICE as /dev/mapper/NAME.
    Open {
        name: String,
        device: PathBuf,
        /// The volume key's bytes.
        #[arg(long, conflicts_with = "key_file", required_unless_present = "key_file")]
        volume_key_file: Option<PathBuf>,
        /// A key file that opens a keyslot.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// A detached header.
        #[arg(long)]
        header: Option<PathBuf>,
        #[arg(long)]
        read_only: bool,
        #[arg(long)]
        allow_discards: bool,
        #[arg(long)]
        no_read_workqueue: bool,
        #[arg(long)]
        no_write_workqueue: bool,
        /// The hex key in the table instead of the keyring.
        #[arg(long)]
        no_keyring: bool,
    },
    /// Closes /dev/mapper/NAME.
    Close { name: String },
    /// The mapping NAME and its table, as JSON.
    Status { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lethe-dm-check: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Open {
            name,
            device,
            volume_key_file,
            key_file,
            header,
            read_only,
            allow_discards,
            no_read_workqueue,
            no_write_workqueue,
            no_keyring,
        } => {
            let name = MapName::new(&name).map_err(|e| e.to_string())?;
            let header_path = header.as_deref().unwrap_or(&device);
            let hdr = luks::header::read_path(header_path).map_err(|e| e.to_string())?;
            let (key, segment) = match (volume_key_file, key_file) {
                (Some(f), _) => (read_secret(&f, MAX_KEY)?, first_segment(&hdr)?),
                (None, Some(f)) => {
                    let secret = read_secret(&f, MAX_KEY_FILE)?;
                    let mut hdev =
                        File::open(header_path).map_err(|e| format!("{}: {e}", header_path.display()))?;
                    let u = luks::unlock::open(&hdr, &mut hdev, secret.as_bytes(), &Default::default())
                        .map_err(|e| e.to_string())?;
                    (u.volume_key, u.segment)
                }
                (None, None) => return Err("--volume-key-file or --key-file is needed".into()),
            };
            let mut req = Activation::new(&name, &hdr, &segment, &key, &device);
            req.read_only = read_only;
            req.allow_discards = allow_discards;
            req.no_read_workqueue = no_read_workqueue;
            req.no_write_workqueue = no_write_workqueue;
            req.use_keyring = !no_keyring;
            let active = crypt::activate(&req).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&active).map_err(|e| e.to_string())?);
        }
        Cmd::Close { name } => {
            let name = MapName::new(&name).map_err(|e| e.to_string())?;
            crypt::deactivate(&name).map_err(|e| e.to_string())?;
        }
        Cmd::Status { name } => {
            let name = MapName::new(&name).map_err(|e| e.to_string())?;
            let status = crypt::status(&name).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string(&status).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

/// A file's bytes in a `Secret` of at most `max` bytes.
fn read_secret(path: &Path, max: usize) -> Result<Secret, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = File::open(path).map_err(err)?;
    let mut s = Secret::with_capacity(max);
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read(&mut chunk).map_err(err)?;
        if n == 0 {
            break;
        }
        let read = chunk.get(..n).unwrap_or_default();
        s.extend_from_slice(read).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    chunk.fill(0);
    Ok(s)
}

/// The crypt segment a volume key read from a file opens: the lowest-numbered one some digest
/// is bound to (what cryptsetup activates).
fn first_segment(h: &Header) -> Result<Segment, String> {
    let mut bound: Vec<&Segment> = h
        .segments
        .iter()
        .filter(|s| s.kind == SegmentKind::Crypt && h.digests.iter().any(|d| d.segments.contains(&s.id)))
        .collect();
    bound.sort_by_key(|s| s.id);
    bound
        .first()
        .map(|s| (*s).clone())
        .ok_or_else(|| "the header has no crypt segment bound to a digest".into())
}
