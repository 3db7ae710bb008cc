//! Corpus replay: every seed under `fuzz/corpus/<target>/` and every crash or regression
//! input under `fuzz/regressions/<target>/` goes through the same harness function as the
//! cargo-fuzz target of that name (`fuzz/harness/mod.rs`), on stable Rust, so that a crash
//! found once fails CI for good. A directory named after no target fails the test (a typo
//! would otherwise silently replay nothing).

use std::path::{Path, PathBuf};

#[path = "../fuzz/harness/mod.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// (target, file) for every file under `fuzz/<kind>/<target>/`.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let root = fuzz_dir().join(kind);
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return out;
    };
    for dir in dirs {
        let dir = dir.expect("read dir").path();
        if !dir.is_dir() {
            continue;
        }
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in std::fs::read_dir(&dir).expect("read target dir") {
            let file = file.expect("entry").path();
            let name = file.file_name().unwrap().to_string_lossy();
            if file.is_file() && !name.starts_with('.') && name != "README.md" {
                out.push((target.clone(), file));
            }
        }
    }
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let all = inputs(kind);
    let mut failures = Vec::new();
    for (target, file) in &all {
        let Some(run) = harness::target(target) else {
            failures.push(format!("{}: no fuzz target named {target}", file.display()));
            continue;
        };
        let data = std::fs::read(file).expect("read input");
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failures.push(format!("{target}: {}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that fail:\n{}",
        failures.join("\n")
    );
    all.len()
}

#[test]
fn every_corpus_file_passes_its_target() {
    let n = replay("corpus");
    // Every target has seeds.
    for (target, _) in harness::TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        let count = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert!(count > 0, "no seeds in {}", dir.display());
    }
    assert!(n >= harness::TARGETS.len());
}

#[test]
fn every_regression_file_passes_its_target() {
    replay("regressions");
}
