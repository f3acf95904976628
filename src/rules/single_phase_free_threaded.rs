use super::support::call_site;
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Reports a single-phase module with `m_size = -1` that declares
    /// `PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED)`: a module meant for free-threaded
    /// builds that they refuse in every sub-interpreter.
    ///
    /// ## Why is this bad?
    /// A free-threaded CPython does not load a single-phase module with `m_size = -1` in a
    /// sub-interpreter at all: the import fails with "module ... does not support the
    /// combination of free-threading and subinterpreters". On the default build such a module
    /// loads, with its state shared between interpreters.
    ///
    /// ## Example
    /// ```c
    /// static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "fast", NULL, -1, methods};
    ///
    /// PyMODINIT_FUNC
    /// PyInit_fast(void)
    /// {
    ///     PyObject *m = PyModule_Create(&mod);
    /// #ifdef Py_GIL_DISABLED
    ///     PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);
    /// #endif
    ///     return m;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Move to multi-phase init (`PyModuleDef_Init` with `Py_mod_exec`, `m_size >= 0`) and
    /// declare `{Py_mod_gil, Py_MOD_GIL_NOT_USED}` in the slots (`isolint fix --stage 0`
    /// writes the first part).
    ///
    /// ## Minimum Python
    /// 3.5 (multi-phase init).
    ///
    /// ## References
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Single-Phase
    ///   Initialization"
    /// - PEP 489: Multi-phase extension module initialization
    pub static RULE = {
        id: "ISO107",
        name: "single-phase-free-threaded",
        severity: Warning,
        min_python: "3.5",
        summary: "single-phase module with `m_size = -1` declared for free-threaded builds",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let module = ctx.module;
    let Some(set) = &module.set_gil else {
        return;
    };
    if !module.initialises_once_per_process() || !set.value.contains("NOT_USED") {
        return;
    }
    let call = ctx.project.call(set.function, set.call);
    let f = ctx.project.function(set.function);
    let message = format!("module `{}` uses single-phase init with `m_size = -1` and declares `Py_MOD_GIL_NOT_USED`: free-threaded builds refuse to load it in any sub-interpreter", module.name);
    let help = "move to multi-phase init with `m_size >= 0` and declare `{Py_mod_gil, Py_MOD_GIL_NOT_USED}` in the slots".to_string();
    ctx.report(
        call_site(set.function.file, call),
        Some(&call.callee),
        Some(&f.name),
        message,
        help,
    );
}
