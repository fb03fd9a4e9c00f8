//! persist-bind: puts an ephemeral root's persisted state in place (impermanence's `environment.persistence`), natively.
//!
//! The work is split into pure planning ([`plan::plan`], reading only) and
//! effects ([`apply::apply`]); `--dry-run` prints the same plan that apply
//! runs. Every path is resolved beneath the root without following
//! symlinks ([`beneath`]).

pub mod apply;
pub mod audit;
pub mod beneath;
pub mod check;
pub mod cli;
pub mod config;
pub mod json;
pub mod mode;
pub mod owner;
pub mod path;
pub mod plan;
pub mod utab;

pub use config::{ConfigErrors, Document, Entry};
pub use path::RootPath;
pub use plan::{Plan, Step};
