//! The rollback crate's config parser (`rollback`, `pools`) never panics, and what it accepts holds the invariants the backends rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollback::config::{Document, Rollback};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Document::from_slice(data) else { return };
    match &doc.rollback {
        Some(Rollback::Zfs(z)) => {
            let d = z.dataset.as_str();
            assert!(d.contains('/') && !d.contains(['@', '#']) && !d.starts_with('/'), "dataset {d:?}");
            assert!(doc.pools.as_ref().is_some_and(|p| p.zfs.keys().any(|n| n.as_str() == z.dataset.pool())));
            assert!(!z.snapshot.as_str().contains(['/', '@']));
        }
        Some(Rollback::Btrfs(b)) => {
            for p in [&b.subvolume, &b.blank].into_iter().chain(b.old_roots.as_ref().map(|o| &o.path)) {
                let s = p.as_str();
                assert!(!s.is_empty() && !s.starts_with('/') && !s.ends_with('/'), "{s:?}");
                assert!(s.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{s:?}");
            }
            assert_ne!(b.subvolume, b.blank);
            if let Some(o) = &b.old_roots {
                assert!(o.keep_at_least >= 1);
                assert!(o.path != b.subvolume && !o.path.starts_with(&b.subvolume) && !b.subvolume.starts_with(&o.path));
            }
        }
        Some(Rollback::Tmpfs(_)) | None => {}
    }
    if let Some(method) = &doc.rollback {
        let t = rollback::Target::from_config(method, "/dev/vda".into(), "/sysroot".into());
        let _ = t.describe();
    }
});
