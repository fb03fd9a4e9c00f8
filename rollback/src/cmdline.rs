//! The kernel command line as stage 1 and the `rollback` binary read it: `init=`, its arguments after `--`, and lethe's `lethe.*` switches.
//!
//! One parser for both, so that `rollback` under systemd or scripted stage 1 decides
//! `lethe.rollback=` and `resume=` exactly as `initrd-tool init` does.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// What /proc/cmdline asks of stage 1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// `init=`: stage 2, exec'd after switch_root. The line's bytes as they are: the kernel
    /// would exec exactly these, UTF-8 or not.
    pub init: Option<PathBuf>,
    /// Everything after `--`: stage 2's arguments, byte for byte as the kernel passes them.
    pub init_args: Vec<OsString>,
    /// `lethe.log=debug`.
    pub debug: bool,
    /// `lethe.shell`: stop in the emergency shell before switch_root.
    pub shell: bool,
    /// `lethe.dry-run`: plan everything, change nothing, then stop.
    pub dry_run: bool,
    /// `lethe.rollback=0`: keep the old root this boot.
    pub rollback: bool,
    /// `resume=`: the hibernation image's device.
    pub resume: Option<String>,
    /// `resume_offset=`: the image's swap header is this many pages into the resume device (a swap file).
    pub resume_offset: Option<u64>,
    /// `noresume`: never resume from an image, whatever `resume=` says.
    pub noresume: bool,
    /// Every `ip=`, in order: the network stage 1 brings up (they replace the config's `network.ip`).
    pub ip: Vec<String>,
}

impl Cmdline {
    /// Parses a command line; unknown words are left to the kernel and stage 2.
    pub fn parse(line: &str) -> Cmdline {
        Cmdline::parse_bytes(line.as_bytes())
    }

    /// Parses /proc/cmdline's bytes, which need not be UTF-8: a stray byte must not cost
    /// stage 1 its `init=` (each word is read on its own; init= and init's arguments are
    /// kept as bytes, lethe's own switches are read lossily).
    pub fn parse_bytes(line: &[u8]) -> Cmdline {
        let mut c = Cmdline { rollback: true, ..Cmdline::default() };
        let mut words = Words(line);
        for w in words.by_ref() {
            if let (b"init", Some(v)) = (w.param, w.value) {
                if !v.is_empty() {
                    c.init = Some(PathBuf::from(OsStr::from_bytes(v)));
                }
                continue;
            }
            let value = w.value.map(|v| String::from_utf8_lossy(v).into_owned());
            match (w.param, value) {
                (b"--", None) => break,
                (b"resume", Some(v)) if !v.is_empty() => c.resume = Some(v),
                (b"resume_offset", Some(v)) => c.resume_offset = v.parse().ok(),
                (b"noresume", None) => c.noresume = true,
                (b"ip", Some(v)) => c.ip.push(v),
                (b"lethe.log", Some(v)) => c.debug = v == "debug",
                (b"lethe.shell", v) => c.shell = truthy(v.as_deref()),
                (b"lethe.dry-run", v) => c.dry_run = truthy(v.as_deref()),
                (b"lethe.rollback", v) => c.rollback = truthy(v.as_deref()),
                _ => {}
            }
        }
        // The kernel hands these to init as `param` or `param=value`, quotes taken off.
        c.init_args = words
            .map(|w| {
                let mut arg = w.param.to_vec();
                if let Some(v) = w.value {
                    arg.push(b'=');
                    arg.extend_from_slice(v);
                }
                OsString::from_vec(arg)
            })
            .collect();
        c
    }
}

/// A bare switch or `=1`/`=yes`/`=true` is on; `=0`/`=no`/`=false` is off.
fn truthy(v: Option<&str>) -> bool {
    !matches!(v, Some("0" | "no" | "false" | "off"))
}

/// One `param[=value]` word, quotes taken off as the kernel takes them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word<'a> {
    param: &'a [u8],
    value: Option<&'a [u8]>,
}

/// The kernel's words (`next_arg` in kernel/params.c), byte for byte, so that stage 1 reads
/// exactly the `init=` and `--` the kernel read. Quotes group spaces anywhere in a word but
/// are removed only around the whole word (`"a b"`) or the value (`a="b c"`); `-"-"` is not
/// `--`.
struct Words<'a>(&'a [u8]);

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let line = skip_spaces(self.0);
        if line.is_empty() {
            self.0 = line;
            return None;
        }
        let quoted = line[0] == b'"';
        let args = if quoted { &line[1..] } else { line };
        let mut in_quote = quoted;
        // `equals` stays 0 for a leading '=': the kernel's own test is `equals == 0`.
        let mut equals = 0;
        let mut i = 0;
        while i < args.len() {
            let b = args[i];
            if is_space(b) && !in_quote {
                break;
            }
            if equals == 0 && b == b'=' {
                equals = i;
            }
            if b == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        self.0 = args.get(i + 1..).unwrap_or_default();

        let closing_quote = i > 0 && args[i - 1] == b'"';
        let mut end = i;
        let word = if equals == 0 {
            if quoted && closing_quote {
                end -= 1;
            }
            Word { param: &args[..end], value: None }
        } else {
            let mut start = equals + 1;
            let value_quoted = start < i && args[start] == b'"';
            if value_quoted {
                start += 1;
            }
            if (value_quoted || quoted) && closing_quote {
                end -= 1;
            }
            Word { param: &args[..equals], value: Some(args.get(start..end.max(start)).unwrap_or_default()) }
        };
        Some(word)
    }
}

/// The kernel's `isspace`: ASCII white space and Latin-1's no-break space (0xA0), even in
/// the middle of a UTF-8 character, as the kernel splits it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0)
}

fn skip_spaces(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(c: &Cmdline) -> Option<&str> {
        c.init.as_deref().and_then(|p| p.to_str())
    }

    #[test]
    fn reads_init_its_arguments_and_lethe_switches() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 init=/nix/store/x-nixos/init lethe.log=debug lethe.dry-run \
             quiet -- --single \"two words\"\n",
        );
        assert_eq!(init(&c), Some("/nix/store/x-nixos/init"));
        assert_eq!(c.init_args, ["--single", "two words"]);
        assert!(c.debug && c.dry_run && !c.shell && c.rollback);
    }

    #[test]
    fn switches_take_values_and_quotes_group() {
        let c = Cmdline::parse(
            "lethe.rollback=0 lethe.shell=1 lethe.dry-run=no init=\"/sbin/my init\" resume=UUID=ab",
        );
        assert!(!c.rollback && c.shell && !c.dry_run);
        assert_eq!(init(&c), Some("/sbin/my init"));
        assert_eq!(c.resume.as_deref(), Some("UUID=ab"));
        assert_eq!(Cmdline::parse(""), Cmdline { rollback: true, ..Cmdline::default() });
        assert_eq!(Cmdline::parse("init= lethe.log=info").init, None);
    }

    /// The kernel's hibernation switches: `noresume` (do not resume, whatever resume= says) and
    /// `resume_offset=` (the image is in a swap file, this many pages into the device).
    #[test]
    fn reads_noresume_and_the_resume_offset() {
        let c = Cmdline::parse("resume=/dev/vda2 resume_offset=34816 quiet");
        assert_eq!((c.noresume, c.resume_offset), (false, Some(34816)));
        let c = Cmdline::parse("resume=/dev/vda2 noresume");
        assert_eq!((c.noresume, c.resume_offset), (true, None));
        assert_eq!(Cmdline::parse("resume_offset=x").resume_offset, None);
    }

    /// `ip=` may be given more than once (one per interface, as dracut allows); all are kept in order.
    #[test]
    fn keeps_every_ip_value_in_order() {
        let c =
            Cmdline::parse("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off ip=eth1:dhcp init=/init -- ip=x");
        assert_eq!(c.ip, ["10.0.2.15::10.0.2.2:255.255.255.0::eth0:off", "eth1:dhcp"]);
        assert!(Cmdline::parse("ipv6.disable=1").ip.is_empty());
    }

    /// Quotes are taken off as the kernel takes them off: around a whole word or around a
    /// value, nowhere else; inside them spaces do not split.
    #[test]
    fn quotes_come_off_only_where_the_kernel_takes_them_off() {
        let words = |line: &str| {
            Words(line.as_bytes())
                .map(|w| {
                    let p = String::from_utf8_lossy(w.param).into_owned();
                    match w.value {
                        Some(v) => format!("{p}={}", String::from_utf8_lossy(v)),
                        None => p,
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(words(r#"a="b c" "d e" f"g h"i "x=y z""#), ["a=b c", "d e", r#"f"g h"i"#, "x=y z"]);
        assert_eq!(words("  a\tb\n"), ["a", "b"]);
        assert_eq!(words(r#""" a="" ="x"#), ["", "a=", "=\"x"]);
        // An opening quote groups until its partner, wherever that is.
        assert_eq!(words(r#"" a="" ="x"#), [r#" a=" ="x"#]);
        // `-"-"` is not the end of the kernel's words, so nothing after it goes to init.
        let c = Cmdline::parse(r#"-"-" init=/init x"#);
        assert_eq!((init(&c), c.init_args.len()), (Some("/init"), 0));
        let c = Cmdline::parse(r#"init=/init "--" a="b c" d"#);
        assert_eq!(c.init_args, ["a=b c", "d"]);
    }

    #[test]
    fn rollback_is_turned_off_only_by_an_explicit_switch() {
        let rollback = |line: &str| Cmdline::parse(line).rollback;
        assert!(!rollback("quiet lethe.rollback=0 splash"));
        assert!(!rollback("lethe.rollback=off"));
        assert!(rollback("quiet splash"));
        assert!(rollback("lethe.rollback=1"));
        // The last one wins, as for other kernel parameters; a bare switch is on.
        assert!(rollback("lethe.rollback=0 lethe.rollback=1"));
        assert!(rollback("lethe.rollback=0 lethe.rollback"));
        assert!(rollback("xlethe.rollback=0"));
        assert!(!rollback("lethe.rollback=\"0\""));
        assert!(!rollback("\"lethe.rollback=0\""));
        // After `--` the words are init's, not the kernel's.
        assert!(rollback("init=/init -- lethe.rollback=0"));
        assert!(!Cmdline::parse_bytes(b"quiet\xa0lethe.rollback=0").rollback);
    }

    /// /proc/cmdline is bytes: one that is not UTF-8 does not hide `init=` from stage 1.
    #[test]
    fn bytes_that_are_not_utf8_spoil_only_their_own_word() {
        let c = Cmdline::parse_bytes(b"quiet vga=\xff\xfe init=/nix/store/x/init lethe.log=debug");
        assert_eq!(init(&c), Some("/nix/store/x/init"));
        assert!(c.debug);
    }

    /// The kernel splits at byte 0xA0 even inside a UTF-8 character and would exec the bytes
    /// it kept: init= and init's arguments are those bytes, never a lossy copy of them.
    #[test]
    fn init_and_its_arguments_are_the_lines_own_bytes() {
        let c = Cmdline::parse_bytes(b"init=/sbin/\xc3\xa0x -- a\xffb \xc3\xa0");
        assert_eq!(c.init, Some(PathBuf::from(OsStr::from_bytes(b"/sbin/\xc3"))));
        assert_eq!(c.init_args, [OsStr::from_bytes(b"a\xffb"), OsStr::from_bytes(b"\xc3")]);
    }
}
