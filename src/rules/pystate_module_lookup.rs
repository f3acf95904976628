use super::support::{call_site, calls_where};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags calls to `PyState_FindModule`, `PyState_AddModule` and `PyState_RemoveModule`.
    ///
    /// ## Why is this bad?
    /// These look a module up by its `PyModuleDef` in a per-interpreter table that holds one
    /// module per definition. They do not work for multi-phase modules, and with several
    /// instances of a module in one interpreter the last one registered wins.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *
    /// helper(void)
    /// {
    ///     PyObject *m = PyState_FindModule(&moduledef);
    ///     return ((mod_state *)PyModule_GetState(m))->cache;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Pass the module (or the state) down from a function that has it, or get it from the
    /// defining class:
    /// ```c
    /// PyObject *m = PyType_GetModuleByDef(Py_TYPE(self), &moduledef);
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (`PyType_GetModule`); 3.11 (`PyType_GetModuleByDef`).
    ///
    /// ## References
    /// - CPython docs: Module lookup (`PyState_FindModule`)
    /// - PEP 573
    pub static RULE = {
        id: "ISO007",
        name: "pystate-module-lookup",
        severity: Warning,
        min_python: "3.9",
        summary: "module found through `PyState_FindModule` and friends",
        blocks: SharedGil,
        check: check,
    };
}

const LOOKUPS: &[&str] = &[
    "PyState_FindModule",
    "PyState_AddModule",
    "PyState_RemoveModule",
];

fn check(ctx: &mut Ctx) {
    let has_state = super::module_state_via_global::has_module_state(ctx);
    for (fi, f, call) in calls_where(ctx, |c| LOOKUPS.contains(&c)) {
        // With module state, `module-state-via-global` says more about this call.
        if call.callee == "PyState_FindModule" && has_state {
            continue;
        }
        let message = match call.callee.as_str() {
            "PyState_FindModule" => "`PyState_FindModule` looks the module up by its definition: one module per interpreter, and none for multi-phase modules".to_string(),
            other => format!("`{other}` keeps one module per definition in each interpreter: it does not work for multi-phase modules"),
        };
        let help = "pass the module or its state down from a function that has it, or use `PyType_GetModuleByDef(Py_TYPE(self), &def)` in methods".to_string();
        ctx.report(
            call_site(fi, call),
            Some(&call.callee),
            Some(&f.name),
            message,
            help,
        );
    }
}
