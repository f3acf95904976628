//! Robustness: `check` on broken and hostile C must neither panic nor emit anything but valid
//! JSON, and deep nesting must not exhaust the stack.
//!
//! The property test mutates real C files: the fixtures, plus the C files under
//! `$ISOLINT_CORPUS` when it is set (the development corpus, `../shared/corpus/fetch.sh`).
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use isolint::report::json;
use isolint::{analyze, AnalyzeOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::path::{Path, PathBuf};

/// Runs the pipeline on one buffer, as an editor's unsaved file, and checks the JSON parses.
fn check_buffer(name: &str, bytes: Vec<u8>) -> serde_json::Value {
    let options = AnalyzeOptions {
        stdin: Some((PathBuf::from(name), bytes)),
        ..AnalyzeOptions::default()
    };
    let analysis = analyze(&options);
    let text = json::render(&analysis);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
}

fn c_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            c_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "c" || e == "h" || e == "inc")
        {
            out.push(path);
        }
    }
}

/// The files to mutate. Large ones are left out: the debug test build parses at a few MB/s,
/// and the mutations find nothing in a 1 MB table that a small file does not show.
fn seed_files() -> Vec<(String, Vec<u8>)> {
    let mut paths = Vec::new();
    c_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut paths,
    );
    if let Some(corpus) = std::env::var_os("ISOLINT_CORPUS") {
        c_files(Path::new(&corpus), &mut paths);
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            (bytes.len() <= 64 * 1024).then_some((name, bytes))
        })
        .collect()
}

/// Lines that exercise the pre-pass and the fact extraction: CPython's macros, `#if` branches
/// cut in half, and unbalanced punctuation.
const INSERTIONS: &[&str] = &[
    "Py_BEGIN_ALLOW_THREADS",
    "Py_END_ALLOW_THREADS",
    "Py_BLOCK_THREADS",
    "Py_UNBLOCK_THREADS",
    "Py_BEGIN_CRITICAL_SECTION(self);",
    "Py_END_CRITICAL_SECTION();",
    "Py_BEGIN_CRITICAL_SECTION2(a, b)",
    "Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST(seq);",
    "Py_END_CRITICAL_SECTION_SEQUENCE_FAST();",
    "if (Py_REFCNT(x) == 1) {",
    "if (cache == NULL) { cache = PyDict_New(); }",
    "PyObject *v = PyDict_GetItem(d, k); // noqa: borrowed-ref OK",
    "PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);",
    "#ifdef Py_GIL_DISABLED",
    "Py_TRASHCAN_BEGIN(op, dealloc)",
    "Py_TRASHCAN_END",
    "_Py_BEGIN_SUPPRESS_IPH",
    "_Py_END_SUPPRESS_IPH",
    "    PyObject_HEAD",
    "    PyObject_VAR_HEAD",
    "    PyVarObject_HEAD_INIT(NULL, 0)",
    "    PyObject_HEAD_INIT(&PyType_Type)",
    "    PyModuleDef_HEAD_INIT,",
    "    _MOD_FUNC_METHODDEF",
    "PyMODINIT_FUNC",
    "PyMODINIT_FUNC PyInit_m(void) { return PyModule_Create(&m); }",
    "Py_NO_INLINE static",
    "Py_DEPRECATED(3.9)",
    "static PyObject *cache = NULL;",
    "static PyTypeObject T = { PyVarObject_HEAD_INIT(NULL, 0) \"m.T\", };",
    "_Py_IDENTIFIER(name);",
    "PyDoc_STRVAR(doc, \"text\");",
    "DEFINE_GETTER(value)",
    "_Thread_local int counter;",
    "#if PY_VERSION_HEX >= 0x030C0000",
    "#if PY_MAJOR_VERSION >= 3",
    "#ifdef __cplusplus",
    "#if 0",
    "#else",
    "#elif defined(Py_GIL_DISABLED)",
    "#endif",
    "#define EMPTY",
    "#define ATTR __attribute__((unused))",
    "#define F(x) static PyObject *x##_cache;",
    "#include \"clinic/m.c.h\"",
    "{",
    "}",
    "(",
    ")",
    ",",
    ";",
    "/*",
    "*/",
    "\"",
    "'",
    "\\",
    "#",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the file at this fraction of its length, in bytes (it may split a UTF-8 sequence).
    Truncate(f64),
    /// Delete the line at this fraction of the line count.
    DeleteLine(f64),
    /// Insert one of `INSERTIONS` before the line at this fraction.
    Insert(f64, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (0.0..1.0f64).prop_map(Mutation::Truncate),
        4 => (0.0..1.0f64).prop_map(Mutation::DeleteLine),
        6 => (0.0..1.0f64, 0..INSERTIONS.len()).prop_map(|(at, i)| Mutation::Insert(at, i)),
    ]
}

fn apply(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let index = |at: f64, len: usize| ((at * len as f64) as usize).min(len.saturating_sub(1));
    for m in mutations {
        match m {
            Mutation::Truncate(at) => {
                let mut joined = lines.join(&b'\n');
                joined.truncate((at * joined.len() as f64) as usize);
                lines = joined.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            }
            Mutation::DeleteLine(at) => {
                if !lines.is_empty() {
                    lines.remove(index(*at, lines.len()));
                }
            }
            Mutation::Insert(at, which) => {
                let i = index(*at, lines.len() + 1);
                lines.insert(i, INSERTIONS[*which].as_bytes().to_vec());
            }
        }
    }
    lines.join(&b'\n')
}

#[test]
fn mutated_real_files_never_panic_and_always_give_json() {
    let seeds = seed_files();
    assert!(!seeds.is_empty(), "no C files under fixtures/");
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        // A failing case is printed, shrunk, by the runner; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..12));
    runner
        .run(&strategy, |(seed, mutations)| {
            let (name, bytes) = &seeds[seed];
            let mutated = apply(bytes, &mutations);
            let doc = check_buffer(name, mutated);
            prop_assert_eq!(doc["files_scanned"].as_u64(), Some(1), "{}", doc);
            Ok(())
        })
        .unwrap();
}

/// Every fixture cut at every 64th byte: truncation is the commonest state of an editor's
/// buffer.
#[test]
fn every_prefix_of_a_fixture_gives_json() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/check/legacy_single_phase/_speedups.c");
    let bytes = std::fs::read(path).expect("fixture");
    for end in (0..bytes.len()).step_by(64) {
        check_buffer("_speedups.c", bytes[..end].to_vec());
    }
}

const DEPTH: usize = 100_000;

/// A C file nesting one construct `DEPTH` deep, from an opening and a closing piece.
fn nested(head: &str, open: &str, middle: &str, close: &str, tail: &str) -> Vec<u8> {
    let mut s = String::with_capacity(head.len() + DEPTH * (open.len() + close.len()) + 64);
    s.push_str(head);
    for _ in 0..DEPTH {
        s.push_str(open);
    }
    s.push_str(middle);
    for _ in 0..DEPTH {
        s.push_str(close);
    }
    s.push_str(tail);
    s.into_bytes()
}

/// The pipeline runs on rayon's workers (2 MB stacks) and on the calling thread. Run it on a
/// thread with the same 2 MB, so that recursion proportional to nesting depth would overflow
/// here as it would in the CLI.
fn check_on_small_stack(name: &'static str, bytes: Vec<u8>) {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            check_buffer(name, bytes);
        })
        .expect("thread starts")
        .join()
        .unwrap_or_else(|_| panic!("{name}: the pipeline panicked"));
}

#[test]
fn deeply_nested_blocks_do_not_blow_the_stack() {
    check_on_small_stack(
        "blocks.c",
        nested(
            "static PyObject *cache;\nvoid f(void) ",
            "{",
            "cache = NULL;",
            "}",
            "\n",
        ),
    );
}

#[test]
fn deeply_nested_control_flow_does_not_blow_the_stack() {
    check_on_small_stack(
        "ifs.c",
        nested(
            "static int counter;\nvoid f(int x) {\n",
            "if (x) ",
            "counter++;",
            "",
            "\n}\n",
        ),
    );
}

#[test]
fn deeply_nested_expressions_do_not_blow_the_stack() {
    check_on_small_stack(
        "parens.c",
        nested(
            "static PyObject *cache;\nvoid f(void) { cache = ",
            "(",
            "NULL",
            ")",
            "; }\n",
        ),
    );
}

#[test]
fn deeply_nested_initializers_do_not_blow_the_stack() {
    check_on_small_stack(
        "init.c",
        nested("static int table[] = ", "{", "1", "}", ";\n"),
    );
}

#[test]
fn deeply_nested_conditionals_do_not_blow_the_stack() {
    check_on_small_stack(
        "ifdefs.c",
        nested(
            "",
            "#if PY_VERSION_HEX >= 0x030C0000\n",
            "static PyObject *cache;\n",
            "#endif\n",
            "",
        ),
    );
}

/// Inputs the fuzzer found crashes with, kept in `tests/data/fuzz-regressions/`, and their
/// minimal forms.
#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir)
        .expect("the regression folder exists")
        .flatten()
    {
        check_buffer("fuzz/_mod.c", std::fs::read(entry.path()).unwrap());
        found += 1;
    }
    assert!(found > 0);
    // `py(256, 0)` overflowed: the major version after 255, from a comparison past it.
    for condition in [
        "PY_MAJOR_VERSION > 0x1000",
        "PY_MAJOR_VERSION <= 255",
        "PY_MINOR_VERSION > 912",
        "PY_VERSION_HEX >= 0xFFFFFFFF",
    ] {
        let text = format!("#if {condition}\nstatic PyObject *cache;\n#endif\n");
        check_buffer("fuzz/_mod.c", text.into_bytes());
    }
}

/// The committed seeds of the build-file fuzz target: the first byte picks the file.
fn build_seeds() -> Vec<(&'static str, String)> {
    const NAMES: &[&str] = &[
        "setup.py",
        "compile_commands.json",
        "meson.build",
        "CMakeLists.txt",
        "pyproject.toml",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/build_files");
    let mut out: Vec<(&'static str, String)> = std::fs::read_dir(dir)
        .expect("fuzz/seeds/build_files exists")
        .flatten()
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            let (kind, rest) = bytes.split_first().expect("a seed has a kind byte");
            (
                NAMES[*kind as usize % NAMES.len()],
                String::from_utf8_lossy(rest).into_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn read_build(name: &str, text: &str) -> isolint::buildfiles::BuildInfo {
    isolint::buildfiles::read_build_text(&Path::new("/nonexistent-root").join(name), text)
}

/// Build files that do not parse, build their sources in code, refer to themselves or point
/// at missing files: each gives notes or nothing, never a panic, and so do their mutations.
#[test]
fn bad_and_mutated_build_files_never_panic() {
    let seeds = build_seeds();
    assert!(seeds.len() >= 5);
    let by_name = |prefix: &str| {
        seeds
            .iter()
            .filter(|(n, t)| n.starts_with(prefix) && !t.is_empty())
            .map(|(n, t)| read_build(n, t))
            .collect::<Vec<_>>()
    };
    // The malformed ones say so.
    assert!(by_name("compile_commands").iter().any(|i| i
        .notes
        .iter()
        .any(|n| n.message.contains("not a compile database"))));
    assert!(by_name("setup.py")
        .iter()
        .any(|i| i.notes.iter().any(|n| n.message.contains("does not parse"))));
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..8));
    runner
        .run(&strategy, |(seed, mutations)| {
            let (name, text) = &seeds[seed];
            let mutated = apply(text.as_bytes(), &mutations);
            let _ = read_build(name, &String::from_utf8_lossy(&mutated));
            Ok(())
        })
        .unwrap();
}

/// Deep nesting and values that double on each line stay within the stack and memory.
#[test]
fn hostile_build_files_stay_bounded() {
    let deep = format!("x = {}1{}\n", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let _ = read_build("setup.py", &deep);
    let _ = read_build("meson.build", &deep);
    let nots = format!("x = {}true\n", "not ".repeat(DEPTH));
    let _ = read_build("meson.build", &nots);
    let parens = format!("set(A {}a{})\n", "(".repeat(DEPTH), ")".repeat(DEPTH));
    let _ = read_build("CMakeLists.txt", &parens);
    let doubling = "set(A x)\n".to_string() + &"set(A ${A}${A}${A}${A})\n".repeat(40);
    let _ = read_build(
        "CMakeLists.txt",
        &(doubling + "Python_add_library(m MODULE ${A})\n"),
    );
    // Names that refer to lists of each other: exponential unless the work is bounded.
    let mut chain = String::from("a0 = ['x.c']\n");
    for i in 1..40 {
        let p = i - 1;
        chain.push_str(&format!("a{i} = [a{p}, a{p}, a{p}, a{p}]\n"));
    }
    chain.push_str("Extension('m', a39)\n");
    let info = read_build("setup.py", &chain);
    assert!(info.targets.is_empty());
    assert_eq!(info.notes.len(), 1, "{:?}", info.notes);
    let json = format!(
        "[{}]",
        "{\"file\": \"a.c\"},".repeat(1000) + "{\"file\": \"b.c\"}"
    );
    let info = read_build("compile_commands.json", &json);
    assert!(info.notes[0].message.contains("do not exist"));
}

/// The names of the modules a scan of one buffer found.
fn module_names(json: &serde_json::Value) -> Vec<String> {
    json["modules"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

const MODULE_TAIL: &str = "static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, \"m\", NULL, -1, NULL};\nPyMODINIT_FUNC\nPyInit_m(void)\n{\n    return PyModule_Create(&def);\n}\n";

#[test]
fn recursive_and_self_referential_macros_end() {
    let src = format!(
        "#define SELF SELF\n#define A B\n#define B A\n#define CALLS CALLS(CALLS)\n\
         #define LOOP(x) LOOP(x) x = 1;\n#define OPEN {{ OPEN\n#define CLOSE CLOSE }}\n\
         #define WRITE(v) v = WRITE(v);\n\
         static int counter;\nstatic void f(void)\n{{\n    SELF\n    A;\n    B\n    CALLS;\n\
         LOOP(counter)\n    OPEN\n    counter++;\n    CLOSE\n    WRITE(counter)\n}}\n{MODULE_TAIL}"
    );
    let json = check_buffer("recursive.c", src.clone().into_bytes());
    assert_eq!(module_names(&json), ["m"]);
    // The same macros from another file of the scan.
    let dir = tempfile::tempdir().unwrap();
    let (defines, uses) = src.split_at(src.find("static int counter").unwrap());
    std::fs::write(dir.path().join("macros.h"), defines).unwrap();
    std::fs::write(
        dir.path().join("mod.c"),
        format!("#include \"macros.h\"\n{uses}"),
    )
    .unwrap();
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![dir.path().to_path_buf()],
        model: true,
        ..AnalyzeOptions::default()
    });
    assert_eq!(analysis.project.modules.len(), 1);
}

#[test]
fn hostile_macro_values_give_json() {
    // Recursive and self-referential values, a `#define` of a keyword, division by zero and
    // numbers past 64 bits in `#if`, `#endif` / `#else` / `#elif` with no `#if`, and an `#if`
    // never closed: each condition is unknown (both branches count) or an error entry.
    let seed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/macro_values.c"))
            .unwrap();
    let src = String::from_utf8(seed).unwrap();
    let json = check_buffer("values.c", src.clone().into_bytes());
    let symbols: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "global-pyobject")
        .filter_map(|f| f["symbol"].as_str())
        .collect();
    // `a` to `d` sit under conditions nothing decides; `e` under the default `WITH_X 0`.
    assert_eq!(module_names(&json), ["m"]);
    for unknown in ["a", "b", "c", "d"] {
        assert!(symbols.contains(&unknown), "{unknown}: {symbols:?}");
    }
    assert!(!symbols.contains(&"e"), "{symbols:?}");
    // The same definitions from a header of the scan.
    let dir = tempfile::tempdir().unwrap();
    let (defines, uses) = src.split_at(src.find("#if SELF").unwrap());
    std::fs::write(dir.path().join("values.h"), defines).unwrap();
    std::fs::write(
        dir.path().join("mod.c"),
        format!("#include \"values.h\"\n{uses}"),
    )
    .unwrap();
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![dir.path().to_path_buf()],
        ..AnalyzeOptions::default()
    });
    assert_eq!(analysis.modules.len(), 1);
}

#[test]
fn cr_only_files_give_true_lines() {
    let src = format!(
        "#include <Python.h>\n// a comment\nstatic PyObject *cache;\n\
         static void set(PyObject *o) {{ cache = o; }}\n{MODULE_TAIL}"
    )
    .replace('\n', "\r");
    let json = check_buffer("cr_only.c", src.into_bytes());
    assert_eq!(module_names(&json), ["m"]);
    let cache = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["symbol"] == "cache")
        .expect("the global after a // comment is seen");
    assert_eq!(cache["line"], 3);
}

#[test]
fn a_ten_thousand_line_macro_is_read_once_and_left_alone() {
    let mut src = String::from("#define HUGE(x) \\\n");
    for i in 0..10_000 {
        src.push_str(&format!("    table[{i}] = x + {i}; \\\n"));
    }
    src.push_str("    done(x)\nstatic int table[10000];\nstatic void fill(void) { HUGE(1); }\n");
    src.push_str(MODULE_TAIL);
    let started = std::time::Instant::now();
    let json = check_buffer("huge_macro.c", src.into_bytes());
    assert_eq!(module_names(&json), ["m"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// The shapes the free-threading facts read, cut short or left empty: a clear result, never a
/// panic.
#[test]
fn broken_free_threading_shapes_give_json() {
    for body in [
        "Py_BEGIN_CRITICAL_SECTION(",
        "Py_BEGIN_CRITICAL_SECTION()",
        "Py_BEGIN_CRITICAL_SECTION(a /* c */ )\nx = 1;",
        "Py_BEGIN_CRITICAL_SECTION2(a,\n b)\nPy_END_CRITICAL_SECTION2();",
        "Py_END_CRITICAL_SECTION();\nPy_END_CRITICAL_SECTION(",
        "Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST(",
        "_isolint_critsec(x);",
        "if (Py_REFCNT() == 1) {}",
        "if (Py_REFCNT(x) == ) {}",
        "if (!) { cache = 1; }",
        "if (NULL == ) cache = 1;",
        "PyUnstable_Module_SetGIL();",
        "PyDict_GetItem();",
        "PyDict_Next(, &pos, &k, &v);",
        "PySequence_Fast_GET_ITEM(, 0);",
        "PyList_GET_ITEM((PyObject *), 0);",
        "PyDict_SetItem(->fields, k, v);",
        "// noqa: borrowed-ref",
    ] {
        let text = format!(
            "#include <Python.h>\nstatic PyObject *cache;\nstatic PyObject *\nf(PyObject *self, PyObject *x)\n{{\n{body}\n    return NULL;\n}}\n"
        );
        check_buffer("fuzz/_mod.c", text.into_bytes());
    }
}
