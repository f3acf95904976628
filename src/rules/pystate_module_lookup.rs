use super::{declare_rule, Ctx, Site};

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
    let project = ctx.project;
    let has_state = super::module_state_via_global::has_module_state(ctx);
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            for call in f
                .calls
                .iter()
                .filter(|c| LOOKUPS.contains(&c.callee.as_str()))
            {
                // With module state, `module-state-via-global` says more about this call.
                if call.callee == "PyState_FindModule" && has_state {
                    continue;
                }
                let site = Site {
                    file: fi,
                    span: call.span,
                    versions: call.versions,
                    uncertain: call.uncertain,
                };
                let message = format!("`{}` looks the module up by its definition: one module per interpreter, and none for multi-phase modules", call.callee);
                let help = "pass the module or its state down from a function that has it, or use `PyType_GetModuleByDef(Py_TYPE(self), &def)` in methods".to_string();
                ctx.report(site, Some(&call.callee), Some(&f.name), message, help);
            }
        }
    }
}
