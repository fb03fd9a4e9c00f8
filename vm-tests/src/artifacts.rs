//! The static binaries the guest runs (built with cargo for musl) and the initramfs built from them with `initrd-tool mkinitrd`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{self, Context, Error, Result};
use crate::host::Kernel;

/// The target the guest binaries are built for: static, no libc needed.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The binaries that go into the guest.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// lethe's multi-call binary (stage 1; also builds the initramfs).
    pub initrd_tool: PathBuf,
    /// The test stage 2.
    pub stage2: PathBuf,
    /// The rollback benchmark's helper in the guest (trees, timing).
    pub guest_bench: PathBuf,
}

impl Binaries {
    /// `cargo build --release --locked --target x86_64-unknown-linux-musl
    /// -p initrd-tool -p vm-tests` (initrd-tool, lethe-stage2 and
    /// lethe-guest-bench) in the workspace.
    pub fn build(workspace: &Path) -> Result<Binaries> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace).args(["build", "--release", "--locked", "--target", TARGET]).args([
            "-p",
            "initrd-tool",
            "-p",
            "vm-tests",
            "--bin",
            "initrd-tool",
            "--bin",
            "lethe-stage2",
            "--bin",
            "lethe-guest-bench",
        ]);
        error::run_inherit(&mut cmd)?;
        let dir = target_dir(workspace).join(TARGET).join("release");
        let b = Binaries {
            initrd_tool: dir.join("initrd-tool"),
            stage2: dir.join("lethe-stage2"),
            guest_bench: dir.join("lethe-guest-bench"),
        };
        for p in [&b.initrd_tool, &b.stage2, &b.guest_bench] {
            if !p.is_file() {
                return Err(Error::Setup(format!("cargo built no {}", p.display())));
            }
        }
        Ok(b)
    }
}

/// `CARGO_TARGET_DIR` or the workspace's target/.
pub fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from)
}

/// What goes into one initramfs.
#[derive(Debug, Clone)]
pub struct InitrdSpec<'a> {
    /// The config written to /etc/lethe/config.json.
    pub config: &'a serde_json::Value,
    /// Build even if the config is invalid (`--unchecked`, for bad-config).
    pub unchecked: bool,
    /// Extra host files: SRC stored as DEST (`--file SRC:DEST`).
    pub files: &'a [(PathBuf, String)],
    /// Modules besides those the config asks for (`--add-module`).
    pub add_modules: &'a [String],
}

/// Writes the config next to `out` and runs `initrd-tool mkinitrd`;
/// returns the initramfs size in bytes.
pub fn mkinitrd(bin: &Binaries, kernel: &Kernel, spec: &InitrdSpec<'_>, out: &Path) -> Result<u64> {
    let config = out.with_extension("config.json");
    let text = serde_json::to_string_pretty(spec.config).context(|| "cannot serialize the config".into())?;
    std::fs::write(&config, text + "\n").context(|| error::at(&config, "cannot write"))?;
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new(&bin.initrd_tool);
    cmd.arg("mkinitrd")
        .arg("--config")
        .arg(&config)
        .arg("--kernel-modules")
        .arg(&kernel.modules)
        .arg("--out")
        .arg(out);
    if spec.unchecked {
        cmd.arg("--unchecked");
    }
    for (src, dest) in spec.files {
        let mut arg = src.clone().into_os_string();
        arg.push(format!(":{dest}"));
        cmd.arg("--file").arg(arg);
    }
    for m in spec.add_modules {
        cmd.arg("--add-module").arg(m);
    }
    error::run(&mut cmd)?;
    let md = std::fs::metadata(out).map_err(|e| {
        Error::Setup(format!("`{}` succeeded but wrote no {} ({e})", error::display(&cmd), out.display()))
    })?;
    Ok(md.len())
}
