//! The kernel command line as stage 1 reads it: `init=`, its arguments after `--`, and lethe's `lethe.*` switches.

/// What /proc/cmdline asks of stage 1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cmdline {
    /// `init=`: stage 2, exec'd after switch_root.
    pub init: Option<String>,
    /// Everything after `--`: stage 2's arguments.
    pub init_args: Vec<String>,
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
        let mut c = Cmdline { rollback: true, ..Cmdline::default() };
        let words = split(line);
        let mut it = words.into_iter();
        for w in it.by_ref() {
            if w == "--" {
                break;
            }
            let (key, value) = match w.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (w.clone(), None),
            };
            match (key.as_str(), value) {
                ("init", Some(v)) if !v.is_empty() => c.init = Some(v),
                ("resume", Some(v)) if !v.is_empty() => c.resume = Some(v),
                ("resume_offset", Some(v)) => c.resume_offset = v.parse().ok(),
                ("noresume", None) => c.noresume = true,
                ("ip", Some(v)) => c.ip.push(v),
                ("lethe.log", Some(v)) => c.debug = v == "debug",
                ("lethe.shell", v) => c.shell = truthy(v.as_deref()),
                ("lethe.dry-run", v) => c.dry_run = truthy(v.as_deref()),
                ("lethe.rollback", v) => c.rollback = truthy(v.as_deref()),
                _ => {}
            }
        }
        c.init_args = it.collect();
        c
    }
}

/// A bare switch or `=1`/`=yes`/`=true` is on; `=0`/`=no`/`=false` is off.
fn truthy(v: Option<&str>) -> bool {
    !matches!(v, Some("0" | "no" | "false" | "off"))
}

/// Splits like the kernel: on spaces, with double quotes grouping
/// (`foo="a b"` is one word, `foo=a b`).
fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(cur);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_init_its_arguments_and_lethe_switches() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 init=/nix/store/x-nixos/init lethe.log=debug lethe.dry-run \
             quiet -- --single \"two words\"\n",
        );
        assert_eq!(c.init.as_deref(), Some("/nix/store/x-nixos/init"));
        assert_eq!(c.init_args, ["--single", "two words"]);
        assert!(c.debug && c.dry_run && !c.shell && c.rollback);
    }

    #[test]
    fn switches_take_values_and_quotes_group() {
        let c = Cmdline::parse(
            "lethe.rollback=0 lethe.shell=1 lethe.dry-run=no init=\"/sbin/my init\" resume=UUID=ab",
        );
        assert!(!c.rollback && c.shell && !c.dry_run);
        assert_eq!(c.init.as_deref(), Some("/sbin/my init"));
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
}
