use super::support::{call_site, calls_where};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags a call to `PyUnstable_Module_SetGIL` that is not inside
    /// `#ifdef Py_GIL_DISABLED` (or `#if defined(Py_GIL_DISABLED)`).
    ///
    /// ## Why is this bad?
    /// `PyUnstable_Module_SetGIL` exists only in the free-threaded build's headers: the
    /// default build of 3.13 and 3.14 does not declare it, so the module fails to compile (or,
    /// with implicit declarations, fails to import) everywhere else.
    ///
    /// ## Example
    /// ```c
    /// PyMODINIT_FUNC
    /// PyInit__speedups(void)
    /// {
    ///     PyObject *m = PyModule_Create(&speedups_module);
    ///     PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
    ///     return m;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// #ifdef Py_GIL_DISABLED
    ///     PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
    /// #endif
    /// ```
    /// or move to multi-phase init and declare `{Py_mod_gil, Py_MOD_GIL_NOT_USED}`.
    ///
    /// ## Minimum Python
    /// 3.13.
    ///
    /// ## References
    /// - CPython docs: `PyUnstable_Module_SetGIL`
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Single-Phase
    ///   Initialization"
    pub static RULE = {
        id: "ISO106",
        name: "set-gil-unguarded",
        severity: Warning,
        min_python: "3.13",
        summary: "`PyUnstable_Module_SetGIL` outside `#ifdef Py_GIL_DISABLED`",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for (fi, f, call) in calls_where(ctx, |c| c == "PyUnstable_Module_SetGIL") {
        if call.versions.free_threaded == Some(true) {
            continue;
        }
        let message = format!("`PyUnstable_Module_SetGIL` in `{}` is compiled by every build, but only the free-threaded build declares it", f.name);
        let help = "put the call inside `#ifdef Py_GIL_DISABLED` ... `#endif`".to_string();
        ctx.report(
            call_site(fi, call),
            Some(&call.callee),
            Some(&f.name),
            message,
            help,
        );
    }
}
