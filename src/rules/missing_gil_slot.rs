use super::support::{list_blockers, module_site};
use super::{declare_rule, Ctx, GilLevel};

declare_rule! {
    /// ## What it does
    /// Points out a module that neither declares a `Py_mod_gil` slot nor calls
    /// `PyUnstable_Module_SetGIL`.
    ///
    /// ## Why is this bad?
    /// On free-threaded builds (PEP 703, 3.13+), importing such a module re-enables the GIL
    /// for the whole process. Once the module's own data is thread-safe, it can say so.
    ///
    /// The advice follows the verdict's `gil` axis: when no free-threading finding
    /// (`borrowed-reference`, `unlocked-container-iteration`, `unlocked-lazy-init`,
    /// `unlocked-static-write`, `refcount-uniqueness-test`) blocks it, the finding suggests
    /// `Py_MOD_GIL_NOT_USED`; otherwise it names the findings to fix first, and adding the
    /// slot before then would be `overclaimed-gil`. The scan cannot prove thread safety: run
    /// the test suite on a free-threaded build (`isolint verify`, pytest-run-parallel) before
    /// declaring it.
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
    /// or, for single-phase init with `m_size >= 0`, `PyUnstable_Module_SetGIL(m,
    /// Py_MOD_GIL_NOT_USED);`. A single-phase module with `m_size = -1` is told to move to
    /// multi-phase init first: declaring `NOT_USED` through `PyUnstable_Module_SetGIL` there makes
    /// free-threaded builds refuse it in every sub-interpreter (`single-phase-free-threaded`).
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
        reads_findings: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let module = ctx.module;
    if !module.is_real() || module.slot("Py_mod_gil").is_some() {
        return;
    }
    if module.set_gil.is_some() {
        return;
    }
    let Some((site, symbol)) = module_site(ctx, None) else {
        return;
    };
    let verdict = ctx.verdict();
    let gil = &verdict.gil_axis;
    let declaration = if module.init_style == crate::model::InitStyle::MultiPhase {
        "add `{Py_mod_gil, Py_MOD_GIL_NOT_USED}` to the slots (under `#if PY_VERSION_HEX >= 0x030D0000` while older Pythons are supported)"
    } else if module.initialises_once_per_process() {
        // `PyUnstable_Module_SetGIL` here is `single-phase-free-threaded`: free-threaded builds
        // refuse such a module in every sub-interpreter.
        "move to multi-phase init (`m_size >= 0`) and add `{Py_mod_gil, Py_MOD_GIL_NOT_USED}` to its slots; with `m_size = -1`, `PyUnstable_Module_SetGIL` makes free-threaded builds refuse the module in every sub-interpreter"
    } else {
        "call `PyUnstable_Module_SetGIL(m, Py_MOD_GIL_NOT_USED)` under `#ifdef Py_GIL_DISABLED`"
    };
    let (message, help) = if gil.supported == GilLevel::NotUsed {
        (
            format!("module `{}` declares no `Py_mod_gil`: free-threaded builds re-enable the GIL when it is imported, and the scan found nothing that needs it", module.name),
            format!("{declaration}, once its tests pass on a free-threaded build"),
        )
    } else {
        (
            format!("module `{}` declares no `Py_mod_gil`: free-threaded builds re-enable the GIL when it is imported; {} free-threading finding(s) need it for now", module.name, gil.blockers.len()),
            format!("fix {} first; then {declaration}", list_blockers(&gil.blockers)),
        )
    };
    ctx.report(site, Some(&symbol), None, message, help);
}
