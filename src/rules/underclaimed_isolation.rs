use super::support::module_site;
use super::{declare_rule, Ctx};
use crate::model::InitStyle;

declare_rule! {
    /// ## What it does
    /// Points out a multi-phase module that isolint finds isolated by every rule, but that
    /// declares a weaker `Py_mod_multiple_interpreters` level than it could. Suppressed
    /// findings do not count against the level, as for `overclaimed-isolation`.
    ///
    /// ## Why is this bad?
    /// It is not a bug. Users of isolated sub-interpreters (and of `concurrent.interpreters`)
    /// cannot import a module that declares `NOT_SUPPORTED`, or only with a shared GIL, even
    /// when it would work. Once `isolint verify` confirms the module, declare the real level.
    ///
    /// ## Example
    /// ```c
    /// {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
    /// ```
    ///
    /// ## Minimum Python
    /// 3.12.
    ///
    /// ## References
    /// - PEP 684: A Per-Interpreter GIL
    pub static RULE = {
        id: "ISO022",
        name: "underclaimed-isolation",
        severity: Info,
        min_python: "3.12",
        summary: "module is isolated by every rule but declares less",
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
    if verdict.multiple_interpreters_is_default || verdict.declared >= verdict.supported {
        return;
    }
    let Some((site, symbol)) = module_site(ctx, Some("Py_mod_multiple_interpreters")) else {
        return;
    };
    let accepted = if verdict.suppressed.is_empty() {
        String::new()
    } else {
        format!(
            " ({} suppressed finding(s) not counted: {})",
            verdict.suppressed.len(),
            super::support::list_blockers(
                &verdict
                    .suppressed
                    .iter()
                    .map(|s| s.finding.clone())
                    .collect::<Vec<_>>()
            )
        )
    };
    let message = format!(
        "module `{}` declares `{}`, but no rule finds state that blocks `{}`{accepted}",
        ctx.module.name,
        verdict.multiple_interpreters,
        verdict.supported.slot_value()
    );
    let import_name = ctx
        .module
        .import_name()
        .unwrap_or_else(|| ctx.module.name.clone());
    let help = format!(
        "confirm with `isolint verify {import_name}`, then declare `{{Py_mod_multiple_interpreters, {}}}`",
        verdict.supported.slot_value()
    );
    ctx.report(site, Some(&symbol), None, message, help);
}
