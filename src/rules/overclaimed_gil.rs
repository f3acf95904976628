use super::support::{list_blockers, module_site};
use super::{declare_rule, Ctx, GilLevel, GilSource};

declare_rule! {
    /// ## What it does
    /// Reports a module that declares `Py_MOD_GIL_NOT_USED` (in its `Py_mod_gil` slot or with
    /// `PyUnstable_Module_SetGIL`) while free-threading findings block it: borrowed references
    /// from shared containers, unlocked iteration, unlocked lazy initialisation, unprotected
    /// writes to C statics, `Py_REFCNT(x) == 1` tests.
    ///
    /// A suppressed finding (comment, `per-file-ignores`, baseline) does not block
    /// `Py_MOD_GIL_NOT_USED`; the verdict's `gil.suppressed` lists it.
    ///
    /// ## Why is this bad?
    /// `Py_MOD_GIL_NOT_USED` tells a free-threaded CPython to keep the GIL off when the module
    /// is imported. The module then runs in several threads at once, and each of those
    /// findings is a data race: crashes and wrong results for users, not just a slower import.
    ///
    /// ## Example
    /// ```c
    /// static long calls;                /* written by every call, no lock */
    /// static PyModuleDef_Slot slots[] = {
    ///     {Py_mod_gil, Py_MOD_GIL_NOT_USED},
    ///     {0, NULL},
    /// };
    /// ```
    ///
    /// ## Use instead
    /// Fix the blocking findings first, or declare `Py_MOD_GIL_USED` (the default) until
    /// then.
    ///
    /// ## Minimum Python
    /// 3.13.
    ///
    /// ## References
    /// - PEP 703: Making the Global Interpreter Lock Optional
    /// - CPython HOWTO: C API Extension Support for Free Threading
    pub static RULE = {
        id: "ISO108",
        name: "overclaimed-gil",
        severity: Error,
        min_python: "3.13",
        summary: "module declares `Py_MOD_GIL_NOT_USED` over free-threading findings",
        blocks: Nothing,
        reads_findings: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    if !ctx.module.is_real() {
        return;
    }
    let verdict = ctx.verdict();
    let gil = &verdict.gil_axis;
    if gil.declared != GilLevel::NotUsed || gil.supported == GilLevel::NotUsed {
        return;
    }
    let site = match (gil.declared_by, &ctx.module.set_gil) {
        (GilSource::SetGil, Some(set)) => {
            let call = ctx.project.call(set.function, set.call);
            let f = ctx.project.function(set.function);
            Some((
                super::support::call_site(set.function.file, call),
                f.name.clone(),
            ))
        }
        _ => module_site(ctx, Some("Py_mod_gil")),
    };
    let Some((site, symbol)) = site else {
        return;
    };
    let message = format!(
        "module `{}` declares `Py_MOD_GIL_NOT_USED`, but {} free-threading finding(s) race without the GIL: {}",
        ctx.module.name,
        gil.blockers.len(),
        list_blockers(&gil.blockers)
    );
    let help =
        "fix those findings first, or declare `Py_MOD_GIL_USED` until they are fixed".to_string();
    ctx.report(site, Some(&symbol), None, message, help);
}
