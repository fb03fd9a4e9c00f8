//! The test stage 2: run as PID 1 after lethe's switch_root, it checks the booted root, prints one `LETHE-STAGE2 {json}` line and powers off.
//!
//! It reads its expectations from the file next to itself
//! (`/nix/store/lethe-stage2.json` for `/nix/store/lethe-stage2`). It never
//! panics on a bad machine (a PID 1 that dies panics the kernel): every
//! problem is a sentence in the report's `failures`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use vm_tests::expect::{Expectations, Report};
use vm_tests::stage2::{self, Observed};

const TIMINGS: &str = "/run/lethe/timings.json";

fn main() -> ExitCode {
    // First, before anything else costs time: the guest clock's reading.
    let uptime = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let uptime_s = uptime.tv_sec as f64 + uptime.tv_nsec as f64 / 1e9;
    let pid1 = rustix::process::getpid().is_init();
    if !pid1 && std::env::args_os().nth(1).as_deref() != Some("--not-pid1".as_ref()) {
        eprintln!(
            "lethe-stage2: runs only as PID 1 of a test VM (it writes /lethe-ephemeral-marker and powers off); \
             pass --not-pid1 to run it anyway without powering off"
        );
        return ExitCode::from(2);
    }

    let mut observed = Observed { uptime_s: Some(uptime_s), ..Observed::default() };
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(m) => observed.mountinfo = m,
        Err(e) => observed.failures.push(format!("cannot read /proc/self/mountinfo: {e}")),
    }
    observed.timings = match std::fs::read(TIMINGS) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| observed.failures.push(format!("{TIMINGS} is not JSON: {e}")))
            .ok(),
        // Another stage 1 (the benchmark's peers) leaves none; lethe's boots expect the file
        // among their paths, so a missing one is still a failure there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            observed.failures.push(format!("cannot read {TIMINGS}: {e}"));
            None
        }
    };

    let mut report = match load_expectations() {
        Ok(expect) => stage2::run(&expect, Path::new("/"), observed),
        Err(e) => {
            observed.failures.push(e);
            Report {
                boot: None,
                uptime_s: observed.uptime_s,
                ephemeral_marker_found: false,
                machine_id_found: None,
                user_file_lines: None,
                failures: observed.failures,
                timings: observed.timings,
            }
        }
    };

    // Keep kernel messages from splitting the result line on the console.
    let _ = std::fs::write("/proc/sys/kernel/printk", "1");
    rustix::fs::sync();
    if pid1 {
        match std::fs::read_to_string("/proc/self/mountinfo") {
            Ok(m) => report.failures.extend(stage2::unmount_disks(&m)),
            Err(e) => report.failures.push(format!("cannot read /proc/self/mountinfo to unmount: {e}")),
        }
    }
    print_line(&report.to_console_line());
    rustix::fs::sync();
    if pid1 {
        power_off();
    }
    if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The expectations file: this binary's path with `.json` appended.
fn load_expectations() -> Result<Expectations, String> {
    let exe = std::env::current_exe()
        .or_else(|_| std::env::args_os().next().map(PathBuf::from).ok_or(()))
        .map_err(|()| "cannot tell where this binary is (no /proc/self/exe, no argv[0])".to_owned())?;
    let mut path = exe.into_os_string();
    path.push(".json");
    let path = PathBuf::from(path);
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read the expectations {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid expectations {}: {e}", path.display()))
}

/// One write of the whole line to stdout (the console), or to
/// /dev/console when stdout is gone.
fn print_line(line: &str) {
    let bytes = format!("\n{line}\n").into_bytes();
    let mut out = std::io::stdout().lock();
    if out.write_all(&bytes).and_then(|()| out.flush()).is_err()
        && let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console")
    {
        let _ = c.write_all(&bytes);
    }
}

/// Powers the VM off (QEMU exits); should that fail, waits for the
/// harness's timeout rather than exiting (which would panic the kernel).
fn power_off() -> ! {
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
        print_line(&format!("lethe-stage2: power off failed: {e}"));
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
