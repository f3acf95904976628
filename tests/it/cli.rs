//! The binary end to end: exit codes, the JSON document, and bad input of every kind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs from a folder of the source tree, so without the cache (`cache_lives_in_the_project`
/// covers it).
fn isolint(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(args)
        .current_dir(cwd)
        .env("ISOLINT_NO_CACHE", "1")
        .output()
        .expect("isolint runs")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn no_panic(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
}

#[test]
fn exit_codes() {
    let root = fixtures();
    assert_eq!(
        isolint(&["check", "legacy_single_phase"], &root)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        isolint(&["check", "isolated_multi_phase"], &root)
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        isolint(&["check", "--exit-zero", "legacy_single_phase"], &root)
            .status
            .code(),
        Some(0)
    );
    // A module the parser lost, or "0 modules" over a file naming `PyInit_`, is no clean run,
    // even when only errors fail.
    for dir in ["unparsable_file", "unparsable_no_module"] {
        let out = isolint(&["check", "--fail-on", "error", dir], &root);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(1), "{dir}");
    }
    // Only info-level findings are below the default failing level.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("a.c"),
        "static int level = 3;\nint get(void) { return level; }\n",
    )
    .unwrap();
    assert_eq!(isolint(&["check", "."], tmp.path()).status.code(), Some(0));
    assert_eq!(
        isolint(&["check", "--fail-on", "info", "."], tmp.path())
            .status
            .code(),
        Some(1)
    );
    // Usage errors.
    assert_eq!(
        isolint(&["check", "--select", "no-such-rule", "."], &root)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        isolint(&["check", "--python", "three", "."], &root)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(isolint(&["frobnicate"], &root).status.code(), Some(2));
    let missing = isolint(&["check", "does/not/exist"], &root);
    assert_eq!(missing.status.code(), Some(2));
    no_panic(&missing);
}

#[test]
fn json_document_has_the_documented_shape() {
    let out = isolint(
        &["check", "--format", "json", "legacy_single_phase"],
        &fixtures(),
    );
    let doc = json(&out);
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["tool"]["name"], "isolint");
    assert_eq!(doc["files_scanned"], 1);
    assert!(doc["errors"].as_array().unwrap().is_empty());
    let module = &doc["modules"][0];
    assert_eq!(module["name"], "_speedups");
    assert_eq!(module["init"], "single-phase");
    assert_eq!(module["m_size"], "-1");
    assert!(module["slots"]["multiple_interpreters"].is_null());
    let findings = doc["findings"].as_array().unwrap();
    let f = findings
        .iter()
        .find(|f| f["name"] == "static-type-object")
        .unwrap();
    assert_eq!(f["rule"], "ISO003");
    assert_eq!(f["symbol"], "Foo_Type");
    assert_eq!(f["path"], "legacy_single_phase/_speedups.c");
    assert!(f["function"].is_null());
    assert_eq!(f["module"], "_speedups");
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(33), Some(21))
    );
    assert_eq!(f["end_column"].as_u64(), Some(29));
    for key in [
        "severity",
        "message",
        "help",
        "end_line",
        "python",
        "uncertain",
    ] {
        assert!(f.get(key).is_some(), "missing {key}");
    }
    // Sorted by (path, line, column, rule), and byte-stable across runs.
    let keys: Vec<(String, u64, u64)> = findings
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
                f["column"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let again = isolint(
        &["check", "--format", "json", "legacy_single_phase"],
        &fixtures(),
    );
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn human_output_shows_source_help_and_summary() {
    let out = isolint(
        &["check", "--color", "never", "legacy_single_phase"],
        &fixtures(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("static PyTypeObject Foo_Type = {"), "{text}");
    assert!(text.contains("help: convert it to a heap type"), "{text}");
    assert!(text.contains("ISO003[static-type-object]"), "{text}");
    assert!(
        text.contains(
            "0 errors, 11 warnings, 2 infos in 1 module (1 file scanned, 0 with parse errors)"
        ),
        "{text}"
    );
}

#[test]
fn bad_inputs_are_reported_and_the_scan_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("good.c"),
        "static PyObject *cache;\nvoid f(void) { cache = PyDict_New(); }\n",
    )
    .unwrap();
    std::fs::write(dir.join("binary.c"), [0x7f, b'E', b'L', b'F', 0, 0, 1, 2]).unwrap();
    std::fs::write(
        dir.join("latin1.c"),
        b"/* caf\xe9 */\nstatic PyObject *x;\nvoid g(void) { x = NULL; }\n",
    )
    .unwrap();
    std::fs::write(dir.join("empty.c"), b"").unwrap();
    std::fs::write(
        dir.join("half.c"),
        "static PyObject *half;\nvoid h(void) { half = PyList_New(0); if (x) { y = ;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nested.c"),
        format!(
            "void n(void) {}{}\n",
            "{".repeat(20_000),
            "}".repeat(20_000)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("big.c"), vec![b'x'; 2048]).unwrap();
    std::fs::write(dir.join("ext.cpp"), "int x;\n").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir, dir.join("loop")).unwrap();
        let unreadable = dir.join("secret.c");
        std::fs::write(&unreadable, "int x;\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let out = isolint(
        &[
            "check",
            "--format",
            "json",
            "--max-file-size",
            "1024",
            ".",
            "missing.c",
        ],
        dir,
    );
    no_panic(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings in the good files still fail the run"
    );
    let doc = json(&out);
    let errors: Vec<String> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["path"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(has("binary.c: binary file"), "{errors:?}");
    assert!(has("latin1.c: not valid UTF-8"), "{errors:?}");
    assert!(
        has("big.c: file is 2048 bytes, over the 1024-byte limit"),
        "{errors:?}"
    );
    assert!(has("missing.c: no such file or directory"), "{errors:?}");
    let symbols: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["symbol"].as_str())
        .collect();
    for s in ["cache", "x", "half"] {
        assert!(
            symbols.contains(&s),
            "finding for `{s}` missing: {symbols:?}"
        );
    }
    assert_eq!(doc["skipped"][0]["path"], "./ext.cpp");
    assert!(doc["parse_errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["path"] == "./half.c"));
}

#[test]
fn a_huge_generated_file_is_scanned() {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::from("static const unsigned int table[] = {\n");
    while text.len() < 50 * 1024 * 1024 {
        text.push_str("0x1234, 0x5678, 0x9abc, 0xdef0, 0x1111, 0x2222, 0x3333, 0x4444,\n");
    }
    text.push_str(
        "};\nstatic PyObject *after_table;\nvoid f(void) { after_table = PyDict_New(); }\n",
    );
    std::fs::write(tmp.path().join("gen.c"), text).unwrap();
    let out = isolint(
        &[
            "check",
            "--format",
            "json",
            "--max-file-size",
            "100000000",
            "gen.c",
        ],
        tmp.path(),
    );
    no_panic(&out);
    let doc = json(&out);
    assert_eq!(doc["findings"][0]["symbol"], "after_table");
    // The default limit skips it with a message instead.
    let out = isolint(&["check", "--format", "json", "gen.c"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "nothing could be scanned");
    assert!(json(&out)["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("over the 10485760-byte limit"));
}

#[test]
fn stdin_buffer_carries_the_given_file_name() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args([
            "check",
            "--format",
            "json",
            "--stdin-filename",
            "src/foo.c",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"static PyTypeObject Foo_Type = {PyVarObject_HEAD_INIT(NULL, 0) \"m.Foo\"};\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let doc = json(&out);
    assert_eq!(doc["findings"][0]["path"], "src/foo.c");
    assert_eq!(doc["findings"][0]["name"], "static-type-object");
}

#[test]
fn rules_and_explain() {
    let out = isolint(&["rules", "--format", "json"], &fixtures());
    let rules = json(&out);
    assert!(rules
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "global-pyobject"));
    let out = isolint(&["explain", "ISO003"], &fixtures());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("## Why is this bad?") && text.contains("static-type-object"),
        "{text}"
    );
    assert_eq!(
        isolint(&["explain", "nope"], &fixtures()).status.code(),
        Some(2)
    );
}

#[test]
fn scanning_never_runs_code_from_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("marker");
    std::fs::write(
        tmp.path().join("setup.py"),
        format!(
            "open({:?}, 'w').write('ran')\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("Makefile"),
        format!("all:\n\ttouch {}\n", marker.display()),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("mod.c"),
        "static PyObject *x;\nvoid f(void) { x = NULL; }\n",
    )
    .unwrap();
    let out = isolint(&["check", "."], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !marker.exists(),
        "isolint ran something from the scanned repository"
    );
}

#[test]
fn plan_fix_and_vendored_code_from_the_command_line() {
    let root = fixtures();
    let plan = isolint(&["plan", "legacy_single_phase"], &root);
    assert_eq!(plan.status.code(), Some(0));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.starts_with("# Isolation migration plan") && text.contains("## Module `_speedups`"),
        "{text}"
    );

    // `fix` prints a diff and leaves the file alone without --apply.
    let tmp = tempfile::tempdir().unwrap();
    let source = root.join("split_module");
    for name in ["_split.c", "registry.c", "state.h"] {
        std::fs::copy(source.join(name), tmp.path().join(name)).unwrap();
    }
    let before = std::fs::read_to_string(tmp.path().join("_split.c")).unwrap();
    let fix = isolint(&["fix", "--stage", "0", "."], tmp.path());
    let diff = String::from_utf8_lossy(&fix.stdout);
    assert!(
        diff.contains("PyModuleDef_Init"),
        "{diff}\n{}",
        String::from_utf8_lossy(&fix.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("_split.c")).unwrap(),
        before
    );

    let hidden = json(&isolint(
        &["check", "--format", "json", "vendored_library"],
        &root,
    ));
    let shown = json(&isolint(
        &[
            "check",
            "--format",
            "json",
            "--include-vendored",
            "vendored_library",
        ],
        &root,
    ));
    let count = |d: &serde_json::Value| d["findings"].as_array().unwrap().len();
    assert_eq!(count(&shown), count(&hidden) + 4);
    assert_eq!(hidden["hidden"].as_array().unwrap().len(), 2);
}

#[test]
fn cache_lives_in_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::copy(
        fixtures().join("legacy_single_phase/_speedups.c"),
        src.join("_speedups.c"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_isolint"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("ISOLINT_NO_CACHE")
            .env_remove("ISOLINT_CACHE_DIR")
            .output()
            .unwrap()
    };
    let cache = dir.path().join(".isolint_cache");

    let uncached = run(&["check", "--format", "json", "--no-cache", "src"]);
    assert!(!cache.exists(), "--no-cache wrote a cache");
    let cold = run(&["check", "--format", "json", "src"]);
    assert!(
        cache.join(".gitignore").exists(),
        "no cache in the current folder"
    );
    assert!(cache.join("CACHEDIR.TAG").exists());
    let warm = run(&["check", "--format", "json", "src"]);
    assert_eq!(cold.stdout, uncached.stdout);
    assert_eq!(warm.stdout, uncached.stdout);
    assert_eq!(warm.status.code(), Some(1));

    // With a config file, the cache sits beside it.
    std::fs::write(src.join("isolint.toml"), "").unwrap();
    run(&["check", "--format", "json", "src"]);
    assert!(src.join(".isolint_cache").exists());

    let elsewhere = dir.path().join("elsewhere");
    let other = run(&[
        "check",
        "--format",
        "json",
        "--cache-dir",
        elsewhere.to_str().unwrap(),
        "src",
    ]);
    assert!(elsewhere
        .join(env!("CARGO_PKG_VERSION"))
        .join("facts.bin")
        .exists());
    assert_eq!(other.stdout, uncached.stdout);
}

/// `--compile-commands` gives the module's files; the module line says where they came from,
/// and `plan` suggests `isolint verify` with the dotted import name the setup.py gives (read,
/// never run).
#[test]
fn build_files_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let marker = root.join("marker");
    std::fs::write(
        root.join("setup.py"),
        format!(
            "from setuptools import Extension, setup\nopen({:?}, 'w').write('ran')\nsetup(ext_modules=[Extension('pkg.sub._m', ['m.c'])])\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("m.c"),
        "#include <Python.h>\nint helper(void);\nstatic struct PyModuleDef def = {PyModuleDef_HEAD_INIT, \"_m\", NULL, -1, NULL};\nPyMODINIT_FUNC PyInit__m(void) { helper(); return PyModule_Create(&def); }\n",
    )
    .unwrap();
    std::fs::write(
        root.join("helper.c"),
        "static int n;\nint helper(void) { return n++; }\n",
    )
    .unwrap();
    let human = isolint(&["check", "."], root);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("_m `pkg.sub._m` (./m.c:4)") && text.contains("1 file from setup.py"),
        "{text}"
    );
    let plan = isolint(&["plan", "."], root);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("--with-scan ./m.c pkg.sub._m"), "{text}");

    // A compile database outside the tree, named on the command line, wins over setup.py;
    // the import name still comes from setup.py.
    let db = tempfile::tempdir().unwrap();
    std::fs::write(
        db.path().join("cc.json"),
        format!(
            r#"[{{"directory": {dir:?}, "file": "m.c", "command": "cc -c m.c", "output": "CMakeFiles/_m.dir/m.c.o"}},
                {{"directory": {dir:?}, "file": "helper.c", "command": "cc -c helper.c", "output": "CMakeFiles/_m.dir/helper.c.o"}}]"#,
            dir = root.display().to_string()
        ),
    )
    .unwrap();
    let db_path = db.path().join("cc.json");
    let out = isolint(
        &[
            "check",
            "--format",
            "json",
            "--compile-commands",
            db_path.to_str().unwrap(),
            ".",
        ],
        root,
    );
    let doc = json(&out);
    let module = &doc["modules"][0];
    assert_eq!(module["files_from"], "compile_commands.json");
    assert_eq!(module["import_name"], "pkg.sub._m", "{doc}");
    assert_eq!(module["files"].as_array().unwrap().len(), 2, "{doc}");
    assert!(doc["build_notes"].as_array().unwrap().is_empty());
    assert!(!marker.exists(), "setup.py was run");
}

#[test]
fn free_threading_verdict_noqa_markers_and_free_threaded_targets() {
    let run = |extra: &[&str]| {
        let mut args = vec!["check", "--format", "json"];
        args.extend_from_slice(extra);
        args.push("rule_free_threading");
        json(&isolint(&args, &fixtures()))
    };
    let doc = run(&[]);
    let findings = doc["findings"].as_array().unwrap();
    let at = |file: &str, line: u64| {
        findings
            .iter()
            .filter(|f| {
                f["path"].as_str().unwrap().ends_with(file) && f["line"].as_u64() == Some(line)
            })
            .count()
    };
    // numpy's `// noqa: borrowed-ref OK` suppresses the finding the analysis makes there
    // (the fixture harness, which sees findings before suppressions, expects it), and is
    // never reported as unused.
    assert_eq!(at("borrowed.c", 16), 0);
    assert_eq!(at("borrowed.c", 15), 1);
    assert!(!findings.iter().any(|f| f["name"] == "unused-suppression"));

    let module = |doc: &serde_json::Value, name: &str| {
        doc["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap()
    };
    let borrowed = module(&doc, "borrowed");
    let gil = &borrowed["verdict"]["gil"];
    assert_eq!(gil["declared"], "not-used");
    assert_eq!(gil["declared_by"], "slot");
    assert_eq!(gil["supported"], "used");
    assert!(gil["blockers"].as_array().unwrap().len() >= 10, "{gil}");
    let clean = module(&doc, "clean");
    assert_eq!(clean["verdict"]["gil"]["supported"], "not-used");
    assert_eq!(clean["verdict"]["gil_not_used"], true);
    let single = module(&doc, "single");
    assert_eq!(single["verdict"]["gil"]["declared_by"], "set-gil");

    // `ft_calls++` sits in `#ifdef Py_GIL_DISABLED`: only free-threaded builds compile it.
    let ft_write = |d: &serde_json::Value| {
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["symbol"] == "ft_calls" && f["name"] == "unlocked-static-write")
            .cloned()
    };
    let all = ft_write(&doc).expect("reported when no target is given");
    assert_eq!(all["python"]["free_threaded"], true);
    assert!(ft_write(&run(&["--python", "3.13t"])).is_some());
    assert!(ft_write(&run(&["--python", "3.13"])).is_none());
    for bad in ["3.13x", "3.12t"] {
        let out = isolint(
            &["check", "--python", bad, "rule_free_threading"],
            &fixtures(),
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("3.13t"),
            "{bad}"
        );
    }
}
