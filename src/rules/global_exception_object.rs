use super::support::{global_role, GlobalRole};
use super::{declare_rule, write_summary, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags an exception class created with `PyErr_NewException` or
    /// `PyErr_NewExceptionWithDoc` and stored in a C global, the most common global in real
    /// extension modules.
    ///
    /// ## Why is this bad?
    /// The class belongs to the interpreter that created it. With multi-phase init every
    /// import overwrites the global, so interpreters raise each other's exception classes:
    /// `except mod.Error` then fails to catch the error in every interpreter but the last one
    /// to import the module. With single-phase init and `m_size = -1`, `PyInit` runs once per
    /// process and every legacy sub-interpreter shares the first interpreter's class. Either
    /// way the class leaks or dangles when its interpreter goes away.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *SpeedupsError;
    /// /* in PyInit or exec */
    /// SpeedupsError = PyErr_NewException("_speedups.Error", NULL, NULL);
    /// ```
    ///
    /// ## Use instead
    /// Keep it in module state, created in the exec slot, and raise it from there:
    /// ```c
    /// st->error = PyErr_NewException("_speedups.Error", NULL, NULL);
    /// ...
    /// PyErr_SetString(get_speedups_state(module)->error, "bad input");
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5 (module state); 3.11 to reach it from methods with `PyType_GetModuleByDef`.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules": Module State
    pub static RULE = {
        id: "ISO011",
        name: "global-exception-object",
        severity: Warning,
        min_python: "3.5",
        summary: "exception class stored in a C global",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if global_role(ctx, g) != GlobalRole::Exception {
            continue;
        }
        let message = format!(
            "exception class `{}` is stored in a process-global variable, {}",
            v.name,
            write_summary(ctx, g)
        );
        let help = "create it in the exec slot, keep it in module state, and raise it from there (`PyErr_SetString(state->error, ...)`)".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}
