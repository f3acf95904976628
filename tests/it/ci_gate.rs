//! The CI gate end to end on copies of the fixture modules: config files, inline
//! suppressions, the baseline, and the SARIF, GitHub and concise formats.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn isolint(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("isolint runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    out
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/check")
        .join(name)
}

/// A project folder holding a copy of fixture `name` under `ext/`.
fn project(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("ext");
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
        }
    }
    tmp
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (rule name, symbol) of each finding of a JSON run.
fn findings(out: &Output) -> Vec<(String, String)> {
    json(out)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["symbol"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has(list: &[(String, String)], name: &str, symbol: &str) -> bool {
    list.iter().any(|(n, s)| n == name && s == symbol)
}

const SPEEDUPS: &str = "ext/_speedups.c";

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

#[test]
fn pyproject_config_is_found_upward_and_applied() {
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    let all = findings(&isolint(&["check", "--format", "json", "ext"], root));
    assert!(has(&all, "global-pyobject", "cache"), "{all:?}");
    assert!(has(&all, "static-type-object", "Foo_Type"), "{all:?}");

    std::fs::write(
        root.join("pyproject.toml"),
        r#"[project]
name = "speedups"

[tool.isolint]
ignore = ["global-pyobject", "ISO008"]
fail-on = "error"

[tool.isolint.severity]
static-type-object = "error"
"#,
    )
    .unwrap();
    // Run from inside ext/: the config two levels up still applies.
    let out = isolint(&["check", "--format", "json", "."], &root.join("ext"));
    let got = findings(&out);
    assert!(!got.iter().any(|(n, _)| n == "global-pyobject"), "{got:?}");
    assert!(!got.iter().any(|(n, _)| n == "could-be-const"), "{got:?}");
    let doc = json(&out);
    let foo = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["symbol"] == "Foo_Type")
        .unwrap();
    assert_eq!(foo["severity"], "error");
    assert_eq!(out.status.code(), Some(1), "an error-level finding fails");

    // fail-on = "error" with the override gone: warnings no longer fail.
    edit(&root.join("pyproject.toml"), |t| {
        t.replace("static-type-object = \"error\"", "")
    });
    assert_eq!(isolint(&["check", "ext"], root).status.code(), Some(0));
    // The command line wins over the config.
    assert_eq!(
        isolint(&["check", "--fail-on", "warning", "ext"], root)
            .status
            .code(),
        Some(1)
    );
    // --isolated ignores the file.
    let isolated = findings(&isolint(
        &["check", "--isolated", "--format", "json", "ext"],
        root,
    ));
    assert_eq!(isolated, all);
}

#[test]
fn isolint_toml_select_per_file_ignores_and_excludes() {
    let tmp = project("split_module");
    let root = tmp.path();
    let base = findings(&isolint(&["check", "--format", "json", "."], root));
    assert!(base.len() >= 2, "{base:?}");
    // A pyproject without [tool.isolint] is passed over; isolint.toml in the same folder wins
    // over one that has it.
    std::fs::write(
        root.join("pyproject.toml"),
        "[tool.isolint]\nselect = [\"ISO001\"]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("isolint.toml"),
        r#"select = ["global-pyobject", "mutable-global-state"]
target-python = ["3.12", "3.13"]

[per-file-ignores]
"registry.c" = ["mutable-global-state"]
"ext/state.h" = ["global-pyobject"]
"#,
    )
    .unwrap();
    let out = isolint(&["check", "--format", "json", "."], root);
    let doc = json(&out);
    for f in doc["findings"].as_array().unwrap() {
        let (name, path) = (f["name"].as_str().unwrap(), f["path"].as_str().unwrap());
        assert!(
            name == "global-pyobject" || name == "mutable-global-state",
            "{f}"
        );
        assert!(
            !(path.ends_with("registry.c") && name == "mutable-global-state"),
            "{f}"
        );
        assert!(
            !(path.ends_with("state.h") && name == "global-pyobject"),
            "{f}"
        );
    }
    assert!(!doc["findings"].as_array().unwrap().is_empty());

    // exclude replaces the default folder names; extend-exclude adds to them.
    std::fs::write(root.join("isolint.toml"), "extend-exclude = [\"ext\"]\n").unwrap();
    let out = isolint(&["check", "--format", "json", "."], root);
    assert_eq!(json(&out)["files_scanned"], 0);
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::copy(root.join("ext/_split.c"), root.join("build/_split.c")).unwrap();
    std::fs::write(root.join("isolint.toml"), "exclude = [\"ext\"]\n").unwrap();
    let doc = json(&isolint(&["check", "--format", "json", "."], root));
    assert_eq!(
        doc["files_scanned"], 1,
        "build/ is scanned once `exclude` replaces the defaults"
    );

    // --config names the file explicitly, from anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let cfg = elsewhere.path().join("strict.toml");
    std::fs::write(&cfg, "select = [\"ISO001\"]\n").unwrap();
    let got = findings(&isolint(
        &[
            "check",
            "--format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
            "ext",
        ],
        root,
    ));
    assert!(got.iter().all(|(n, _)| n == "single-phase-init"), "{got:?}");
}

#[test]
fn bad_config_exits_2_naming_file_line_and_key() {
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "[tool.isolint]\nselect = [\"ISO001\"]\nselekt = [\"ISO003\"]\n",
            "pyproject.toml",
            &["pyproject.toml:3:", "selekt"],
        ),
        (
            "[tool.isolint]\n\nignore = [\"ISO001\", \"no-such-rule\"]\n",
            "pyproject.toml",
            &["pyproject.toml:3:", "tool.isolint.ignore", "no-such-rule"],
        ),
        (
            "fail-on = \"fatal\"\n",
            "isolint.toml",
            &["isolint.toml:1:", "fail-on", "fatal"],
        ),
        (
            "select = \"ISO001\"\n",
            "isolint.toml",
            &["isolint.toml:1:", "select"],
        ),
        (
            "\n[severity]\nstatic-type-object = \"loud\"\n",
            "isolint.toml",
            &["isolint.toml:3:", "severity", "loud"],
        ),
        (
            "[severity]\nstatic-type-object = 3\n",
            "isolint.toml",
            &["isolint.toml:2:", "`severity.static-type-object`"],
        ),
        (
            "target-python = \"three\"\n",
            "isolint.toml",
            &["isolint.toml:1:", "target-python"],
        ),
        (
            "[per-file-ignores]\n\"a[.c\" = [\"ISO001\"]\n",
            "isolint.toml",
            &["isolint.toml:2:", "per-file-ignores"],
        ),
        ("select = [\"ISO001\"\n", "isolint.toml", &["isolint.toml:"]),
    ];
    for (text, file, needles) in cases {
        let _ = std::fs::remove_file(root.join("pyproject.toml"));
        let _ = std::fs::remove_file(root.join("isolint.toml"));
        std::fs::write(root.join(file), text).unwrap();
        let out = isolint(&["check", "ext"], root);
        assert_eq!(out.status.code(), Some(2), "{text}: {}", stderr(&out));
        let err = stderr(&out);
        for n in *needles {
            assert!(err.contains(n), "{text}: `{n}` not in {err}");
        }
        assert!(out.stdout.is_empty(), "no report after a config error");
    }
}

#[test]
fn inline_suppressions_and_their_findings() {
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    let path = root.join(SPEEDUPS);
    edit(&path, |t| {
        t.replace(
            "static PyObject *cache = NULL;   /* expect: global-pyobject */",
            "static PyObject *cache = NULL;   /* isolint: ignore[global-pyobject] filled once at import, read-only after */",
        )
        .replace(
            "static long call_count = 0;",
            "// isolint: ignore-next-line[ISO006] a statistic; races are harmless\nstatic long call_count = 0;",
        )
        .replace(
            "static int initialized = 0;",
            "static int initialized = 0; /* isolint: ignore[mutable-global-state] */",
        )
        .replace(
            "static const char *const version",
            "/* isolint: ignore[static-type-object] left over from an old refactor */\nstatic const char *const version",
        )
        .replace(
            "#include <Python.h>",
            "#include <Python.h>\n// isolint: ignore-file[could-be-const, pystate-module-lookup] constants are tuned at build time",
        )
    });
    let out = isolint(&["check", "--format", "json", "ext"], root);
    let got = findings(&out);
    assert!(!has(&got, "global-pyobject", "cache"), "same-line: {got:?}");
    assert!(has(&got, "global-pyobject", "callbacks"), "{got:?}");
    assert!(
        !has(&got, "mutable-global-state", "call_count"),
        "next-line: {got:?}"
    );
    assert!(
        !got.iter().any(|(n, _)| n == "could-be-const"),
        "file: {got:?}"
    );
    // No reason: suppressed, but reported itself.
    assert!(!has(&got, "mutable-global-state", "initialized"), "{got:?}");
    let doc = json(&out);
    let meta: Vec<&Value> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "ISO900" || f["rule"] == "ISO901")
        .collect();
    let text = |rule: &str| {
        meta.iter()
            .filter(|f| f["rule"] == rule)
            .map(|f| format!("{}:{}", f["line"], f["message"].as_str().unwrap()))
            .collect::<Vec<_>>()
    };
    let invalid = text("ISO900");
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert!(invalid[0].contains("gives no reason"), "{invalid:?}");
    // Stale: the comment names static-type-object on a line that has none; and the
    // file-wide pystate-module-lookup suppression did match, so it is not stale.
    let unused = text("ISO901");
    assert_eq!(unused.len(), 1, "{unused:?}");
    assert!(unused[0].contains("static-type-object"), "{unused:?}");
    assert_eq!(out.status.code(), Some(1));

    // Ignoring the suppression rules turns those reports off like any other rule.
    let got = findings(&isolint(
        &[
            "check",
            "--format",
            "json",
            "--ignore",
            "unused-suppression,ISO900",
            "ext",
        ],
        root,
    ));
    assert!(
        !got.iter().any(|(n, _)| n.ends_with("-suppression")),
        "{got:?}"
    );
    // Every rule runs whatever is selected, so the stale suppression is the same one, and the
    // ones that match a finding of a rule left out are not stale.
    let selected = isolint(
        &[
            "check",
            "--format",
            "json",
            "--select",
            "ISO004,ISO901",
            "ext",
        ],
        root,
    );
    let got = findings(&selected);
    assert!(
        got.iter()
            .all(|(n, _)| n == "global-pyobject" || n == "unused-suppression"),
        "{got:?}"
    );
    let stale: Vec<String> = json(&selected)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "unused-suppression")
        .map(|f| f["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(stale[0].contains("static-type-object"), "{stale:?}");
}

#[test]
fn baseline_survives_moved_lines_reports_fixed_entries_and_prunes() {
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    let path = root.join(SPEEDUPS);
    let out = isolint(
        &["check", "--write-baseline", "isolint-baseline.json", "ext"],
        root,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("isolint-baseline.json")).unwrap())
            .unwrap();
    let entries = written["entries"].as_array().unwrap();
    let total = entries.len();
    assert!(total >= 8, "{written}");
    let cache = entries.iter().find(|e| e["symbol"] == "cache").unwrap();
    assert_eq!(cache["path"], SPEEDUPS);
    assert_eq!(cache["rule"], "ISO004");
    assert!(cache.get("line").is_none(), "never keyed by line");

    let check = || {
        isolint(
            &[
                "check",
                "--baseline",
                "isolint-baseline.json",
                "--format",
                "json",
                "ext",
            ],
            root,
        )
    };
    let out = check();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(findings(&out).is_empty());

    // Lines added above every global, and re-indentation: still known.
    edit(&path, |t| {
        t.replacen(
            "#include \"structmember.h\"\n",
            "#include \"structmember.h\"\n\n/* A comment block\n   of several lines\n   pushed everything down. */\n\n",
            1,
        )
        .replace("static PyObject *callbacks[4];", "static   PyObject   *callbacks[4];")
    });
    let out = check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "moved lines: {:?} {}",
        findings(&out),
        stderr(&out)
    );

    // A new global fails, alone (its run-time write is also a free-threading race).
    edit(&path, |t| {
        t.replacen(
            "static int default_level",
            "static PyObject *fresh_cache = NULL;\nvoid touch(void) { fresh_cache = PyDict_New(); }\nstatic int default_level",
            1,
        )
    });
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        findings(&out),
        vec![
            ("global-pyobject".to_string(), "fresh_cache".to_string()),
            (
                "unlocked-static-write".to_string(),
                "fresh_cache".to_string()
            )
        ]
    );

    // Editing a baselined line makes it new code to look at.
    edit(&path, |t| {
        t.replace(
            "static PyObject *SpeedupsError;",
            "static PyObject *SpeedupsError = NULL;",
        )
    });
    let got = findings(&check());
    assert!(
        has(&got, "global-exception-object", "SpeedupsError"),
        "{got:?}"
    );

    // Fixing a finding reports its entry as fixed; --prune-baseline drops it.
    edit(&path, |t| {
        t.replace(
            "static int default_level = 3;",
            "static const int default_level = 3;",
        )
    });
    let out = check();
    let err = stderr(&out);
    assert!(err.contains("no longer match"), "{err}");
    assert!(err.contains("default_level"), "{err}");
    let out = isolint(
        &[
            "check",
            "--baseline",
            "isolint-baseline.json",
            "--prune-baseline",
            "ext",
        ],
        root,
    );
    assert!(stderr(&out).contains("removed"), "{}", stderr(&out));
    let pruned: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("isolint-baseline.json")).unwrap())
            .unwrap();
    let left = pruned["entries"].as_array().unwrap();
    assert!(!left.iter().any(|e| e["symbol"] == "default_level"));
    // The edited SpeedupsError line is gone from the baseline too: it only shrinks, new
    // findings are never added by pruning.
    assert!(!left.iter().any(|e| e["symbol"] == "fresh_cache"));
    assert_eq!(left.len(), total - 2, "{pruned}");

    // A missing or broken baseline is a usage error.
    assert_eq!(
        isolint(&["check", "--baseline", "nope.json", "ext"], root)
            .status
            .code(),
        Some(2)
    );
    std::fs::write(root.join("bad.json"), "{\"version\": 1, \"entries\": 3}").unwrap();
    let out = isolint(&["check", "--baseline", "bad.json", "ext"], root);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.json"), "{}", stderr(&out));
}

#[test]
fn sarif_validates_against_the_official_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let id = schema["id"]
        .as_str()
        .expect("the schema has an id")
        .to_string();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.enable_format_assertions();
    compiler
        .add_resource(&id, schema.clone())
        .expect("the schema loads");
    let sarif = compiler
        .compile(&id, &mut schemas)
        .unwrap_or_else(|e| panic!("the schema compiles: {e:#}"));
    let validate = |doc: &Value| schemas.validate(doc, sarif).map_err(|e| format!("{e:#}"));
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    // A repository root above the scanned folder: URIs are relative to it.
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("ext/blob.c"), [0u8, 1, 2, 3]).unwrap();
    edit(&root.join(SPEEDUPS), |t| {
        t.replace(
            "static int initialized = 0;",
            "static int initialized = 0; /* isolint: ignore[ISO006] */",
        )
    });
    let out = isolint(&["check", "--format", "sarif", "."], &root.join("ext"));
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Err(errors) = validate(&doc) {
        panic!("{errors}");
    }
    // The validator does reject what the schema forbids.
    let mut broken = doc.clone();
    broken["runs"][0]["results"][0]["level"] = "severe".into();
    assert!(
        validate(&broken).is_err(),
        "an unknown level must not validate"
    );

    let run = &doc["runs"][0];
    assert_eq!(doc["version"], "2.1.0");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for rule in ["ISO001", "ISO003", "ISO900", "ISO901"] {
        assert!(ids.contains(&rule), "{ids:?}");
    }
    let iso003 = rules.iter().find(|r| r["id"] == "ISO003").unwrap();
    assert_eq!(iso003["name"], "static-type-object");
    assert!(iso003["help"]["markdown"]
        .as_str()
        .unwrap()
        .contains("## Why is this bad?"));
    let results = run["results"].as_array().unwrap();
    let foo = results
        .iter()
        .find(|r| r["properties"]["symbol"] == "Foo_Type")
        .unwrap();
    let loc = &foo["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], SPEEDUPS);
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    assert_eq!(loc["region"]["startLine"], 33);
    assert_eq!(foo["ruleId"], "ISO003");
    assert_eq!(
        rules[foo["ruleIndex"].as_u64().unwrap() as usize]["id"],
        "ISO003"
    );
    assert!(results.iter().any(|r| r["ruleId"] == "ISO900"));
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert!(notes
        .iter()
        .any(|n| n["message"]["text"].as_str().unwrap().contains("binary")));

    // Fingerprints are stable when lines move.
    let fp = foo["partialFingerprints"]["isolint/v1"].clone();
    edit(&root.join(SPEEDUPS), |t| {
        format!("/* new header line */\n\n{t}")
    });
    let doc: Value = serde_json::from_slice(
        &isolint(&["check", "--format", "sarif", "."], &root.join("ext")).stdout,
    )
    .unwrap();
    let moved = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["properties"]["symbol"] == "Foo_Type")
        .unwrap()
        .clone();
    assert_eq!(
        moved["locations"][0]["physicalLocation"]["region"]["startLine"],
        35
    );
    assert_eq!(moved["partialFingerprints"]["isolint/v1"], fp);

    // A variable's other declarations are `relatedLocations`, and still valid SARIF.
    let tmp = project("one_finding_per_variable");
    let out = isolint(&["check", "--format", "sarif", "ext"], tmp.path());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Err(errors) = validate(&doc) {
        panic!("{errors}");
    }
    let cache = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["properties"]["symbol"] == "last_result" && r["ruleId"] == "ISO004")
        .unwrap()
        .clone();
    let related = cache["relatedLocations"].as_array().unwrap();
    assert_eq!(related.len(), 2, "{related:?}");
    assert_eq!(
        related[1]["physicalLocation"]["artifactLocation"]["uri"],
        "ext/state.h"
    );
    assert_eq!(related[1]["physicalLocation"]["region"]["startLine"], 5);
}

#[test]
fn github_and_concise_formats() {
    let root = fixture("legacy_single_phase");
    let out = isolint(&["check", "--format", "github", "."], &root);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let foo = text
        .lines()
        .find(|l| l.contains("ISO003"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        foo.starts_with("::warning file=./_speedups.c,line=33,endLine=33,col=21,endColumn=29,title=ISO003 (static-type-object)::`Foo_Type`"),
        "{foo}"
    );
    assert!(foo.contains("%0Ahelp: convert it to a heap type"), "{foo}");
    assert!(
        text.lines().any(|l| l.starts_with("::notice ")),
        "info is a notice: {text}"
    );

    let out = isolint(&["check", "--format", "concise", "."], &root);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| {
            l.starts_with(
        "./_speedups.c:33:21: warning[ISO003] `Foo_Type` (`_speedups.Foo`) is a static type object"
    )
        }),
        "{text}"
    );
    // Every line has the shape editors' problem matchers expect.
    for line in text.lines() {
        let mut parts = line.splitn(4, ':');
        let (file, l, c, rest) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert!(file.ends_with(".c"), "{line}");
        assert!(
            l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
            "{line}"
        );
        assert!(
            rest.starts_with(" warning[ISO")
                || rest.starts_with(" info[ISO")
                || rest.starts_with(" error[ISO"),
            "{line}"
        );
    }
    // --exit-zero still applies.
    assert_eq!(
        isolint(&["check", "--format", "concise", "--exit-zero", "."], &root)
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn stdin_buffer_uses_the_config_and_suppressions_of_its_path() {
    use std::io::Write;
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    std::fs::write(
        root.join("isolint.toml"),
        "ignore = [\"static-type-object\"]\n",
    )
    .unwrap();
    let buffer = "static PyTypeObject Foo_Type = {PyVarObject_HEAD_INIT(NULL, 0) \"m.Foo\"};\n\
                  static PyObject *cache; /* isolint: ignore[global-pyobject] interned, immortal */\n\
                  static PyObject *other;\n\
                  void f(void) { cache = PyDict_New(); other = PyDict_New(); }\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_isolint"))
        .args([
            "check",
            "--format",
            "concise",
            "--stdin-filename",
            "ext/new.c",
            "-",
        ])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(buffer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Foo_Type"), "config applies: {text}");
    assert!(
        !text.contains("warning[ISO004] `cache`"),
        "suppression applies: {text}"
    );
    // It suppresses `global-pyobject` only: the run-time write still races without the GIL.
    assert!(
        text.contains("warning[ISO104] `cache`"),
        "other rules still apply: {text}"
    );
    assert!(
        text.contains("ext/new.c:3:18: warning[ISO004] `other`"),
        "{text}"
    );
}

#[test]
fn each_path_gets_its_nearest_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for sub in ["strict", "lenient"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
        std::fs::copy(
            fixture("legacy_single_phase").join("_speedups.c"),
            root.join(sub).join("_speedups.c"),
        )
        .unwrap();
    }
    std::fs::write(
        root.join("lenient/pyproject.toml"),
        "[project]\nname = \"lenient\"\n\n[tool.isolint]\nignore = [\"global-pyobject\"]\nfail-on = \"error\"\n",
    )
    .unwrap();
    let out = isolint(&["check", "--format", "json", "strict", "lenient"], root);
    let doc = json(&out);
    let pyobject_paths: Vec<&str> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "global-pyobject")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(!pyobject_paths.is_empty());
    assert!(
        pyobject_paths.iter().all(|p| p.starts_with("strict/")),
        "{pyobject_paths:?}"
    );
    assert_eq!(doc["files_scanned"], 2);
    assert_eq!(doc["modules"].as_array().unwrap().len(), 2);
    // strict/ has warnings and the default fail-on: the run fails. lenient/ alone passes.
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(isolint(&["check", "lenient"], root).status.code(), Some(0));
}

/// The verdict of module `name` in a JSON run.
fn verdict_of(out: &Output, name: &str) -> Value {
    json(out)["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no module {name}"))["verdict"]
        .clone()
}

#[test]
fn suppressed_blockers_do_not_block_the_verdict_but_are_listed() {
    // rule_claims' `over` declares per-interpreter-gil over one C global (`hits`).
    let tmp = project("rule_claims");
    let root = tmp.path();
    let check = |extra: &[&str]| {
        let mut args = vec!["check", "--format", "json"];
        args.extend_from_slice(extra);
        args.push("ext");
        isolint(&args, root)
    };
    let out = check(&[]);
    assert!(has(&findings(&out), "overclaimed-isolation", "over_slots"));
    assert_eq!(verdict_of(&out, "over")["supported"], "shared-gil");

    // A baseline that knows the global's finding: the declaration is no longer an overclaim,
    // and the verdict says what it rests on.
    let baseline = serde_json::json!({"version": 1, "entries": []});
    std::fs::write(root.join("b.json"), baseline.to_string()).unwrap();
    let out = isolint(&["check", "--write-baseline", "b.json", "ext"], root);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut written: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("b.json")).unwrap()).unwrap();
    written["entries"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["symbol"] == "hits" && e["name"] == "mutable-global-state");
    assert_eq!(written["entries"].as_array().unwrap().len(), 1);
    std::fs::write(root.join("b.json"), written.to_string()).unwrap();
    let out = check(&["--baseline", "b.json"]);
    let list = findings(&out);
    assert!(
        !has(&list, "overclaimed-isolation", "over_slots"),
        "{list:?}"
    );
    let verdict = verdict_of(&out, "over");
    assert_eq!(verdict["supported"], "per-interpreter-gil");
    assert_eq!(verdict["suppressed"][0]["symbol"], "hits");
    assert_eq!(verdict["suppressed"][0]["by"], "baseline");
    assert_eq!(verdict["suppressed"][0]["level"], "per-interpreter-gil");

    // The config's per-file-ignores do the same, and say so.
    std::fs::write(
        root.join("isolint.toml"),
        "[per-file-ignores]\n\"overclaim.c\" = [\"mutable-global-state\"]\n",
    )
    .unwrap();
    let out = check(&[]);
    assert!(!has(&findings(&out), "overclaimed-isolation", "over_slots"));
    let verdict = verdict_of(&out, "over");
    assert_eq!(verdict["supported"], "per-interpreter-gil");
    assert_eq!(verdict["suppressed"][0]["by"], "config");
    // The human format says what the verdict rests on.
    let human = isolint(&["check", "--color", "never", "ext"], root);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("not counted, suppressed: `hits` (mutable-global-state, line 4, by config)"),
        "{text}"
    );
}

/// `--select` and `--ignore` choose the findings shown and the exit status; the verdict is
/// judged over every rule, so a module full of static types never "supports
/// per-interpreter-gil" because `static-type-object` was left out.
#[test]
fn select_and_ignore_never_change_the_verdict() {
    let tmp = project("legacy_single_phase");
    let root = tmp.path();
    let run = |extra: &[&str]| {
        let mut args = vec!["check", "--format", "json", "--no-cache"];
        args.extend_from_slice(extra);
        args.push("ext");
        isolint(&args, root)
    };
    let all = run(&[]);
    let only_gil_slot = run(&["--select", "missing-gil-slot"]);
    let without_static_types = run(&["--ignore", "static-type-object,global-pyobject"]);
    let verdicts = |out: &Output| json(out)["modules"].clone();
    assert_eq!(verdicts(&only_gil_slot), verdicts(&all));
    assert_eq!(verdicts(&without_static_types), verdicts(&all));
    assert_ne!(
        json(&all)["modules"][0]["verdict"]["supported"],
        "per-interpreter-gil",
        "{}",
        json(&all)["modules"]
    );

    let shown = findings(&only_gil_slot);
    assert!(!shown.is_empty());
    assert!(
        shown.iter().all(|(n, _)| n == "missing-gil-slot"),
        "{shown:?}"
    );
    // The findings left out are counted, as not shown, and an info-only report passes.
    let hidden = json(&only_gil_slot)["hidden"].clone();
    let not_selected: u64 = hidden
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["reason"] == "not-selected")
        .map(|h| h["findings"].as_u64().unwrap())
        .sum();
    assert_eq!(
        not_selected as usize,
        findings(&all).len() - shown.len(),
        "{hidden}"
    );
    assert_eq!(
        only_gil_slot.status.code(),
        Some(0),
        "{}",
        stderr(&only_gil_slot)
    );
    assert_eq!(all.status.code(), Some(1));
    assert!(!findings(&without_static_types)
        .iter()
        .any(|(n, _)| n == "static-type-object" || n == "global-pyobject"));
    let text = isolint(
        &["check", "--no-cache", "--select", "missing-gil-slot", "ext"],
        root,
    );
    let stdout = String::from_utf8_lossy(&text.stdout);
    let folded = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        folded.contains("of rules not selected not shown"),
        "{stdout}"
    );
}
