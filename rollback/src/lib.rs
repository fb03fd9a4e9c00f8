//! Resetting the root before it is mounted: ZFS rollback to a blank snapshot, BTRFS re-creation from a blank snapshot, or a fresh tmpfs.
//!
//! Each backend plans first (pure data, what `--dry-run` prints) and then
//! applies the plan. A state the plan cannot be sure of (no blank snapshot,
//! a half-known layout, `lethe.rollback=0`, a hibernation image) keeps the
//! old root: [`Outcome::Kept`], a warning, and the boot goes on.

pub mod btrfs;
pub mod cli;
pub mod config;
pub mod diff;
pub mod resume;
pub mod tmpfs;
pub mod zfs;

use std::fmt;

use serde::Serialize;

/// Carry the plan out, or only show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

/// What a rollback did, with `S` the backend's step type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "detail")]
pub enum Outcome<S> {
    /// The root was reset by these steps.
    Reset(Vec<S>),
    /// `--dry-run`: these steps would reset the root; nothing was changed.
    Planned(Vec<S>),
    /// Nothing was changed and the old root stays, for this reason.
    Kept(Kept),
}

/// Why the old root was kept. The boot goes on with it; the console says why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub reason: String,
}

impl Kept {
    pub fn new(reason: impl Into<String>) -> Kept {
        Kept { reason: reason.into() }
    }
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keeping the old root: {}", self.reason)
    }
}

/// Whether the kernel command line turns rollback off for this boot
/// (`lethe.rollback=0`, also `=no`, `=false`, `=off`).
pub fn disabled_on_cmdline(cmdline: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("lethe.rollback="))
        .next_back()
        .is_some_and(|v| matches!(v, "0" | "no" | "false" | "off"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_is_disabled_only_by_an_explicit_switch() {
        assert!(disabled_on_cmdline("quiet lethe.rollback=0 splash"));
        assert!(disabled_on_cmdline("lethe.rollback=off"));
        assert!(!disabled_on_cmdline("quiet splash"));
        assert!(!disabled_on_cmdline("lethe.rollback=1"));
        // The last one wins, as for other kernel parameters.
        assert!(!disabled_on_cmdline("lethe.rollback=0 lethe.rollback=1"));
        assert!(!disabled_on_cmdline("xlethe.rollback=0"));
    }
}
