//! Which files make up which module, on trees shaped like real repositories.

use isolint::{analyze, AnalyzeOptions};
use std::path::{Path, PathBuf};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const MODULE: &str = r#"#include <Python.h>
int helper_call(void);
static PyObject *run(PyObject *self, PyObject *args) { return PyLong_FromLong(helper_call()); }
static PyMethodDef methods[] = {{"run", run, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "NAME", NULL, -1, methods};
PyMODINIT_FUNC PyInit_NAME(void) { return PyModule_Create(&def); }
"#;

const HELPER: &str = r#"static int calls;
int helper_call(void) { return ++calls; }
"#;

/// Two packages of a monorepo, each linking its own copy of the same helper: each module links
/// the copy beside it, not both.
#[test]
fn a_module_links_the_nearest_copy_of_a_helper() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for pkg in ["alpha", "beta"] {
        write(
            root,
            &format!("{pkg}/src/_{pkg}.c"),
            &MODULE.replace("NAME", pkg),
        );
        write(root, &format!("{pkg}/src/helper.c"), HELPER);
    }
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![root.to_path_buf()],
        ..AnalyzeOptions::default()
    });
    assert_eq!(analysis.modules.len(), 2);
    for m in &analysis.modules {
        let files: Vec<PathBuf> = m
            .files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        let pkg = m.name.as_str();
        assert_eq!(
            files,
            vec![
                PathBuf::from(format!("{pkg}/src/_{pkg}.c")),
                PathBuf::from(format!("{pkg}/src/helper.c")),
            ],
            "module {pkg}"
        );
    }
    // Each copy's counter is reported once, for its own module.
    let counters: Vec<(String, Option<String>)> = analysis
        .findings
        .iter()
        .filter(|f| f.symbol.as_deref() == Some("calls"))
        .map(|f| {
            (
                f.path.strip_prefix(root).unwrap().display().to_string(),
                f.module.clone(),
            )
        })
        .collect();
    assert!(
        counters.contains(&("alpha/src/helper.c".into(), Some("alpha".into()))),
        "{counters:?}"
    );
    assert!(
        counters.contains(&("beta/src/helper.c".into(), Some("beta".into()))),
        "{counters:?}"
    );
}

/// Issue 12, item 12: `#define STATE (get_state(the_module))` in a header makes `STATE->x` in
/// the `.c` file a read of the global module pointer: the function that uses it is one of the
/// global's readers. The same function without the macro reads nothing.
#[test]
fn a_header_macro_reaches_the_global_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "state.h",
        r#"#include <Python.h>
typedef struct { long calls; } mod_state;
extern PyObject *the_module;
#define STATE (get_state(the_module))
static inline mod_state *get_state(PyObject *m) { return (mod_state *)PyModule_GetState(m); }
"#,
    );
    write(
        root,
        "_statemod.c",
        r#"#include "state.h"
PyObject *the_module = NULL;
static PyObject *count(PyObject *self, PyObject *unused) { return PyLong_FromLong(++STATE->calls); }
static PyObject *plain(PyObject *self, PyObject *unused) { return PyLong_FromLong(0); }
static PyMethodDef methods[] = {{"count", count, METH_NOARGS, NULL},
    {"plain", plain, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_statemod", NULL, sizeof(mod_state), methods};
PyMODINIT_FUNC PyInit__statemod(void) { the_module = PyModule_Create(&def); return the_module; }
"#,
    );
    let analysis = analyze(&AnalyzeOptions {
        paths: vec![root.to_path_buf()],
        model: true,
        ..Default::default()
    });
    let project = &analysis.project;
    let module = project
        .modules
        .iter()
        .find(|m| m.name == "_statemod")
        .expect("the module is found");
    let global = module
        .globals
        .iter()
        .find(|g| project.var(g.var).name == "the_module")
        .expect("the_module is a global of the module");
    let readers: Vec<&str> = global
        .readers
        .iter()
        .map(|&r| project.function(r).name.as_str())
        .collect();
    assert!(readers.contains(&"count"), "readers: {readers:?}");
    assert!(!readers.contains(&"plain"), "readers: {readers:?}");
}

/// A header's static and a function writing it, in a package that builds no module.
const TABLES_H: &str = "#include <Python.h>\nstatic int table[2] = {1, 2};\n";
const USER_C: &str = "#include \"tables.h\"\nvoid reset(void) { table[0] = 0; }\n";

/// What a scan reports under `package`, by rule, path below it, line and message.
fn findings_under(analysis: &isolint::Analysis, package: &Path) -> Vec<String> {
    let mut out: Vec<String> = analysis
        .findings
        .iter()
        .filter_map(|f| {
            let rel = f.path.strip_prefix(package).ok()?;
            Some(format!(
                "{} {} {} {}",
                f.rule,
                rel.to_string_lossy().replace('\\', "/"),
                f.location.line,
                f.message
            ))
        })
        .collect();
    out.sort();
    out
}

/// Two packages of one scan (each with its own `pyproject.toml`) hold the same loose code: a
/// header's `static` and a function writing it. They are separate programs: each package's
/// write is to its own static, so both report it, exactly as each package scanned alone does,
/// whether the scan checks module by module or keeps the whole model.
#[test]
fn loose_code_of_two_packages_is_not_linked_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for pkg in ["a", "b"] {
        write(
            root,
            &format!("{pkg}/pyproject.toml"),
            &format!("[project]\nname = \"{pkg}\"\n"),
        );
        write(root, &format!("{pkg}/tables.h"), TABLES_H);
        write(root, &format!("{pkg}/user.c"), USER_C);
    }
    let scan = |path: PathBuf, model: bool| {
        analyze(&AnalyzeOptions {
            paths: vec![path],
            model,
            ..AnalyzeOptions::default()
        })
    };
    let alone = findings_under(&scan(root.join("a"), false), &root.join("a"));
    assert!(
        alone
            .iter()
            .any(|f| f.starts_with("ISO006 tables.h 2 ") && f.contains("`reset`")),
        "{alone:?}"
    );
    for model in [false, true] {
        let both = scan(root.to_path_buf(), model);
        assert_eq!(
            findings_under(&both, &root.join("a")),
            alone,
            "model: {model}"
        );
        assert_eq!(
            findings_under(&both, &root.join("b")),
            alone,
            "model: {model}"
        );
    }
}
