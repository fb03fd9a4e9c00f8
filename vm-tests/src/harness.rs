//! The harness every scenario runs in: the host's kernel, the static binaries, QEMU's accelerator and timeout, and the work directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::artifacts::{self, Binaries};
use crate::error::{self, Context, Error, Result};
use crate::host::{self, Accel, Kernel};
use crate::qemu::{self, Boot, BootSpec, ConsoleInput};

/// The kernel command line of lethe's boots (plus per-boot switches).
pub const CMDLINE: &str = "console=ttyS0 init=/nix/store/lethe-stage2 panic=-1 lethe.log=debug";

/// The guests' virtual CPUs and memory.
pub const GUEST_CPUS: u32 = 1;
pub const GUEST_MEMORY_MIB: u32 = 512;

/// The shortest time a benchmark boot may take before QEMU is killed.
pub const BENCH_TIMEOUT: Duration = Duration::from_secs(600);

/// Everything a scenario needs from the host.
#[derive(Debug)]
pub struct Harness {
    pub kernel: Kernel,
    pub bin: Binaries,
    pub accel: Accel,
    pub timeout: Duration,
    /// Where images and initramfs files go (target/vm-tests).
    pub work: PathBuf,
}

impl Harness {
    /// Finds the kernel, builds the static binaries and makes the work directory.
    pub fn setup() -> Result<Harness> {
        if !rustix::process::geteuid().is_root() {
            return Err(Error::Setup("run as root (disk images are made with exact owners)".into()));
        }
        let kernel = Kernel::find()?;
        let accel = Accel::from_env()?;
        let timeout = host::boot_timeout()?;
        let workspace = host::workspace();
        let bin = Binaries::build(&workspace)?;
        let work = artifacts::target_dir(&workspace).join("vm-tests");
        std::fs::create_dir_all(&work).context(|| error::at(&work, "cannot create"))?;
        Ok(Harness { kernel, bin, accel, timeout, work })
    }

    /// A fresh directory for one scenario's files.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.work.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).context(|| error::at(&d, "cannot remove"))?;
        }
        std::fs::create_dir_all(&d).context(|| error::at(&d, "cannot create"))?;
        Ok(d)
    }

    /// Boots `initrd` with `disks`; `echo` prints the console live, after
    /// a header naming the boot.
    pub fn boot(&self, label: &str, initrd: &Path, disks: &[PathBuf], echo: Option<&str>) -> Result<Boot> {
        self.boot_with(label, initrd, disks, "", echo)
    }

    /// [`Harness::boot`] with `switches` added to the kernel command line.
    pub fn boot_with(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        switches: &str,
        echo: Option<&str>,
    ) -> Result<Boot> {
        let cmdline = format!("{CMDLINE} {switches}");
        self.boot_cmdline(label, initrd, disks, cmdline.trim_end(), echo)
    }

    /// Boots with a whole kernel command line of its own.
    pub fn boot_cmdline(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        cmdline: &str,
        echo: Option<&str>,
    ) -> Result<Boot> {
        self.boot_typing(label, initrd, disks, cmdline, &[], echo)
    }

    /// [`Harness::boot_cmdline`], typing `input` on the serial console as
    /// the console asks for it (a passphrase after its prompt).
    pub fn boot_typing(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        cmdline: &str,
        input: &[ConsoleInput],
        echo: Option<&str>,
    ) -> Result<Boot> {
        self.boot_networked(label, initrd, disks, cmdline, input, None, echo)
    }

    /// A boot for the benchmark: no input, no echo, the guest's RAM backed by a file in
    /// /dev/shm so that [`Boot::memory_touched`] says how much of it the guest used, and at
    /// least [`BENCH_TIMEOUT`] (a peer's shell per persisted entry is slow under emulation).
    pub fn boot_measured(&self, initrd: &Path, disks: &[PathBuf], cmdline: &str) -> Result<Boot> {
        let memory_file = PathBuf::from(format!("/dev/shm/lethe-vm-tests-{}.ram", std::process::id()));
        let spec = BootSpec {
            timeout: self.timeout.max(BENCH_TIMEOUT),
            memory_file: Some(memory_file),
            ..self.spec(initrd, disks, cmdline)
        };
        qemu::boot(&spec)
    }

    /// [`Harness::boot_typing`] with a NIC whose port 22 is forwarded to `ssh_port` on
    /// 127.0.0.1 (QEMU's user network), when given.
    #[allow(clippy::too_many_arguments)]
    pub fn boot_networked(
        &self,
        label: &str,
        initrd: &Path,
        disks: &[PathBuf],
        cmdline: &str,
        input: &[ConsoleInput],
        ssh_port: Option<u16>,
        echo: Option<&str>,
    ) -> Result<Boot> {
        if echo.is_some() {
            println!("\n---- {label}: serial console ----");
        }
        let spec = BootSpec { echo: echo.map(str::to_owned), ssh_port, ..self.spec(initrd, disks, cmdline) };
        qemu::boot_typing(&spec, input)
    }

    /// A boot of this harness's kernel and guest size: no echo, no network, no RAM file.
    fn spec(&self, initrd: &Path, disks: &[PathBuf], cmdline: &str) -> BootSpec {
        BootSpec {
            kernel: self.kernel.image.clone(),
            initrd: initrd.to_path_buf(),
            append: cmdline.to_owned(),
            disks: disks.to_vec(),
            accel: self.accel,
            cpus: GUEST_CPUS,
            memory_mib: GUEST_MEMORY_MIB,
            timeout: self.timeout,
            echo: None,
            ssh_port: None,
            memory_file: None,
        }
    }
}
