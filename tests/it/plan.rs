//! `isolint plan` and `isolint fix --stage 0`: Markdown snapshots, the generated C compiled
//! against the CPython headers found on this machine, and the end-to-end proof on a legacy
//! single-phase module.
//!
//! Pythons come from `ISOLINT_TEST_PYTHONS` (paths separated by `:`), else from `pyenv`, else
//! `python3` on PATH.

use isolint::plan::data::{CodeKind, PlanReport};
use isolint::plan::{
    fix_stage0, plan_report, render_json, render_markdown, run_fix, CacheArgs, FixArgs, FixOutcome,
};
use isolint::{analyze, AnalyzeOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CHECK_FIXTURES: &[&str] = &[
    "immutable_tables",
    "isolated_multi_phase",
    "legacy_single_phase",
    "macro_heavy",
    "multi_phase_exec_static",
    "split_module",
    "static_local_caches",
    "version_branches",
];

fn analysis_of(path: &Path) -> isolint::Analysis {
    analyze(&AnalyzeOptions {
        paths: vec![path.to_path_buf()],
        model: true,
        ..Default::default()
    })
}

fn check_fixture(name: &str) -> PathBuf {
    PathBuf::from("fixtures/check").join(name)
}

/// Copies of modules kept under fixtures/plan, so the snapshots do not move when the check
/// fixtures grow new cases.
const PLAN_FIXTURES: &[&str] = &[
    "isolated_multi_phase",
    "legacy_single_phase",
    "legacy_speedups",
    "multi_phase_exec_static",
    "split_module",
    "static_local_caches",
    "version_branches",
];

fn plan_dir(name: &str) -> PathBuf {
    PathBuf::from("fixtures/plan").join(name)
}

fn plan_fixture() -> PathBuf {
    plan_dir("legacy_speedups")
}

// ---------------------------------------------------------------- snapshots and shape

#[test]
fn markdown_snapshots() {
    for name in PLAN_FIXTURES {
        let report = plan_report(&analysis_of(&plan_dir(name)));
        insta::assert_snapshot!(format!("plan_{name}"), render_markdown(&report));
    }
}

#[test]
fn output_is_deterministic() {
    for name in CHECK_FIXTURES {
        let a = render_markdown(&plan_report(&analysis_of(&check_fixture(name))));
        let b = render_markdown(&plan_report(&analysis_of(&check_fixture(name))));
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn json_carries_the_plan() {
    let report = plan_report(&analysis_of(&plan_dir("legacy_single_phase")));
    let json: serde_json::Value =
        serde_json::from_str(&render_json(&report)).expect("plan JSON parses");
    let module = &json["modules"][0];
    assert_eq!(module["module"], "_speedups");
    assert_eq!(module["verdict"]["init_style"], "single-phase");
    assert!(module["verdict"]["honest_today"].is_null());
    let stages = module["stages"].as_array().expect("stages");
    assert_eq!(
        stages
            .iter()
            .map(|s| s["number"].as_u64().unwrap_or(99))
            .collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    // Stage 4 is free-threading: the counter `call_count` races without the GIL.
    assert_eq!(module["verdict"]["gil_honest_today"], "Py_MOD_GIL_USED");
    let free_threading: Vec<&str> = stages[4]["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| s["symbol"].as_str())
        .collect();
    assert!(free_threading.contains(&"call_count"), "{free_threading:?}");
    let fields: Vec<&str> = stages[1]["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter_map(|s| s["symbol"].as_str())
        .collect();
    for g in [
        "SpeedupsError",
        "cache",
        "callbacks",
        "call_count",
        "initialized",
        "Foo_Type",
    ] {
        assert!(fields.contains(&g), "{g} in {fields:?}");
    }
    assert!(!fields.contains(&"default_level"), "never written: stays");
    let accesses = stages[1]["accesses"].as_array().expect("accesses");
    assert!(accesses
        .iter()
        .any(|a| a["function"] == "speedups_count" && a["kind"] == "module-function"));
    let spec = stages[2]["code"][0]["code"].as_str().unwrap_or("");
    assert!(spec.contains("Py_TPFLAGS_DISALLOW_INSTANTIATION"), "{spec}");
    assert!(spec.contains("{Py_tp_members, Foo_members}"), "{spec}");
}

#[test]
fn verdicts() {
    let isolated = plan_report(&analysis_of(&plan_dir("isolated_multi_phase")));
    let v = &isolated.modules[0].verdict;
    assert_eq!(
        v.honest_today.as_deref(),
        Some("Py_MOD_PER_INTERPRETER_GIL_SUPPORTED")
    );
    assert!(v.blockers.is_empty());
    let halfway = plan_report(&analysis_of(&plan_dir("multi_phase_exec_static")));
    let v = &halfway.modules[0].verdict;
    assert_eq!(v.init_style, "multi-phase");
    assert!(!v.blockers.is_empty());
    assert_ne!(
        v.honest_today.as_deref(),
        Some("Py_MOD_PER_INTERPRETER_GIL_SUPPORTED")
    );
}

// ---------------------------------------------------------------- fix --stage 0

#[test]
fn fix_refuses_what_is_not_mechanical() {
    let fix = fix_stage0(&analysis_of(&plan_dir("legacy_single_phase")));
    match &fix.modules[0].outcome {
        FixOutcome::Refused(r) => assert!(r.contains("PyState_FindModule"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(fix.files.is_empty());
    let fix = fix_stage0(&analysis_of(&plan_dir("isolated_multi_phase")));
    assert_eq!(fix.modules[0].outcome, FixOutcome::AlreadyDone);
    assert!(fix.files.is_empty());
}

#[test]
fn fix_diff_is_the_expected_edit() {
    let fix = fix_stage0(&analysis_of(&plan_fixture()));
    assert_eq!(fix.modules[0].outcome, FixOutcome::Changed);
    let (path, old, new) = &fix.files[0];
    insta::assert_snapshot!(
        "fix_stage0_legacy_speedups",
        isolint::plan::unified_diff(path, old, new)
    );
}

// ---------------------------------------------------------------- Pythons and gcc

struct Python {
    exe: PathBuf,
    version: (u32, u32),
    include: PathBuf,
    ext_suffix: String,
}

fn python_eval(python: &Path, code: &str) -> Option<String> {
    let out = Command::new(python).args(["-c", code]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn candidates() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("ISOLINT_TEST_PYTHONS") {
        return list
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut found = Vec::new();
    if let Ok(out) = Command::new("pyenv").args(["versions", "--bare"]).output() {
        for version in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if !version.starts_with("3.") || version.contains('/') {
                continue;
            }
            let Ok(prefix) = Command::new("pyenv").args(["prefix", version]).output() else {
                continue;
            };
            let prefix = String::from_utf8_lossy(&prefix.stdout).trim().to_string();
            let python = Path::new(&prefix).join("bin/python3");
            if python.is_file() {
                found.push(python);
            }
        }
    }
    if found.is_empty() {
        found.push(PathBuf::from("python3"));
    }
    found
}

fn pythons() -> &'static [Python] {
    static PYTHONS: OnceLock<Vec<Python>> = OnceLock::new();
    PYTHONS.get_or_init(|| {
        let mut out = Vec::new();
        for exe in candidates() {
            let Some(info) = python_eval(
                &exe,
                "import sys,sysconfig;print(sys.version_info[0]);print(sys.version_info[1]);print(sysconfig.get_paths()['include']);print(sysconfig.get_config_var('EXT_SUFFIX'))",
            ) else {
                continue;
            };
            let lines: Vec<&str> = info.lines().collect();
            let (Some(major), Some(minor), Some(include), Some(suffix)) =
                (lines.first(), lines.get(1), lines.get(2), lines.get(3))
            else {
                continue;
            };
            let version = (major.parse().unwrap_or(0), minor.parse().unwrap_or(0));
            // The generated code targets 3.11 and later (stage 2 and 3 APIs).
            if version >= (3, 11) && Path::new(include).join("Python.h").is_file() {
                out.push(Python {
                    exe,
                    version,
                    include: PathBuf::from(include),
                    ext_suffix: suffix.to_string(),
                });
            }
        }
        out.sort_by_key(|p| p.version);
        out
    })
}

fn gcc(args: &[&str], what: &str) -> Result<(), String> {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .map_err(|e| format!("gcc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: gcc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const STRICT: &[&str] = &[
    "-Wall",
    "-Werror=implicit-function-declaration",
    "-Werror=incompatible-pointer-types",
    "-Werror=int-conversion",
    "-Werror=return-type",
];

fn compile_only(python: &Python, file: &Path, what: &str) -> Result<(), String> {
    let inc = format!("-I{}", python.include.display());
    let dir = format!("-I{}", file.parent().unwrap_or(Path::new(".")).display());
    let mut args = vec!["-fsyntax-only", "-std=gnu11", inc.as_str(), dir.as_str()];
    args.extend_from_slice(STRICT);
    let f = file.display().to_string();
    args.push(&f);
    gcc(&args, what)
}

/// The module's init file, with every compilable block of its plan appended.
fn with_generated(report: &PlanReport, module: usize) -> Option<(PathBuf, String)> {
    let m = report.modules.get(module)?;
    let mut text = std::fs::read_to_string(&m.path).ok()?;
    text.push_str("\n/* ---- generated by isolint plan ---- */\n");
    for stage in &m.stages {
        for block in stage
            .code
            .iter()
            .filter(|b| b.kind == CodeKind::Declarations)
        {
            text.push_str(&block.code);
            text.push('\n');
        }
    }
    Some((PathBuf::from(&m.path), text))
}

#[test]
fn generated_code_compiles() {
    let pythons = pythons();
    if pythons.is_empty() {
        eprintln!("generated_code_compiles skipped: no Python >= 3.11 with headers found");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut compiled = 0;
    let mut skipped = Vec::new();
    let dirs: Vec<PathBuf> = CHECK_FIXTURES
        .iter()
        .map(|n| check_fixture(n))
        .chain(PLAN_FIXTURES.iter().map(|n| plan_dir(n)))
        .collect();
    for dir in &dirs {
        let report = plan_report(&analysis_of(dir));
        for i in 0..report.modules.len() {
            let Some((path, text)) = with_generated(&report, i) else {
                continue;
            };
            // Next to the original, so its own includes resolve.
            let copy_dir = scratch
                .path()
                .join(format!("{}-{i}", dir.display()).replace('/', "_"));
            copy_tree(path.parent().unwrap_or(Path::new(".")), &copy_dir);
            let file = copy_dir.join(path.file_name().unwrap_or_default());
            // Some check fixtures are deliberately not complete modules: only those whose
            // original compiles can show that the generated code does.
            if pythons
                .iter()
                .any(|py| compile_only(py, &file, "original").is_err())
            {
                skipped.push(path.display().to_string());
                continue;
            }
            let generated_from = text
                .lines()
                .position(|l| l.contains("---- generated by isolint plan ----"))
                .map_or(usize::MAX, |i| i + 1);
            std::fs::write(&file, text).expect("write");
            // The plan's own code must pass the scan it came from: no warning or error points
            // into what it generated.
            for f in analysis_of(&copy_dir).findings.iter().filter(|f| {
                f.path.ends_with(path.file_name().unwrap_or_default())
                    && f.location.line > generated_from
                    && f.severity >= isolint::finding::Severity::Warning
            }) {
                failures.push(format!(
                    "{}: the generated code at line {} gets {} [{}]: {}",
                    path.display(),
                    f.location.line,
                    f.rule,
                    f.name,
                    f.message
                ));
            }
            for py in pythons {
                compiled += 1;
                let what = format!("{} on {}.{}", path.display(), py.version.0, py.version.1);
                if let Err(e) = compile_only(py, &file, &what) {
                    failures.push(e);
                }
            }
        }
        // Stage 0 as applied, on a copy.
        let copy_dir = scratch
            .path()
            .join(format!("{}-fix", dir.display()).replace('/', "_"));
        copy_tree(dir, &copy_dir);
        let fix = fix_stage0(&analysis_of(&copy_dir));
        for (path, _, new) in &fix.files {
            std::fs::write(path, new).expect("write");
            for py in pythons {
                compiled += 1;
                let what = format!(
                    "stage 0 of {} on {}.{}",
                    path.display(),
                    py.version.0,
                    py.version.1
                );
                if let Err(e) = compile_only(py, path, &what) {
                    failures.push(e);
                }
            }
        }
    }
    eprintln!(
        "compiled {compiled} units on {:?}; originals that do not compile: {skipped:?}",
        pythons.iter().map(|p| p.version).collect::<Vec<_>>()
    );
    assert!(compiled > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&p, to.join(entry.file_name())).expect("copy");
        }
    }
}

// ---------------------------------------------------------------- the end-to-end proof

fn build_module(py: &Python, dir: &Path) -> Result<(), String> {
    build_named(py, dir, "_speedups", &[])
}

/// Builds `dir/NAME.c` into `dir/NAME<ext suffix>` with the strict flags and `extra`.
fn build_named(py: &Python, dir: &Path, name: &str, extra: &[&str]) -> Result<(), String> {
    build_sources(py, dir, name, &[&format!("{name}.c")], extra)
}

/// Builds the `sources` of `dir` into `dir/NAME<ext suffix>` with the strict flags and `extra`.
fn build_sources(
    py: &Python,
    dir: &Path,
    name: &str,
    sources: &[&str],
    extra: &[&str],
) -> Result<(), String> {
    let out = dir.join(format!("{name}{}", py.ext_suffix));
    let _ = std::fs::remove_file(&out);
    let inc = format!("-I{}", py.include.display());
    let srcs: Vec<String> = sources
        .iter()
        .map(|s| dir.join(s).display().to_string())
        .collect();
    let o = out.display().to_string();
    let mut args = vec!["-shared", "-fPIC", "-O0", inc.as_str()];
    args.extend_from_slice(STRICT);
    args.extend_from_slice(extra);
    args.extend(["-o", o.as_str()]);
    args.extend(srcs.iter().map(String::as_str));
    gcc(
        &args,
        &format!("build for {}.{}", py.version.0, py.version.1),
    )
}

/// The C sources and headers of `dir`, with their text.
fn sources_of(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "c" || e == "h"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read");
            (p, text)
        })
        .collect();
    out.sort();
    out
}

/// A second `fix --all` over what the first wrote: its diff is empty (every stage has nothing
/// to do) and `--apply` writes nothing.
fn assert_second_run_changes_nothing(dir: &Path, args: &FixArgs) {
    let first = sources_of(dir);
    for stage in 0..=3 {
        let again = isolint::plan::fix_stage(&analysis_of(dir), stage);
        assert!(
            again.files.is_empty(),
            "{}: a second run's stage {stage} changes {:?}",
            dir.display(),
            again.files.iter().map(|(p, _, _)| p).collect::<Vec<_>>()
        );
    }
    run_fix(args);
    assert_eq!(sources_of(dir), first, "a second `fix --all --apply` wrote");
}

/// How the exercise of a fixed module may end in `verify` besides passing.
struct Allowed<F: Fn((u32, u32), &str) -> bool> {
    /// `(version, check)` is refused by the module's own declaration.
    declared_refusal: F,
    /// The exercise uses `datetime`: CPython's `_datetime` may free twice when two own-GIL
    /// interpreters that imported it are destroyed at the same time (CPython gh-136423; on
    /// 3.13.0 a module that never names `datetime`, with an exercise that only uses it, crashes
    /// `concurrent` that way in about half the runs). Such a crash is no fault of the module.
    datetime: bool,
    /// The module declares no `Py_MOD_GIL_NOT_USED`: it needs the GIL, and `threads` (which
    /// runs the exercise with the GIL off whatever the module declares) tests nothing it claims.
    keeps_gil: bool,
}

/// `Allowed::declared_refusal` as a plain function.
type RefusedWhen = fn((u32, u32), &str) -> bool;

/// Every claim the fixed module makes holds: nothing is refused, the GIL is not needed.
const NOTHING_REFUSED: Allowed<RefusedWhen> = Allowed {
    declared_refusal: |_, _| false,
    datetime: false,
    keeps_gil: false,
};

/// The legacy module `name` (from `sources` in `dir`) builds with `-Werror` on every test
/// Python and `behaviour.py` runs, before `fix` touches it.
fn assert_legacy_module_works(dir: &Path, name: &str, sources: &[&str]) {
    let behaviour = dir.join("behaviour.py").display().to_string();
    for py in pythons() {
        build_sources(py, dir, name, sources, &["-Werror"]).expect("the legacy module builds");
        run_py(py, &[&behaviour], dir).expect("the legacy module behaves");
    }
}

/// `fix --all --apply` on `dir`, which refuses nothing; the arguments, for a second run.
fn fix_all_applied(dir: &Path) -> FixArgs {
    let args = FixArgs {
        paths: vec![dir.to_path_buf()],
        stage: 0,
        all: true,
        apply: true,
        cache: no_cache(),
    };
    assert_eq!(run_fix(&args), 0, "nothing is refused");
    args
}

/// The fixed module `name` (from `sources` in `dir`) builds with `-Werror` on every test Python,
/// `behaviour.py` passes, and `verify --exercise` ends as `allowed` says.
fn assert_fixed_module_works<F: Fn((u32, u32), &str) -> bool>(
    dir: &Path,
    name: &str,
    sources: &[&str],
    allowed: Allowed<F>,
) {
    let behaviour = dir.join("behaviour.py").display().to_string();
    for py in pythons() {
        build_sources(py, dir, name, sources, &["-Werror"]).expect("the fixed module builds");
        let out = run_py(py, &[&behaviour], dir).expect("the fixed module behaves");
        assert!(out.contains("behaviour ok"), "{out}");
    }
    assert_verify_passes(dir, name, allowed);
}

/// `isolint verify --exercise behaviour.py` on the fixed module `name` built in `dir`, with
/// every test Python from 3.12: each check passes (or does not apply), or ends as `allowed`
/// says.
fn assert_verify_passes<F: Fn((u32, u32), &str) -> bool>(
    dir: &Path,
    name: &str,
    allowed: Allowed<F>,
) {
    let behaviour = dir.join("behaviour.py");
    let mut ran = 0;
    for py in pythons().iter().filter(|p| p.version >= (3, 12)) {
        let module = dir.join(format!("{name}{}", py.ext_suffix));
        let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
            .args(["verify", "--format", "json", "--python"])
            .arg(&py.exe)
            .arg("--exercise")
            .arg(&behaviour)
            .arg(&module)
            .output()
            .expect("run isolint verify");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let cells: Vec<&serde_json::Value> = report["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["results"].as_array().into_iter().flatten())
            .flat_map(|r| r["cells"].as_array().into_iter().flatten())
            .collect();
        assert!(!cells.is_empty(), "{name}: no check ran: {report}");
        for cell in cells {
            let check = cell["check"].as_str().unwrap_or("?");
            let status = cell["status"].as_str().unwrap_or("?");
            let stage = cell["stage"].as_str().unwrap_or("");
            let expected = status == "pass"
                || status == "n/a"
                || (status == "refused" && (allowed.declared_refusal)(py.version, check))
                || (allowed.keeps_gil && check == "threads")
                || (allowed.datetime
                    && check == "concurrent"
                    && status == "crashed"
                    && stage.starts_with("concurrent: destroy"));
            assert!(
                expected,
                "{name} on {}.{}: {check} is {status}: {cell}",
                py.version.0, py.version.1
            );
        }
        ran += 1;
    }
    if ran == 0 {
        eprintln!("{name}: verify not run: no test Python from 3.12");
    }
}

fn run_py(py: &Python, args: &[&str], dir: &Path) -> Result<String, String> {
    let out = Command::new(&py.exe)
        .args(args)
        .env("PYTHONPATH", dir)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn fix_stage0_end_to_end() {
    let pythons = pythons();
    if pythons.is_empty() {
        eprintln!("fix_stage0_end_to_end skipped: no Python >= 3.11 with headers found");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("legacy_speedups");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(plan_fixture().join("_speedups.c"), dir.join("_speedups.c")).expect("copy");
    let behaviour = std::fs::canonicalize(plan_fixture().join("behaviour.py")).expect("path");
    let subinterp = std::fs::canonicalize(plan_fixture().join("subinterp.py")).expect("path");
    let behaviour = behaviour.display().to_string();
    let subinterp = subinterp.display().to_string();
    let dir_s = dir.display().to_string();

    // Before: builds, behaves, and 3.12+ refuses it as a single-phase module.
    for py in pythons {
        build_module(py, &dir).expect("the legacy module builds");
        run_py(py, &[&behaviour], &dir).expect("the legacy module behaves");
        if py.version >= (3, 12) {
            let out = run_py(py, &[&subinterp, &dir_s], &dir).expect("probe runs");
            assert!(out.starts_with("refused"), "{out}");
            assert!(!out.contains("multi-phase"), "{out}");
        }
    }

    // The fix, applied; a second run changes nothing.
    let args = FixArgs {
        paths: vec![dir.join("_speedups.c")],
        stage: 0,
        all: false,
        apply: true,
        cache: no_cache(),
    };
    assert_eq!(run_fix(&args), 0);
    let fixed = std::fs::read_to_string(dir.join("_speedups.c")).expect("read");
    assert!(fixed.contains("return PyModuleDef_Init(&speedups_module);"));
    assert_eq!(run_fix(&args), 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("_speedups.c")).expect("read"),
        fixed,
        "a second run changes nothing"
    );
    let again = fix_stage0(&analysis_of(&dir));
    assert_eq!(again.modules[0].outcome, FixOutcome::AlreadyDone);
    assert!(again.files.is_empty());

    // After: builds, behaves the same, and 3.12+ refuses it through NOT_SUPPORTED.
    for py in pythons {
        build_module(py, &dir).expect("the fixed module builds");
        let out = run_py(py, &[&behaviour], &dir).expect("the fixed module behaves");
        assert!(out.contains("behaviour ok"));
        if py.version >= (3, 12) {
            let out = run_py(py, &[&subinterp, &dir_s], &dir).expect("probe runs");
            let lines: Vec<&str> = out.lines().collect();
            assert!(
                lines.first().is_some_and(|l| l.starts_with("refused")),
                "{out}"
            );
            // Slot 3 (Py_mod_multiple_interpreters) = 0 (NOT_SUPPORTED).
            assert_eq!(lines.last().copied(), Some("multi-phase 0"), "{out}");
        }
    }
    eprintln!(
        "end to end on {:?}",
        pythons.iter().map(|p| p.version).collect::<Vec<_>>()
    );
}

/// Writes the plan (Markdown) and the stage-0 outcome of each folder in `ISOLINT_PLAN_CORPUS`
/// (`:`-separated) into `ISOLINT_PLAN_OUT`. A tool for reading plans of real code; ignored by
/// default.
#[test]
#[ignore]
fn corpus_plans() {
    let (Ok(list), Ok(out)) = (
        std::env::var("ISOLINT_PLAN_CORPUS"),
        std::env::var("ISOLINT_PLAN_OUT"),
    ) else {
        return;
    };
    std::fs::create_dir_all(&out).expect("mkdir");
    for dir in list.split(':').filter(|d| !d.is_empty()) {
        let start = std::time::Instant::now();
        let analysis = analysis_of(Path::new(dir));
        let report = plan_report(&analysis);
        let fix = fix_stage0(&analysis);
        let name = Path::new(dir)
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        std::fs::write(
            Path::new(&out).join(format!("{name}.md")),
            render_markdown(&report),
        )
        .expect("write");
        let diff: String = fix
            .files
            .iter()
            .map(|(p, old, new)| isolint::plan::unified_diff(p, old, new))
            .collect();
        std::fs::write(Path::new(&out).join(format!("{name}.diff")), diff).expect("write");
        let outcomes: Vec<String> = fix
            .modules
            .iter()
            .map(|m| format!("{} {:?}", m.module, m.outcome))
            .collect();
        eprintln!(
            "{name}: {} modules, {:?}; stage 0: {outcomes:?}",
            report.modules.len(),
            start.elapsed()
        );
    }
}

/// A module in a scratch folder, fixed in memory.
fn fix_of(source: &str) -> (FixOutcome, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("_m.c"), source).expect("write");
    let fix = fix_stage0(&analysis_of(dir.path()));
    let outcome = fix.modules[0].outcome.clone();
    let new = fix.files.first().map(|f| f.2.clone()).unwrap_or_default();
    (outcome, new)
}

const GUARDED: &str = r#"#include <Python.h>
static PyObject *Error;
static struct PyModuleDef m_def = {PyModuleDef_HEAD_INIT, "_m", NULL, -1, NULL};
PyMODINIT_FUNC
PyInit__m(void)
{
    PyObject *m;
    if ((m = PyModule_Create(&m_def)) == NULL) {
        return NULL;
    }
    Error = PyErr_NewException("_m.Error", NULL, NULL);
    if (PyModule_AddObject(m, "Error", Error) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
"#;

#[test]
fn fix_takes_a_guarded_creation() {
    let (outcome, new) = fix_of(GUARDED);
    assert_eq!(outcome, FixOutcome::Changed);
    assert!(!new.contains("PyModule_Create"), "{new}");
    assert!(!new.contains("Py_XDECREF(m)"), "{new}");
    assert!(!new.contains("PyObject *m;"), "{new}");
    assert!(new.contains("static int\nm_exec(PyObject *m)"), "{new}");
    assert!(new.contains("0, NULL,\n    m_def_slots}"), "{new}");
    assert!(new.contains("return PyModuleDef_Init(&m_def);"), "{new}");
}

#[test]
fn fix_refuses_a_module_variable_set_again() {
    let source = GUARDED.replace("Py_XDECREF(m);", "Py_XDECREF(m);\n        m = NULL;");
    match fix_of(&source).0 {
        FixOutcome::Refused(r) => assert!(r.contains("assigned again"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let source = GUARDED.replace("return m;", "return Error;");
    match fix_of(&source).0 {
        FixOutcome::Refused(r) => assert!(r.contains("returns `Error`"), "{r}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Styles real legacy modules are written in, all in one `PyInit`: a Python 2 branch around
/// the creation, `return (NULL);`, a definition mixing `PyModuleDef_HEAD_INIT,` with
/// designated fields, `PyUnstable_Module_SetGIL` under `#ifdef Py_GIL_DISABLED`, and a platform
/// branch that must stay where it is.
const STYLES: &str = r#"#include <Python.h>

static PyObject *StylesError;

static PyMethodDef styles_methods[] = {{NULL, NULL, 0, NULL}};

static struct PyModuleDef styles_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_styles",
    .m_size = -1,
    .m_methods = styles_methods,
};

PyMODINIT_FUNC
PyInit__styles(void)
{
    PyObject *m;
#if PY_MAJOR_VERSION >= 3
    m = PyModule_Create(&styles_def);
#else
    m = Py_InitModule3("_styles", styles_methods, "old");
#endif
    if (m == NULL)
        return (NULL);
#ifdef Py_GIL_DISABLED
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
#endif
    StylesError = PyErr_NewException("_styles.Error", NULL, NULL);
    if (StylesError == NULL) {
        Py_DECREF(m);
        return (NULL);
    }
#ifdef MS_WINDOWS
    if (PyModule_AddIntConstant(m, "windows", 1) < 0) {
        return NULL;
    }
#else
    if (PyModule_AddIntConstant(m, "windows", 0) < 0) {
        return NULL;
    }
#endif
    if (PyModule_AddObject(m, "Error", StylesError) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return (m);
}
"#;

/// How the main interpreter sees `NAME`'s definition: `single-phase`, or `multi-phase` with
/// its `Py_mod_multiple_interpreters` and `Py_mod_gil` values.
const SLOTS_OF: &str = r#"
import ctypes, importlib, sys
mod = importlib.import_module(sys.argv[1])
get_def = ctypes.pythonapi.PyModule_GetDef
get_def.restype = ctypes.c_void_p
get_def.argtypes = [ctypes.py_object]
ptr = get_def(mod)
word = ctypes.sizeof(ctypes.c_void_p)
# PyModuleDef_Base (the object header, m_init, m_index, m_copy), m_name, m_doc, m_size,
# m_methods, m_slots; the header is larger on free-threaded builds.
slots = ctypes.c_void_p.from_address(ptr + object.__basicsize__ + 7 * word).value
if not slots:
    print("single-phase")
else:
    found = {}
    at = slots
    while True:
        slot = ctypes.c_int.from_address(at).value
        if slot == 0:
            break
        found[slot] = ctypes.c_void_p.from_address(at + word).value or 0
        at += 2 * word
    print("multi-phase", found.get(3), found.get(4))
print("windows", mod.windows, mod.Error.__name__)
"#;

#[test]
fn fix_takes_common_legacy_styles_and_the_result_builds() {
    let (outcome, new) = fix_of(STYLES);
    assert_eq!(outcome, FixOutcome::Changed, "{new}");
    // The Python 2 branch is gone; the Python 3 one lost its directives.
    assert!(!new.contains("Py_InitModule3"), "{new}");
    assert!(!new.contains("PY_MAJOR_VERSION"), "{new}");
    // `return (NULL)` became `return -1`, `return (m)` became `return 0`.
    assert!(
        !new.contains("return (NULL)") && !new.contains("return (m)"),
        "{new}"
    );
    assert!(
        new.contains("return -1;") && new.contains("return 0;"),
        "{new}"
    );
    // SetGIL is a slot now, and the `#ifdef` that held only it is gone.
    assert!(!new.contains("PyUnstable_Module_SetGIL(m"), "{new}");
    assert!(!new.contains("Py_GIL_DISABLED"), "{new}");
    assert!(new.contains("{Py_mod_gil, Py_MOD_GIL_NOT_USED}"), "{new}");
    // The platform branch stays, in exec.
    assert!(new.contains("#ifdef MS_WINDOWS"), "{new}");
    // The mixed definition gets a designated `m_slots` and `m_size = 0`.
    assert!(new.contains(".m_slots = styles_def_slots"), "{new}");
    assert!(new.contains(".m_size = 0,"), "{new}");

    let pythons = pythons();
    if pythons.is_empty() {
        eprintln!("build part skipped: no Python >= 3.11 with headers found");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("_styles.c"), &new).expect("write");
    let script = dir.path().join("slots_of.py");
    std::fs::write(&script, SLOTS_OF).expect("write");
    let script = script.display().to_string();
    for py in pythons {
        build_named(py, dir.path(), "_styles", &["-Werror"]).expect("the fixed module builds");
        let out = run_py(py, &[&script, "_styles"], dir.path()).expect("it imports");
        let gil = if py.version >= (3, 13) { "1" } else { "None" };
        let interpreters = if py.version >= (3, 12) { "0" } else { "None" };
        assert!(
            out.starts_with(&format!("multi-phase {interpreters} {gil}\n")),
            "{}.{}: {out}",
            py.version.0,
            py.version.1
        );
        assert!(out.contains("windows 0 Error"), "{out}");
    }
}

#[test]
fn fix_names_every_refusal_at_once_with_its_line() {
    let source = STYLES
        .replace("return (m);", "return StylesError;")
        .replace(
            "    StylesError = PyErr_NewException",
            "    m = NULL;\n    StylesError = PyErr_NewException",
        )
        .replace(
            "    .m_methods = styles_methods,\n",
            "    .m_methods = styles_methods,\n    0,\n",
        );
    let FixOutcome::Refused(reasons) = fix_of(&source).0 else {
        panic!("expected a refusal");
    };
    let lines: Vec<&str> = reasons.lines().collect();
    assert!(lines.len() >= 3, "{reasons}");
    for wanted in [
        "a positional field after a designated one",
        "is assigned again",
        "returns `StylesError`",
    ] {
        let line = lines
            .iter()
            .find(|l| l.contains(wanted))
            .unwrap_or_else(|| panic!("no `{wanted}` in:\n{reasons}"));
        assert!(line.starts_with("line "), "{line}");
    }
}

#[test]
fn fix_diff_applies_from_the_repository_root_whatever_path_was_given() {
    if Command::new("git").arg("--version").output().is_err() {
        eprintln!("skipped: no git");
        return;
    }
    let repo = tempfile::tempdir().expect("tempdir");
    let git = |args: &[&str], dir: &Path| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        out
    };
    git(&["init", "-q"], repo.path());
    let src = repo.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("_styles.c"), STYLES).expect("write");
    for arg in [".", "./", "_styles.c", "./_styles.c"] {
        let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
            .args(["fix", "--stage", "0", arg])
            .current_dir(&src)
            .output()
            .expect("isolint runs");
        let diff = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            diff.starts_with("--- a/src/_styles.c\n+++ b/src/_styles.c\n"),
            "{arg}: {diff}"
        );
        let patch = repo.path().join("fix.diff");
        std::fs::write(&patch, &diff).expect("write");
        git(&["apply", "--check", "fix.diff"], repo.path());
    }
}

/// The in-process `run_fix` calls leave the facts cache alone: they run in parallel, and the
/// cache's default place is the current folder (the repository's).
fn no_cache() -> CacheArgs {
    CacheArgs {
        no_cache: true,
        cache_dir: None,
    }
}

#[test]
fn plan_and_fix_share_the_facts_cache_with_check() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let cache = scratch.path().join("cache");
    let cached = speedups_copy(&scratch.path().join("cached"));
    let uncached = speedups_copy(&scratch.path().join("uncached"));
    let isolint = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
            .args(args)
            .current_dir(scratch.path())
            .env_remove("ISOLINT_NO_CACHE")
            .env_remove("ISOLINT_CACHE_DIR")
            .output()
            .expect("run isolint");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = cached.to_str().unwrap();
    let cache_dir = cache.to_str().unwrap();
    // The plan with the cache (cold, then warm) is the plan without it.
    let plan = |cache: &[&str]| {
        let mut args = vec!["plan", "--format", "json", path];
        args.extend_from_slice(cache);
        let (code, out, err) = isolint(&args);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    let without = plan(&["--no-cache"]);
    assert!(!cache.exists(), "--no-cache wrote a cache");
    assert_eq!(plan(&["--cache-dir", cache_dir]), without);
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "plan wrote no facts cache"
    );
    assert_eq!(plan(&["--cache-dir", cache_dir]), without);
    // What plan stored is what check reads: nothing is parsed again.
    let (_, _, err) = isolint(&["check", "-v", "--cache-dir", cache_dir, path]);
    assert!(err.contains("1 files from the cache, 0 parsed"), "{err}");
    // `fix --all --apply` with the cache (each stage reads the one before's files again, the
    // changed one parsed, the others decoded) writes what it writes without it.
    let (code, _, err) = isolint(&["fix", "--all", "--apply", "--cache-dir", cache_dir, path]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = isolint(&[
        "fix",
        "--all",
        "--apply",
        "--no-cache",
        uncached.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let fixed = std::fs::read_to_string(&cached).expect("read");
    assert_ne!(
        fixed,
        std::fs::read_to_string(plan_fixture().join("_speedups.c")).unwrap()
    );
    assert_eq!(fixed, std::fs::read_to_string(&uncached).expect("read"));
}

// ------------------------------------------------ fix: CR LF, vendored code, stale files

fn speedups_copy(under: &Path) -> PathBuf {
    std::fs::create_dir_all(under).expect("mkdir");
    let file = under.join("_speedups.c");
    std::fs::copy(plan_fixture().join("_speedups.c"), &file).expect("copy");
    file
}

#[test]
fn fix_keeps_crlf_line_endings() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let lf_file = speedups_copy(&scratch.path().join("lf"));
    let crlf_file = speedups_copy(&scratch.path().join("crlf"));
    let lf_text = std::fs::read_to_string(&lf_file).expect("read");
    std::fs::write(&crlf_file, lf_text.replace('\n', "\r\n")).expect("write");

    let lf = fix_stage0(&analysis_of(&lf_file));
    let crlf = fix_stage0(&analysis_of(&crlf_file));
    assert_eq!(crlf.modules[0].outcome, FixOutcome::Changed);
    let (_, _, new_crlf) = &crlf.files[0];
    let (_, _, new_lf) = &lf.files[0];
    // Every line break of the result is CR LF, and apart from them the edit is the same.
    assert_eq!(
        new_crlf.matches('\n').count(),
        new_crlf.matches("\r\n").count()
    );
    assert_eq!(&new_crlf.replace("\r\n", "\n"), new_lf);
}

#[test]
fn fix_refuses_vendored_code() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = speedups_copy(&scratch.path().join("third_party").join("speedups"));
    let fix = fix_stage0(&analysis_of(scratch.path()));
    match &fix.modules[0].outcome {
        FixOutcome::Refused(why) => assert!(why.contains("vendored"), "{why}"),
        other => panic!("a vendored module was changed: {other:?}"),
    }
    assert!(fix.files.is_empty());
    assert!(file.exists());
}

#[test]
fn fix_apply_writes_nothing_over_a_file_changed_since_the_scan() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = speedups_copy(&scratch.path().join("m"));
    let before = std::fs::read_to_string(&file).expect("read");
    let fix = fix_stage0(&analysis_of(&file));
    assert_eq!(fix.files.len(), 1);
    // An editor saves the file between the scan and the write.
    std::fs::write(&file, format!("{before}/* saved meanwhile */\n")).expect("write");
    let err = isolint::plan::write_fix(&fix).expect_err("a stale edit is refused");
    assert!(err.contains("changed since it was scanned"), "{err}");
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .ends_with("/* saved meanwhile */\n"));
}

// ------------------------------------------------------------------ fix --stage 3, --all

fn findings_of(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = analysis_of(dir)
        .findings
        .iter()
        .map(|f| (f.name.to_string(), f.symbol.clone().unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// A lazily filled global that stage 1 moved into module state keeps its race between threads
/// of one interpreter: `unlocked-lazy-init` then names the field (the global's name, or
/// `function_name` for a function-local static), which is no finding the fix added.
fn carried_race(before: &[(String, String)], finding: &(String, String)) -> bool {
    finding.0 == "unlocked-lazy-init"
        && before.iter().any(|(rule, symbol)| {
            rule == "unlocked-lazy-init"
                && (finding.1 == *symbol || finding.1.ends_with(&format!("_{symbol}")))
        })
}

const CLAIM_RULES: [&str; 5] = [
    "overclaimed-isolation",
    "overclaimed-gil",
    "underclaimed-isolation",
    "missing-multiple-interpreters-slot",
    "missing-gil-slot",
];

#[test]
fn fix_stage3_declares_what_the_verdict_allows() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("m");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // One module that declares nothing although nothing blocks either level, one that claims
    // both levels over a racy static: stage 3 raises the first and refuses to lower the second.
    for name in ["no_slot.c", "ft_racy.c"] {
        std::fs::copy(Path::new("fixtures/verify").join(name), dir.join(name)).expect("copy");
    }
    let before = findings_of(&dir);
    assert!(
        before.iter().any(|(rule, _)| rule == "overclaimed-gil"),
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .any(|(rule, _)| rule == "missing-multiple-interpreters-slot"),
        "{before:?}"
    );

    let args = FixArgs {
        paths: vec![dir.clone()],
        stage: 3,
        all: false,
        apply: true,
        cache: no_cache(),
    };
    let racy_before = std::fs::read_to_string(dir.join("ft_racy.c")).expect("read");
    let planned = isolint::plan::fix_stage(&analysis_of(&dir), 3);
    let racy = planned
        .modules
        .iter()
        .find(|m| m.module == "ft_racy")
        .expect("ft_racy");
    match &racy.outcome {
        FixOutcome::Refused(why) => {
            assert!(
                why.contains("allows only `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`"),
                "{why}"
            );
            assert!(why.contains("mutable-global-state `scratch`"), "{why}");
            assert!(why.contains("unlocked-lazy-init `scratch`"), "{why}");
        }
        other => panic!("an overclaim was rewritten: {other:?}"),
    }
    assert_eq!(run_fix(&args), 1, "a refusal is exit 1");
    assert_eq!(
        std::fs::read_to_string(dir.join("ft_racy.c")).expect("read"),
        racy_before
    );
    let no_slot = std::fs::read_to_string(dir.join("no_slot.c")).expect("read");
    assert!(no_slot.contains(
        "#if PY_VERSION_HEX >= 0x030C0000\n    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},\n#endif"
    ));
    assert!(no_slot.contains(
        "#if PY_VERSION_HEX >= 0x030D0000\n    {Py_mod_gil, Py_MOD_GIL_NOT_USED},\n#endif"
    ));

    // The re-scan: no claim finding is left on the raised module, and nothing new appeared.
    let after = findings_of(&dir);
    let claims: Vec<_> = after
        .iter()
        .filter(|(rule, symbol)| CLAIM_RULES.contains(&rule.as_str()) && symbol.contains("no_slot"))
        .collect();
    assert!(claims.is_empty(), "{claims:?}");
    for finding in &after {
        assert!(before.contains(finding), "stage 3 added {finding:?}");
    }
    // A second run changes nothing.
    let again = isolint::plan::fix_stage(&analysis_of(&dir), 3);
    assert!(again.files.is_empty());
    assert!(again
        .modules
        .iter()
        .all(|m| m.outcome == FixOutcome::AlreadyDone || m.module == "ft_racy"));

    // The result compiles with the strict flags on every Python found.
    for py in pythons() {
        for name in ["no_slot.c", "ft_racy.c"] {
            compile_only(py, &dir.join(name), name).expect("stage 3 output compiles");
        }
    }
}

#[test]
fn fix_stage3_refuses_single_phase_and_all_runs_stage0_first() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = speedups_copy(&scratch.path().join("m"));
    let fix = isolint::plan::fix_stage(&analysis_of(&file), 3);
    match &fix.modules[0].outcome {
        FixOutcome::Refused(why) => assert!(why.contains("stage 0"), "{why}"),
        other => panic!("stage 3 on a single-phase module: {other:?}"),
    }
    let args = FixArgs {
        paths: vec![file.clone()],
        stage: 0,
        all: true,
        apply: true,
        cache: no_cache(),
    };
    assert_eq!(run_fix(&args), 0);
    let fixed = std::fs::read_to_string(&file).expect("read");
    assert!(fixed.contains("PyModuleDef_Init(&speedups_module)"));
    // Stages 1 and 2 move its objects and its static type into module state; the plain C
    // globals left block only the per-interpreter GIL, and stage 3 declares the level below.
    assert!(
        fixed.contains("{Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},"),
        "{fixed}"
    );
    assert!(!fixed.contains("static PyTypeObject"), "{fixed}");
    assert_eq!(run_fix(&args), 0);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), fixed);
}

#[test]
fn fix_keeps_the_line_break_after_a_returned_creation() {
    // crcmod 1.7: `PyInit` ends in `return PyModule_Create(&moduleDef);`.
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("_ret.c");
    std::fs::write(
        &file,
        "#include <Python.h>\n\nstatic struct PyModuleDef def = {\n    PyModuleDef_HEAD_INIT,\n    \"_ret\",\n    NULL,\n    -1,\n    NULL\n};\n\nPyMODINIT_FUNC\nPyInit__ret(void)\n{\n    return PyModule_Create(&def);\n}\n",
    )
    .expect("write");
    let fix = fix_stage0(&analysis_of(&file));
    assert_eq!(fix.modules[0].outcome, FixOutcome::Changed);
    let (_, _, new) = &fix.files[0];
    assert!(new.contains("    return 0;\n}\n"), "{new}");
    assert!(!new.contains("return 0;}"), "{new}");
}

// ---------------------------------------------------------------- stage 1: module state

fn fix_fixture(name: &str) -> PathBuf {
    PathBuf::from("fixtures/fix").join(name)
}

/// `fix --all --apply` on a legacy module with object globals, a static-local cache, a static
/// type and a C-library callback: stage 1 moves what every user can reach through the module,
/// keeps and names the two globals it cannot, builds with `-Werror`, behaves the same, a second
/// run changes nothing, and the re-scan finds nothing the edits added.
#[test]
fn fix_stage1_moves_object_globals_into_module_state() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("legacy_caches");
    copy_tree(&fix_fixture("legacy_caches"), &dir);
    let file = dir.join("_caches.c");
    assert_legacy_module_works(&dir, "_caches", &["_caches.c"]);
    let before = findings_of(&dir);

    // Stage 1 needs stage 0 first.
    match &isolint::plan::fix_stage(&analysis_of(&dir), 1).modules[0].outcome {
        FixOutcome::Refused(why) => assert!(why.contains("stage 0"), "{why}"),
        other => panic!("stage 1 on a single-phase module: {other:?}"),
    }
    let args = FixArgs {
        paths: vec![file.clone()],
        stage: 0,
        all: true,
        apply: true,
        cache: no_cache(),
    };
    assert_eq!(run_fix(&args), 1, "two globals stay: exit 1");
    let fixed = std::fs::read_to_string(&file).expect("read");
    for moved in ["CachesError", "memo", "hooks[2]"] {
        assert!(
            fixed.contains(&format!("    PyObject *{moved};  /* was the global")),
            "{moved}: {fixed}"
        );
        assert!(
            !fixed.contains(&format!("static PyObject *{moved}")),
            "{fixed}"
        );
    }
    assert!(fixed.contains(
        "PyObject *caches_hello_greeting;  /* was `static greeting` in `caches_hello` */"
    ));
    assert!(!fixed.contains("static PyObject *greeting"), "{fixed}");
    assert!(fixed.contains("PyDict_SetItem(get_caches_state(self)->memo, key, value)"));
    assert!(fixed.contains("sizeof(caches_state),"), "{fixed}");
    // PyModule_AddObject steals the exception: the state keeps a reference of its own.
    assert!(fixed.contains("Py_XINCREF(get_caches_state(m)->CachesError);\n    if (get_caches_state(m)->CachesError == NULL || PyModule_AddObject"), "{fixed}");
    // A static helper gets the module from its callers.
    assert!(
        fixed.contains("raise_error(PyObject *module, const char *message)"),
        "{fixed}"
    );
    assert!(
        fixed.contains("return raise_error(self, \"failed on purpose\");"),
        "{fixed}"
    );
    assert!(fixed.contains("PyErr_SetString(get_caches_state(module)->CachesError, message);"));
    // A borrowed reference stored in the state gets a reference of its own.
    assert!(fixed.contains("    get_caches_state(m)->sentinel = Py_None;\n    Py_XINCREF(get_caches_state(m)->sentinel);"), "{fixed}");
    // Stage 2: the static type `Counter` is a heap type kept in the state, created where it
    // was readied, with the GC protocol, and visited and cleared with the state.
    assert!(!fixed.contains("static PyTypeObject"), "{fixed}");
    assert!(
        fixed.contains("static PyType_Spec Counter_Type_spec = {"),
        "{fixed}"
    );
    assert!(
        fixed.contains(
            ".flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,"
        ),
        "{fixed}"
    );
    assert!(
        fixed.contains("    Py_VISIT(Py_TYPE(self));\n    return 0;"),
        "{fixed}"
    );
    assert!(
        fixed.contains("    PyTypeObject *Counter_Type;  /* was the static type `Counter_Type` */"),
        "{fixed}"
    );
    assert!(fixed.contains("if ((get_caches_state(m)->Counter_Type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Counter_Type_spec, NULL)) == NULL) {"), "{fixed}");
    assert!(
        fixed.contains(
            "PyModule_AddObject(m, \"Counter\", (PyObject *)get_caches_state(m)->Counter_Type)"
        ),
        "{fixed}"
    );
    assert!(
        fixed.contains("    Py_VISIT(state->Counter_Type);\n    return 0;"),
        "{fixed}"
    );
    assert!(
        fixed.contains("    Py_CLEAR(state->Counter_Type);\n    return 0;"),
        "{fixed}"
    );
    assert!(matches!(
        isolint::plan::fix_stage(&analysis_of(&dir), 2).modules[0].outcome,
        FixOutcome::AlreadyDone
    ));
    // What no function with the module at hand uses stays, and says why.
    assert!(fixed.contains("static PyObject *descending = NULL;"));
    assert!(fixed.contains("static PyObject *default_name = NULL;"));
    match &isolint::plan::fix_stage(&analysis_of(&dir), 1).modules[0].outcome {
        FixOutcome::Refused(why) => {
            assert!(
                why.contains("line 10: `descending` stays a global: `compare_longs` has no caller in the module and no module argument: it is likely a callback of a C library"),
                "{why}"
            );
            assert!(
                why.contains("`default_name` stays a global: `Counter_name` is a method of a type"),
                "{why}"
            );
        }
        other => panic!("the second run: {other:?}"),
    }
    // A second run changes nothing.
    assert_eq!(run_fix(&args), 1);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), fixed);
    assert!(isolint::plan::fix_stage(&analysis_of(&dir), 1)
        .files
        .is_empty());
    assert_second_run_changes_nothing(&dir, &args);

    // The re-scan: every finding left was there before (the moved globals' are gone), but for
    // the lazily filled `greeting`, whose race between threads moved with it into the state:
    // `unlocked-lazy-init` now names its field.
    let after = findings_of(&dir);
    let carried = (
        "unlocked-lazy-init".to_string(),
        "caches_hello_greeting".to_string(),
    );
    assert!(after.contains(&carried), "{after:?}");
    assert!(carried_race(&before, &carried), "{before:?}");
    for finding in &after {
        assert!(
            before.contains(finding) || carried_race(&before, finding),
            "the fix added {finding:?}"
        );
    }
    for gone in ["memo", "hooks", "CachesError", "greeting", "Counter_Type"] {
        assert!(!after.iter().any(|(_, s)| s == gone), "{gone}: {after:?}");
    }

    // Two globals stay, so the module declares `NOT_SUPPORTED`: own-GIL interpreters refuse it
    // (and legacy ones too on a free-threaded build, which checks every sub-interpreter), and
    // with no `Py_MOD_GIL_NOT_USED` a free-threaded build turns the GIL back on.
    assert_fixed_module_works(
        &dir,
        "_caches",
        &["_caches.c"],
        Allowed {
            declared_refusal: |_, check| !matches!(check, "main-import" | "two-instances"),
            datetime: false,
            keeps_gil: true,
        },
    );
}

/// Stage 2 on two static types, one the base of the other: the heap types are created in exec
/// (the base first and given as `bases`), a method reaches them through its type, a module
/// function through its module (in both branches of an `#if`), the dealloc and traverse follow
/// the GC protocol, and the module behaves as before, subclasses and cycles included.
#[test]
fn fix_stage2_turns_static_types_into_heap_types_that_build_and_behave() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("heap_types");
    copy_tree(&fix_fixture("heap_types"), &dir);
    let file = dir.join("_shapes.c");
    assert_legacy_module_works(&dir, "_shapes", &["_shapes.c"]);
    let before = findings_of(&dir);
    assert!(before
        .iter()
        .any(|(r, s)| r == "static-type-object" && s == "Circle_Type"));
    // Stage 2 needs stage 0 first.
    match &isolint::plan::fix_stage(&analysis_of(&dir), 2).modules[0].outcome {
        FixOutcome::Refused(why) => assert!(why.contains("stage 0"), "{why}"),
        other => panic!("stage 2 on a single-phase module: {other:?}"),
    }
    let args = fix_all_applied(&dir);
    let fixed = std::fs::read_to_string(&file).expect("read");
    assert!(!fixed.contains("PyTypeObject Shape_Type"), "{fixed}");
    assert!(!fixed.contains("PyTypeObject Circle_Type"), "{fixed}");
    // A new state (stage 1 had no global to move) holds both types.
    assert!(
        fixed.contains("    PyTypeObject *Shape_Type;  /* was the static type `Shape_Type` */"),
        "{fixed}"
    );
    assert!(fixed.contains("sizeof(shapes_state),"), "{fixed}");
    // The base is created first and given as the derived type's base.
    let base = fixed
        .find("PyType_FromModuleAndSpec(m, &Shape_Type_spec, NULL)")
        .expect("the base is created");
    let derived = fixed
        .find("PyType_FromModuleAndSpec(m, &Circle_Type_spec, (PyObject *)get_shapes_state(m)->Shape_Type)")
        .expect("the derived type is created on its base");
    assert!(base < derived);
    assert!(!fixed.contains("{Py_tp_base,"), "{fixed}");
    // A method reaches the module through its type, declared above it.
    assert!(
        fixed.contains("static struct PyModuleDef shapes_module;"),
        "{fixed}"
    );
    assert!(fixed.contains("PyObject_TypeCheck(other, get_shapes_state(PyType_GetModuleByDef(Py_TYPE(self), &shapes_module))->Shape_Type)"), "{fixed}");
    // A module function through its module, in both branches of the `#if`.
    assert!(
        fixed.contains("Py_IS_TYPE(obj, get_shapes_state(module)->Circle_Type)"),
        "{fixed}"
    );
    assert!(
        fixed.contains("Py_TYPE(obj) == get_shapes_state(module)->Circle_Type"),
        "{fixed}"
    );
    assert!(
        fixed.contains("PyObject_GC_New(CircleObject, get_shapes_state(module)->Circle_Type)"),
        "{fixed}"
    );
    assert!(
        fixed.contains("PyModule_AddType(m, get_shapes_state(m)->Circle_Type)"),
        "{fixed}"
    );
    // The GC protocol: the traverse visits the type, the dealloc frees through `tp_free` and
    // releases the type; the derived type inherits both with the GC flag.
    assert!(fixed.contains("Shape_traverse(ShapeObject *self, visitproc visit, void *arg)\n{\n    Py_VISIT(Py_TYPE(self));"), "{fixed}");
    assert!(
        fixed.contains("    PyTypeObject *tp = Py_TYPE(self);\n    PyObject_GC_UnTrack(self);"),
        "{fixed}"
    );
    assert!(
        fixed.contains("    tp->tp_free((PyObject *)self);\n    Py_DECREF(tp);"),
        "{fixed}"
    );
    assert!(fixed.contains("    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,\n    .slots = Circle_Type_slots,"), "{fixed}");
    // Nothing process-global is left: stage 3 declares the per-interpreter GIL.
    assert!(
        fixed.contains("{Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},"),
        "{fixed}"
    );
    assert!(
        fixed.contains("    Py_VISIT(state->Shape_Type);\n    Py_VISIT(state->Circle_Type);"),
        "{fixed}"
    );

    // A second run changes nothing.
    assert_eq!(run_fix(&args), 0);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), fixed);
    assert_second_run_changes_nothing(&dir, &args);

    // The re-scan: the static types are gone, and the fix added no finding.
    let after = findings_of(&dir);
    for finding in &after {
        assert!(before.contains(finding), "the fix added {finding:?}");
    }
    assert!(
        !after.iter().any(|(r, _)| r == "static-type-object"),
        "{after:?}"
    );
    assert_fixed_module_works(&dir, "_shapes", &["_shapes.c"], NOTHING_REFUSED);
}

/// Stage 2 on a type whose fields are set at run time, as ciso8601 and regex set theirs: the
/// assignments before `PyType_Ready` become slots of the spec (placed before the function that
/// set them, since they name functions defined after the static type), the base known only at
/// run time becomes the creation's `bases`, the statements go, and the module builds with
/// `-Wall -Werror` and behaves the same; `check` then says `per-interpreter-gil`.
#[test]
fn fix_stage2_folds_fields_set_at_run_time_into_the_spec() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("runtime_fields");
    copy_tree(&fix_fixture("runtime_fields"), &dir);
    let file = dir.join("_offsets.c");
    assert_legacy_module_works(&dir, "_offsets", &["_offsets.c"]);
    let before = findings_of(&dir);
    assert!(before
        .iter()
        .any(|(r, s)| r == "static-type-object" && s == "Offset_Type"));
    let args = fix_all_applied(&dir);
    let fixed = std::fs::read_to_string(&file).expect("read");
    assert!(!fixed.contains("PyTypeObject Offset_Type"), "{fixed}");
    assert!(!fixed.contains("Offset_Type.tp_"), "{fixed}");
    // Every field set at run time is a slot; the base is not (a file-scope array cannot
    // hold what `PyDateTimeAPI` points to).
    for slot in [
        "{Py_tp_doc, \"a fixed offset from UTC, in seconds\"},",
        "{Py_tp_init, (initproc)Offset_init},",
        "{Py_tp_members, Offset_members},",
        "{Py_tp_methods, Offset_methods},",
        "{Py_tp_new, PyType_GenericNew},",
        "{Py_tp_repr, (reprfunc)Offset_repr},",
    ] {
        assert!(fixed.contains(slot), "{slot}: {fixed}");
    }
    assert!(!fixed.contains("{Py_tp_base,"), "{fixed}");
    assert!(
        fixed.contains(".flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,"),
        "{fixed}"
    );
    // The spec comes after the functions and tables it names.
    let spec = fixed
        .find("static PyType_Slot Offset_Type_slots[]")
        .expect("the slots");
    assert!(
        fixed
            .find("static PyMemberDef Offset_members[]")
            .expect("members")
            < spec
    );
    // Created where it was readied, on the base read there.
    assert!(fixed.contains("if ((get_offsets_state(m)->Offset_Type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Offset_Type_spec, (PyObject *)PyDateTimeAPI->TZInfoType)) == NULL) {"), "{fixed}");
    // The helper that allocates instances gets the module from its caller.
    assert!(
        fixed.contains("new_offset(PyObject *module, int offset)"),
        "{fixed}"
    );
    assert!(
        fixed.contains("return new_offset(module, (int)offset);"),
        "{fixed}"
    );
    // The datetime C API cannot be imported in an isolated interpreter on 3.12
    // (`datetime-capi-isolation`): per-interpreter-GIL from 3.13, a shared GIL for 3.12.
    assert!(
        fixed.contains(
            "#if PY_VERSION_HEX >= 0x030D0000\n    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},\n#elif PY_VERSION_HEX >= 0x030C0000\n"
        ) && fixed.contains("    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},\n#endif\n"),
        "{fixed}"
    );

    // A second run changes nothing.
    assert_eq!(run_fix(&args), 0);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), fixed);
    assert_second_run_changes_nothing(&dir, &args);

    // The re-scan: the static type is gone and nothing was added; the module says
    // `per-interpreter-gil` (its declaration for 3.12 is the shared GIL).
    let after = findings_of(&dir);
    for finding in &after {
        assert!(before.contains(finding), "the fix added {finding:?}");
    }
    assert!(
        !after.iter().any(|(r, _)| r == "static-type-object"),
        "{after:?}"
    );
    let report = plan_report(&analysis_of(&dir));
    let v = &report.modules[0].verdict;
    assert_eq!(
        v.honest_today.as_deref(),
        Some("Py_MOD_PER_INTERPRETER_GIL_SUPPORTED")
    );
    assert!(v.blockers.is_empty(), "{:?}", v.blockers);
    // For 3.12 the module declares a shared GIL (the datetime C API): own-GIL interpreters
    // refuse it there.
    assert_fixed_module_works(
        &dir,
        "_offsets",
        &["_offsets.c"],
        Allowed {
            declared_refusal: |version, check| {
                version < (3, 13) && matches!(check, "isolated-import" | "concurrent")
            },
            datetime: true,
            keeps_gil: false,
        },
    );
}

/// Stage 2 on a type defined in the second file of a module, with fields set at run time
/// there: its spec stays in that file, created where it was readied (by a function the first
/// file calls with the module) into the state's place, which the first file exports through
/// one function; `new_zone`, which the first file called without the module, gets it in its
/// definition, its header prototype and each call. It builds with `-Wall -Werror`, behaves the
/// same, and `check` says `per-interpreter-gil` with no finding.
#[test]
fn fix_stage2_converts_a_type_defined_in_another_file_of_the_module() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("type_in_other_file");
    copy_tree(&fix_fixture("type_in_other_file"), &dir);
    let sources = ["_zones.c", "zone.c"];
    assert_legacy_module_works(&dir, "_zones", &sources);
    let before = findings_of(&dir);
    assert!(before
        .iter()
        .any(|(r, s)| r == "static-type-object" && s == "Zone_Type"));
    let args = fix_all_applied(&dir);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect("read");
    let (main, zone, header) = (read("_zones.c"), read("zone.c"), read("zone.h"));
    // The first file keeps the state and exports the type's place in it.
    assert!(
        main.contains("    PyTypeObject *Zone_Type;  /* was the static type `Zone_Type` */"),
        "{main}"
    );
    assert!(
        main.contains("PyTypeObject **\nzones_state_Zone_Type(PyObject *module)\n{\n    return &get_zones_state(module)->Zone_Type;\n}"),
        "{main}"
    );
    // A helper whose first parameter already is the module passes it on; exec too.
    assert!(
        main.contains("return new_zone(self, sign * hours * 3600);"),
        "{main}"
    );
    assert!(main.contains("utc = new_zone(m, 0);"), "{main}");
    assert!(
        header.contains("new_zone(PyObject *module, int seconds);"),
        "{header}"
    );
    // The second file: the spec, with the fields set at run time as slots, created in place.
    assert!(!zone.contains("PyTypeObject Zone_Type"), "{zone}");
    assert!(!zone.contains("Zone_Type.tp_"), "{zone}");
    assert!(
        zone.contains("PyTypeObject **zones_state_Zone_Type(PyObject *module);"),
        "{zone}"
    );
    assert!(zone.contains("{Py_tp_new, PyType_GenericNew},"), "{zone}");
    assert!(zone.contains("{Py_tp_methods, Zone_methods},"), "{zone}");
    assert!(
        zone.contains("new_zone(PyObject *module, int seconds)"),
        "{zone}"
    );
    assert!(
        zone.contains("PyObject_GC_New(ZoneObject, (*zones_state_Zone_Type(module)))"),
        "{zone}"
    );
    assert!(zone.contains("if (((*zones_state_Zone_Type(module)) = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Zone_Type_spec, NULL)) == NULL) {"), "{zone}");
    assert!(
        main.contains("{Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},"),
        "{main}"
    );

    // A second run changes nothing.
    assert_eq!(run_fix(&args), 0);
    assert_eq!(read("_zones.c"), main);
    assert_eq!(read("zone.c"), zone);
    assert_eq!(read("zone.h"), header);
    assert_second_run_changes_nothing(&dir, &args);

    // The re-scan finds nothing at all; the verdict is the per-interpreter GIL.
    let after = findings_of(&dir);
    assert!(after.is_empty(), "{after:?}");
    let report = plan_report(&analysis_of(&dir));
    let v = &report.modules[0].verdict;
    assert_eq!(
        v.honest_today.as_deref(),
        Some("Py_MOD_PER_INTERPRETER_GIL_SUPPORTED")
    );
    assert_fixed_module_works(&dir, "_zones", &sources, NOTHING_REFUSED);
}

/// `fix --all --apply` on a legacy module whose code differs by Python version: the global
/// only Pythons before 3.12 define moves into the state under its `#if` (and is visited and
/// cleared under it), the module functions read it in their own `#if` branches, the `#if`
/// branches of `PyInit` move into exec unchanged, the static type (whose member table spells a
/// member differently from 3.12) becomes a heap type; it builds with `-Werror` and behaves the
/// same on every test Python, `check` finds nothing, a second run changes nothing, and
/// `verify --exercise` passes.
#[test]
fn fix_all_keeps_version_branches_and_the_result_builds_on_every_python() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("version_branches");
    copy_tree(&fix_fixture("version_branches"), &dir);
    let file = dir.join("_versions.c");
    assert_legacy_module_works(&dir, "_versions", &["_versions.c"]);
    let before = findings_of(&dir);
    assert!(before
        .iter()
        .any(|(r, s)| r == "static-type-object" && s == "Tick_Type"));
    let args = fix_all_applied(&dir);
    let fixed = std::fs::read_to_string(&file).expect("read");
    // The global of one branch: its field, its visit and its clear keep the condition.
    for kept in [
        "#if PY_VERSION_HEX < 0x030C0000\n    PyObject *zero;  /* was the global `zero` */\n#endif\n",
        "#if PY_VERSION_HEX < 0x030C0000\n    Py_VISIT(state->zero);\n#endif\n",
        "#if PY_VERSION_HEX < 0x030C0000\n    Py_CLEAR(state->zero);\n#endif\n",
        // Its reader, in the same branch of a module function.
        "#if PY_VERSION_HEX < 0x030C0000\n    return Py_NewRef(get_versions_state(module)->zero);\n#else\n    return PyLong_FromLong(0);\n#endif\n",
        // PyInit's branches, now in exec.
        "#if PY_VERSION_HEX < 0x030C0000\n    get_versions_state(m)->zero = PyNumber_Long(Py_False);\n    if (get_versions_state(m)->zero == NULL) {\n        return -1;\n    }\n#endif\n",
        "#if PY_VERSION_HEX >= 0x030C0000\n    if (PyModule_AddIntConstant(m, \"IMMORTAL_SMALL_INTS\", 1) < 0) {\n        return -1;\n    }\n#else\n    if (PyModule_AddIntConstant(m, \"IMMORTAL_SMALL_INTS\", 0) < 0) {\n        return -1;\n    }\n#endif\n",
        // The call chosen by version is untouched; the cached object it falls back to moved.
        "#if PY_VERSION_HEX >= 0x030D0000\n    if (PyObject_GetOptionalAttr(obj, name, &value) < 0) {",
        "        return Py_NewRef(get_versions_state(module)->missing);\n    }\n    return value;",
        // The member table's branches stay as they were; the spec points at the table.
        "#if PY_VERSION_HEX >= 0x030C0000\n    {\"limit\", Py_T_LONG,",
        "    {Py_tp_members, Tick_members},\n",
        "PyObject_GC_New(TickObject, get_versions_state(module)->Tick_Type)",
        "    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},\n",
        "#if PY_VERSION_HEX >= 0x030D0000\n    {Py_mod_gil, Py_MOD_GIL_NOT_USED},\n#endif\n",
    ] {
        assert!(fixed.contains(kept), "{kept}\n---\n{fixed}");
    }
    assert!(!fixed.contains("static PyObject *zero"), "{fixed}");
    assert!(!fixed.contains("static PyTypeObject"), "{fixed}");
    assert_second_run_changes_nothing(&dir, &args);

    let after = findings_of(&dir);
    assert!(after.is_empty(), "{after:?}");
    assert_fixed_module_works(&dir, "_versions", &["_versions.c"], NOTHING_REFUSED);
}

/// A static type whose initializer chooses a field by `#if` stays static: the refusal names the
/// directive, its line and the field it guards. The same choice made in a macro converts.
#[test]
fn fix_stage2_names_the_if_between_a_types_fields() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path().join("version_branches");
    copy_tree(&fix_fixture("version_branches"), &dir);
    let file = dir.join("_versions.c");
    let original = std::fs::read_to_string(&file).expect("read");
    let plain = "    .tp_flags = Py_TPFLAGS_DEFAULT,\n";
    assert!(original.contains(plain));
    let branched = "#if PY_VERSION_HEX >= 0x030C0000\n    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,\n#else\n    .tp_flags = Py_TPFLAGS_DEFAULT,\n#endif\n";
    let line = original[..original.find(plain).expect("the flags")]
        .matches('\n')
        .count()
        + 1;
    let stage0 = FixArgs {
        paths: vec![dir.clone()],
        stage: 0,
        all: false,
        apply: true,
        cache: no_cache(),
    };
    std::fs::write(&file, original.replace(plain, branched)).expect("write");
    run_fix(&stage0);
    match &isolint::plan::fix_stage(&analysis_of(&dir), 2).modules[0].outcome {
        FixOutcome::Refused(why) => assert!(
            why.contains(&format!("its initializer has `#if PY_VERSION_HEX >= 0x030C0000` between its fields, line {line} (before `tp_flags`)")),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let by_macro = "#if PY_VERSION_HEX >= 0x030C0000\n#define TICK_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE)\n#else\n#define TICK_FLAGS Py_TPFLAGS_DEFAULT\n#endif\n";
    let with_macro = original
        .replace(plain, "    .tp_flags = TICK_FLAGS,\n")
        .replace(
            "typedef struct {\n    PyObject_HEAD",
            &format!("{by_macro}\ntypedef struct {{\n    PyObject_HEAD"),
        );
    std::fs::write(&file, with_macro).expect("write");
    run_fix(&stage0);
    let fix = isolint::plan::fix_stage(&analysis_of(&dir), 2);
    assert!(
        matches!(fix.modules[0].outcome, FixOutcome::Changed),
        "{:?}",
        fix.modules[0].outcome
    );
    assert!(
        fix.files[0]
            .2
            .contains(".flags = TICK_FLAGS | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,"),
        "{}",
        fix.files[0].2
    );
}

/// A type in another file whose function has a caller without the module (a C callback in
/// the first file), or is named by a macro, has no way to the module the edit can give: it
/// stays, with the reason.
#[test]
fn fix_stage2_keeps_a_type_of_another_file_whose_user_has_no_module() {
    let cases = [
        (
            "static PyMethodDef zones_methods[] = {",
            "int\nzones_callback(void)\n{\n    PyObject *z = new_zone(1);\n    Py_XDECREF(z);\n    return z != NULL;\n}\n\nstatic PyMethodDef zones_methods[] = {",
            "its caller: `zones_callback` has no caller in the module",
        ),
        (
            "#include \"zone.h\"\n",
            "#include \"zone.h\"\n#define NOON_ZONE() new_zone(12 * 3600)\n",
            "(the macro `NOON_ZONE` names it, and macros are not rewritten)",
        ),
    ];
    for (from, to, reason) in cases {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join("m");
        copy_tree(&fix_fixture("type_in_other_file"), &dir);
        let main = std::fs::read_to_string(dir.join("_zones.c")).expect("read");
        assert!(main.contains(from));
        std::fs::write(dir.join("_zones.c"), main.replacen(from, to, 1)).expect("write");
        let fixed0 = FixArgs {
            paths: vec![dir.clone()],
            stage: 0,
            all: false,
            apply: true,
            cache: no_cache(),
        };
        assert_eq!(run_fix(&fixed0), 0);
        let fix = isolint::plan::fix_stage(&analysis_of(&dir), 2);
        match &fix.modules[0].outcome {
            FixOutcome::Refused(said) | FixOutcome::Partial(said) => {
                assert!(said.contains("`new_zone` (in `"), "{said}");
                assert!(said.contains(reason), "{reason}\n{said}");
                assert!(
                    said.contains("(the static type `Zone_Type` stays)"),
                    "{said}"
                );
            }
            other => panic!("Zone_Type stays: {other:?}"),
        }
    }
}

/// A field set at run time folds only when the assignment is the same as the initializer:
/// each other shape keeps the type static, with its line and reason.
#[test]
fn fix_stage2_keeps_a_type_whose_run_time_fields_cannot_fold() {
    let cases: &[(&str, &str)] = &[
        (
            "    if (PyType_Ready(&T_Type) < 0) {\n        return -1;\n    }\n    T_Type.tp_new = PyType_GenericNew;\n",
            "line 23: it sets `T_Type.tp_new` after `PyType_Ready`",
        ),
        (
            "    T_Type.tp_flags |= Py_TPFLAGS_BASETYPE;\n    if (PyType_Ready(&T_Type) < 0) {\n        return -1;\n    }\n",
            "line 20: it updates `T_Type.tp_flags` at run time (not a plain `=`)",
        ),
        (
            "    PyTypeObject *base = (PyTypeObject *)PyExc_Exception;\n    T_Type.tp_base = base;\n    if (PyType_Ready(&T_Type) < 0) {\n        return -1;\n    }\n",
            "line 21: it sets `T_Type.tp_base` at run time to `base`, which the creation cannot read in its place",
        ),
        (
            "    T_Type.tp_hash = (hashfunc)PyObject_Hash(m);\n    if (PyType_Ready(&T_Type) < 0) {\n        return -1;\n    }\n",
            "line 20: it sets `T_Type.tp_hash` at run time to `(hashfunc)PyObject_Hash(m)`, not a constant a `PyType_Slot` can hold",
        ),
        (
            "#ifdef MS_WINDOWS\n    T_Type.tp_new = PyType_GenericNew;\n#endif\n    if (PyType_Ready(&T_Type) < 0) {\n        return -1;\n    }\n",
            "line 21: it sets `T_Type.tp_new` at run time under a condition",
        ),
    ];
    for (body, reason) in cases {
        let scratch = tempfile::tempdir().expect("tempdir");
        let file = scratch.path().join("m.c");
        std::fs::write(
            &file,
            format!(
                "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n\nstatic PyTypeObject T_Type = {{\n    PyVarObject_HEAD_INIT(NULL, 0)\n    .tp_name = \"m.T\",\n    .tp_basicsize = sizeof(PyObject),\n}};\n\nstatic PyObject *\nT_make(PyObject *module, PyObject *unused)\n{{\n    return PyType_GenericAlloc(&T_Type, 0);\n}}\n\n\nstatic int\nm_exec(PyObject *m)\n{{\n{body}    return PyModule_AddType(m, &T_Type);\n}}\n\n{M_MODULE_DEF}"
            ),
        )
        .expect("write");
        let fix = isolint::plan::fix_stage(&analysis_of(&file), 2);
        match &fix.modules[0].outcome {
            FixOutcome::Partial(said) | FixOutcome::Refused(said) => {
                assert!(said.contains(reason), "{reason}\n{said}");
                assert!(said.contains("(the static type `T_Type` stays)"), "{said}");
            }
            other => panic!("{reason}: {other:?}"),
        }
    }
}

/// Stage 2 converts what it can and names each type it leaves with its line and reason: a
/// macro names one, another has a field set at run time; and it says when the dealloc it
/// rewrote freed a GC object with `PyObject_Del` (a latent bug, now `tp_free`).
/// A GC static type whose dealloc frees with `PyObject_Del` (a latent bug stage 2 fixes).
const BOX_FREED_WITH_PYOBJECT_DEL: &str = r#"#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *item;
} BoxObject;

static int
Box_traverse(BoxObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->item);
    return 0;
}

static void
Box_dealloc(BoxObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->item);
    PyObject_Del(self);
}

static PyTypeObject Box_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "m.Box",
    .tp_basicsize = sizeof(BoxObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)Box_dealloc,
    .tp_traverse = (traverseproc)Box_traverse,
    .tp_new = PyType_GenericNew,
};
"#;

/// The module definition of the stage-2 test modules, around their `m_exec`.
const M_MODULE_DEF: &str = r#"static PyModuleDef_Slot m_slots[] = {
    {Py_mod_exec, m_exec},
    {0, NULL},
};

static struct PyModuleDef m_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "m",
    .m_size = 0,
    .m_slots = m_slots,
};

PyMODINIT_FUNC
PyInit_m(void)
{
    return PyModuleDef_Init(&m_def);
}
"#;

/// A latent bug fixed on the way is said, but it is no refusal: every type converted, so the
/// outcome is a full change and `fix` exits 0.
#[test]
fn fix_stage2_a_latent_bug_fixed_on_the_way_is_not_a_partial_run() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("m.c");
    std::fs::write(
        &file,
        format!(
            "{BOX_FREED_WITH_PYOBJECT_DEL}{}{M_MODULE_DEF}",
            r#"
static int
m_exec(PyObject *m)
{
    if (PyType_Ready(&Box_Type) < 0) {
        return -1;
    }
    return PyModule_AddType(m, &Box_Type);
}

"#
        ),
    )
    .expect("write");
    let fix = isolint::plan::fix_stage(&analysis_of(&file), 2);
    match &fix.modules[0].outcome {
        FixOutcome::ChangedWithNotes(notes) => assert!(
            notes.contains("`Box_dealloc` freed a GC object with `PyObject_Del`"),
            "{notes}"
        ),
        other => panic!("Box converts in full: {other:?}"),
    }
    let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(["fix", "--stage", "2"])
        .arg(&file)
        .output()
        .expect("isolint runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("latent bugs fixed on the way"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PyType_FromModuleAndSpec"),
        "the diff is printed"
    );
}

#[test]
fn fix_stage2_names_the_types_it_leaves_and_the_latent_bug_it_fixed() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("m.c");
    std::fs::write(
        &file,
        format!("{BOX_FREED_WITH_PYOBJECT_DEL}{}{M_MODULE_DEF}", r#"
static PyTypeObject Tag_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "m.Tag",
    .tp_basicsize = sizeof(PyObject),
};
#define Tag_Check(o) PyObject_TypeCheck(o, &Tag_Type)

static PyTypeObject Late_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "m.Late",
    .tp_basicsize = sizeof(PyObject),
};

static int
m_exec(PyObject *m)
{
    if (PyModule_GetDict(m) != NULL) {
        Late_Type.tp_new = PyType_GenericNew;
    }
    if (PyType_Ready(&Box_Type) < 0 || PyType_Ready(&Tag_Type) < 0 || PyType_Ready(&Late_Type) < 0) {
        return -1;
    }
    return PyModule_AddType(m, &Box_Type);
}

"#),
    )
    .expect("write");
    let fix = isolint::plan::fix_stage(&analysis_of(&file), 2);
    let said = match &fix.modules[0].outcome {
        FixOutcome::Partial(said) => said.clone(),
        other => panic!("two types stay: {other:?}"),
    };
    assert!(
        said.contains("line 34: the macro `Tag_Check` uses it, and macros are not rewritten (the static type `Tag_Type` stays)"),
        "{said}"
    );
    assert!(
        said.contains("line 51: it sets `Late_Type.tp_new` at run time under a condition (`if`, a loop, `#if`): put the field in the initializer, or set it in every branch by hand (the static type `Late_Type` stays)"),
        "{said}"
    );
    assert!(
        said.contains(
            "fixed on the way: line 21: `Box_dealloc` freed a GC object with `PyObject_Del`"
        ),
        "{said}"
    );
    let new = &fix.files[0].2;
    assert!(
        new.contains("    tp->tp_free((PyObject *)self);\n    Py_DECREF(tp);\n}"),
        "{new}"
    );
    assert!(
        new.contains("Py_VISIT(Py_TYPE(self));\n    Py_VISIT(self->item);"),
        "{new}"
    );
    assert!(new.contains("static PyTypeObject Tag_Type = {"), "{new}");
    assert!(
        new.contains("Late_Type.tp_new = PyType_GenericNew;"),
        "{new}"
    );
    assert!(
        new.contains("PyModule_AddType(m, get_m_state(m)->Box_Type)"),
        "{new}"
    );
    std::fs::write(&file, new).expect("write");
    for py in pythons() {
        compile_only(py, &file, "after stage 2").expect("the result compiles");
    }
}

/// `fix --all --apply` on a copy of every plan fixture: whatever compiled before compiles after
/// with the strict flags, a second run changes nothing, and the re-scan finds nothing the fix
/// added.
#[test]
fn fix_all_on_every_plan_fixture_compiles_and_adds_no_finding() {
    for name in PLAN_FIXTURES {
        let scratch = tempfile::tempdir().expect("tempdir");
        let dir = scratch.path().join(name);
        copy_tree(&plan_dir(name), &dir);
        let sources: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "c"))
            .collect();
        let compiled_before: Vec<(usize, &PathBuf)> = pythons()
            .iter()
            .enumerate()
            .flat_map(|(i, py)| {
                sources
                    .iter()
                    .filter(move |s| compile_only(py, s, "before").is_ok())
                    .map(move |s| (i, s))
            })
            .collect();
        let before = findings_of(&dir);
        let args = FixArgs {
            paths: vec![dir.clone()],
            stage: 0,
            all: true,
            apply: true,
            cache: no_cache(),
        };
        run_fix(&args);
        let texts: Vec<String> = sources
            .iter()
            .map(|s| std::fs::read_to_string(s).expect("read"))
            .collect();
        run_fix(&args);
        for (s, t) in sources.iter().zip(&texts) {
            assert_eq!(
                &std::fs::read_to_string(s).expect("read"),
                t,
                "{name}: a second run changed {}",
                s.display()
            );
        }
        let after = findings_of(&dir);
        for finding in &after {
            assert!(
                before.contains(finding) || carried_race(&before, finding),
                "{name}: the fix added {finding:?}"
            );
        }
        for (i, s) in compiled_before {
            compile_only(&pythons()[i], s, name).expect("the fixed module compiles");
        }
    }
}

const GUARDED_GLOBAL: &str = r#"#include <Python.h>

#ifndef USE_CACHE
#define USE_CACHE 1
#endif

#if USE_CACHE
static PyObject *cache[4] = {NULL};
#endif
static PyObject *last = NULL;

static PyObject *
remember(PyObject *module, PyObject *arg)
{
    PyObject *copy = PyNumber_Long(arg);
    if (copy == NULL) {
        return NULL;
    }
    Py_XDECREF(last);
    last = copy;
#if USE_CACHE
    if (cache[0] == NULL) {
        cache[0] = PyLong_FromLong(0);
    }
#endif
    return Py_NewRef(arg);
}

static PyMethodDef g_methods[] = {
    {"remember", remember, METH_O, NULL},
    {NULL, NULL, 0, NULL}
};

static PyModuleDef_Slot g_slots[] = {
    {0, NULL}
};

static struct PyModuleDef g_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_g",
    .m_size = 0,
    .m_methods = g_methods,
    .m_slots = g_slots,
};

PyMODINIT_FUNC
PyInit__g(void)
{
    return PyModuleDef_Init(&g_def);
}
"#;

/// A global under `#if` keeps its condition in the state; a global that stores a local (a
/// reference handed over, or borrowed: not for the fix to guess) stays, with the reason.
#[test]
fn fix_stage1_keeps_an_if_around_the_field_and_refuses_a_stored_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("_g.c");
    std::fs::write(&file, GUARDED_GLOBAL).expect("write");
    let fix = isolint::plan::fix_stage(&analysis_of(dir.path()), 1);
    match &fix.modules[0].outcome {
        FixOutcome::Partial(why) => assert!(
            why.contains("`last` stays a global: `remember` (line 20) stores `copy`"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let new = &fix.files[0].2;
    assert!(
        new.contains(
            "#if USE_CACHE\n    PyObject *cache[4];  /* was the global `cache` */\n#endif\n"
        ),
        "{new}"
    );
    assert!(new.contains("#if USE_CACHE\n    for (size_t i = 0; i < Py_ARRAY_LENGTH(state->cache); i++) {\n        Py_VISIT(state->cache[i]);"), "{new}");
    // The `#if` block held only the declaration: it goes with it.
    assert!(!new.contains("#if USE_CACHE\n#endif"), "{new}");
    assert!(
        new.contains("get_g_state(module)->cache[0] = PyLong_FromLong(0);"),
        "{new}"
    );
    std::fs::write(&file, new).expect("write");
    for py in pythons() {
        for cache in ["-DUSE_CACHE=1", "-DUSE_CACHE=0"] {
            build_named(py, dir.path(), "_g", &["-Werror", cache]).expect("it builds");
        }
    }
}

#[test]
fn fix_all_does_not_lift_the_gil_over_a_race_it_moved_into_module_state() {
    // A lazily filled cache races between threads. Stage 1 moves it into module state, where
    // threads of one interpreter still share it: stage 3 must not declare `Py_MOD_GIL_NOT_USED`;
    // the multiple-interpreters slot is still declared.
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("_lazy.c");
    std::fs::write(
        &file,
        r#"#include <Python.h>

static PyObject *greeting = NULL;

static PyObject *
greet(PyObject *module, PyObject *unused)
{
    if (greeting == NULL) {
        greeting = PyUnicode_InternFromString("hello");
        if (greeting == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(greeting);
}

static PyMethodDef methods[] = {
    {"greet", greet, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef def = {
    PyModuleDef_HEAD_INIT, "_lazy", NULL, 0, methods, slots,
};

PyMODINIT_FUNC
PyInit__lazy(void)
{
    return PyModuleDef_Init(&def);
}
"#,
    )
    .expect("write");
    let before = analysis_of(&file);
    assert!(
        before
            .findings
            .iter()
            .any(|f| f.name == "unlocked-lazy-init"),
        "the fixture has the race"
    );
    let args = FixArgs {
        paths: vec![file.clone()],
        stage: 0,
        all: true,
        apply: true,
        cache: no_cache(),
    };
    run_fix(&args);
    let fixed = std::fs::read_to_string(&file).expect("read");
    assert!(
        fixed.contains("_lazy_state"),
        "stage 1 moved the cache: {fixed}"
    );
    assert!(
        fixed.contains("Py_mod_multiple_interpreters"),
        "stage 3 declared isolation: {fixed}"
    );
    assert!(!fixed.contains("Py_mod_gil"), "the GIL stays: {fixed}");
    // The rule sees the lazily filled state field: a later stage 3 on its own, and a second
    // `fix --all`, hold the GIL back too.
    let after = analysis_of(&file);
    let lazy: Vec<_> = after
        .findings
        .iter()
        .filter(|f| f.name == "unlocked-lazy-init")
        .collect();
    assert_eq!(lazy.len(), 1, "{:?}", after.findings);
    assert!(
        lazy[0].message.contains("`greeting` of the module state"),
        "{}",
        lazy[0].message
    );
    assert!(isolint::plan::fix_stage(&after, 3).files.is_empty());
    run_fix(&args);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), fixed);
}
