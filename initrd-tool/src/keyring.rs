//! The volume key as a `logon` key in the calling thread's keyring, for a dm-crypt table to name instead of carrying the key.
//!
//! As cryptsetup does for LUKS2: the key is described `cryptsetup:<header UUID>-d<digest id>`,
//! added to the thread keyring just before the table load (dm-crypt looks it up in the loading
//! thread's keyrings and copies it), and revoked and unlinked right after, so nothing is left
//! behind. A `logon` key can never be read back from user space.

#![deny(unsafe_code)]

mod sys;

use std::ffi::CString;
use std::marker::PhantomData;

use luks::secret::Secret;
use rustix::io::Errno;

use self::sys::KeySerial;

/// The key type: readable by the kernel only.
const LOGON: &str = "logon";

/// A refused keyring operation, naming the key (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {LOGON} key {description:?}: {errno}")]
pub struct KeyringError {
    pub op: &'static str,
    pub description: String,
    pub errno: Errno,
}

/// The description cryptsetup gives the volume key of the segment that `digest` verifies.
pub fn description(header_uuid: &str, digest: u32) -> String {
    format!("cryptsetup:{header_uuid}-d{digest}")
}

/// A logon key in this thread's keyring; revoked and unlinked when dropped. Not `Send`: the
/// thread keyring, which makes the key ours to revoke, belongs to the thread that added it.
#[derive(Debug)]
pub struct LogonKey {
    serial: KeySerial,
    description: String,
    size: usize,
    _thread: PhantomData<*const ()>,
}

impl LogonKey {
    /// Adds `key` as a logon key described `description` to the calling thread's keyring.
    pub fn add(description: &str, key: &Secret) -> Result<LogonKey, KeyringError> {
        let err = |errno| KeyringError { op: "add_key", description: description.to_owned(), errno };
        // A logon description needs a "prefix:" (the kernel's logon_vet_description).
        if description.split_once(':').is_none_or(|(p, _)| p.is_empty()) {
            return Err(err(Errno::INVAL));
        }
        let desc = CString::new(description).map_err(|_| err(Errno::INVAL))?;
        let key_type = CString::new(LOGON).map_err(|_| err(Errno::INVAL))?;
        let serial = sys::add_key(&key_type, &desc, key.as_bytes(), sys::THREAD_KEYRING).map_err(err)?;
        Ok(LogonKey { serial, description: description.to_owned(), size: key.len(), _thread: PhantomData })
    }

    /// How a dm-crypt table names the key: `:<bytes>:logon:<description>`.
    pub fn table_reference(&self) -> String {
        format!(":{}:{LOGON}:{}", self.size, self.description)
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn serial(&self) -> i32 {
        self.serial
    }

    /// Revokes and unlinks the key now, reporting what failed (dropping does the same silently).
    pub fn remove(mut self) -> Result<(), KeyringError> {
        let r = self.drop_key();
        self.serial = 0;
        r
    }

    fn drop_key(&self) -> Result<(), KeyringError> {
        if self.serial == 0 {
            return Ok(());
        }
        let err = |op, errno| KeyringError { op, description: self.description.clone(), errno };
        // Revoked first: even a link we do not know of can no longer reach the key.
        let revoked = sys::revoke(self.serial).map_err(|e| err("keyctl revoke", e));
        let unlinked = sys::unlink(self.serial, sys::THREAD_KEYRING).map_err(|e| err("keyctl unlink", e));
        revoked.and(unlinked)
    }
}

impl Drop for LogonKey {
    fn drop(&mut self) {
        let _ = self.drop_key();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cryptsetups() {
        assert_eq!(
            description("5af75f63-c7ac-40f7-85fc-370c4994d14f", 0),
            "cryptsetup:5af75f63-c7ac-40f7-85fc-370c4994d14f-d0"
        );
        assert_eq!(description("u", 3), "cryptsetup:u-d3");
    }

    /// The line of /proc/keys describing `serial` (the kernel prints serials in hex).
    fn proc_keys_line(serial: i32) -> Option<String> {
        let text = std::fs::read_to_string("/proc/keys").ok()?;
        let id = format!("{serial:08x} ");
        text.lines().find(|l| l.starts_with(&id)).map(str::to_owned)
    }

    #[test]
    fn a_logon_key_lives_until_dropped() {
        let key = Secret::from_slice(&[0x5a; 64]);
        let desc = format!("lethe-test:{}-{}", std::process::id(), line!());
        let k = LogonKey::add(&desc, &key).expect("the keyring takes a logon key");
        assert_eq!(k.table_reference(), format!(":64:logon:{desc}"));
        let line = proc_keys_line(k.serial()).expect("the key is in /proc/keys");
        assert!(line.contains(" logon ") && line.contains(&desc), "{line}");
        let serial = k.serial();
        k.remove().unwrap();
        // Revoked at once; gone once the kernel's garbage collector has run.
        let line = proc_keys_line(serial);
        assert!(
            line.as_ref().is_none_or(|l| l.split_whitespace().nth(1).is_some_and(|f| f.contains('R'))),
            "{line:?}"
        );
    }

    #[test]
    fn a_description_without_a_prefix_is_refused_before_the_kernel() {
        let e = LogonKey::add("no-prefix", &Secret::from_slice(b"k")).unwrap_err();
        assert_eq!(e.errno, Errno::INVAL);
        assert_eq!(e.to_string(), format!("add_key logon key \"no-prefix\": {}", Errno::INVAL));
        assert!(LogonKey::add(":empty-prefix", &Secret::from_slice(b"k")).is_err());
    }
}
