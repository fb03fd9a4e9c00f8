//! The owner-database and mountinfo parsers (passwd, group, uid-map/gid-map, utab::mount_info) never panic, and utab lines stay one well-formed line whatever the paths hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use persist_bind::utab::{self, MountInfo, UtabEntry};
use persist_bind::{RootPath, owner};

fuzz_target!(|data: &[u8]| {
    for (name, e) in owner::parse_passwd(data) {
        assert!(!name.is_empty());
        std::hint::black_box(e);
    }
    for name in owner::parse_group(data).into_keys() {
        assert!(!name.is_empty());
    }
    std::hint::black_box(owner::parse_id_map(data));

    let text = String::from_utf8_lossy(data);
    // Ask for the id on the first line (the likely hit), and a few fixed ones.
    let first = text.split(' ').next().and_then(|f| f.parse::<u64>().ok());
    for id in first.into_iter().chain([0, 1, 22, u64::MAX]) {
        std::hint::black_box(utab::mount_info(&text, id));
    }

    // Whatever a path or a mountinfo field holds, the utab line written for
    // it is one line of six space-separated fields (libmount's escaping).
    if let Ok(p) = RootPath::parse(&text) {
        let e = UtabEntry {
            id: 42,
            bind_source: p.clone(),
            target: p,
            fs: Some(MountInfo { root: text.to_string(), source: text.to_string() }),
            options: vec!["x-gvfs-hide"],
        };
        let line = e.line();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "utab line {line:?}");
        assert_eq!(line.trim_end_matches('\n').split(' ').count(), 6, "utab line {line:?}");
    }
});
