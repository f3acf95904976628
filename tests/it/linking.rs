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
