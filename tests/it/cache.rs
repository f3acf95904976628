//! The facts cache: a warm run must answer from the cache, and no cache, however stale, corrupted
//! or truncated, may change a finding. Every comparison is against a run without a cache on the
//! same tree.

use isolint::analysis::{analyze_resident, Resident};
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

/// Deletes the run memos, so that the next scan goes through the per-file facts.
fn forget_runs(root: &Path) {
    for memo in run_memos(root) {
        std::fs::remove_file(memo).unwrap();
    }
}

fn run_memos(root: &Path) -> Vec<PathBuf> {
    let dir = cache_file(root).parent().unwrap().to_path_buf();
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("run-"))
        .collect()
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

    assert!(!stats.whole_run);

    // Nothing changed: the result comes whole from the run memo.
    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(stats.whole_run);
    assert_eq!((stats.hits, stats.misses), (files, 0));
    assert_eq!(warm, uncached);

    // Without the memo, every file's facts come from the cache.
    forget_runs(root);
    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(!stats.whole_run);
    assert_eq!((stats.hits, stats.misses), (files, 0));
    assert_eq!(warm, uncached);
}

#[test]
fn the_run_memo_answers_only_the_same_inputs_and_options() {
    let dir = project();
    let root = dir.path();
    scan(root, true);
    assert!(scan(root, true).1.unwrap().whole_run);

    // Other target Pythons: other findings may apply.
    let mut older = options(root, true);
    older.targets = vec![isolint::version::parse_target("3.8").unwrap()];
    let memo = analyze(&older);
    assert!(!memo.cache.as_ref().unwrap().whole_run);
    let mut plain = older.clone();
    plain.cache_dir = None;
    assert_eq!(json::render(&memo), json::render(&analyze(&plain)));

    // A license file makes a folder vendored: its findings are hidden, though no C file changed.
    let before = scan(root, true);
    assert!(before.1.unwrap().whole_run);
    std::fs::write(root.join("src/split_module/LICENSE"), "MIT\n").unwrap();
    let (after, stats) = scan(root, true);
    assert!(!stats.unwrap().whole_run);
    assert_eq!(after, scan(root, false).0);
    assert_ne!(after, before.0, "the vendored folder changed nothing");

    // A damaged memo is never used.
    for memo in run_memos(root) {
        let mut bytes = std::fs::read(&memo).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&memo, bytes).unwrap();
    }
    let (damaged, stats) = scan(root, true);
    assert!(!stats.unwrap().whole_run);
    assert_eq!(damaged, after);
}

/// Appends a global and a function writing it (`added_cache`) to `path`; returns the old text.
fn add_global_writer(path: &Path) -> String {
    let before = std::fs::read_to_string(path).unwrap();
    std::fs::write(
        path,
        format!("{before}\nstatic PyObject *added_cache;\nstatic int touch(void) {{ added_cache = NULL; return 0; }}\n"),
    )
    .unwrap();
    before
}

#[test]
fn an_edited_file_is_scanned_again_and_its_new_findings_reported() {
    let dir = project();
    let root = dir.path();
    scan(root, true);
    let files = c_file_count(root);
    let edited = root.join("src/isolated_multi_phase/_isolated.c");
    let before = add_global_writer(&edited);

    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(!stats.whole_run);
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
    // The 8 bytes after the format tag fingerprint the build that wrote the cache.
    let mut other_build = good.clone();
    other_build[8] ^= 0x01;
    cases.push(("another build", other_build));

    for (what, bytes) in cases {
        forget_runs(root);
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
        forget_runs(root);
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

/// The modules (by summary) whose files hold `path`, in a report.
fn modules_holding(report: &str, path: &Path) -> usize {
    let v: serde_json::Value = serde_json::from_str(report).unwrap();
    v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| Path::new(f.as_str().unwrap()) == path)
        })
        .count()
}

#[test]
fn an_edit_models_only_the_modules_holding_the_edited_file() {
    let dir = project();
    let root = dir.path();
    let (_, stats) = scan(root, true);
    let stats = stats.unwrap();
    // Every module and the unattached code were checked once, none reused.
    let units = stats.units_checked;
    assert_eq!(stats.units_reused, 0);
    assert!(units >= 20, "{units} units");

    // The run memo deleted: every unit's result comes from the module cache, no facts decoded.
    forget_runs(root);
    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.units_reused, stats.units_checked), (units, 0));
    assert_eq!(stats.decoded, 0, "facts decoded with nothing to model");
    assert_eq!(warm, scan(root, false).0);

    // A module of three files: `_split.c`, this one and the `state.h` both include.
    let edited = root.join("src/split_module/registry.c");
    let before = add_global_writer(&edited);
    let (after, stats) = scan(root, true);
    let stats = stats.unwrap();
    let (uncached, _) = scan(root, false);
    assert_eq!(after, uncached);
    assert!(after.contains("added_cache"), "the new global is reported");
    let holders = modules_holding(&uncached, &edited);
    assert!(holders >= 1);
    assert_eq!(
        stats.units_checked, holders,
        "only the edited file's modules"
    );
    assert_eq!(stats.units_reused, units - holders);
    // Only the other files of those modules were decoded (the edited one was parsed).
    let v: serde_json::Value = serde_json::from_str(&uncached).unwrap();
    let mut others: Vec<&str> = v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| Path::new(f.as_str().unwrap()) == edited)
        })
        .flat_map(|m| m["files"].as_array().unwrap().iter())
        .map(|f| f.as_str().unwrap())
        .filter(|f| Path::new(f) != edited)
        .collect();
    others.sort_unstable();
    others.dedup();
    assert!(
        !others.is_empty(),
        "a module of one file tests nothing here"
    );
    assert_eq!(stats.decoded, others.len());

    // Back to the old text: the old entries answer again and the finding goes away.
    std::fs::write(&edited, before).unwrap();
    let (back, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(!back.contains("added_cache"));
    assert_eq!(back, warm);
    assert_eq!(stats.units_checked, holders);
}

#[test]
fn a_changed_struct_layout_checks_every_module_again() {
    let dir = project();
    let root = dir.path();
    let layout = root.join("src/layout_only.c");
    std::fs::write(&layout, "typedef struct { int count; } unrelated_layout;\n").unwrap();
    let (_, stats) = scan(root, true);
    let units = stats.unwrap().units_checked;

    // A comment that moves the struct changes its file's text, not the layouts: only the
    // unattached code, which holds the file, is checked again.
    std::fs::write(
        &layout,
        "/* moved */\n\ntypedef struct { int count; } unrelated_layout;\n",
    )
    .unwrap();
    let (moved, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!(moved, scan(root, false).0);
    assert_eq!((stats.units_reused, stats.units_checked), (units - 1, 1));

    // Every module's rules read every struct of the scan: a changed one may change any of them.
    std::fs::write(
        &layout,
        "typedef struct { int count; PyObject *held; } unrelated_layout;\n",
    )
    .unwrap();
    let (changed, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.units_reused, stats.units_checked), (0, units));
    assert_eq!(changed, scan(root, false).0);
}

#[test]
fn a_damaged_module_cache_never_changes_a_finding() {
    let dir = project();
    let root = dir.path();
    let (uncached, _) = scan(root, false);
    scan(root, true);
    let units_file = std::fs::read_dir(cache_file(root).parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("units-")
        })
        .expect("a module cache");
    let good = std::fs::read(&units_file).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x21;
    for (what, bytes) in [
        ("a flipped byte", flipped),
        ("truncated", good[..good.len() / 2].to_vec()),
    ] {
        forget_runs(root);
        std::fs::write(&units_file, &bytes).unwrap();
        let (report, stats) = scan(root, true);
        assert_eq!(report, uncached, "{what}: findings changed");
        assert_eq!(
            stats.unwrap().units_reused,
            0,
            "{what}: a damaged cache was used"
        );
    }
    // Rewritten whole by the scan after the damage.
    forget_runs(root);
    let (report, stats) = scan(root, true);
    assert_eq!(report, uncached);
    assert_eq!(stats.unwrap().units_checked, 0);
}

/// `isolint check -v --format json .` in `root`, with the cache: the report and the verbose
/// line.
fn check_cli(root: &Path, cache: bool) -> (serde_json::Value, String) {
    let mut args = vec!["check", "-v", "--format", "json", "."];
    if !cache {
        args.push("--no-cache");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(&args)
        .current_dir(root)
        .env_remove("ISOLINT_NO_CACHE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}); stderr: {stderr}"));
    (report, stderr)
}

#[test]
fn an_edited_header_changes_the_modules_that_include_it_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check");
    copy_tree(&fixtures.join("split_module"), &root.join("split"));
    copy_tree(
        &fixtures.join("isolated_multi_phase"),
        &root.join("isolated"),
    );
    let (first, stderr) = check_cli(root, true);
    assert!(stderr.contains("0 reused"), "{stderr}");
    let (again, stderr) = check_cli(root, true);
    assert_eq!(again, first);
    assert!(stderr.contains("run memo"), "{stderr}");

    let header = root.join("split/state.h");
    let text = std::fs::read_to_string(&header).unwrap();
    std::fs::write(
        &header,
        text.replace(
            "extern int registry_generation;",
            "extern int registry_generation;\nstatic PyObject *header_cache;\n\
             void header_touch(PyObject *o) { header_cache = o; }",
        ),
    )
    .unwrap();
    let (after, stderr) = check_cli(root, true);
    // The split module includes the header; the isolated module (and the empty unit of files
    // no module holds) come from the module cache.
    assert!(stderr.contains("modules: 2 reused, 1 checked"), "{stderr}");
    let (uncached, _) = check_cli(root, false);
    assert_eq!(after, uncached);
    let in_header: Vec<&serde_json::Value> = after["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["symbol"] == "header_cache")
        .collect();
    assert!(!in_header.is_empty(), "{after}");
    assert!(in_header
        .iter()
        .all(|f| f["path"].as_str().unwrap().ends_with("state.h")));
    assert_ne!(
        after["modules"], first["modules"],
        "the verdict did not change"
    );
}

#[test]
fn a_few_changed_entries_go_to_the_delta_and_a_stale_or_damaged_delta_is_ignored() {
    let dir = project();
    let root = dir.path();
    scan(root, true);
    let files = c_file_count(root);
    let base = std::fs::read(cache_file(root)).unwrap();
    let delta = cache_file(root).with_file_name("facts-delta.bin");
    assert!(!delta.exists());

    let edited = root.join("src/split_module/registry.c");
    let text = std::fs::read_to_string(&edited).unwrap();
    std::fs::write(&edited, format!("{text}\n/* one edit */\n")).unwrap();
    let (report, stats) = scan(root, true);
    assert_eq!(stats.unwrap().misses, 1);
    assert_eq!(report, scan(root, false).0);
    // The large file is left alone; the edited file's entry is in the delta.
    assert_eq!(std::fs::read(cache_file(root)).unwrap(), base);
    assert!(delta.exists());
    forget_runs(root);
    let (again, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.hits, stats.misses), (files, 0), "the delta answered");
    assert_eq!(again, report);

    // A damaged delta is ignored: only the edited file is parsed again.
    let mut bytes = std::fs::read(&delta).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&delta, bytes).unwrap();
    forget_runs(root);
    let (damaged, stats) = scan(root, true);
    assert_eq!(stats.unwrap().misses, 1);
    assert_eq!(damaged, report);

    // A delta of another `facts.bin` is not read (each entry is still checked against its
    // text, so a stale one could only answer the same text): the result stays right.
    let good_delta = std::fs::read(&delta).unwrap();
    std::fs::write(cache_file(root), b"garbage").unwrap();
    forget_runs(root);
    scan(root, true); // rewrites facts.bin whole and deletes the delta
    assert!(!delta.exists());
    std::fs::write(&delta, good_delta).unwrap();
    std::fs::write(&edited, format!("{text}\n/* another edit */\n")).unwrap();
    forget_runs(root);
    let (fresh, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.hits, stats.misses), (files - 1, 1));
    assert_eq!(fresh, scan(root, false).0);
}

/// A header that switches `TRACE_LOG` off and sets `TRACE_LEVEL`, and a module whose globals
/// sit behind both: what the parse of the module sees comes from the header's line scans.
const SWITCHES_HEADER: &str = "#ifndef CONFIG_H\n#define CONFIG_H\n\
    #undef TRACE_LOG  /* Define to log every call. */\n#define TRACE_LEVEL 0\n#endif\n";

const SWITCHED_MODULE: &str = r#"#include <Python.h>
#include "config.h"

#ifdef TRACE_LOG
static PyObject *trace_log;
static PyObject *set_log(PyObject *self, PyObject *arg) { trace_log = arg; Py_RETURN_NONE; }
#endif
#if TRACE_LEVEL > 1
static PyObject *trace_detail;
static PyObject *set_detail(PyObject *self, PyObject *arg) { trace_detail = arg; Py_RETURN_NONE; }
#endif
static PyObject *counter;
static PyObject *bump(PyObject *self, PyObject *arg) { counter = arg; Py_RETURN_NONE; }
static PyMethodDef methods[] = {{"bump", bump, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "mod", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mod(void) { return PyModule_Create(&moddef); }
"#;

fn symbols(report: &serde_json::Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["symbol"].as_str())
        .collect()
}

#[test]
fn a_re_run_reads_an_unchanged_files_switches_from_the_cache_and_reports_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("config.h"), SWITCHES_HEADER).unwrap();
    std::fs::write(root.join("mod.c"), SWITCHED_MODULE).unwrap();
    let (first, _) = check_cli(root, true);
    let found = symbols(&first);
    assert!(found.contains(&"counter"), "{first}");
    assert!(
        !found.contains(&"trace_log") && !found.contains(&"trace_detail"),
        "the header's switches were not applied: {first}"
    );

    // The module is parsed again; the header's switched-off name and value now come from the
    // facts cache, and must shape that parse as the header's text did.
    std::fs::write(
        root.join("mod.c"),
        format!("{SWITCHED_MODULE}/* edited */\n"),
    )
    .unwrap();
    let (after, stderr) = check_cli(root, true);
    assert!(
        stderr.contains("1 files from the cache, 1 parsed"),
        "{stderr}"
    );
    let (uncached, _) = check_cli(root, false);
    assert_eq!(after, uncached);
    assert_eq!(symbols(&after), symbols(&first));
}

/// Sets every file under `dir` an hour into the past, so that their stamps are trusted (a text
/// read right after a write is read again on the next scan).
fn age_files(dir: &Path) {
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            age_files(&entry.path());
        } else {
            let file = std::fs::File::options()
                .write(true)
                .open(entry.path())
                .unwrap();
            file.set_modified(past).unwrap();
        }
    }
}

/// The same scan with and without the memory: the same report.
fn scan_both(options: &AnalyzeOptions, memory: &mut Resident) -> (String, CacheStats) {
    let with = analyze_resident(options, memory);
    let without = analyze(&AnalyzeOptions {
        cache_dir: None,
        ..options.clone()
    });
    let report = json::render(&with);
    assert_eq!(report, json::render(&without));
    (
        report,
        with.cache.expect("a scan with a memory has statistics"),
    )
}

#[test]
fn a_resident_memory_parses_only_the_edited_buffer_and_reports_what_a_fresh_scan_does() {
    let dir = project();
    let root = dir.path();
    age_files(root);
    let files = c_file_count(root);
    let mut memory = Resident::default();
    let full = options(root, true);

    // The first scan fills the memory (the run memo is not asked: it holds no files).
    let (first, stats) = scan_both(&full, &mut memory);
    assert_eq!((stats.resident, stats.misses), (0, files));
    assert_eq!(memory.len(), files);
    // The second reads no file and opens no facts cache.
    let (second, stats) = scan_both(&full, &mut memory);
    assert_eq!(second, first);
    assert_eq!((stats.resident, stats.misses, stats.hits), (files, 0, 0));

    // An editor's buffer, checked with its modules: only the buffer is parsed.
    let edited = root.join("src/split_module/registry.c");
    let before = std::fs::read_to_string(&edited).unwrap();
    let edit = |extra: &str, memory: &mut Resident| {
        let buffer = format!("{before}{extra}");
        let focused = AnalyzeOptions {
            overrides: vec![(edited.clone(), buffer.into_bytes())],
            focus: Some(vec![edited.clone()]),
            ..full.clone()
        };
        scan_both(&focused, memory)
    };
    let added = "\nstatic PyObject *added_in_buffer;\nstatic int touch(void) { added_in_buffer = NULL; return 0; }\n";
    let (report, stats) = edit(added, &mut memory);
    assert!(
        report.contains("added_in_buffer"),
        "the new global is reported"
    );
    assert_eq!((stats.misses, stats.resident), (1, files - 1));
    assert!(stats.decoded >= 1, "the module's other files were decoded");
    // The next edit of the same file finds its module's other files still decoded.
    let (report, stats) = edit(&added.replace("touch", "touch_again"), &mut memory);
    assert!(report.contains("added_in_buffer"));
    assert_eq!((stats.misses, stats.decoded), (1, 0));
    // A `#define` in the buffer changes the macro table, so every file's facts key: the
    // report is still a fresh scan's.
    let (_, stats) = edit("\n#define ADDED_STORAGE static\n", &mut memory);
    assert_eq!(stats.resident, 0, "no file answered under the old table");
    // Back to the saved text: the memory answers again, and the global is gone.
    let (report, _) = edit("", &mut memory);
    assert!(!report.contains("added_in_buffer"));

    // A file changed on disk is read again (its stamp changed); the others are not.
    let other = root.join("src/split_module/_split.c");
    let text = std::fs::read_to_string(&other).unwrap();
    let added = "static PyObject *added_on_disk;\nstatic int touch_disk(void) { added_on_disk = NULL; return 0; }";
    std::fs::write(&other, format!("{text}\n{added}\n")).unwrap();
    let (report, stats) = scan_both(&full, &mut memory);
    assert!(report.contains("added_on_disk"));
    assert_eq!(stats.resident, files - 1);
    // Written just now, its stamp is not trusted: it is read again, and answered from memory.
    let (again, stats) = scan_both(&full, &mut memory);
    assert_eq!(again, report);
    assert_eq!(stats.resident, files);
    // A removed file leaves the memory.
    std::fs::remove_file(&other).unwrap();
    let (_, stats) = scan_both(&full, &mut memory);
    assert_eq!(stats.resident, files - 1);
    assert_eq!(memory.len(), files - 1);
    // A file rewritten with its size and its modification time set back (`touch -r`) is
    // still read again.
    let modified = std::fs::metadata(&edited).unwrap().modified().unwrap();
    std::fs::write(&edited, before.replacen(' ', "\t", 1)).unwrap();
    let file = std::fs::File::options().write(true).open(&edited).unwrap();
    file.set_modified(modified).unwrap();
    let (_, stats) = scan_both(&full, &mut memory);
    assert_eq!((stats.resident, stats.misses), (files - 2, 1));
}

#[test]
fn a_resident_memory_keeps_each_files_macros_when_the_build_defines_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join("src").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    // The header's macro decides how `mod.c` parses: the project's macro table must hold it
    // in every scan.
    write("defs.h", "#define HIDDEN static\n");
    write(
        "mod.c",
        r#"#include <Python.h>
#include "defs.h"
HIDDEN PyObject *hidden_cache;
#ifdef USE_CACHE
static PyObject *built_cache;
#endif
static PyObject *get(PyObject *self, PyObject *args) {
    hidden_cache = PyLong_FromLong(1);
#ifdef USE_CACHE
    built_cache = PyLong_FromLong(2);
#endif
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"get", get, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "mod", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mod(void) { return PyModule_Create(&def); }
"#,
    );
    let commands = |flag: &str| {
        format!(
            r#"[{{"directory": "..", "file": "mod.c", "arguments": ["cc", "{flag}", "-c", "mod.c"], "output": "mod.o"}}]"#
        )
    };
    write("build/compile_commands.json", &commands("-DUSE_CACHE"));
    age_files(root);
    let mut memory = Resident::default();
    let full = options(root, true);
    let (first, _) = scan_both(&full, &mut memory);
    assert!(first.contains("built_cache") && first.contains("hidden_cache"));

    // Other defines: every file's facts key changes, the macro table does not.
    write("build/compile_commands.json", &commands("-UUSE_CACHE"));
    let (second, stats) = scan_both(&full, &mut memory);
    assert_ne!(second, first, "the build's defines decide the report");
    assert_eq!(stats.resident, 0);
    // What the memory learnt of those files still holds their macros.
    let (third, stats) = scan_both(&full, &mut memory);
    assert_eq!(third, second);
    assert_eq!(stats.resident, 2);
}

#[test]
fn a_re_run_reads_only_the_files_whose_stamp_changed() {
    let dir = project();
    let root = dir.path();
    age_files(&root.join("src"));
    let files = c_file_count(root);
    let (first, stats) = scan(root, true);
    assert_eq!(stats.unwrap().unread, 0, "a first scan reads every file");

    // Nothing changed: no file is read, and the run memo answers.
    let (again, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert!(stats.whole_run);
    assert_eq!(stats.unread, files);
    assert_eq!(again, first);

    // One file edited: only it is read; the others' hashes come from their stamps.
    let edited = root.join("src/isolated_multi_phase/_isolated.c");
    add_global_writer(&edited);
    let (warm, stats) = scan(root, true);
    let stats = stats.unwrap();
    assert_eq!((stats.unread, stats.misses), (files - 1, 1));
    assert!(warm.contains("added_cache"), "the new global is reported");
    assert_eq!(warm, scan(root, false).0);
}

#[test]
fn a_text_changed_under_the_same_size_and_time_is_read_again() {
    let dir = project();
    let root = dir.path();
    age_files(&root.join("src"));
    scan(root, true);
    // The same length, and the modification time set back to what it was, as `cp -p` or an
    // unpacked archive may leave it: only the status-change time tells.
    let edited = root.join("src/legacy_single_phase/_speedups.c");
    let modified = std::fs::metadata(&edited).unwrap().modified().unwrap();
    let before = std::fs::read_to_string(&edited).unwrap();
    let after = before.replace("call_count", "call_tally");
    assert_eq!(before.len(), after.len());
    assert_ne!(before, after);
    std::fs::write(&edited, &after).unwrap();
    let file = std::fs::File::options().write(true).open(&edited).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(&edited).unwrap().modified().unwrap(),
        modified
    );

    let (warm, stats) = scan(root, true);
    assert_eq!(stats.unwrap().misses, 1, "the edited file is parsed again");
    assert!(
        warm.contains("call_tally"),
        "the renamed global is reported"
    );
    assert_eq!(warm, scan(root, false).0);
}
