//! What the two LUKS scenarios share: LUKS2 disks formatted on the host by the reference cryptsetup, the key file and its vfat "USB stick", the busybox guests that fill and read them, and the checks of a boot whose stage 1 unlocks.
//!
//! The host has no device-mapper, but formatting and `--test-passphrase`
//! need none; opening (to make and read the file systems inside) happens
//! in busybox guests running the reference cryptsetup on Debian's kernel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::error::{self, Context, Error, Result};
use crate::expect::{Kind, PathExpectation, Report};
use crate::guest::{self, GuestSpec};
use crate::harness::{self, Harness};
use crate::qemu::{Boot, ConsoleInput, Outcome};
use crate::scenarios::{self, ScenarioResult};

/// The mapping both machines open: /dev/mapper/cryptroot.
pub const MAPPING: &str = "cryptroot";
/// The passphrase in keyslot 0 of both disks. A test secret: it opens
/// nothing but these images.
pub const PASSPHRASE: &str = "lethe vm-tests: correct horse battery staple";
/// Passphrases that open nothing.
pub const WRONG_PASSPHRASES: [&str; 2] = ["lethe vm-tests: wrong horse", "lethe vm-tests: staple battery"];
/// The prompt lethe's stage 1 shows on the console for cryptroot.
pub const PROMPT: &str = "Please enter passphrase for disk cryptroot";
/// What stage 1 says after a passphrase that opens no keyslot.
pub const WRONG: &str = "wrong passphrase";
/// The reference cryptsetup's prompt in the setup and check guests.
const CRYPTSETUP_PROMPT: &str = "Enter passphrase for /dev/";
/// Stage 1's line when the unlock step is done.
pub const UNLOCK_OK: &str = "lethe: unlock ok";
/// The reference's binary (cryptsetup-bin).
pub const CRYPTSETUP: &str = "/usr/sbin/cryptsetup";

/// The kernel modules dm-crypt needs for aes-xts-plain64. Nothing in a
/// busybox guest loads crypto templates on demand (the kernel's modprobe
/// helper is absent), so xts is loaded up front; aesni_intel is the fast
/// AES (the generic one is built in). lethe's configs name them too,
/// though its mkinitrd and stage 1 add dm-crypt's modules themselves for a
/// luks section.
pub const DM_CRYPT_MODULES: [&str; 4] = ["dm_mod", "dm_crypt", "xts", "aesni_intel"];
/// What mounting the vfat stick needs: the file system and the code pages
/// Debian's kernel defaults to (cp437 for short names, ascii as iocharset,
/// utf8 for long names).
pub const VFAT_MODULES: [&str; 4] = ["vfat", "nls_cp437", "nls_ascii", "nls_utf8"];

/// A keyslot's password-based key derivation, cheap enough for TCG boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    Argon2id { memory_kib: u32, parallel: u32, iterations: u32 },
    Pbkdf2 { hash: &'static str, iterations: u32 },
}

impl Kdf {
    /// cryptsetup's options for it.
    fn args(self) -> Vec<String> {
        match self {
            Kdf::Argon2id { memory_kib, parallel, iterations } => vec![
                "--pbkdf=argon2id".into(),
                format!("--pbkdf-memory={memory_kib}"),
                format!("--pbkdf-parallel={parallel}"),
                format!("--pbkdf-force-iterations={iterations}"),
            ],
            Kdf::Pbkdf2 { hash, iterations } => vec![
                "--pbkdf=pbkdf2".into(),
                format!("--hash={hash}"),
                format!("--pbkdf-force-iterations={iterations}"),
            ],
        }
    }
}

/// How a disk is formatted: LUKS2, aes-xts-plain64 with a 512-bit key.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub uuid: &'static str,
    pub label: &'static str,
    /// Keyslot 0's (the passphrase's) key derivation.
    pub kdf: Kdf,
    /// The data segment's encryption sector size.
    pub sector_size: u32,
}

impl Format {
    /// The dm UUID cryptsetup gives the mapping: `CRYPT-LUKS2-<uuid without dashes>-<name>`.
    pub fn dm_uuid(&self) -> String {
        format!("CRYPT-LUKS2-{}-{MAPPING}", self.uuid.replace('-', ""))
    }
}

/// A region of a key file that opens a keyslot (`--keyfile-offset`, `--keyfile-size`).
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub offset: u64,
    pub size: u64,
}

/// What the reference is given to open a keyslot.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Passphrase(&'a str),
    File(&'a KeyFile),
}

/// `cryptsetup luksFormat --type luks2` of the file `image` (no
/// device-mapper needed) with [`PASSPHRASE`] in keyslot 0.
pub fn format(image: &Path, f: &Format) -> Result<()> {
    let mut cmd = cryptsetup();
    cmd.args(["luksFormat", "--batch-mode", "--type=luks2", "--cipher=aes-xts-plain64", "--key-size=512"])
        .arg(format!("--uuid={}", f.uuid))
        .arg(format!("--label={}", f.label))
        .arg(format!("--sector-size={}", f.sector_size))
        .args(f.kdf.args())
        .arg("--key-file=-")
        .arg(image);
    run_with_stdin(&mut cmd, PASSPHRASE.as_bytes())
}

/// `cryptsetup luksAddKey`: `key`'s region into the next free keyslot
/// (derived with `kdf`), authorised by [`PASSPHRASE`].
pub fn add_key_file(image: &Path, key: &KeyFile, kdf: Kdf) -> Result<()> {
    let mut cmd = cryptsetup();
    cmd.args(["luksAddKey", "--batch-mode", "--key-file=-"])
        .arg(format!("--new-keyfile-offset={}", key.offset))
        .arg(format!("--new-keyfile-size={}", key.size))
        .args(kdf.args())
        .arg(image)
        .arg(&key.path);
    run_with_stdin(&mut cmd, PASSPHRASE.as_bytes())
}

/// Whether the reference opens a keyslot of `image` with `key`
/// (`cryptsetup open --test-passphrase`).
pub fn opens(image: &Path, key: Key<'_>) -> Result<bool> {
    let mut cmd = cryptsetup();
    cmd.args(["open", "--test-passphrase", "--batch-mode"]);
    let stdin: &[u8] = match key {
        Key::Passphrase(p) => {
            cmd.arg("--key-file=-");
            p.as_bytes()
        }
        Key::File(k) => {
            cmd.arg("--key-file")
                .arg(&k.path)
                .arg(format!("--keyfile-offset={}", k.offset))
                .arg(format!("--keyfile-size={}", k.size));
            &[]
        }
    };
    cmd.arg(image);
    match run_with_stdin(&mut cmd, stdin) {
        Ok(()) => Ok(true),
        // cryptsetup's exit code 2: no keyslot opens with this key.
        Err(Error::Command { status, .. }) if status.ends_with("exit status: 2") => Ok(false),
        Err(e) => Err(e),
    }
}

fn cryptsetup() -> Command {
    let mut cmd = Command::new(CRYPTSETUP);
    // Its messages end up in findings: in English.
    cmd.env("LC_ALL", "C");
    cmd
}

/// Runs `cmd` with `input` on its stdin (a secret never on a command line).
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<()> {
    let command = error::display(cmd);
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context(|| {
            format!("cannot run `{command}` (install cryptsetup-bin: scripts/install-deps.sh)")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).context(|| format!("cannot write to `{command}`"))?;
    }
    let out = child.wait_with_output().context(|| format!("cannot wait for `{command}`"))?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Writes a key file of `len` bytes: SHA-256 of a counter, block after
/// block, so every run has the same key and the bytes around a region
/// differ from the region.
pub fn write_key_file(path: &Path, len: usize) -> Result<()> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut n = 0u64;
    while bytes.len() < len {
        bytes.extend_from_slice(&Sha256::digest(format!("lethe vm-tests key file {n}").as_bytes()));
        n += 1;
    }
    bytes.truncate(len);
    std::fs::write(path, &bytes).context(|| error::at(path, "cannot write"))
}

/// A sparse file of `mib` MiB.
pub fn sparse_file(path: &Path, mib: u64) -> Result<()> {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(mib << 20))
        .context(|| error::at(path, "cannot create"))
}

/// A GPT disk of `mib` MiB whose one partition (vda1, named `name`) starts
/// at 1 MiB and holds `part` (`mib` - 2 MiB; the last MiB keeps the backup
/// table), copied sparsely.
pub fn gpt_disk(disk: &Path, part: &Path, mib: u64, name: &str) -> Result<()> {
    sparse_file(disk, mib)?;
    let sectors = mib.saturating_sub(2) << 11;
    let table = format!("label: gpt\nstart=2048, size={sectors}, type=linux, name={name}\n");
    let mut cmd = Command::new("sfdisk");
    cmd.args(["--quiet", "--no-reread", "--no-tell-kernel"]).arg(disk);
    run_with_stdin(&mut cmd, table.as_bytes())?;
    error::run(
        Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", disk.display()))
            .args(["bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"]),
    )?;
    Ok(())
}

/// The SHA-256 of `len` bytes of `disk` from `offset`, in hex: a LUKS
/// header, which opening must leave as it was.
pub fn header_digest(disk: &Path, offset: u64, len: u64) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(disk).context(|| error::at(disk, "cannot open"))?;
    f.seek(SeekFrom::Start(offset)).context(|| error::at(disk, "cannot seek in"))?;
    let mut bytes = Vec::new();
    f.take(len).read_to_end(&mut bytes).context(|| error::at(disk, "cannot read"))?;
    if bytes.len() as u64 != len {
        return Err(Error::Setup(format!("{} ends before byte {}", disk.display(), offset + len)));
    }
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// An empty vfat image of `kib` KiB with volume id `id` (8 hex digits;
/// `UUID=XXXX-XXXX` finds it) and label `label`.
pub fn vfat_stick(image: &Path, id: &str, label: &str, kib: u64) -> Result<()> {
    if image.exists() {
        std::fs::remove_file(image).context(|| error::at(image, "cannot remove"))?;
    }
    error::run(Command::new("mkfs.vfat").args(["-C", "-i", id, "-n", label]).arg(image).arg(kib.to_string()))
        .map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::Setup("mkfs.vfat not found: install dosfstools (scripts/install-deps.sh)".into())
            }
            e => e,
        })?;
    Ok(())
}

/// glibc loads it (dlopen, so ldd does not list it) when a thread exits:
/// the reference's Argon2 runs its lanes in threads.
const LIBGCC_S: &str = "/lib/x86_64-linux-gnu/libgcc_s.so.1";

/// The busybox guest with the reference cryptsetup, `spec`'s programs,
/// files and scripts, and the dm-crypt modules besides `spec`'s.
pub fn tools_initrd(h: &Harness, dir: &Path, mut spec: GuestSpec<'_>, out: &Path) -> Result<u64> {
    spec.programs.push(Path::new(CRYPTSETUP));
    if !Path::new(LIBGCC_S).is_file() {
        return Err(Error::Setup(format!("{LIBGCC_S} is missing (Debian's libgcc-s1)")));
    }
    spec.files.push((PathBuf::from(LIBGCC_S), LIBGCC_S.to_owned()));
    spec.modules.extend(DM_CRYPT_MODULES);
    guest::build(h, dir, &spec, out)
}

/// Boots the busybox guest running `script`, typing [`PASSPHRASE`] when
/// the reference cryptsetup asks for it.
pub fn boot_guest(
    h: &Harness,
    label: &str,
    initrd: &Path,
    disks: &[PathBuf],
    script: &str,
    echo: Option<&str>,
) -> Result<Boot> {
    let input = [ConsoleInput::line("the passphrase", CRYPTSETUP_PROMPT, PASSPHRASE)];
    h.boot_typing(label, initrd, disks, &guest::cmdline(script), &input, echo)
}

/// Boots lethe's stage 1, typing `input` on the console as it asks.
pub fn boot_lethe(
    h: &Harness,
    label: &str,
    initrd: &Path,
    disks: &[PathBuf],
    input: &[ConsoleInput],
    echo: Option<&str>,
) -> Result<Boot> {
    h.boot_typing(label, initrd, disks, harness::CMDLINE, input, echo)
}

/// The passphrase typed after stage 1's prompt.
pub fn passphrase() -> ConsoleInput {
    ConsoleInput::line("the passphrase", PROMPT, PASSPHRASE)
}

/// Two wrong passphrases, then the right one, each after a prompt: stage
/// 1 asks again after saying the last one was wrong.
pub fn two_wrong_then_right() -> Vec<ConsoleInput> {
    let [first, second] = WRONG_PASSPHRASES;
    vec![
        ConsoleInput::line("a wrong passphrase", PROMPT, first),
        ConsoleInput::line("another wrong passphrase", PROMPT, second),
        ConsoleInput::line("the passphrase", PROMPT, PASSPHRASE),
    ]
}

/// Stage 2's view of the mapping: /dev/mapper/cryptroot is a block
/// device, and the kernel's first dm device is cryptroot with the UUID
/// cryptsetup would give it.
pub fn mapping_expectations(f: &Format) -> Vec<PathExpectation> {
    vec![
        PathExpectation::new(&format!("/dev/mapper/{MAPPING}"), Kind::BlockDevice),
        PathExpectation::new("/sys/block/dm-0/dm/name", Kind::File).content(&format!("{MAPPING}\n")),
        PathExpectation::new("/sys/block/dm-0/dm/uuid", Kind::File).content(&format!("{}\n", f.dm_uuid())),
    ]
}

/// The unlock step's duration in a report's stage-1 timings.
pub fn unlock_ms(rep: &Report) -> Option<f64> {
    scenarios::timings(rep)?.steps.into_iter().find(|s| s.name == "unlock").map(|s| s.ms)
}

/// The checks of boot `n` of a machine whose stage 1 unlocks cryptroot:
/// the plain machine's checks, every input typed, none of it echoed,
/// "wrong passphrase" after each wrong one and never after the right one,
/// the unlock step done and timed. Returns whether the boot reached
/// stage 2.
pub fn check_unlocking_boot(r: &mut ScenarioResult, n: u64, boot: &Boot, input: &[ConsoleInput]) -> bool {
    scenarios::check_plain_boot(r, n, boot);
    let label = format!("boot {n}");
    let typed: Vec<&str> = boot.typed.iter().map(|t| t.label.as_str()).collect();
    let asked: Vec<&str> = input.iter().map(|i| i.label.as_str()).collect();
    r.check(typed == asked, || {
        let missing = input
            .get(typed.len())
            .map_or(String::new(), |i| format!("; the console never showed {:?} for {}", i.after, i.label));
        format!("{label}: typed {typed:?} on the console, expected {asked:?}{missing}")
    });
    for i in input {
        let secret = i.text.trim_end();
        r.check(!boot.console_has(secret), || {
            format!("{label}: {} appeared on the console (echoed)", i.label)
        });
    }
    for f in wrong_passphrase_findings(boot, input) {
        r.findings.push(format!("{label}: {f}"));
    }
    if input.is_empty() {
        r.check(!boot.console_has(PROMPT), || {
            format!("{label}: stage 1 asked for a passphrase although the key file was there")
        });
    }
    r.check(boot.console_has(UNLOCK_OK), || format!("{label}: the console never showed {UNLOCK_OK:?}"));
    match &boot.outcome {
        Outcome::Stage2(rep) => {
            r.check(unlock_ms(rep).is_some(), || {
                format!("{label}: the stage-1 timings have no unlock step: {:?}", rep.timings)
            });
            true
        }
        _ => false,
    }
}

/// What the console said after each typed input, up to the next: after a
/// wrong passphrase, "wrong passphrase"; after the right one, nothing of
/// the kind but stage 1's log lines (which may still report the last
/// rejection late).
fn wrong_passphrase_findings(boot: &Boot, input: &[ConsoleInput]) -> Vec<String> {
    let mut findings = Vec::new();
    for (k, (t, i)) in boot.typed.iter().zip(input).enumerate() {
        let end = boot.typed.get(k + 1).map_or(boot.console.len(), |next| next.after_lines);
        let said = boot.console.get(t.after_lines..end).unwrap_or_default();
        if i.text.trim_end() == PASSPHRASE {
            if let Some(l) = said.iter().find(|l| l.contains(WRONG) && !l.starts_with("lethe: ")) {
                findings.push(format!("after {} the console said {l:?}", i.label));
            }
        } else if !said.iter().any(|l| l.contains(WRONG)) {
            findings.push(format!(
                "after {} (typed at {:.1} s) the console never said {WRONG:?}",
                i.label,
                t.at.as_secs_f64()
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_the_same_every_run_and_its_regions_differ() {
        let d = std::env::temp_dir().join(format!("lethe-luks-disk-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (a, b) = (d.join("a.key"), d.join("b.key"));
        write_key_file(&a, 8192).unwrap();
        write_key_file(&b, 100).unwrap();
        let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(a.len(), 8192);
        assert_eq!(a[..100], b[..]);
        assert_ne!(a[..4096], a[512..4608], "an offset mistake must give another key");
        assert_ne!(a[512..4608], a[1024..5120]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The provisioning as the scenarios use it, on the host: a disk the
    /// passphrase and the key file's region open, and nothing else.
    #[test]
    fn a_formatted_disk_opens_with_the_passphrase_and_the_key_region_only() {
        if !Path::new(CRYPTSETUP).is_file() {
            // With CI=true a missing tool is a failure, not a skip.
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{CRYPTSETUP} is missing");
            eprintln!("skipped: {CRYPTSETUP} is missing (scripts/install-deps.sh)");
            return;
        }
        let d = std::env::temp_dir().join(format!("lethe-luks-format-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let image = d.join("disk.img");
        sparse_file(&image, 20).unwrap();
        let f = Format {
            uuid: "4c455448-4500-4c55-4b53-0000000000ff",
            label: "lethe-test",
            kdf: Kdf::Argon2id { memory_kib: 8192, parallel: 2, iterations: 4 },
            sector_size: 4096,
        };
        format(&image, &f).unwrap();
        let key = KeyFile { path: d.join("disk.key"), offset: 512, size: 4096 };
        write_key_file(&key.path, 8192).unwrap();
        add_key_file(&image, &key, Kdf::Pbkdf2 { hash: "sha256", iterations: 1000 }).unwrap();

        assert!(opens(&image, Key::Passphrase(PASSPHRASE)).unwrap());
        for wrong in WRONG_PASSPHRASES {
            assert!(!opens(&image, Key::Passphrase(wrong)).unwrap(), "{wrong:?} opened it");
        }
        assert!(opens(&image, Key::File(&key)).unwrap());
        let shifted = KeyFile { offset: 511, ..key.clone() };
        assert!(!opens(&image, Key::File(&shifted)).unwrap(), "offset 511 opened it");
        let whole = KeyFile { offset: 0, size: 8192, ..key.clone() };
        assert!(!opens(&image, Key::File(&whole)).unwrap(), "the whole file opened it");

        let dump = Command::new(CRYPTSETUP).arg("luksDump").arg(&image).output().unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        for want in [f.uuid, "lethe-test", "argon2id", "pbkdf2", "sector: 4096"] {
            assert!(dump.contains(want), "luksDump lacks {want:?}:\n{dump}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn boot_typing(console: &[&str], typed: &[(&str, usize)]) -> Boot {
        Boot {
            console: console.iter().map(|l| l.to_string()).collect(),
            line_at: vec![std::time::Duration::ZERO; console.len()],
            started: std::time::Instant::now(),
            outcome: Outcome::TimedOut,
            elapsed: std::time::Duration::ZERO,
            typed: typed
                .iter()
                .map(|(label, after_lines)| crate::qemu::Typed {
                    label: label.to_string(),
                    at: std::time::Duration::ZERO,
                    after_lines: *after_lines,
                })
                .collect(),
            memory_touched: None,
        }
    }

    #[test]
    fn each_wrong_passphrase_and_only_those_are_called_wrong() {
        let input = two_wrong_then_right();
        let prompt = "Please enter passphrase for disk cryptroot (/dev/vda): ";
        let console = [
            prompt,
            "",
            "wrong passphrase, 2 tries left",
            prompt,
            "",
            "lethe: cryptsetup:/dev/vda: the answer was rejected: wrong passphrase",
            "wrong passphrase, 1 try left",
            prompt,
            "",
            "lethe: cryptsetup:/dev/vda: the answer was rejected: wrong passphrase",
            "lethe: unlock ok (30000.0 ms)",
        ];
        let typed = [("a wrong passphrase", 1), ("another wrong passphrase", 4), ("the passphrase", 8)];
        assert_eq!(wrong_passphrase_findings(&boot_typing(&console, &typed), &input), Vec::<String>::new());

        // The second wrong one not called wrong; the right one called wrong.
        let console =
            [prompt, "", "wrong passphrase, 2 tries left", prompt, "", prompt, "", "wrong passphrase"];
        let typed = [("a wrong passphrase", 1), ("another wrong passphrase", 4), ("the passphrase", 6)];
        let f = wrong_passphrase_findings(&boot_typing(&console, &typed), &input);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].starts_with("after another wrong passphrase (typed at 0.0 s) the console never said"));
        assert_eq!(f[1], "after the passphrase the console said \"wrong passphrase\"");
    }

    #[test]
    fn the_dm_uuid_is_cryptsetups() {
        let f = Format {
            uuid: "4c455448-4500-4c55-4b53-000000000001",
            label: "x",
            kdf: Kdf::Pbkdf2 { hash: "sha256", iterations: 1000 },
            sector_size: 512,
        };
        assert_eq!(f.dm_uuid(), "CRYPT-LUKS2-4c45544845004c554b53000000000001-cryptroot");
    }

    #[test]
    fn kdf_options_are_cryptsetups() {
        let a = Kdf::Argon2id { memory_kib: 65536, parallel: 2, iterations: 4 };
        assert_eq!(
            a.args(),
            ["--pbkdf=argon2id", "--pbkdf-memory=65536", "--pbkdf-parallel=2", "--pbkdf-force-iterations=4"]
        );
        let p = Kdf::Pbkdf2 { hash: "sha256", iterations: 1000 };
        assert_eq!(p.args(), ["--pbkdf=pbkdf2", "--hash=sha256", "--pbkdf-force-iterations=1000"]);
    }
}
