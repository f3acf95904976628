use super::{declare_rule, Ctx, Site};
use crate::model::InitStyle;

declare_rule! {
    /// ## What it does
    /// Flags a `PyInit_<name>` function that creates its module with single-phase init:
    /// `PyModule_Create(&def)` (or `PyModule_Create2`, `PyModule_New`), called directly, through
    /// a helper function, or through a macro.
    ///
    /// ## Why is this bad?
    /// A single-phase module is created once per process and then copied into each interpreter
    /// from a saved dict. Its C state cannot be per interpreter, and since Python 3.12 isolated
    /// sub-interpreters refuse to import it at all.
    ///
    /// ## Example
    /// ```c
    /// PyMODINIT_FUNC
    /// PyInit__speedups(void)
    /// {
    ///     return PyModule_Create(&speedups_module);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Move the body into a `Py_mod_exec` function and return the definition (multi-phase init,
    /// PEP 489):
    /// ```c
    /// static PyModuleDef_Slot speedups_slots[] = {
    ///     {Py_mod_exec, speedups_exec},
    ///     {0, NULL}
    /// };
    /// PyMODINIT_FUNC
    /// PyInit__speedups(void)
    /// {
    ///     return PyModuleDef_Init(&speedups_module);
    /// }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5 (PEP 489).
    ///
    /// ## References
    /// - PEP 489: Multi-phase extension module initialization
    /// - CPython HOWTO "Isolating Extension Modules" (PEP 630)
    pub static RULE = {
        id: "ISO001",
        name: "single-phase-init",
        severity: Warning,
        min_python: "3.5",
        summary: "module created with single-phase init (`PyModule_Create`)",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let module = ctx.module;
    if module.init_style != InitStyle::SinglePhase {
        return;
    }
    let (Some(init), Some(creation)) = (module.init_function, &module.creation) else {
        return;
    };
    let call = ctx.project.call(creation.function, creation.call);
    let init_fn = ctx.project.function(init);
    let via = creation
        .via
        .as_deref()
        .map(|v| format!(" through {v}"))
        .unwrap_or_default();
    let (site, function) = if creation.function == init {
        (
            Site {
                file: init.file,
                span: call.span,
                versions: call.versions,
                uncertain: call.uncertain,
            },
            &init_fn.name,
        )
    } else {
        (
            Site {
                file: init.file,
                span: init_fn.span,
                versions: init_fn.versions,
                uncertain: init_fn.uncertain,
            },
            &init_fn.name,
        )
    };
    let message = format!(
        "`{}` creates module `{}` with single-phase init (`{}`){via}",
        init_fn.name, module.name, call.callee
    );
    let help = format!(
        "move the body of `{}` into a `Py_mod_exec` function and `return PyModuleDef_Init(&def);` (multi-phase init, PEP 489)",
        init_fn.name
    );
    ctx.report(
        site,
        Some(&init_fn.name.clone()),
        Some(&function.clone()),
        message,
        help,
    );
}
