use super::{declare_rule, Ctx, Site};
use crate::facts::{ExprKind, Init};
use crate::model::module_def_fields;
use crate::model::pytypes::bare_type;

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
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    // Every PyModuleDef in the module's files, not only the one PyInit uses: a second
    // definition kept under `#if` is still compiled for some Python.
    let module = ctx.module;
    for &fi in &module.files {
        for v in &ctx.project.files[fi].variables {
            if bare_type(&v.type_name) != "PyModuleDef" {
                continue;
            }
            let Some(Init::List(list)) = &v.init else {
                continue;
            };
            let fields = module_def_fields(list);
            let Some(m_size) = fields
                .get("m_size")
                .filter(|e| e.kind == ExprKind::Number(Some(-1)))
            else {
                continue;
            };
            let site = Site {
                file: fi,
                span: m_size.span,
                versions: v.versions,
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
