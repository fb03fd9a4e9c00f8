//! Opening the configured LUKS devices: key file, then cached or asked passphrases, then dm-crypt.

pub mod config;
