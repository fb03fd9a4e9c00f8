//! Stage 1's whole-config parser (modules, root, mounts, and persist-bind's sections) never panics, and an accepted config yields absolute mount points in parent-first order.
#![no_main]

use initrd_tool::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = Config::from_slice(data) else { return };
    let plan = cfg.mount_plan();
    for m in &plan {
        let s = m.mount_point.as_str();
        assert!(s.starts_with('/') && s != "/", "mount point {s:?}");
    }
    for w in plan.windows(2) {
        assert!(!w[0].mount_point.starts_with(&w[1].mount_point), "child {} before parent {}", w[0].mount_point, w[1].mount_point);
    }
    let _ = cfg.fs_types();
});
