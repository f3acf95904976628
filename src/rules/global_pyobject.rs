use super::support::{global_role, GlobalRole};
use super::{declare_rule, write_summary, Ctx};
use crate::model::WriteClass;

declare_rule! {
    /// ## What it does
    /// Flags a file-scope variable that holds Python objects: `PyObject *`, any
    /// `Py*Object *`, a pointer to the module's own object struct, or an array or struct of
    /// them. The message says where it is written. A variable with tentative definitions or
    /// `extern` declarations (in a header) is one variable: one finding, at the definition,
    /// with the other declarations as related places.
    /// A global written only with one value that is the same in every interpreter and run
    /// (a named constant, the address of a static, a pure C computation) is not reported
    /// here but as `idempotent-global` (info); for a variable holding objects, only the
    /// address of a static object counts.
    ///
    /// ## Why is this bad?
    /// The variable is process-global, so one interpreter ends up using objects that belong to
    /// another: wrong answers, reference leaks, and crashes once the owning interpreter is
    /// gone. With multi-phase init each interpreter's import overwrites it, even when it is
    /// written only at init. With single-phase init and `m_size = -1`, `PyInit` runs once per
    /// process: every later legacy sub-interpreter gets a copy of the first module's dict and
    /// shares the first interpreter's objects (isolated interpreters refuse the module). The
    /// message says which of the two applies.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *cache;
    ///
    /// static int
    /// speedups_exec(PyObject *m)
    /// {
    ///     cache = PyDict_New();
    ///     return cache ? 0 : -1;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Keep it in module state and reach it through the module:
    /// ```c
    /// typedef struct { PyObject *cache; } speedups_state;
    ///
    /// static int
    /// speedups_exec(PyObject *m)
    /// {
    ///     speedups_state *st = PyModule_GetState(m);
    ///     st->cache = PyDict_New();
    ///     return st->cache ? 0 : -1;
    /// }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5 (`PyModule_GetState` with multi-phase init); 3.11 for `PyType_GetModuleByDef` in
    /// methods.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules": Module State
    /// - PEP 630, PEP 573
    pub static RULE = {
        id: "ISO004",
        name: "global-pyobject",
        severity: Warning,
        min_python: "3.5",
        summary: "file-scope variable holding Python objects",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if v.function.is_some()
            || v.is_thread_local
            || v.is_immutable()
            || g.class == WriteClass::NeverWritten
        {
            continue;
        }
        if !ctx.layouts.variable_holds_objects(v) {
            continue;
        }
        // `p_Foo_Type = &Foo_Type;` only: `idempotent-global` (info).
        if super::support::idempotent(ctx, g).is_some() {
            continue;
        }
        // Exceptions, module pointers and C-API tables have rules with their own advice.
        if global_role(ctx, g) != GlobalRole::Other {
            continue;
        }
        let message = format!(
            "`{}` (`{}`) holds Python objects in a process-global variable, {}",
            v.name,
            v.type_display().trim(),
            write_summary(ctx, g)
        );
        let help = "move it into the module state struct and reach it with `PyModule_GetState(module)` (or `PyType_GetModuleByDef` from methods)".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), None, message, help);
    }
}
