//! The harness's errors: what it was doing, on which file or command, and why it failed.

use std::path::Path;
use std::process::{Command, Output};

/// A harness failure (not a scenario's failed check: those are reported as findings).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_tail(.stderr))]
    Command { command: String, status: String, stderr: String },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Setup(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(20)..];
    format!(":\n  {}", tail.join("\n  "))
}

/// Adds what was being done to an I/O error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: what(), source })
    }
}

impl<T> Context<T> for serde_json::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Json { context: what(), source })
    }
}

/// `cmd` as a shell-like string, for messages.
pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion, capturing its output; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let command = display(cmd);
    let out = cmd.output().context(|| format!("cannot run `{command}`"))?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out)
}

/// Runs `cmd` with its output on the terminal (long builds show progress).
pub fn run_inherit(cmd: &mut Command) -> Result<()> {
    let command = display(cmd);
    let status = cmd.status().context(|| format!("cannot run `{command}`"))?;
    if !status.success() {
        return Err(Error::Command { command, status: status.to_string(), stderr: String::new() });
    }
    Ok(())
}

/// "path: what" for messages.
pub fn at(path: &Path, what: &str) -> String {
    format!("{what} {}", path.display())
}
