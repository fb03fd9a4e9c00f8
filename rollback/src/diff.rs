//! `rollback diff`: what the next rollback erases, found by comparing the live root with its blank state.

use std::path::PathBuf;

/// One path the next rollback erases.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub path: PathBuf,
}
