use super::support::module_site;
use super::{declare_rule, Ctx};
use crate::model::InitStyle;

declare_rule! {
    /// ## What it does
    /// Flags a multi-phase module whose slots have no `Py_mod_multiple_interpreters` entry.
    ///
    /// ## Why is this bad?
    /// Without the slot, Python 3.12+ assumes `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`: the
    /// module silently claims to work in several interpreters sharing a GIL. Whether that is
    /// true should be a decision written in the code.
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
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_exec, exec},
    /// #if PY_VERSION_HEX >= 0x030C0000
    ///     {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    /// #endif
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Minimum Python
    /// 3.12.
    ///
    /// ## References
    /// - CPython docs: `Py_mod_multiple_interpreters`
    pub static RULE = {
        id: "ISO020",
        name: "missing-multiple-interpreters-slot",
        severity: Warning,
        min_python: "3.12",
        summary: "multi-phase module without `Py_mod_multiple_interpreters`",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let module = ctx.module;
    if !module.is_real()
        || module.init_style != InitStyle::MultiPhase
        || module.slot("Py_mod_multiple_interpreters").is_some()
    {
        return;
    }
    let Some((site, symbol)) = module_site(ctx, None) else {
        return;
    };
    let message = format!(
        "multi-phase module `{}` has no `Py_mod_multiple_interpreters` slot, so Python 3.12+ assumes `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED`",
        module.name
    );
    let help = "add `{Py_mod_multiple_interpreters, ...}` to the module's slots with the level it really supports (see the module verdict)".to_string();
    ctx.report(site, Some(&symbol), None, message, help);
}
