//! The `persist-bind` command line: apply (default), check and audit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::apply::{self, Status, UtabTarget};
use crate::audit;
use crate::beneath::Root;
use crate::check::{self, State};
use crate::config::{ConfigErrors, Document, Entry};
use crate::owner::Ids;
use crate::plan::{self, Outcome, Plan};

/// Largest config file read.
const CONFIG_LIMIT: u64 = 16 << 20;

/// Exit status: every entry in place.
pub const EXIT_OK: u8 = 0;
/// Exit status: some entries failed (each is named; the others were applied).
pub const EXIT_ENTRIES_FAILED: u8 = 1;
/// Exit status: the config is invalid or unreadable (nothing was touched).
pub const EXIT_BAD_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "persist-bind",
    version,
    about = "Bind-mount persisted state onto an ephemeral root (impermanence's environment.persistence, natively)",
    after_help = "Exit status: 0 every entry in place; 1 some entries failed (the others were applied); 2 invalid config, nothing touched."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The lethe config (its `persistence` section is used).
    #[arg(long, global = true, value_name = "FILE", default_value = "/etc/lethe/config.json")]
    config: PathBuf,
    /// The root to work beneath (/sysroot in the initrd); paths written
    /// into links are those seen after switch_root.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Print the ordered plan and change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Where `hideMounts`/`allowTrash` options are recorded for libmount.
    #[arg(long, global = true, value_name = "FILE", default_value = "/run/mount/utab")]
    utab: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Put every entry in place (the default).
    Apply,
    /// Exit 0 only if every entry is mounted from its source or linked to it.
    Check,
    /// List what on the ephemeral root no entry persists (what the next boot
    /// erases), with a ready environment.persistence snippet.
    Audit,
}

/// Runs the command line `args` (including the program name).
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_BAD_CONFIG } else { EXIT_OK });
        }
    };
    ExitCode::from(run(&cli))
}

fn run(cli: &Cli) -> u8 {
    let started = Instant::now();
    let (doc, entries) = match load(&cli.config) {
        Ok(x) => x,
        Err(msg) => {
            eprintln!("persist-bind: {msg}");
            return EXIT_BAD_CONFIG;
        }
    };
    let root = match Root::open(&cli.root) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("persist-bind: cannot open the root {}: {e}", cli.root.display());
            return EXIT_BAD_CONFIG;
        }
    };
    match cli.command.as_ref().unwrap_or(&Command::Apply) {
        Command::Apply => apply_cmd(cli, &doc, &entries, &root, started),
        Command::Check => check_cmd(cli, &entries, &root),
        Command::Audit => audit_cmd(cli, &doc, &entries, &root),
    }
}

/// Reads and validates the config; the message names the file and every
/// problem with its JSON path.
pub fn load(path: &Path) -> Result<(Document, Vec<Entry>), String> {
    let bytes = read_limited(path).map_err(|e| format!("cannot read the config {}: {e}", path.display()))?;
    Document::entries_from_slice(&bytes).map_err(|ConfigErrors(errs)| {
        let mut m = format!("invalid config {} (nothing was changed):", path.display());
        for e in errs {
            m.push_str(&format!("\n  {e}"));
        }
        m
    })
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(CONFIG_LIMIT + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > CONFIG_LIMIT {
        return Err(std::io::Error::other(format!("larger than {CONFIG_LIMIT} bytes")));
    }
    Ok(buf)
}

fn ids(doc: &Document, root: &Root) -> Ids {
    Ids::load(doc, root).unwrap_or_else(|e| {
        eprintln!("persist-bind: warning: {e}; owners resolve from the config only");
        Ids::from_config(doc)
    })
}

fn apply_cmd(cli: &Cli, doc: &Document, entries: &[Entry], root: &Root, started: Instant) -> u8 {
    let plan = plan::plan(entries, &ids(doc, root), root);
    if cli.dry_run {
        if cli.json {
            if !json(&plan) {
                return EXIT_ENTRIES_FAILED;
            }
        } else {
            let _ = write!(std::io::stdout().lock(), "{}", render_plan(&plan, cli));
        }
        return if plan.failed() == 0 { EXIT_OK } else { EXIT_ENTRIES_FAILED };
    }
    let utab = UtabTarget { utab: cli.utab.clone(), ..UtabTarget::default() };
    let report = apply::apply(&plan, root, &utab);
    for e in &report.entries {
        if let Status::Failed { error } = &e.status {
            eprintln!("persist-bind: {} ({}): {error}", e.origin, e.target);
        }
    }
    if let Some(e) = &report.utab_error {
        eprintln!("persist-bind: warning: mount options not recorded in {e}");
    }
    // The entries are applied: their outcome, not the document, decides the exit status.
    if cli.json {
        json(&report);
    }
    let failed = report.failed();
    eprintln!(
        "persist-bind: {} entries: {} changed, {} already in place, {failed} failed ({:.1} ms)",
        report.entries.len(),
        report.changed(),
        report.entries.len() - report.changed() - failed,
        started.elapsed().as_secs_f64() * 1e3,
    );
    if failed == 0 { EXIT_OK } else { EXIT_ENTRIES_FAILED }
}

/// Prints `value` for --json; false (and why, on stderr) when it could not be written whole.
fn json<T: serde::Serialize>(value: &T) -> bool {
    crate::json::print(value, true).map_err(|e| eprintln!("persist-bind: --json: {e}")).is_ok()
}

/// The human form of a plan: one block per entry, one line per step.
pub fn render_plan(plan: &Plan, cli: &Cli) -> String {
    let mut s = format!(
        "# persist-bind plan (dry run: nothing changed) for root {} from {}\n",
        cli.root.display(),
        cli.config.display()
    );
    for e in &plan.entries {
        match &e.outcome {
            Outcome::Steps(steps) if steps.is_empty() => {
                s.push_str(&format!("{} {} {}: in place\n", e.origin, e.kind, e.target));
            }
            Outcome::Steps(steps) => {
                s.push_str(&format!("{} {} {} from {}:\n", e.origin, e.kind, e.target, e.source));
                for step in steps {
                    s.push_str(&format!("  {step}\n"));
                }
            }
            Outcome::Error(err) => {
                s.push_str(&format!("{} {} {}: ERROR: {err}\n", e.origin, e.kind, e.target))
            }
        }
    }
    let steps: usize =
        plan.entries.iter().map(|e| if let Outcome::Steps(s) = &e.outcome { s.len() } else { 0 }).sum();
    s.push_str(&format!("# {} entries, {steps} steps, {} errors\n", plan.entries.len(), plan.failed()));
    s
}

fn check_cmd(cli: &Cli, entries: &[Entry], root: &Root) -> u8 {
    let states = check::check(entries, root);
    let bad = states.iter().filter(|c| matches!(c.state, State::Differs(_))).count();
    if cli.json {
        if !json(&states) {
            return EXIT_ENTRIES_FAILED;
        }
    } else {
        for c in &states {
            if let State::Differs(why) = &c.state {
                println!("{} {}: {why}", c.origin, c.target);
            }
        }
        println!("{} of {} entries in place", states.len() - bad, states.len());
    }
    if bad == 0 { EXIT_OK } else { EXIT_ENTRIES_FAILED }
}

fn audit_cmd(cli: &Cli, doc: &Document, entries: &[Entry], root: &Root) -> u8 {
    let storages = doc.storage_paths();
    let items = match audit::audit(entries, &storages, root) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("persist-bind: audit: {e}");
            return EXIT_ENTRIES_FAILED;
        }
    };
    let storage = storages.first().cloned().unwrap_or_else(|| crate::RootPath::parse("/persist").unwrap());
    if cli.json {
        return if json(&items) { EXIT_OK } else { EXIT_ENTRIES_FAILED };
    }
    println!("# Erased by the next boot ({} on the root's file system, not persisted):", items.len());
    for i in &items {
        match i.kind {
            crate::beneath::Kind::Directory => {
                println!("{}/  ({} files, {} bytes)", i.path, i.files, i.bytes)
            }
            _ => println!("{}  ({} bytes)", i.path, i.bytes),
        }
    }
    println!("\n# To keep them, add to your configuration:\n{}", audit::snippet(&storage, &items));
    EXIT_OK
}
