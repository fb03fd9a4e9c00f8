//! Superblock probing: which file system or container a block device holds, with its UUID and label.
