//! The configs lethe's NixOS module writes for the example machines (nix/fixtures/) pass `initrd-tool check-config`, as the module's build step runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../nix/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// Every machine the module is evaluated for (one per VM scenario) gives a config stage 1 accepts.
#[test]
fn every_fixture_passes_check_config() {
    let files = fixtures();
    let names: Vec<String> =
        files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for scenario in ["btrfs-blank", "btrfs-tmpfs-usbkey", "ssh-unlock", "zfs-luks-blank"] {
        assert!(names.iter().any(|n| n == scenario), "no nix/fixtures/{scenario}.json in {names:?}");
    }
    for f in &files {
        let o = Command::new(env!("CARGO_BIN_EXE_initrd-tool")).arg("check-config").arg(f).output().unwrap();
        assert!(
            o.status.success(),
            "{}: {}{}",
            f.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// check-config is the build's gate: a fixture with one field broken fails with its JSON path.
#[test]
fn a_broken_fixture_fails_check_config_with_its_path() {
    let f = &fixtures()[0];
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
    doc["root"]["fsType"] = serde_json::json!(7);
    let dir = std::env::temp_dir().join(format!("lethe-fixture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&doc).unwrap()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_initrd-tool")).arg("check-config").arg(&bad).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("root.fsType"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
