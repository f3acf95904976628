//! Every fixture under fixtures/check/ carries its expectations inline, as
//! `/* expect: rule-name */` at the end of the line the finding points at. This harness scans
//! each fixture folder and fails on any missing or extra finding.

use isolint::rules::Level;
use isolint::{analyze, AnalyzeOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

type Expectation = (String, usize, String);

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures/check exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn c_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable fixture dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            c_files(&path, out);
        } else if isolint::discover::classify(&path).is_some() {
            out.push(path);
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// (file name, line, rule name) for every `expect:` annotation.
pub fn expectations(dir: &Path) -> BTreeSet<Expectation> {
    let mut files = Vec::new();
    c_files(dir, &mut files);
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("fixture is UTF-8");
        for (i, line) in isolint::source::split_lines(&text).enumerate() {
            if let Some(pos) = line.find("expect:") {
                let rest = &line[pos + "expect:".len()..];
                let rest = rest.split("*/").next().unwrap_or(rest);
                for rule in rest.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    assert!(
                        isolint::rules::find_rule(rule).is_some(),
                        "{}:{}: `expect: {rule}` names no rule",
                        file.display(),
                        i + 1
                    );
                    out.insert((file_name(&file), i + 1, rule.to_string()));
                }
            }
        }
    }
    out
}

fn actual(dir: &Path) -> BTreeSet<Expectation> {
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![dir.to_path_buf()],
        ..Default::default()
    });
    assert!(
        analysis.errors.is_empty(),
        "{}: scan errors {:?}",
        dir.display(),
        analysis.errors
    );
    analysis
        .findings
        .iter()
        .map(|f| (file_name(&f.path), f.location.line, f.name.to_string()))
        .collect()
}

#[test]
fn every_fixture_matches_its_expectations() {
    let mut failures = Vec::new();
    let dirs = fixture_dirs();
    assert!(
        dirs.len() >= 8,
        "expected the fixture folders, found {}",
        dirs.len()
    );
    for dir in dirs {
        let expected = expectations(&dir);
        let got = actual(&dir);
        for missing in expected.difference(&got) {
            failures.push(format!(
                "{}: missing {}:{} {}",
                dir.display(),
                missing.0,
                missing.1,
                missing.2
            ));
        }
        for extra in got.difference(&expected) {
            failures.push(format!(
                "{}: extra {}:{} {}",
                dir.display(),
                extra.0,
                extra.1,
                extra.2
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "fixture mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn fixture_modules_have_the_expected_shape() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check");
    let scan = |name: &str| {
        analyze(&AnalyzeOptions {
            paths: vec![root.join(name)],
            ..Default::default()
        })
    };

    let isolated = scan("isolated_multi_phase");
    let m = &isolated.modules[0];
    assert_eq!((m.name.as_str(), m.init), ("_isolated", "multi-phase"));
    assert_eq!(m.m_size.as_deref(), Some("sizeof(isolated_state)"));
    assert_eq!(
        m.slots["multiple_interpreters"].as_deref(),
        Some("Py_MOD_PER_INTERPRETER_GIL_SUPPORTED")
    );
    assert_eq!(m.slots["gil"].as_deref(), Some("Py_MOD_GIL_NOT_USED"));
    assert_eq!((m.static_types, m.heap_types), (0, 1));
    let verdict = m.verdict.as_ref().unwrap();
    assert_eq!(
        (verdict.declared, verdict.supported),
        (Level::PerInterpreterGil, Level::PerInterpreterGil)
    );
    assert!(verdict.blockers.is_empty() && verdict.gil_not_used_possible);

    let legacy = scan("legacy_single_phase");
    let m = &legacy.modules[0];
    assert_eq!(
        (m.name.as_str(), m.init, m.m_size.as_deref()),
        ("_speedups", "single-phase", Some("-1"))
    );
    assert_eq!(m.static_types, 1);
    assert_eq!(m.verdict.as_ref().unwrap().supported, Level::None);

    // Multi-phase, but globals hold objects: it claims SUPPORTED by default and supports
    // nothing; both levels above list the two globals as blockers.
    let halfway = scan("multi_phase_exec_static");
    let verdict = halfway.modules[0].verdict.as_ref().unwrap();
    assert!(verdict.multiple_interpreters_is_default);
    assert_eq!(
        (verdict.declared, verdict.supported),
        (Level::SharedGil, Level::None)
    );
    let blocked: Vec<(Level, usize)> = verdict
        .blockers
        .iter()
        .map(|(l, b)| (*l, b.len()))
        .collect();
    assert_eq!(
        blocked,
        vec![(Level::SharedGil, 2), (Level::PerInterpreterGil, 2)]
    );

    // A suppressed blocker does not block its level; the verdict lists it.
    let suppressed = scan("suppressed_blockers");
    let by_name = |name: &str| {
        suppressed
            .modules
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.verdict.clone())
            .unwrap()
    };
    let accepted = by_name("accepted");
    assert_eq!(accepted.supported, Level::PerInterpreterGil);
    let listed: Vec<(&str, Option<&str>, Option<Level>, &str)> = accepted
        .suppressed
        .iter()
        .map(|s| (s.finding.name, s.finding.symbol.as_deref(), s.level, s.by))
        .collect();
    assert_eq!(
        listed,
        vec![(
            "mutable-global-state",
            Some("hits"),
            Some(Level::PerInterpreterGil),
            "comment"
        )]
    );
    assert_eq!(accepted.gil_axis.suppressed.len(), 1);
    assert!(accepted.gil_not_used_possible);
    let unaccepted = by_name("unaccepted");
    assert_eq!(unaccepted.supported, Level::SharedGil);
    assert!(unaccepted.suppressed.is_empty());

    // One variable, one finding: the other declarations and the fixed values stored into a
    // static type while it is readied are related places of the finding at the definition.
    let one = scan("one_finding_per_variable");
    let related = |symbol: &str, rule: &str| -> Vec<(String, usize)> {
        one.findings
            .iter()
            .find(|f| f.symbol.as_deref() == Some(symbol) && f.name == rule)
            .unwrap_or_else(|| panic!("no {rule} finding for {symbol}"))
            .related
            .iter()
            .map(|r| (file_name(&r.path), r.location.line))
            .collect()
    };
    assert_eq!(
        related("last_result", "global-pyobject"),
        vec![("one_var.c".to_string(), 8), ("state.h".to_string(), 5)]
    );
    assert_eq!(
        related("Counter_Type", "static-type-object"),
        vec![
            ("one_var.c".to_string(), 35),
            ("one_var.c".to_string(), 36),
            ("state.h".to_string(), 7)
        ]
    );
    assert!(related("a1", "mutable-global-state").is_empty());
    // The message names what blocks shared-gil before the four counters that only block
    // per-interpreter-gil.
    let overclaim = one
        .findings
        .iter()
        .find(|f| f.name == "overclaimed-isolation")
        .unwrap();
    let named = overclaim.message.split(": ").nth(1).unwrap();
    assert!(
        named.contains("`last_result`") && !named.contains("`a1`"),
        "{named}"
    );

    // The helper file is linked into the module through the names it provides.
    let split = scan("split_module");
    assert_eq!(split.modules.len(), 1);
    assert_eq!(
        split.modules[0].files.len(),
        3,
        "{:?}",
        split.modules[0].files
    );
    let registry = split
        .findings
        .iter()
        .find(|f| f.symbol.as_deref() == Some("registry"))
        .unwrap();
    assert_eq!(registry.module.as_deref(), Some("_split"));

    // The project's statement and block macros leave nothing the parser cannot read.
    let project_macros = scan("project_macros");
    assert!(
        project_macros.parse_errors.is_empty(),
        "{:?}",
        project_macros.parse_errors
    );

    // A module made by a token-pasting macro, with parse errors elsewhere in the file.
    let macros = scan("macro_heavy");
    assert_eq!(macros.modules[0].name, "_macros");
    assert!(
        !macros.parse_errors.is_empty(),
        "the fixture is meant to contain parse errors"
    );

    // Bundled and generated code: counted, not listed, and still part of the module.
    let vendored = scan("vendored_library");
    let hidden: Vec<(String, &str, usize)> = vendored
        .hidden
        .iter()
        .map(|h| {
            (
                h.path.file_name().unwrap().to_string_lossy().into_owned(),
                h.reason,
                h.findings,
            )
        })
        .collect();
    // Each hides its global (mutable-global-state) and the run-time write to it
    // (unlocked-static-write).
    assert_eq!(
        hidden,
        vec![
            ("libfoo".to_string(), "vendored", 2),
            ("tables_gen.h".to_string(), "generated", 2)
        ]
    );
    assert_eq!(
        vendored.modules[0].files.len(),
        3,
        "{:?}",
        vendored.modules[0].files
    );
    let with_vendored = analyze(&AnalyzeOptions {
        paths: vec![root.join("vendored_library")],
        include_vendored: true,
        ..Default::default()
    });
    assert_eq!(with_vendored.findings.len(), vendored.findings.len() + 4);

    // Version ranges come from #if branches.
    let compat = scan("version_branches");
    let interned = compat
        .findings
        .iter()
        .find(|f| f.symbol.as_deref() == Some("interned_names"))
        .unwrap();
    assert_eq!(interned.python.to_string(), "<3.12");
    assert_eq!(compat.modules[0].init, "multi-phase");
    assert_eq!(compat.modules[0].m_size.as_deref(), Some("0"));
}

#[test]
fn macro_values_select_versions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check/macro_values");
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![dir],
        ..Default::default()
    });
    let python = |symbol: &str| {
        analysis
            .findings
            .iter()
            .find(|f| f.symbol.as_deref() == Some(symbol))
            .map(|f| f.python.to_string())
            .unwrap_or_else(|| panic!("no finding for {symbol}"))
    };
    assert_eq!(python("old_python_types"), "<3.11");
    assert_eq!(python("new_python_types"), ">=3.11");
    assert_eq!(python("platform_cache"), "all Python versions");
    // From the header.
    assert_eq!(python("legacy_registry"), "<3.12");
}

#[test]
fn target_python_drops_findings_in_code_it_does_not_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check/version_branches");
    let for_312 = analyze(&AnalyzeOptions {
        paths: vec![dir.clone()],
        targets: vec![isolint::version::Target::new(isolint::version::py(3, 12))],
        ..Default::default()
    });
    // Nothing 3.12 compiles blocks a level, so only the hint that NOT_SUPPORTED undersells it.
    let names: Vec<&str> = for_312.findings.iter().map(|f| f.name).collect();
    assert_eq!(names, ["underclaimed-isolation"], "{:?}", for_312.findings);
    let for_311 = analyze(&AnalyzeOptions {
        paths: vec![dir],
        targets: vec![isolint::version::Target::new(isolint::version::py(3, 11))],
        ..Default::default()
    });
    assert_eq!(for_311.findings.len(), 1);
}

/// (line, column, rule, symbol) of every finding of a scan of `dir`.
fn placed_findings(dir: &Path) -> Vec<(usize, usize, String, String)> {
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![dir.to_path_buf()],
        ..Default::default()
    });
    let mut out: Vec<_> = analysis
        .findings
        .iter()
        .map(|f| {
            (
                f.location.line,
                f.location.column,
                f.name.to_string(),
                f.symbol.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn crlf_and_lone_cr_files_give_the_findings_of_their_lf_version() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check");
    for (dir, file, break_) in [
        ("line_endings_crlf", "le_crlf.c", "\r\n"),
        ("line_endings_cr", "le_cr.c", "\r"),
    ] {
        let original = std::fs::read_to_string(root.join(dir).join(file)).unwrap();
        // The fixture must still hold its line endings (`.gitattributes` keeps them).
        assert!(original.contains(break_), "{file} lost its line endings");
        let lf = tempfile::tempdir().unwrap();
        std::fs::write(lf.path().join(file), original.replace(break_, "\n")).unwrap();
        let with_original = placed_findings(&root.join(dir));
        let with_lf = placed_findings(lf.path());
        assert!(!with_lf.is_empty());
        assert_eq!(with_original, with_lf, "{file}");
    }
}

#[test]
fn state_only_pythons_before_312_compile_is_info_unless_the_scan_targets_them() {
    use isolint::finding::Severity;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check/pre312_state");
    let scan = |targets: Vec<isolint::version::Target>| {
        analyze(&AnalyzeOptions {
            paths: vec![dir.clone()],
            targets,
            ..Default::default()
        })
    };
    let default = scan(Vec::new());
    assert!(
        default
            .findings
            .iter()
            .all(|f| f.severity == Severity::Info),
        "{:?}",
        default.findings
    );
    assert!(default
        .findings
        .iter()
        .all(|f| f.message.contains("blocks no level")));
    let verdict = serde_json::to_value(&default.modules[0]).unwrap();
    assert_eq!(
        verdict["verdict"]["supported"], "per-interpreter-gil",
        "{verdict}"
    );

    let old = scan(vec![isolint::version::Target::new(isolint::version::py(
        3, 10,
    ))]);
    let names: Vec<(&str, Severity)> = old.findings.iter().map(|f| (f.name, f.severity)).collect();
    assert!(
        names.contains(&("static-type-object", Severity::Warning)),
        "{names:?}"
    );
    assert!(
        names.contains(&("overclaimed-isolation", Severity::Error)),
        "{names:?}"
    );
}
