//! Permission modes as impermanence accepts them: octal, or absolute symbolic.

use std::fmt;

/// Permission bits (`0o7777` at most).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(u32);

/// The text a mode was written as is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected an octal string like \"0755\" or a symbolic mode like \"u=rwx,g=rx,o=\", got {0:?}")]
pub struct ModeError(pub String);

impl Mode {
    pub const DEFAULT_DIR: Mode = Mode(0o755);
    pub const HOME: Mode = Mode(0o700);

    pub const fn from_bits(bits: u32) -> Option<Mode> {
        if bits <= 0o7777 { Some(Mode(bits)) } else { None }
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Parses `0755`, `755`, or the absolute symbolic form `mkdir --mode`
    /// takes from impermanence's examples (`u=rwx,g=rx,o=`, `a=rx`,
    /// `ug=rwx,o=`, with `s` and `t`). Relative clauses (`+`, `-`) are
    /// refused: their result would depend on a umask. So is a symbolic
    /// mode that leaves out u, g or o: `mkdir --mode` would keep that
    /// class rwx, which is rarely what was meant.
    pub fn parse(s: &str) -> Result<Mode, ModeError> {
        let err = || ModeError(s.to_owned());
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return u32::from_str_radix(s, 8).ok().and_then(Mode::from_bits).ok_or_else(err);
        }
        let mut bits = 0u32;
        let mut seen = 0u32; // classes already assigned, so `u=r,u=w` is refused
        for clause in s.split(',') {
            let (who, perms) = clause.split_once('=').ok_or_else(err)?;
            let mut classes = 0u32; // 0o4 = u, 0o2 = g, 0o1 = o
            for c in who.chars() {
                classes |= match c {
                    'u' => 0o4,
                    'g' => 0o2,
                    'o' => 0o1,
                    'a' => 0o7,
                    _ => return Err(err()),
                };
            }
            if classes == 0 || classes & seen != 0 {
                return Err(err());
            }
            seen |= classes;
            let (mut rwx, mut special) = (0u32, 0u32);
            for c in perms.chars() {
                match c {
                    'r' => rwx |= 4,
                    'w' => rwx |= 2,
                    'x' => rwx |= 1,
                    's' => special |= (classes & 0o4) << 9 | (classes & 0o2) << 9, // setuid 0o4000, setgid 0o2000
                    't' => special |= 0o1000,
                    _ => return Err(err()),
                }
            }
            for (class, shift) in [(0o4, 6), (0o2, 3), (0o1, 0)] {
                if classes & class != 0 {
                    bits |= rwx << shift;
                }
            }
            bits |= special;
        }
        // `mkdir --mode` starts from a=rwx: a class left out stays rwx
        // there (`u=rwx,g=rx` is 0757). Refuse rather than differ.
        if seen != 0o7 {
            return Err(err());
        }
        Ok(Mode(bits))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mode({:04o})", self.0)
    }
}

impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal string like \"0755\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Mode, E> {
                Mode::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_forms() {
        assert_eq!(Mode::parse("0755").unwrap().bits(), 0o755);
        assert_eq!(Mode::parse("700").unwrap().bits(), 0o700);
        assert_eq!(Mode::parse("1777").unwrap().bits(), 0o1777);
        assert!(Mode::parse("17777").is_err());
        assert!(Mode::parse("0788").is_err());
        assert!(Mode::parse("").is_err());
    }

    #[test]
    fn symbolic_forms_from_impermanence_examples() {
        assert_eq!(Mode::parse("u=rwx,g=rx,o=").unwrap().bits(), 0o750);
        assert_eq!(Mode::parse("u=rwx,g=,o=").unwrap().bits(), 0o700);
        assert_eq!(Mode::parse("a=rx").unwrap().bits(), 0o555);
        assert_eq!(Mode::parse("ug=rwx,o=").unwrap().bits(), 0o770);
        assert_eq!(Mode::parse("u=rwxs,g=rxs,o=t").unwrap().bits(), 0o7750);
    }

    #[test]
    fn relative_and_malformed_symbolic_forms_are_refused() {
        for bad in ["u+x", "u=rwx,g-w", "rwx", "u=q", "=rw", "u=r,u=w", "0755 "] {
            assert_eq!(Mode::parse(bad), Err(ModeError(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn symbolic_forms_must_set_every_class() {
        // `mkdir --mode=u=rwx,g=rx` (impermanence) starts from a=rwx and
        // gives 0757; reading it as 0750 would build a different tree.
        for partial in ["u=rwx,g=rx", "u=rwx", "ug=rwx", "g=rx,o="] {
            assert_eq!(Mode::parse(partial), Err(ModeError(partial.to_owned())), "{partial}");
        }
        assert_eq!(Mode::parse("a=rwx").unwrap().bits(), 0o777);
    }

    #[test]
    fn displays_as_four_octal_digits() {
        assert_eq!(Mode::parse("u=rw,g=r,o=r").unwrap().to_string(), "0644");
    }
}
