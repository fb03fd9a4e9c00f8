//! Device specifications as fstab and the kernel write them: `UUID=`, `LABEL=`, `PARTUUID=`, or a /dev path.

use std::fmt;
use std::str::FromStr;

/// Which block device is meant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// File-system (or LUKS, or pool) UUID, compared case-insensitively.
    Uuid(String),
    Label(String),
    /// GPT partition GUID, or `SSSSSSSS-PP` for MBR.
    PartUuid(String),
    /// A path under /dev, such as `/dev/vda1` or `/dev/disk/by-label/x`.
    Path(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected UUID=, LABEL=, PARTUUID= or a /dev/ path, got {0:?}")]
pub struct DeviceSpecError(pub String);

impl FromStr for DeviceSpec {
    type Err = DeviceSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DeviceSpecError(s.to_owned());
        let nonempty = |v: &str| if v.is_empty() || v.contains('\0') { Err(err()) } else { Ok(v.to_owned()) };
        if let Some(v) = s.strip_prefix("UUID=") {
            Ok(DeviceSpec::Uuid(nonempty(v)?))
        } else if let Some(v) = s.strip_prefix("LABEL=") {
            Ok(DeviceSpec::Label(nonempty(v)?))
        } else if let Some(v) = s.strip_prefix("PARTUUID=") {
            Ok(DeviceSpec::PartUuid(nonempty(v)?))
        } else if s.starts_with("/dev/")
            && s.len() > 5
            && !s.contains('\0')
            && !s.split('/').any(|c| c == "..")
        {
            Ok(DeviceSpec::Path(s.to_owned()))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Uuid(v) => write!(f, "UUID={v}"),
            DeviceSpec::Label(v) => write!(f, "LABEL={v}"),
            DeviceSpec::PartUuid(v) => write!(f, "PARTUUID={v}"),
            DeviceSpec::Path(v) => f.write_str(v),
        }
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fstab_forms() {
        assert_eq!("UUID=abcd-1234".parse(), Ok(DeviceSpec::Uuid("abcd-1234".into())));
        assert_eq!("LABEL=nix store".parse(), Ok(DeviceSpec::Label("nix store".into())));
        assert_eq!("PARTUUID=0e2c-01".parse(), Ok(DeviceSpec::PartUuid("0e2c-01".into())));
        assert_eq!("/dev/vda1".parse(), Ok(DeviceSpec::Path("/dev/vda1".into())));
        for bad in ["", "UUID=", "vda1", "/dev/", "/dev/../etc/passwd", "/etc/x"] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
    }
}
