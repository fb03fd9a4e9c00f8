//! Module index parsing and alias matching never panic; bucketed alias lookup agrees with a scan of every pattern; a subset's index files give the same closure.
//!
//! Input: `MODALIAS \0 modules.dep \0 modules.alias \0 modules.builtin \0 modules.softdep`.
#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;

use initrd_tool::kmod::{IndexFiles, ModuleIndex, ModuleName, fnmatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
    let modalias = parts.next().unwrap_or_default();
    let files = IndexFiles {
        dep: parts.next().unwrap_or_default(),
        alias: parts.next().unwrap_or_default(),
        builtin: parts.next().unwrap_or_default(),
        softdep: parts.next().unwrap_or_default(),
    };
    let dir = PathBuf::from("/lib/modules/fuzz");
    let ix = ModuleIndex::parse(dir.clone(), &files);
    for w in ix.warnings() {
        let _ = w.to_string();
    }

    // The prefix buckets must find exactly what trying every pattern finds, in file order.
    let mut scan = Vec::new();
    let mut seen = HashSet::new();
    for line in files.alias.lines() {
        let mut it = line.split_whitespace();
        if let (Some("alias"), Some(pattern), Some(module), None) =
            (it.next(), it.next(), it.next(), it.next())
            && fnmatch(pattern.as_bytes(), modalias.as_bytes())
            && seen.insert(ModuleName::new(module))
        {
            scan.push(ModuleName::new(module));
        }
    }
    assert_eq!(ix.modules_for_alias(&modalias), scan, "modalias {modalias:?}");

    // Closure of every module modules.dep names (each on its own when some line was refused).
    let mut names: Vec<String> = files
        .dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, _)| ModuleName::from_path(k.trim()))
        .map(|n| n.as_str().to_owned())
        .collect();
    names.extend(modalias.split_whitespace().take(4).map(str::to_owned));
    let closures: Vec<(Vec<String>, _)> = match ix.closure(&names) {
        Ok(c) => vec![(names.clone(), c)],
        Err(_) => names.iter().filter_map(|n| Some((vec![n.clone()], ix.closure(&[n]).ok()?))).collect(),
    };
    for (roots, closure) in closures {
        let mut once = HashSet::new();
        assert!(closure.iter().all(|m| once.insert(m.name.clone())), "a module twice in {closure:?}");
        // What mkinitrd writes for the subset resolves to the same modules in the same order.
        let sub = ix.subset(&closure);
        let again = ModuleIndex::parse(dir.clone(), &sub);
        assert!(again.warnings().is_empty(), "subset index has warnings: {:?}\n{sub:?}", again.warnings());
        assert_eq!(again.closure(&roots).ok().as_ref(), Some(&closure), "subset closure differs\n{sub:?}");
    }
});
