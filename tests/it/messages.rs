//! Rule messages say what really happens to the module they are about.

use isolint::{analyze, AnalyzeOptions};
use std::path::PathBuf;

fn findings(fixture: &str, rule: &str) -> Vec<isolint::finding::Finding> {
    let options = AnalyzeOptions {
        paths: vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/check")
            .join(fixture)],
        ..AnalyzeOptions::default()
    };
    analyze(&options)
        .findings
        .into_iter()
        .filter(|f| f.name == rule)
        .collect()
}

fn messages(fixture: &str, rule: &str) -> Vec<String> {
    findings(fixture, rule)
        .into_iter()
        .filter(|f| f.message.contains("only while the module initialises"))
        .map(|f| f.message)
        .collect()
}

/// Single-phase init with `m_size = -1` runs `PyInit` once per process: the first
/// interpreter's objects are shared, nothing is overwritten by later imports.
#[test]
fn single_phase_init_time_writes_are_shared_not_overwritten() {
    let single = messages("legacy_single_phase", "global-pyobject");
    assert!(!single.is_empty());
    for m in &single {
        assert!(m.contains("once per process"), "{m}");
        assert!(!m.contains("overwrites"), "{m}");
    }
    let multi = messages("multi_phase_exec_static", "global-pyobject");
    assert!(!multi.is_empty());
    for m in &multi {
        assert!(
            m.contains("every interpreter that imports the module overwrites it"),
            "{m}"
        );
        assert!(!m.contains("once per process"), "{m}");
    }
}

fn helps(fixture: &str, rule: &str) -> Vec<String> {
    findings(fixture, rule)
        .into_iter()
        .map(|f| f.help)
        .collect()
}

/// The way to declare the GIL unused depends on the module: following the help must not lead
/// to another finding (`single-phase-free-threaded` for `PyUnstable_Module_SetGIL` on a
/// single-phase module with `m_size = -1`).
#[test]
fn gil_declaration_help_fits_the_module() {
    let legacy = helps("legacy_single_phase", "missing-gil-slot");
    assert!(!legacy.is_empty());
    for h in &legacy {
        assert!(h.contains("move to multi-phase init"), "{h}");
        assert!(!h.starts_with("call `PyUnstable_Module_SetGIL"), "{h}");
    }
    let multi = helps("multi_phase_exec_static", "missing-gil-slot");
    assert!(!multi.is_empty());
    for h in &multi {
        assert!(h.contains("{Py_mod_gil, Py_MOD_GIL_NOT_USED}"), "{h}");
        assert!(!h.contains("multi-phase"), "{h}");
    }
}

/// `unlocked-static-write` says what the write does to the variable in a sentence that
/// reads: "`x` (global) has a field written in `f`", not "is has a field written".
#[test]
fn unlocked_static_write_messages_read_as_sentences() {
    let fixtures =
        std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/check"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned());
    let mut predicates = std::collections::BTreeSet::new();
    for fixture in fixtures {
        for f in findings(&fixture, "unlocked-static-write") {
            let after_scope = f
                .message
                .split_once(") ")
                .map(|(_, rest)| rest)
                .unwrap_or("");
            assert!(
                after_scope.starts_with("is ") || after_scope.starts_with("has "),
                "{}",
                f.message
            );
            assert!(!f.message.contains(" is has "), "{}", f.message);
            predicates.insert(after_scope.split(" in `").next().unwrap_or("").to_string());
        }
    }
    // The fixtures hold writes of both forms.
    assert!(predicates.contains("has a field written"), "{predicates:?}");
    assert!(predicates.contains("is assigned"), "{predicates:?}");
}
