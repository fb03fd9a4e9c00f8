//! Resetting the root before it is mounted: ZFS, BTRFS and tmpfs (issue 4; nothing here yet).
