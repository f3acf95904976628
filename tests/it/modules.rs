//! Which files make a module when the build says so, module names and aliases, and the module
//! facts (`m_size`, a single-phase module's GIL declaration), on small trees written here.

use isolint::model::ModuleSummary;
use isolint::{analyze, Analysis, AnalyzeOptions};
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn scan(root: &Path) -> Analysis {
    analyze(&AnalyzeOptions {
        paths: vec![root.to_path_buf()],
        ..AnalyzeOptions::default()
    })
}

fn module<'a>(analysis: &'a Analysis, name: &str) -> &'a ModuleSummary {
    analysis
        .modules
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no module {name} in {:?}", names(analysis)))
}

fn names(analysis: &Analysis) -> Vec<&str> {
    analysis.modules.iter().map(|m| m.name.as_str()).collect()
}

/// The module's files relative to `root`, with `/` separators.
fn files(m: &ModuleSummary, root: &Path) -> Vec<String> {
    let mut out: Vec<String> = m
        .files
        .iter()
        .map(|f| {
            f.strip_prefix(root)
                .unwrap_or(f)
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    out.sort();
    out
}

/// A module that calls `lib_value()` (declared in `lib/lib.h`).
fn module_source(name: &str, m_name: &str) -> String {
    format!(
        r#"#include <Python.h>
#include "../lib/lib.h"
static PyObject *value(PyObject *self, PyObject *args) {{ return PyLong_FromLong(lib_value()); }}
static PyMethodDef methods[] = {{{{"value", value, METH_NOARGS, NULL}}, {{NULL, NULL, 0, NULL}}}};
static struct PyModuleDef def = {{PyModuleDef_HEAD_INIT, "{m_name}", NULL, -1, methods}};
PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&def); }}
"#
    )
}

const LIB_H: &str = "int lib_value(void);\nint lib_other(void);\n";
const LIB_C: &str =
    "#include \"lib.h\"\nstatic int counter;\nint lib_value(void) { return ++counter; }\n";
const LIB2_C: &str = "#include \"lib.h\"\nint lib_other(void) { return 2; }\n";

/// Two extensions share a library folder (a `glob`), a third includes the library's header
/// but the build does not link the library into it: it must not get the library's files.
#[test]
fn setup_py_extensions_sharing_a_library_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "setup.py",
        r#"import glob, os
from setuptools import setup, Extension
LIB = sorted(glob.glob("lib/*.c"))
setup(
    name="pkg",
    ext_modules=[
        Extension("pkg._one", sources=[os.path.join("src", "one.c")] + LIB),
        Extension("pkg.sub._two", ["src/two.c"] + LIB),
        Extension("pkg._three", ["src/three.c"]),
    ],
)
"#,
    );
    write(root, "src/one.c", &module_source("_one", "_one"));
    write(root, "src/two.c", &module_source("_two", "two"));
    write(root, "src/three.c", &module_source("_three", "pkg._three"));
    write(root, "lib/lib.h", LIB_H);
    write(root, "lib/lib.c", LIB_C);
    write(root, "lib/lib2.c", LIB2_C);
    let analysis = scan(root);
    assert!(
        analysis.build_notes.is_empty(),
        "{:?}",
        analysis.build_notes
    );
    assert_eq!(names(&analysis), ["_one", "_three", "_two"]);
    for (name, import) in [("_one", "pkg._one"), ("_two", "pkg.sub._two")] {
        let m = module(&analysis, name);
        assert_eq!(m.files_from, "setup.py");
        assert_eq!(m.import_name.as_deref(), Some(import));
        let own = format!("src/{}.c", name.trim_start_matches('_'));
        assert_eq!(
            files(m, root),
            ["lib/lib.c", "lib/lib.h", "lib/lib2.c", own.as_str()],
            "{name}"
        );
    }
    let three = module(&analysis, "_three");
    assert_eq!(three.files_from, "setup.py");
    assert_eq!(files(three, root), ["lib/lib.h", "src/three.c"]);
    // The library's counter belongs to the two modules that link it, not to `_three`.
    let counter: Vec<Option<&str>> = analysis
        .findings
        .iter()
        .filter(|f| f.symbol.as_deref() == Some("counter"))
        .map(|f| f.module.as_deref())
        .collect();
    assert!(!counter.is_empty());
    assert!(!counter.contains(&Some("_three")), "{counter:?}");
}

/// One extension written twice (`if USE_SYSTEM_LIB:` its own source, `else:` the bundled
/// library too): the module is the union, so the bundled library's state counts.
#[test]
fn an_extension_written_in_two_branches_is_their_union() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "setup.py",
        r#"from setuptools import setup, Extension
if USE_SYSTEM_LIB:
    ext = Extension("_one", sources=["src/one.c"], libraries=["lib"])
else:
    ext = Extension("_one", sources=["src/one.c", "lib/lib.c", "lib/lib2.c"])
setup(ext_modules=[ext])
"#,
    );
    write(root, "src/one.c", &module_source("_one", "_one"));
    write(root, "lib/lib.h", LIB_H);
    write(root, "lib/lib.c", LIB_C);
    write(root, "lib/lib2.c", LIB2_C);
    let analysis = scan(root);
    let m = module(&analysis, "_one");
    assert_eq!(m.files_from, "setup.py");
    assert_eq!(
        files(m, root),
        ["lib/lib.c", "lib/lib.h", "lib/lib2.c", "src/one.c"]
    );
}

/// Without build information, include-and-definition linking still finds the library, but
/// never a stub in `tests/` that defines the same function.
#[test]
fn linking_does_not_cross_into_a_tests_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "src/mod.c", &module_source("mod", "pkg.mod"));
    write(root, "lib/lib.h", LIB_H);
    write(root, "lib/lib.c", LIB_C);
    write(
        root,
        "tests/stub_lib.c",
        "static int fake;\nint lib_value(void) { return fake++; }\n",
    );
    // A test module that lives in tests/ may link the stub beside it.
    write(
        root,
        "tests/test_mod.c",
        &module_source("test_mod", "test_mod").replace("../lib/lib.h", "lib_stub.h"),
    );
    write(root, "tests/lib_stub.h", LIB_H);
    let analysis = scan(root);
    let m = module(&analysis, "mod");
    assert_eq!(m.files_from, "includes");
    assert_eq!(m.import_name.as_deref(), Some("pkg.mod"));
    assert_eq!(files(m, root), ["lib/lib.c", "lib/lib.h", "src/mod.c"]);
    let t = module(&analysis, "test_mod");
    assert!(files(t, root).contains(&"tests/stub_lib.c".to_string()));
}

/// A Windows-only `PyInit___init__` that returns the real `PyInit_` is not a module; a word
/// between `PyMODINIT_FUNC` and the name does not change the name.
#[test]
fn init_aliases_and_heads_with_macros() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "alias.c",
        r#"#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "pkg.alias", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_alias(void) { return PyModule_Create(&def); }
#ifdef _WIN32
/* So that `import pkg` of a folder built as one extension works on Windows. */
PyMODINIT_FUNC PyInit___init__(void) { return PyInit_alias(); }
#endif
"#,
    );
    write(
        root,
        "export.c",
        r#"#include <Python.h>
#define MY_EXPORT __attribute__((visibility("default")))
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "exported", NULL, -1, NULL};
PyMODINIT_FUNC
MY_EXPORT
PyInit_exported(void) { return PyModule_Create(&def); }
PyMODINIT_FUNC
#if PY_MAJOR_VERSION >= 3
PyInit_branchy(void)
#else
initbranchy(void)
#endif
{ return PyModule_Create(&def); }
"#,
    );
    // An alias whose target is not in the scan is the module there is.
    write(
        root,
        "lonely.c",
        "#include <Python.h>\nPyObject *PyInit__impl(void);\nPyMODINIT_FUNC PyInit_lonely(void) { return PyInit__impl(); }\n",
    );
    let analysis = scan(root);
    assert_eq!(names(&analysis), ["alias", "branchy", "exported", "lonely"]);
    assert!(analysis
        .findings
        .iter()
        .all(|f| f.module.as_deref() != Some("__init__")));
}

/// `m_size` left out is 0; `PyUnstable_Module_SetGIL` is the GIL a single-phase module
/// declares, and its verdict says so.
#[test]
fn omitted_m_size_and_set_gil() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "designated.c",
        r#"#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, .m_name = "designated"};
PyMODINIT_FUNC PyInit_designated(void) {
    PyObject *m = PyModule_Create(&def);
    if (m == NULL) return NULL;
#ifdef Py_GIL_DISABLED
    PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
#endif
    return m;
}
"#,
    );
    write(
        root,
        "positional.c",
        r#"#include <Python.h>
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "positional", "doc"};
PyMODINIT_FUNC PyInit_positional(void) { return PyModule_Create(&def); }
"#,
    );
    let analysis = scan(root);
    let d = module(&analysis, "designated");
    assert_eq!(d.m_size.as_deref(), Some("0"));
    assert_eq!(
        d.slots.get("gil").cloned().flatten().as_deref(),
        Some("Py_MOD_GIL_NOT_USED")
    );
    let verdict = d.verdict.as_ref().unwrap();
    assert_eq!(verdict.gil, "Py_MOD_GIL_NOT_USED");
    assert!(!verdict.gil_is_default);
    let p = module(&analysis, "positional");
    assert_eq!(p.m_size.as_deref(), Some("0"));
    assert_eq!(p.slots.get("gil").cloned().flatten(), None);
    assert!(p.verdict.as_ref().unwrap().gil_is_default);
}

/// A compile database names the exact translation units (a file it does not list is not
/// linked, even when it defines what the module calls), and its `-D` macros decide `#ifdef`.
#[test]
fn compile_commands_files_and_defines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "src/mod.c",
        r#"#include <Python.h>
#include "../lib/lib.h"
#ifdef USE_CACHE
static PyObject *built_cache;
#else
static PyObject *unbuilt_cache;
#endif
static PyObject *get(PyObject *self, PyObject *args) {
#ifdef USE_CACHE
    built_cache = PyLong_FromLong(lib_value());
#else
    unbuilt_cache = PyLong_FromLong(1);
#endif
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"get", get, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "mod", NULL, -1, methods};
PyMODINIT_FUNC PyInit_mod(void) { return PyModule_Create(&def); }
"#,
    );
    write(root, "lib/lib.h", LIB_H);
    write(root, "lib/lib.c", LIB_C);
    // Defines `lib_value` too, but the build does not compile it.
    write(
        root,
        "lib/alt.c",
        "static int alt;\nint lib_value(void) { return alt++; }\n",
    );
    write(
        root,
        "build/compile_commands.json",
        r#"[
  {"directory": "..", "file": "src/mod.c", "arguments": ["cc", "-DUSE_CACHE", "-Ilib", "-c", "src/mod.c"],
   "output": "CMakeFiles/mod.dir/src/mod.c.o"},
  {"directory": "..", "file": "lib/lib.c", "command": "cc -c lib/lib.c", "output": "CMakeFiles/mod.dir/lib/lib.c.o"},
  {"directory": "..", "file": "lib/gone.c", "command": "cc -c lib/gone.c", "output": "CMakeFiles/mod.dir/lib/gone.c.o"}
]"#,
    );
    let analysis = scan(root);
    let m = module(&analysis, "mod");
    assert_eq!(m.files_from, "compile_commands.json");
    assert_eq!(files(m, root), ["lib/lib.c", "lib/lib.h", "src/mod.c"]);
    let symbols: Vec<&str> = analysis
        .findings
        .iter()
        .filter_map(|f| f.symbol.as_deref())
        .collect();
    assert!(symbols.contains(&"built_cache"), "{symbols:?}");
    assert!(!symbols.contains(&"unbuilt_cache"), "{symbols:?}");
    // The missing file is a note, and the scan went on.
    assert!(
        analysis
            .build_notes
            .iter()
            .any(|n| n.message.contains("do not exist")),
        "{:?}",
        analysis.build_notes
    );
}

/// `meson.build`: `py.extension_module()` with a `files()` variable, a `subdir:` that makes
/// the dotted import name, and a static library it links.
#[test]
fn meson_extension_modules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "meson.build",
        r#"project('pkg', 'c')
py = import('python').find_installation(pure: false)
lib = static_library('core', 'lib/lib.c', 'lib/lib2.c')
subdir('src')
"#,
    );
    write(
        root,
        "src/meson.build",
        r#"one_sources = files(
  'one.c',
)
py.extension_module('_one', one_sources, link_with: lib, subdir: 'pkg', install: true)
"#,
    );
    write(root, "src/one.c", &module_source("_one", "_one"));
    write(root, "lib/lib.h", LIB_H);
    write(root, "lib/lib.c", LIB_C);
    write(root, "lib/lib2.c", LIB2_C);
    let analysis = scan(root);
    let m = module(&analysis, "_one");
    assert_eq!(m.files_from, "meson.build");
    assert_eq!(m.import_name.as_deref(), Some("pkg._one"));
    assert_eq!(
        files(m, root),
        ["lib/lib.c", "lib/lib.h", "lib/lib2.c", "src/one.c"]
    );
}

/// Bad build files end in a note, and the modules are still found by includes.
#[test]
fn bad_build_files_fall_back_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "setup.py",
        "from setuptools import Extension\nExtension('m', ['m.c'\n",
    );
    write(root, "compile_commands.json", "{\"not\": \"a list\"");
    write(
        root,
        "pyproject.toml",
        "[tool.setuptools\next-modules = 3\n",
    );
    write(
        root,
        "m.c",
        "#include <Python.h>\nstatic struct PyModuleDef def = {PyModuleDef_HEAD_INIT, \"m\", NULL, 0, NULL};\nPyMODINIT_FUNC PyInit_m(void) { return PyModuleDef_Init(&def); }\n",
    );
    let analysis = scan(root);
    assert_eq!(names(&analysis), ["m"]);
    assert_eq!(module(&analysis, "m").files_from, "includes");
    let notes: Vec<String> = analysis
        .build_notes
        .iter()
        .map(|n| {
            format!(
                "{}: {}",
                n.path.file_name().unwrap().to_string_lossy(),
                n.message
            )
        })
        .collect();
    assert_eq!(notes.len(), 3, "{notes:?}");
    assert!(notes[0].starts_with("compile_commands.json: not a compile database"));
    assert!(notes[1].starts_with("setup.py: does not parse as Python"));
    assert!(notes[2].starts_with("pyproject.toml: not valid TOML"));
}

/// A setup.py that builds its sources in code: a note, and the module found by includes
/// keeps the Extension's dotted name.
#[test]
fn computed_setup_py_sources() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "setup.py",
        "from setuptools import Extension, setup\nimport os\nsources = [f for f in os.listdir('src') if f.endswith('.c')]\nsetup(ext_modules=[Extension('pkg.fast._m', sources=sources)])\n",
    );
    write(root, "src/m.c", &module_source("_m", "_m"));
    let analysis = scan(root);
    let m = module(&analysis, "_m");
    assert_eq!(m.files_from, "includes");
    assert_eq!(m.import_name.as_deref(), Some("pkg.fast._m"));
    assert_eq!(analysis.build_notes.len(), 1);
    assert!(analysis.build_notes[0].message.contains("computed in code"));
}

/// Checking module by module (the facts spilled, each module's read back for its turn) gives
/// the report the whole model gives: on every check fixture alone, and on all of them at once
/// (shared headers, files no module holds, the same module name twice).
#[test]
fn module_by_module_equals_the_whole_model() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/check");
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.push(fixtures);
    for dir in dirs {
        let analysis = |model: bool| {
            analyze(&AnalyzeOptions {
                paths: vec![dir.clone()],
                model,
                ..AnalyzeOptions::default()
            })
        };
        let by_module = analysis(false);
        let report = isolint::report::json::render(&by_module);
        assert_eq!(
            report,
            isolint::report::json::render(&analysis(true)),
            "{}",
            dir.display()
        );
        // The report is printed finding by finding: the text of the whole document's value.
        let whole = isolint::report::json::to_value(&by_module);
        assert_eq!(report, serde_json::to_string_pretty(&whole).unwrap() + "\n");
    }
}
