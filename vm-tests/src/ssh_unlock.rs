//! The ssh-unlock scenario: the server, a LUKS2 disk holding BTRFS @root re-created from @blank, unlocked from the host's OpenSSH client through QEMU's user network; a static `ip=` on one boot, DHCP on the other.
//!
//! The BTRFS is made on the host (as in btrfs-blank) and copied into the
//! LUKS2 mapping by a setup guest through the reference cryptsetup. On
//! each of lethe's boots the console asks for the passphrase and nobody
//! types there: the host's client answers over SSH (the guest's port 22 is
//! forwarded to 127.0.0.1 only). Before that it is refused with a wrong
//! key, with password authentication, with a command, a subsystem and a
//! port forwarding. A check guest copies the mapping back out and the
//! host inspects the subvolumes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::artifacts::{self, InitrdSpec};
use crate::btrfs_blank;
use crate::error::{self, Context, Result};
use crate::expect::{Kind, PathExpectation};
use crate::fixtures::Fixture;
use crate::guest::{self, GuestSpec};
use crate::harness::{self, Harness};
use crate::luks_disk::{self, Format, Kdf, PASSPHRASE, PROMPT};
use crate::qemu::{Boot, Outcome};
use crate::scenarios::{SWITCH_ROOT_LINE, ScenarioResult};
use crate::ssh_client::{self, Client, Run};

/// The server's LUKS2 disk (whole, no partition table), pbkdf2 so that TCG
/// spends its time on the boot, not the key derivation.
pub const FORMAT: Format = Format {
    uuid: "4c455448-4500-4c55-4b53-00000055a4e1",
    label: "lethe-server",
    kdf: Kdf::Pbkdf2 { hash: "sha256", iterations: 1000 },
    sector_size: 512,
};
/// The BTRFS inside the mapping.
const BTRFS_MIB: u64 = 256;
/// cryptsetup's default LUKS2 header: the mapping is exactly the BTRFS.
const HEADER_MIB: u64 = 16;
/// Where mkinitrd puts the host key in the initramfs.
pub const HOST_KEY: &str = "/etc/lethe/ssh_host_ed25519_key";
/// Boot 1's static address; QEMU's user network is 10.0.2.0/24, its router 10.0.2.2.
pub const STATIC_IP: &str = "ip=10.0.2.15::10.0.2.2:255.255.255.0:lethe-server:eth0:off";
/// The test client's key pair (vm-tests/keys/README.md: public on purpose).
const CLIENT_KEY: &str = include_str!("../keys/ssh-unlock-client");
pub const CLIENT_PUB: &str = include_str!("../keys/ssh-unlock-client.pub");
/// What the client sees once everything is unlocked.
pub const ALL_UNLOCKED: &str = "all devices unlocked";
/// How long the host waits for the guest's server to answer.
const SERVER_WAIT: Duration = Duration::from_secs(180);

const SETUP_SCRIPT: &str = include_str!("../guest/ssh-unlock-setup.sh");
const CHECK_SCRIPT: &str = include_str!("../guest/ssh-unlock-check.sh");
const SETUP_CHECKS: &[(&str, &str)] = &[
    ("copied", "the BTRFS made on the host reads back from the mapping"),
    ("setup", "the mapping is filled and closed"),
];
const CHECK_CHECKS: &[(&str, &str)] =
    &[("check", "the reference opens the disk with the passphrase and copies the BTRFS out")];

/// The server's config, as lethe's NixOS module writes it for nix/eval/machines/ssh-unlock.nix:
/// btrfs-blank's machine inside LUKS2 cryptroot (5 passphrase tries), the SSH server with the
/// test client's key (vm-tests/keys), DHCP unless the command line's `ip=` says otherwise.
pub fn config() -> serde_json::Value {
    Fixture::SshUnlock.config()
}

/// Stage 2's checks: btrfs-blank's, the mapping, and eth0 taken down by stage 1 before
/// switch_root (down, no address: flags IFF_BROADCAST|IFF_MULTICAST without IFF_UP).
pub fn expectations() -> crate::expect::Expectations {
    let mut e = btrfs_blank::expectations();
    e.paths.extend(luks_disk::mapping_expectations(&FORMAT));
    e.paths.push(PathExpectation::new("/sys/class/net/eth0/operstate", Kind::File).content("down\n"));
    e.paths.push(PathExpectation::new("/sys/class/net/eth0/flags", Kind::File).content("0x1002\n"));
    e
}

/// The keys of the scenario: the initramfs' host key (made by `initrd-tool ssh keygen`), the
/// client's, and a key the server does not know.
struct Keys {
    host_pub: String,
    client: PathBuf,
    stranger: PathBuf,
}

fn keys(h: &Harness, dir: &Path) -> Result<Keys> {
    let host = dir.join("ssh_host_ed25519_key");
    let _ = std::fs::remove_file(&host);
    let _ = std::fs::remove_file(dir.join("ssh_host_ed25519_key.pub"));
    error::run(std::process::Command::new(&h.bin.initrd_tool).args(["ssh", "keygen", "-f"]).arg(&host))?;
    // The client's key is fixed: the module's evaluation put its public half in the config.
    let client = dir.join("client.key");
    std::fs::write(&client, CLIENT_KEY).context(|| format!("writing {}", client.display()))?;
    // OpenSSH refuses a private key others can read.
    std::fs::set_permissions(&client, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .context(|| format!("chmod 600 {}", client.display()))?;
    let stranger = dir.join("stranger.key");
    ssh_client::keygen(&stranger)?;
    Ok(Keys { host_pub: ssh_client::public_key(&host)?, client, stranger })
}

/// What the host's client did during one boot.
struct Session {
    /// The probes that must be refused, each with why it must be.
    refused: Vec<(Run, &'static str)>,
    /// The run that answered the passphrase.
    unlock: Option<Run>,
    /// When the right passphrase was sent.
    sent: Option<Instant>,
}

/// Boot 1's client: the refusals, then the passphrase on standard input, as
/// `ssh host < passfile` sends it.
fn refuse_then_unlock_from_stdin(c: &Client, k: &Keys) -> Result<Session> {
    let first = c.wait_until_up(&k.stranger, SERVER_WAIT)?;
    let mut refused = vec![(first, "a key the server does not know")];
    let password = ["-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no"];
    let password =
        [&password[..], &["-o", "PreferredAuthentications=password,keyboard-interactive"]].concat();
    refused.push((c.run(&k.client, &password, &[], b"")?, "password authentication"));
    refused.push((c.run(&k.client, &["-o", "BatchMode=yes"], &["id"], b"")?, "a command (exec request)"));
    refused.push((c.run(&k.client, &["-o", "BatchMode=yes", "-s"], &["sftp"], b"")?, "a subsystem (sftp)"));
    let forward =
        ["-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-N", "-R", "127.0.0.1:2222:127.0.0.1:22"];
    refused.push((c.run(&k.client, &forward, &[], b"")?, "a remote port forwarding"));
    let sent = Instant::now();
    let unlock = c.run(&k.client, &["-o", "BatchMode=yes"], &[], format!("{PASSPHRASE}\n").as_bytes())?;
    Ok(Session { refused, unlock: Some(unlock), sent: Some(sent) })
}

/// Boot 2's client: a terminal (`ssh -tt`), a shell command typed at the prompt (taken as a
/// wrong passphrase: there is no shell), then the passphrase.
fn unlock_on_a_terminal(c: &Client, k: &Keys) -> Result<Session> {
    let first = c.wait_until_up(&k.stranger, SERVER_WAIT)?;
    let refused = vec![(first, "a key the server does not know")];
    let right = format!("{PASSPHRASE}\r");
    let script = [(PROMPT, "id; cat /etc/shadow\r"), (PROMPT, right.as_str())];
    let run = c.converse(&k.client, &["-tt"], &script)?;
    let sent = run.sent_at.get(1).copied();
    Ok(Session { refused, unlock: Some(run), sent })
}

/// ssh-unlock: keys, the disk made on the host and filled by a setup guest,
/// two boots unlocked over SSH, then the disk read back.
pub fn ssh_unlock(h: &Harness, echo: Option<&str>, r: &mut ScenarioResult) -> Result<()> {
    let dir = h.dir("ssh-unlock")?;
    let keys = keys(h, &dir)?;
    let btrfs = dir.join("btrfs.img");
    let blank_before = btrfs_blank::make_image(h, &dir, &expectations(), &btrfs, BTRFS_MIB)?;
    let disk = dir.join("disk.img");
    luks_disk::sparse_file(&disk, BTRFS_MIB + HEADER_MIB)?;
    luks_disk::format(&disk, &FORMAT)?;

    let tools = tools_initrd(h, &dir)?;
    let setup = luks_disk::boot_guest(
        h,
        "setup",
        &tools,
        &[disk.clone(), btrfs.clone()],
        "ssh-unlock-setup.sh",
        echo,
    )?;
    guest::check(&mut r.findings, "setup", &setup, SETUP_CHECKS);
    r.boots.push(("setup".into(), setup));
    if !r.findings.is_empty() {
        return Ok(()); // nothing to boot
    }

    let initrd = dir.join("initrd.img");
    let config = config();
    let files = [(dir.join("ssh_host_ed25519_key"), HOST_KEY.to_owned())];
    r.initramfs_bytes = Some(artifacts::mkinitrd(
        &h.bin,
        &h.kernel,
        &InitrdSpec { config: &config, unchecked: false, files: &files, add_modules: &[] },
        &initrd,
    )?);

    type Client = fn(&ssh_client::Client, &Keys) -> Result<Session>;
    let boots: [(&str, &str, Client); 2] =
        [("boot 1", STATIC_IP, refuse_then_unlock_from_stdin), ("boot 2", "", unlock_on_a_terminal)];
    for (n, (label, ip, client)) in (1u64..).zip(boots) {
        let port = ssh_client::free_port()?;
        let c = ssh_client::Client::new(&dir, port, &keys.host_pub)?;
        let cmdline = format!("{} {ip}", harness::CMDLINE);
        let (boot, session) = std::thread::scope(|s| {
            let talk = s.spawn(|| client(&c, &keys));
            let boot = h.boot_networked(
                label,
                &initrd,
                std::slice::from_ref(&disk),
                cmdline.trim(),
                &[],
                Some(port),
                echo,
            );
            (boot, talk.join())
        });
        let boot = boot?;
        let session = session.map_err(|_| error::Error::Setup("the SSH client thread panicked".into()))??;
        let reached_stage2 = check_boot(r, n, &boot, &session, !ip.is_empty());
        if let Some(ms) = session.sent.and_then(|sent| passphrase_to_switch_root_ms(&boot, sent)) {
            let from = if ip.is_empty() {
                "dhcp; the passphrase typed on a terminal over SSH"
            } else {
                "static ip=; the client started with the passphrase on stdin"
            };
            r.notes.push(format!("{label} ({from}) -> switch_root line: {ms:.0} ms"));
        }
        r.boots.push((label.into(), boot));
        if !reached_stage2 {
            return Ok(()); // the next boot could only repeat this failure
        }
    }

    let check_disks = [disk, dir.join("readback.img")];
    luks_disk::sparse_file(&check_disks[1], BTRFS_MIB)?;
    let check = luks_disk::boot_guest(h, "check", &tools, &check_disks, "ssh-unlock-check.sh", echo)?;
    guest::check(&mut r.findings, "check", &check, CHECK_CHECKS);
    r.boots.push(("check".into(), check));
    btrfs_blank::check_after(r, &check_disks[1], &dir.join("mnt"), &blank_before)
}

/// The busybox guest with the reference cryptsetup and the two scripts.
fn tools_initrd(h: &Harness, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("tools.img");
    let spec = GuestSpec {
        scripts: vec![("ssh-unlock-setup.sh", SETUP_SCRIPT), ("ssh-unlock-check.sh", CHECK_SCRIPT)],
        programs: vec![],
        files: vec![],
        modules: vec!["virtio_pci", "virtio_blk"],
    };
    luks_disk::tools_initrd(h, dir, spec, &out)?;
    Ok(out)
}

/// The checks of boot `n`: the plain machine's and the rollback's, the network as `ip=` says,
/// every probe refused, the passphrase accepted from SSH while the console asked too, the
/// client told and let go. Returns whether the boot reached stage 2.
fn check_boot(r: &mut ScenarioResult, n: u64, boot: &Boot, s: &Session, static_ip: bool) -> bool {
    let label = format!("boot {n}");
    crate::scenarios::check_plain_boot(r, n, boot);
    for ok in ["lethe: rollback ok", "lethe: rollback: reset the", "lethe: network ok", "lethe: unlock ok"] {
        r.check(boot.console_has(ok), || format!("{label}: the console never showed {ok:?}"));
    }
    let (how, want) =
        if static_ip { ("static", "eth0: 10.0.2.15/24") } else { ("dhcp", "eth0: 10.0.2.15/24") };
    r.check(boot.console.iter().any(|l| l.contains(want) && l.contains(how)), || {
        format!("{label}: the console never showed eth0 configured by {how} ({want})")
    });
    r.check(boot.console_has(PROMPT), || format!("{label}: the console never asked for the passphrase"));
    r.check(boot.console.iter().any(|l| l.contains("passphrase from ssh") && l.contains("accepted")), || {
        format!(
            "{label}: stage 1 never said the passphrase from SSH was accepted (the console was asking too)"
        )
    });
    r.check(!boot.console_has(PASSPHRASE), || format!("{label}: the passphrase appeared on the console"));
    for (run, what) in &s.refused {
        let refused = run.code().is_some_and(|c| c != 0) && !run.stdout.contains("uid=");
        r.check(refused, || format!("{label}: {what} was not refused: {}", run.describe()));
    }
    if let Some((first, _)) = s.refused.first() {
        r.check(first.stderr.contains("Permission denied (publickey)"), || {
            format!("{label}: the server did not answer with publickey only: {}", first.describe())
        });
    }
    match &s.unlock {
        Some(run) => {
            r.check(run.code() == Some(0) && run.stdout.contains(ALL_UNLOCKED), || {
                format!(
                    "{label}: the unlocking client did not end with {ALL_UNLOCKED:?} and exit 0: {}",
                    run.describe()
                )
            });
            r.check(!run.stdout.contains(PASSPHRASE), || {
                format!("{label}: the passphrase was echoed to the client")
            });
            r.check(!run.stdout.contains("uid="), || format!("{label}: a command ran: {}", run.describe()));
            if !static_ip {
                r.check(run.stdout.contains(luks_disk::WRONG), || {
                    format!(
                        "{label}: the typed command was not rejected as a wrong passphrase: {}",
                        run.describe()
                    )
                });
            }
        }
        None => r.findings.push(format!("{label}: no client answered the passphrase")),
    }
    matches!(boot.outcome, Outcome::Stage2(_))
}

/// Host time from the passphrase leaving the client to stage 1's switch_root line on the
/// console, in ms.
pub fn passphrase_to_switch_root_ms(boot: &Boot, sent: Instant) -> Option<f64> {
    let at = boot.line_time(SWITCH_ROOT_LINE)?;
    Some(at.checked_duration_since(sent)?.as_secs_f64() * 1e3)
}
