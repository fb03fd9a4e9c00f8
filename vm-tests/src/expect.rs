//! What the harness tells the test stage 2 to check (the expectations file) and what stage 2 reports back (the `LETHE-STAGE2` line).
//!
//! Both sides use these types: the harness writes an [`Expectations`] next
//! to the stage-2 binary on the nix image and parses the [`Report`] from the
//! serial console.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix of stage 2's one result line on the console.
pub const REPORT_PREFIX: &str = "LETHE-STAGE2 ";

/// The marker stage 2 writes on the root; a fresh root never has it.
pub const EPHEMERAL_MARKER: &str = "/lethe-ephemeral-marker";

/// The content systemd leaves in /etc/machine-id before it commits an id.
pub const MACHINE_ID_UNINITIALIZED: &str = "uninitialized";

/// Everything stage 2 checks and writes on one boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// Mounts that must be present (the topmost mount at each target).
    #[serde(default)]
    pub mounts: Vec<MountExpectation>,
    /// Paths with their kind, owner, mode, link target or content.
    #[serde(default)]
    pub paths: Vec<PathExpectation>,
    /// A persisted file holding the number of boots so far; stage 2
    /// increments it.
    pub boot_counter: String,
    /// A persisted /etc/machine-id: "uninitialized" is replaced by `id`.
    #[serde(default)]
    pub machine_id: Option<MachineIdExpectation>,
    /// A file in a user's persisted directory, appended to on every boot.
    #[serde(default)]
    pub user_file: Option<UserFile>,
}

/// A mount stage 2 must find in /proc/self/mountinfo.
// No deny_unknown_fields: serde does not support it with `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountExpectation {
    pub target: String,
    #[serde(flatten)]
    pub what: MountKind,
}

/// How the mount at a target must look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A file system of this type, with at least these options (per-mount
    /// or super-block options, such as `ro`).
    Fs {
        fs_type: String,
        #[serde(default)]
        options: Vec<String>,
    },
    /// A bind mount of `path` inside the file system mounted at `storage`
    /// (the persistent side).
    Bind { storage: String, path: String },
}

/// One path and what must be true of it (absent fields are not checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathExpectation {
    pub path: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// For a symlink: where it points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    /// For a file: its exact content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl PathExpectation {
    /// A path of `kind` with nothing else checked.
    pub fn new(path: &str, kind: Kind) -> PathExpectation {
        PathExpectation {
            path: path.into(),
            kind,
            uid: None,
            gid: None,
            mode: None,
            link_target: None,
            content: None,
        }
    }

    /// Also checks the owner and the permission bits.
    pub fn owned(mut self, uid: u32, gid: u32, mode: u32) -> PathExpectation {
        self.uid = Some(uid);
        self.gid = Some(gid);
        self.mode = Some(Mode(mode));
        self
    }

    /// Also checks a file's content.
    pub fn content(mut self, content: &str) -> PathExpectation {
        self.content = Some(content.into());
        self
    }
}

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A block device node, or a symlink to one (/dev/mapper/cryptroot,
    /// which udev makes a link to ../dm-0).
    BlockDevice,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Dir => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::BlockDevice => "block device",
        })
    }
}

/// Permission bits (`0o7777`), written as an octal string ("0755").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match u32::from_str_radix(&s, 8) {
            Ok(m) if m <= 0o7777 && !s.is_empty() => Ok(Mode(m)),
            _ => Err(serde::de::Error::custom(format!("expected an octal mode like \"0755\", got {s:?}"))),
        }
    }
}

/// A persisted /etc/machine-id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineIdExpectation {
    pub path: String,
    /// Written when the file says "uninitialized" (as systemd would commit
    /// the id it generates).
    pub id: String,
}

/// A file stage 2 appends `boot N` to on every boot, owned by a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
}

/// Stage 2's result for one boot, printed as `LETHE-STAGE2 {json}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// This boot's number (the persisted counter after the increment).
    pub boot: Option<u64>,
    /// Kernel uptime (CLOCK_BOOTTIME, as /proc/uptime) when stage 2 started.
    pub uptime_s: Option<f64>,
    /// Whether the ephemeral marker was already on the root.
    pub ephemeral_marker_found: bool,
    /// /etc/machine-id as found (trimmed), before stage 2 wrote it.
    #[serde(default)]
    pub machine_id_found: Option<String>,
    /// Lines in the user file after this boot's line was appended.
    #[serde(default)]
    pub user_file_lines: Option<u64>,
    /// Every check that failed, one sentence each.
    pub failures: Vec<String>,
    /// /run/lethe/timings.json as stage 1 left it, or null.
    pub timings: Option<serde_json::Value>,
}

impl Report {
    /// Finds and parses the result in a console line (kernel messages may
    /// precede it on the same line).
    pub fn from_console_line(line: &str) -> Option<Result<Report, serde_json::Error>> {
        let at = line.find(REPORT_PREFIX)?;
        Some(serde_json::from_str(&line[at + REPORT_PREFIX.len()..]))
    }

    /// The line stage 2 prints.
    pub fn to_console_line(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"boot":null,"uptime_s":null,"ephemeral_marker_found":false,"failures":["cannot serialize the report: {e}"],"timings":null}}"#)
        });
        format!("{REPORT_PREFIX}{json}")
    }
}

/// /run/lethe/timings.json, as far as the harness reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub kernel_uptime_ms_at_start: f64,
    pub steps: Vec<StepTiming>,
    pub total_ms: f64,
}

/// One stage-1 step's duration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub name: String,
    pub ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_line_round_trips_behind_kernel_noise() {
        let r = Report {
            boot: Some(2),
            uptime_s: Some(3.25),
            ephemeral_marker_found: false,
            machine_id_found: Some("abc".into()),
            user_file_lines: Some(2),
            failures: vec!["x".into()],
            timings: Some(
                serde_json::json!({"kernel_uptime_ms_at_start": 1.0, "steps": [], "total_ms": 2.0}),
            ),
        };
        let line = format!("[    3.1] random: crng init done{}", r.to_console_line());
        assert_eq!(Report::from_console_line(&line).unwrap().unwrap(), r);
        assert!(Report::from_console_line("lethe: mounts ok").is_none());
        assert!(Report::from_console_line("LETHE-STAGE2 {truncated").unwrap().is_err());
    }

    #[test]
    fn modes_are_octal_strings() {
        let p: PathExpectation =
            serde_json::from_str(r#"{"path": "/", "kind": "dir", "mode": "0755"}"#).unwrap();
        assert_eq!(p.mode, Some(Mode(0o755)));
        assert_eq!(serde_json::to_string(&Mode(0o700)).unwrap(), r#""0700""#);
        assert!(serde_json::from_str::<Mode>(r#""rwx""#).is_err());
        assert!(serde_json::from_str::<Mode>(r#""17777""#).is_err());
    }

    #[test]
    fn mount_kinds_are_tagged() {
        let m: MountExpectation = serde_json::from_str(
            r#"{"target": "/etc/machine-id", "bind": {"storage": "/persist", "path": "/etc/machine-id"}}"#,
        )
        .unwrap();
        assert_eq!(m.what, MountKind::Bind { storage: "/persist".into(), path: "/etc/machine-id".into() });
        let m: MountExpectation =
            serde_json::from_str(r#"{"target": "/nix", "fs": {"fs_type": "ext4", "options": ["ro"]}}"#)
                .unwrap();
        assert_eq!(m.what, MountKind::Fs { fs_type: "ext4".into(), options: vec!["ro".into()] });
    }
}
