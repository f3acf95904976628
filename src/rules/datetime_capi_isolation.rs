use super::support::process_wide_imports;
use super::{declare_rule, Ctx};
use crate::version::py;

declare_rule! {
    /// ## What it does
    /// Reports `PyDateTime_IMPORT` (or `PyCapsule_Import` of `datetime.datetime_CAPI`) in code
    /// that Python 3.12 compiles, in a module that does not limit its per-interpreter-GIL
    /// declaration to 3.13 and later.
    ///
    /// The pointer it stores is the same in every interpreter (see `idempotent-global`), but on
    /// 3.12 the `_datetime` module itself cannot be imported in an interpreter with its own GIL:
    /// it is single-phase there and fails with "module _datetime does not support loading in
    /// subinterpreters" (CPython gh-111378). `PyDateTime_IMPORT` then leaves `PyDateTimeAPI`
    /// `NULL`: the module's exec fails if it checks, and crashes on the first use if it does
    /// not. From 3.13 `_datetime` is isolated and the import works in every interpreter.
    ///
    /// So on 3.12 such a module can honestly declare `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`
    /// (a shared GIL), not `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`. The finding blocks
    /// per-interpreter-gil. It is not reported when the module's
    /// `Py_mod_multiple_interpreters` slot is only compiled for 3.13 and later, nor for an
    /// import only 3.13 and later compile, nor for CPython's own modules (a module that
    /// includes an internal `pycore_*.h` header is built with its own CPython only).
    ///
    /// ## Why is this bad?
    /// A module that declares per-interpreter-GIL support on 3.12 and imports the datetime C
    /// API fails to import, or crashes, in `concurrent.interpreters`-style isolated
    /// interpreters on 3.12 (`isolint verify` on 3.12 shows the crash of a module that does not
    /// check `PyDateTimeAPI`).
    ///
    /// ## Example
    /// ```c
    /// static int exec(PyObject *m) {
    ///     PyDateTime_IMPORT;
    ///     return PyDateTimeAPI ? 0 : -1;
    /// }
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_exec, exec},
    ///     {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_exec, exec},
    /// #if PY_VERSION_HEX >= 0x030D0000
    ///     {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    /// #elif PY_VERSION_HEX >= 0x030C0000
    ///     {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
    /// #endif
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Minimum Python
    /// 3.12 (`Py_mod_multiple_interpreters`); the limit ends with 3.13.
    ///
    /// ## References
    /// - CPython gh-111378: unable to import `_datetime` into sub-interpreters in 3.12
    /// - CPython gh-117398: isolate the `_datetime` extension module (3.13)
    /// - PEP 684: A Per-Interpreter GIL
    pub static RULE = {
        id: "ISO028",
        name: "datetime-capi-isolation",
        severity: Warning,
        min_python: "3.12",
        summary: "the datetime C API cannot be imported in an isolated interpreter on 3.12",
        blocks: PerInterpreterGil,
        check: check,
    };
}

const HELP: &str = "declare `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED` only under `#if PY_VERSION_HEX >= 0x030D0000`, and `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED` for 3.12";

fn check(ctx: &mut Ctx) {
    // A declaration only 3.13 and later compile already says what this rule asks.
    if ctx
        .module
        .slot("Py_mod_multiple_interpreters")
        .is_some_and(|s| !s.versions.is_empty() && s.versions.lo >= py(3, 13))
    {
        return;
    }
    let project = ctx.project;
    // CPython's own modules include its internal headers and are built with that one Python
    // only (3.13's `_zoneinfo` is isolated with the `_datetime` beside it).
    let cpython_internal = ctx.module.files.iter().any(|&fi| {
        project.files[fi].includes.iter().any(|i| {
            i.target
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("pycore_"))
        })
    });
    if cpython_internal {
        return;
    }
    let sites = process_wide_imports(ctx);
    for (site, name, function) in sites {
        if !site.versions.is_empty() && !site.versions.contains(py(3, 12)) {
            continue;
        }
        let message = format!(
            "`{name}` in `{function}` needs `_datetime`, which Python 3.12 cannot import in an interpreter with its own GIL (gh-111378): on 3.12 the module fails there, or crashes if it does not check `PyDateTimeAPI`; per-interpreter-gil holds from 3.13"
        );
        ctx.report(
            site,
            Some("PyDateTimeAPI"),
            Some(&function),
            message,
            HELP.to_string(),
        );
    }
}
