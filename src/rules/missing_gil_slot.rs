use super::support::module_site;
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Points out a module that neither declares a `Py_mod_gil` slot nor calls
    /// `PyUnstable_Module_SetGIL`.
    ///
    /// ## Why is this bad?
    /// On free-threaded builds (PEP 703, 3.13+), importing such a module re-enables the GIL
    /// for the whole process. Once the module's state is per interpreter and its own data is
    /// thread-safe, it can say so.
    ///
    /// ## Example
    /// ```c
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_exec, exec},
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// #ifdef Py_GIL_DISABLED
    ///     {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    /// #endif
    /// ```
    /// or, for single-phase init, `PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED);`.
    ///
    /// ## Minimum Python
    /// 3.13.
    ///
    /// ## References
    /// - PEP 703: Making the Global Interpreter Lock Optional
    /// - CPython docs: `Py_mod_gil`
    pub static RULE = {
        id: "ISO023",
        name: "missing-gil-slot",
        severity: Info,
        min_python: "3.13",
        summary: "no `Py_mod_gil` slot (free-threading)",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let module = ctx.module;
    if !module.is_real() || module.slot("Py_mod_gil").is_some() {
        return;
    }
    let sets_gil = module.files.iter().any(|&fi| {
        ctx.project.files[fi].functions.iter().any(|f| {
            f.calls
                .iter()
                .any(|c| c.callee == "PyUnstable_Module_SetGIL")
        })
    });
    if sets_gil {
        return;
    }
    let Some((site, symbol)) = module_site(ctx, None) else {
        return;
    };
    let message = format!("module `{}` declares no `Py_mod_gil`: free-threaded builds re-enable the GIL when it is imported", module.name);
    let help = "once its state is per interpreter and thread-safe, add `{Py_mod_gil, Py_MOD_GIL_NOT_USED}` (or call `PyUnstable_Module_SetGIL` for single-phase init)".to_string();
    ctx.report(site, Some(&symbol), None, message, help);
}
