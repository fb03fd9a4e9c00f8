//! Keyslot unlock time against cryptsetup on the same headers: ours (`header::read_path` and
//! `unlock::open`, in process) against `cryptsetup open --test-passphrase` on the same file.
//!
//! Run: `cargo bench -p luks --bench unlock`. Headers are made by `cryptsetup luksFormat` in a
//! temporary directory: LUKS2 with argon2id (1 GiB, 4 lanes requested, time cost 4) and with
//! pbkdf2-sha256 (1,000,000 iterations, a 512-bit key). Each side runs 5 times; the table shows
//! medians and the ratio lethe/cryptsetup (the goal is at most 1.0). It asserts no timings.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it is a quick check with small costs.
//! Other arguments select cases whose name contains them (`-- argon2`).

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use luks::unlock::{self, Options};

const PASS: &[u8] = b"bench passphrase";

struct Case {
    name: &'static str,
    format: Vec<&'static str>,
}

fn cases(quick: bool) -> Vec<Case> {
    let (memory, pbkdf2_iterations) = if quick { ("65536", "10000") } else { ("1048576", "1000000") };
    vec![
        Case {
            name: if quick { "argon2id 64 MiB, 4 lanes, t=4" } else { "argon2id 1 GiB, 4 lanes, t=4" },
            format: vec![
                "--pbkdf",
                "argon2id",
                "--pbkdf-memory",
                memory,
                "--pbkdf-parallel",
                "4",
                "--pbkdf-force-iterations",
                "4",
            ],
        },
        Case {
            name: if quick { "pbkdf2-sha256 10,000" } else { "pbkdf2-sha256 1,000,000" },
            format: vec![
                "--pbkdf",
                "pbkdf2",
                "--hash",
                "sha256",
                "--pbkdf-force-iterations",
                pbkdf2_iterations,
            ],
        },
    ]
}

fn cryptsetup<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> Result<(), String> {
    let out = Command::new("cryptsetup")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cryptsetup: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()) }
}

fn format(dir: &Path, case: &Case, pass: &Path) -> Result<PathBuf, String> {
    let img = dir.join(format!("{}.img", case.name.split(' ').next().unwrap_or("case")));
    File::create(&img).and_then(|f| f.set_len(32 << 20)).map_err(|e| format!("{}: {e}", img.display()))?;
    let mut args: Vec<&OsStr> = ["luksFormat", "--batch-mode", "--type", "luks2", "--key-size", "512"]
        .iter()
        .map(OsStr::new)
        .collect();
    args.extend(case.format.iter().map(OsStr::new));
    args.extend([OsStr::new("--key-file"), pass.as_os_str(), img.as_os_str()]);
    cryptsetup(args).map_err(|e| format!("luksFormat for {}: {e}", case.name))?;
    Ok(img)
}

/// The Argon2 lanes and memory the header actually holds (cryptsetup caps lanes at the CPU
/// count when formatting).
fn kdf_summary(img: &Path) -> String {
    match luks::header::read_path(img) {
        Ok(h) => match h.keyslots.first().map(|k| &k.kdf) {
            Some(luks::model::Kdf::Argon2id { time, memory_kib, cpus, .. }) => {
                format!("stored: t={time}, m={memory_kib} KiB, lanes={cpus}")
            }
            Some(luks::model::Kdf::Pbkdf2 { hash, iterations, .. }) => {
                format!("stored: {} x {iterations}", hash.name())
            }
            Some(other) => format!("stored: {other:?}"),
            None => "no keyslot".into(),
        },
        Err(e) => format!("header: {e}"),
    }
}

/// Wall and CPU time (all threads) of one unlock.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// CPU time of this process (all its threads) and of its waited-for children, from
/// /proc/self/stat (utime, stime, cutime, cstime, in USER_HZ = 100 ticks per second).
fn cpu_times() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name's closing parenthesis, from field 3 (state) on.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().skip(11).take(4).map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = |i: usize| Duration::from_millis(f.get(i).copied().unwrap_or(0) * 10);
    (ticks(0) + ticks(1), ticks(2) + ticks(3))
}

/// `initrd-tool luks open-test IMG --key-file PASS`, as a process like cryptsetup's, when
/// LETHE_INITRD_TOOL names the binary; else the library call in this process.
fn time_ours(img: &Path, pass: &Path) -> Result<Sample, String> {
    if let Some(tool) = std::env::var_os("LETHE_INITRD_TOOL") {
        let (_, cpu0) = cpu_times();
        let start = Instant::now();
        let status = Command::new(&tool)
            .args([OsStr::new("luks"), OsStr::new("open-test"), img.as_os_str()])
            .args([OsStr::new("--key-file"), pass.as_os_str()])
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("{}: {e}", Path::new(&tool).display()))?;
        let wall = start.elapsed();
        if !status.success() {
            return Err(format!("initrd-tool luks open-test {}: {status}", img.display()));
        }
        return Ok(Sample { wall, cpu: cpu_times().1.saturating_sub(cpu0) });
    }
    let (cpu0, _) = cpu_times();
    let start = Instant::now();
    let header = luks::header::read_path(img).map_err(|e| e.to_string())?;
    let mut dev = File::open(img).map_err(|e| e.to_string())?;
    let unlocked = unlock::open(&header, &mut dev, PASS, &Options::default()).map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    drop(unlocked);
    Ok(Sample { wall, cpu: cpu_times().0.saturating_sub(cpu0) })
}

fn time_cryptsetup(img: &Path, pass: &Path) -> Result<Sample, String> {
    let (_, cpu0) = cpu_times();
    let start = Instant::now();
    cryptsetup([
        OsStr::new("open"),
        OsStr::new("--test-passphrase"),
        OsStr::new("--key-file"),
        pass.as_os_str(),
        img.as_os_str(),
    ])?;
    let wall = start.elapsed();
    Ok(Sample { wall, cpu: cpu_times().1.saturating_sub(cpu0) })
}

/// Medians of wall and of CPU time, taken separately.
fn median(v: &[Sample]) -> Sample {
    let mid = |mut d: Vec<Duration>| {
        d.sort();
        d.get(d.len() / 2).copied().unwrap_or_default()
    };
    Sample { wall: mid(v.iter().map(|s| s.wall).collect()), cpu: mid(v.iter().map(|s| s.cpu).collect()) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn run() -> Result<(), String> {
    let quick = !std::env::args().any(|a| a == "--bench");
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runs = if quick { 1 } else { 5 };
    let dir = std::env::temp_dir().join(format!("lethe-bench-unlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let pass = dir.join("pass");
    std::fs::write(&pass, PASS).map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ours = match std::env::var_os("LETHE_INITRD_TOOL") {
        Some(t) => format!("`{} luks open-test`", Path::new(&t).display()),
        None => "luks::unlock::open in process (LETHE_INITRD_TOOL=BINARY times initrd-tool)".to_owned(),
    };
    println!("keyslot unlock, median of {runs} (this machine: {cpus} CPUs); lethe: {ours}");
    // Wall time is what a boot waits; CPU time (all threads) is the cost, and the steadier
    // figure when other work shares the machine.
    println!(
        "{:<30} {:>10} {:>10} {:>6} {:>10} {:>10} {:>6}  header",
        "case", "lethe ms", "crypts. ms", "ratio", "lethe cpu", "crypts.cpu", "ratio"
    );
    let mut result = Ok(());
    for case in cases(quick) {
        if !filters.is_empty() && !filters.iter().any(|f| case.name.contains(f.as_str())) {
            continue;
        }
        let img = match format(&dir, &case, &pass) {
            Ok(img) => img,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        // Interleaved, so both sides see the same machine state.
        for _ in 0..runs {
            ours.push(time_ours(&img, &pass)?);
            theirs.push(time_cryptsetup(&img, &pass)?);
        }
        let (o, t) = (median(&ours), median(&theirs));
        println!(
            "{:<30} {:>10.0} {:>10.0} {:>6.2} {:>10.0} {:>10.0} {:>6.2}  {}",
            case.name,
            ms(o.wall),
            ms(t.wall),
            ratio(o.wall, t.wall),
            ms(o.cpu),
            ms(t.cpu),
            ratio(o.cpu, t.cpu),
            kdf_summary(&img)
        );
        let _ = std::fs::remove_file(&img);
    }
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench unlock: {e}");
            ExitCode::FAILURE
        }
    }
}
