use super::{declare_rule, Ctx, Site};
use crate::facts::ExprKind;
use crate::facts::Init;

declare_rule! {
    /// ## What it does
    /// Flags a `PyModuleDef` whose `m_size` is `-1`.
    ///
    /// ## Why is this bad?
    /// `m_size = -1` declares that the module keeps its state in C globals and cannot be
    /// re-initialised. CPython then shares one copy of the module's dict across interpreters
    /// and refuses to load it in isolated sub-interpreters.
    ///
    /// ## Example
    /// ```c
    /// static struct PyModuleDef moduledef = {
    ///     PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods
    /// };
    /// ```
    ///
    /// ## Use instead
    /// `m_size = 0` when the module has no state, or `sizeof(speedups_state)` once the globals
    /// live in a module state struct:
    /// ```c
    /// static struct PyModuleDef moduledef = {
    ///     PyModuleDef_HEAD_INIT,
    ///     .m_name = "_speedups",
    ///     .m_size = sizeof(speedups_state),
    ///     .m_methods = methods,
    /// };
    /// ```
    ///
    /// ## Minimum Python
    /// 3.0.
    ///
    /// ## References
    /// - CPython docs: `PyModuleDef.m_size`
    /// - CPython HOWTO "Isolating Extension Modules" (PEP 630)
    pub static RULE = {
        id: "ISO002",
        name: "negative-m-size",
        severity: Warning,
        min_python: "3.0",
        summary: "`PyModuleDef.m_size` is -1: state lives in C globals",
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    // Every PyModuleDef in the module's files, not only the one PyInit uses: a second
    // definition kept under `#if` is still compiled for some Python.
    let module = ctx.module;
    for &fi in &module.files {
        for v in &ctx.project.files[fi].variables {
            if crate::model::pytypes::bare_type(&v.type_name) != "PyModuleDef" {
                continue;
            }
            let Some(Init::List(list)) = &v.init else {
                continue;
            };
            let mut positional = 0usize;
            for entry in crate::model::current_entries(list) {
                let is_m_size = match &entry.designator {
                    Some(d) => d == "m_size",
                    None => {
                        positional += 1;
                        positional == 4
                    }
                };
                let Init::Expr(e) = &entry.value else {
                    continue;
                };
                if is_m_size && e.kind == ExprKind::Number(Some(-1)) {
                    let site = Site {
                        file: fi,
                        span: e.span,
                        versions: entry.versions.intersect(&v.versions),
                        uncertain: v.uncertain,
                    };
                    let message = format!(
                        "`{}` sets `m_size = -1`: the module keeps its state in C globals",
                        v.name
                    );
                    let help = "set `m_size` to `sizeof(<module>_state)` and keep the state there (or 0 when the module has no state)".to_string();
                    ctx.report(site, Some(&v.name), None, message, help);
                }
            }
        }
    }
}
