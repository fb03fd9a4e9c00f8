//! LUKS1 and LUKS2 natively: header reading and validation as cryptsetup does it, keyslot unlock, volume keys.
//!
//! Layering: `model` is the version-independent view of a header that everything above the
//! parsers works on; `header` builds it from disk bytes; `kdf`, `af`, `area` and `digest` are
//! the keyslot crypto; `unlock` ties them together. Secrets live in `secret` buffers.

pub mod af;
pub mod area;
pub mod digest;
pub mod dump;
pub mod hash;
pub mod header;
pub mod kdf;
mod mlock;
pub mod model;
pub mod secret;
pub mod unlock;
