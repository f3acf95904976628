//! The facts cache: a warm run must answer from the cache, and no cache, however stale, corrupted
//! or truncated, may change a finding. Every comparison is against a run without a cache on the
//! same tree.

use isolint::cache::CacheStats;
use isolint::report::json;
use isolint::{analyze, AnalyzeOptions};
use std::path::{Path, PathBuf};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of every check fixture (real-world-shaped modules, several files per module).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check"),
        &dir.path().join("src"),
    );
    dir
}

fn options(root: &Path, cache: bool) -> AnalyzeOptions {
    AnalyzeOptions {
        paths: vec![root.join("src")],
        cache_dir: cache.then(|| root.join(".isolint_cache")),
        ..AnalyzeOptions::default()
    }
}

/// The JSON report and what the cache did.
fn scan(root: &Path, cache: bool) -> (String, Option<CacheStats>) {
    let analysis = analyze(&options(root, cache));
    (json::render(&analysis), analysis.cache)
}

fn cache_file(root: &Path) -> PathBuf {
    root.join(".isolint_cache")
        .join(env!("CARGO_PKG_VERSION"))
        .join("facts.bin")
}

fn c_file_count(root: &Path) -> usize {
    let (report, _) = scan(root, false);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    v["files_scanned"].as_u64().unwrap() as usize
}

#[test]
fn a_warm_run_reads_every_file_from_the_cache_and_reports_the_same() {
    let dir = project();
    let root = dir.path();
    let (uncached, none) = scan(root, false);
    assert!(none.is_none());
    assert!(!root.join(".isolint_cache").exists());
    let files = c_file_count(root);
    assert!(files >= 20, "{files} files");

    let (cold, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.hits, stats.misses), (0, files));
    assert_eq!(stats.write_error, None);
    assert!(cache_file(root).exists());
    assert!(root.join(".isolint_cache/.gitignore").exists());
    assert_eq!(cold, uncached);

    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.hits, stats.misses), (files, 0));
    assert_eq!(warm, uncached);
}

#[test]
fn an_edited_file_is_scanned_again_and_its_new_findings_reported() {
    let dir = project();
    let root = dir.path();
    scan(root, true);
    let files = c_file_count(root);
    let edited = root.join("src/isolated_multi_phase/_isolated.c");
    let before = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(
        &edited,
        format!("{before}\nstatic PyObject *added_cache;\nstatic int touch(void) {{ added_cache = NULL; return 0; }}\n"),
    )
    .unwrap();

    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.hits, stats.misses), (files - 1, 1));
    let (uncached, _) = scan(root, false);
    assert_eq!(warm, uncached);
    assert!(warm.contains("added_cache"), "the new global is reported");

    // Back to the old text: the finding goes away again.
    std::fs::write(&edited, before).unwrap();
    let (warm, _) = scan(root, true);
    assert!(!warm.contains("added_cache"));
    assert_eq!(warm, scan(root, false).0);
}

#[test]
fn a_new_attribute_macro_elsewhere_invalidates_every_file_it_could_touch() {
    let dir = project();
    let root = dir.path();
    scan(root, true);
    let files = c_file_count(root);
    std::fs::write(
        root.join("src/visibility.h"),
        "#define MY_HIDDEN __attribute__((visibility(\"hidden\")))\n",
    )
    .unwrap();
    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    // Every file parses under the new macro set; none may reuse facts from the old one.
    assert_eq!((stats.hits, stats.misses), (0, files + 1));
    assert_eq!(warm, scan(root, false).0);
}

#[test]
fn a_corrupted_truncated_or_foreign_cache_never_changes_a_finding() {
    let dir = project();
    let root = dir.path();
    let (uncached, _) = scan(root, false);
    let files = c_file_count(root);
    scan(root, true);
    let good = std::fs::read(cache_file(root)).unwrap();
    assert!(good.len() > 1000);

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("a flipped byte", flipped),
        ("truncated", good[..good.len() * 2 / 3].to_vec()),
        ("empty", Vec::new()),
        (
            "garbage",
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
    ];
    let mut other_format = good.clone();
    other_format[0] ^= 0xff;
    cases.push(("another format", other_format));

    for (what, bytes) in cases {
        std::fs::write(cache_file(root), &bytes).unwrap();
        let (report, stats) = scan(root, true);
        let stats = stats.unwrap();
        assert_eq!(report, uncached, "{what}: findings changed");
        assert_eq!(stats.hits, 0, "{what}: a damaged cache was used");
        assert_eq!(stats.misses, files, "{what}");
        if !bytes.is_empty() || what == "empty" {
            assert!(stats.discarded, "{what}: not reported as discarded");
        }
        // The damaged cache was replaced by a good one.
        let (_, stats) = scan(root, true);
        assert_eq!(stats.unwrap().hits, files, "{what}: cache not rebuilt");
    }
}

#[test]
fn a_cache_that_cannot_be_written_leaves_the_scan_alone() {
    let dir = project();
    let root = dir.path();
    // A file where the cache folder should be: nothing can be created below it.
    std::fs::write(root.join(".isolint_cache"), b"not a folder").unwrap();
    let (report, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(stats.write_error.is_some());
    assert_eq!(report, scan(root, false).0);
}
