use super::support::{list_blockers, module_site};
use super::{declare_rule, Ctx};
use crate::model::InitStyle;

declare_rule! {
    /// ## What it does
    /// Flags a multi-phase module that declares `Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED` or
    /// `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`, explicitly or by default (a multi-phase module
    /// without the slot is treated as `SUPPORTED`), while the scan finds process-global state
    /// that rules that level out. The message lists the findings that block it, those that
    /// also block the weaker level first (a static type before a counter).
    ///
    /// A finding the project suppresses (an `isolint: ignore` comment, the config's
    /// `per-file-ignores`, the baseline) blocks nothing: the maintainers accepted it. The
    /// module's verdict lists it under `suppressed`, so the level still says what it rests on.
    ///
    /// ## Why is this bad?
    /// The declaration is what CPython trusts: it loads the module into isolated
    /// sub-interpreters, and its global state is then shared across them. The result is leaks,
    /// wrong answers and crashes in code that passed every test with one interpreter.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *cache;   /* process-global */
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_exec, exec},
    ///     {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Use instead
    /// Declare what the module supports today, and raise it as the state moves into module
    /// state:
    /// ```c
    /// #if PY_VERSION_HEX >= 0x030C0000
    ///     {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    /// #endif
    /// ```
    ///
    /// ## Minimum Python
    /// 3.12 (`Py_mod_multiple_interpreters`).
    ///
    /// ## References
    /// - PEP 684: A Per-Interpreter GIL
    /// - CPython docs: `Py_mod_multiple_interpreters`
    pub static RULE = {
        id: "ISO021",
        name: "overclaimed-isolation",
        severity: Error,
        min_python: "3.12",
        summary: "declared isolation level is higher than the scan allows",
        blocks: Nothing,
        reads_findings: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    if !ctx.module.is_real() || ctx.module.init_style != InitStyle::MultiPhase {
        return;
    }
    let verdict = ctx.verdict();
    if verdict.declared <= verdict.supported {
        return;
    }
    let Some((site, symbol)) = module_site(ctx, Some("Py_mod_multiple_interpreters")) else {
        return;
    };
    let blockers: Vec<_> = verdict
        .blockers
        .iter()
        .find(|(level, _)| *level == verdict.declared)
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let how = if verdict.multiple_interpreters_is_default {
        "by default (no `Py_mod_multiple_interpreters` slot)"
    } else {
        "explicitly"
    };
    let message = format!(
        "module `{}` declares `{}` {how}, but {} finding(s) block that level: {}",
        ctx.module.name,
        verdict.declared.slot_value(),
        blockers.len(),
        list_blockers(&blockers)
    );
    let help = format!(
        "declare `{{Py_mod_multiple_interpreters, {}}}` (under `#if PY_VERSION_HEX >= 0x030C0000`) until those findings are fixed",
        verdict.supported.slot_value()
    );
    ctx.report(site, Some(&symbol), None, message, help);
}
