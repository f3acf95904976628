use super::support::{call_site, calls_where, global_role, GlobalRole};
use super::{declare_rule, write_summary, Ctx};
use crate::facts::ExprKind;

declare_rule! {
    /// ## What it does
    /// Flags module state reached through a global: a C global that holds the module object
    /// (from `PyModule_Create`, `PyState_FindModule`, or the exec slot's argument), or a
    /// `PyState_FindModule` call in a module that has module state (`m_size > 0`).
    ///
    /// ## Why is this bad?
    /// There is one module object per interpreter, and the global holds only one of them (the
    /// last one imported with multi-phase init, the first with single-phase init and
    /// `m_size = -1`): every other interpreter then reads and writes the wrong interpreter's
    /// state.
    /// `PyState_FindModule` finds a single module per definition, so a second module instance
    /// in one interpreter sees the first one's state.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *the_module;
    /// static int exec(PyObject *m) { the_module = m; return 0; }
    /// static PyObject *f(PyObject *self, PyObject *arg)
    /// {
    ///     mod_state *st = PyModule_GetState(the_module);
    ///     ...
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Reach the state from what each function receives: the module (`self` of module-level
    /// functions), or the defining class:
    /// ```c
    /// mod_state *st = PyModule_GetState(self);
    /// mod_state *st = PyType_GetModuleState(defining_class);          /* METH_METHOD, 3.9+ */
    /// PyObject *m = PyType_GetModuleByDef(Py_TYPE(obj), &moduledef);  /* 3.11+ */
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (`defining_class`); 3.11 (`PyType_GetModuleByDef`).
    ///
    /// ## References
    /// - PEP 573: Module State Access from C Extension Methods
    /// - CPython HOWTO "Isolating Extension Modules"
    pub static RULE = {
        id: "ISO016",
        name: "module-state-via-global",
        severity: Warning,
        min_python: "3.9",
        summary: "module or its state reached through a global",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        if global_role(ctx, g) != GlobalRole::ModulePointer {
            continue;
        }
        let v = ctx.project.var(g.var);
        // Single-phase init with `m_size = -1` runs once: the first module object stays.
        let outcome = if ctx.module.initialises_once_per_process() {
            "every interpreter reaches the first interpreter's module through it"
        } else {
            "the last interpreter to import the module wins"
        };
        let message = format!(
            "`{}` keeps the module object in a process-global variable, {}; {outcome}",
            v.name,
            write_summary(ctx, g)
        );
        let help = "reach the module from what each function receives: `self` for module functions, `PyType_GetModuleByDef(Py_TYPE(obj), &def)` or `defining_class` in methods".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
    if !has_module_state(ctx) {
        return;
    }
    for (fi, f, call) in calls_where(ctx, |c| c == "PyState_FindModule") {
        let message = format!("`PyState_FindModule` in `{}` reaches module state of a module with `m_size > 0`: one module per definition, the last registered wins", f.name);
        let help =
            "pass the module down, or use `PyType_GetModuleByDef(Py_TYPE(self), &def)` in methods"
                .to_string();
        ctx.report(
            call_site(fi, call),
            Some("PyState_FindModule"),
            Some(&f.name),
            message,
            help,
        );
    }
}

/// `m_size` is `sizeof(...)` or a positive number.
pub(crate) fn has_module_state(ctx: &Ctx) -> bool {
    ctx.module
        .def
        .as_ref()
        .and_then(|d| d.m_size())
        .is_some_and(|e| match &e.kind {
            ExprKind::SizeOf(_) => true,
            ExprKind::Number(Some(n)) => *n > 0,
            _ => false,
        })
}
