use super::support::{call_site, calls_where, global_role, write_summary, GlobalRole};
use super::{declare_rule, Ctx, Site};

declare_rule! {
    /// ## What it does
    /// Flags a C-API table imported into a static: the result of `PyCapsule_Import` kept in a
    /// global, a `static void **X_API` table, and the import macros that fill such a static
    /// behind the scenes (`PyDateTime_IMPORT` fills `PyDateTimeAPI`; NumPy's `import_array()`
    /// fills `PyArray_API`).
    ///
    /// `PyDateTime_IMPORT` (and `PyCapsule_Import(PyDateTime_CAPSULE_NAME, 0)`) is not one:
    /// its capsule points at CPython's static table of its static types, the same pointer in
    /// every interpreter, so `idempotent-global` (info) reports it instead. So is a capsule
    /// that a module of the scan makes with `PyCapsule_New` over a static table of function
    /// addresses (pymongo's `_cbson._C_API`). Other capsules are not known to be process-wide
    /// and stay here.
    ///
    /// ## Why is this bad?
    /// The table points into another module's objects, which belong to the interpreter that
    /// imported them. With multi-phase init each interpreter's import overwrites the static
    /// (with single-phase init and `m_size = -1`, the first import's table stays), so code in
    /// one interpreter calls through (and keeps alive) another interpreter's types and
    /// functions.
    ///
    /// ## Example
    /// ```c
    /// static void **Foo_API;
    /// Foo_API = (void **)PyCapsule_Import("foo._C_API", 0);
    /// ...
    /// PyDateTime_IMPORT;
    /// ```
    ///
    /// ## Use instead
    /// Keep the table in module state, imported in the exec slot:
    /// ```c
    /// st->datetime_api = (PyDateTime_CAPI *)PyCapsule_Import(PyDateTime_CAPSULE_NAME, 0);
    /// ```
    /// and use the API through `st->datetime_api` instead of the macros that read the static.
    ///
    /// ## Minimum Python
    /// 3.5.
    ///
    /// ## References
    /// - CPython docs: Providing a C API for an Extension Module (capsules)
    pub static RULE = {
        id: "ISO013",
        name: "capi-table-global",
        severity: Warning,
        min_python: "3.5",
        summary: "C-API table imported into a static",
        blocks: SharedGil,
        check: check,
    };
}

/// Import macros whose capsule is process-wide (CPython's own static C table of static
/// types): every interpreter stores the same pointer. `idempotent-global` reports them.
pub const PROCESS_WIDE_IMPORTS: &[&str] = &["PyDateTime_IMPORT"];

/// Import macros that fill a static the header declares.
const IMPORT_MACROS: &[(&str, &str)] = &[
    ("PyDateTime_IMPORT", "PyDateTimeAPI"),
    ("import_array", "PyArray_API"),
    ("import_array1", "PyArray_API"),
    ("import_array2", "PyArray_API"),
    ("import_umath", "PyUFunc_API"),
];

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        if global_role(ctx, g) != GlobalRole::CapiTable
            || g.class == crate::model::WriteClass::NeverWritten
            || super::support::idempotent(ctx, g).is_some()
        {
            continue;
        }
        let v = ctx.project.var(g.var);
        let message = format!(
            "`{}` holds an imported C-API table in a process-global variable, {}",
            v.name,
            write_summary(ctx, g)
        );
        let help = "keep the table in module state, imported in the exec slot".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
    // `PyDateTime_IMPORT;` is used without parentheses: it is a name, not a call.
    let project = ctx.project;
    for &fi in &ctx.module.files {
        for f in &project.files[fi].functions {
            for r in &f.references {
                let Some((_, table)) = IMPORT_MACROS
                    .iter()
                    .filter(|(m, _)| !PROCESS_WIDE_IMPORTS.contains(m))
                    .find(|(m, _)| *m == r.name)
                else {
                    continue;
                };
                let message = format!(
                    "`{}` in `{}` fills the process-global `{table}` table",
                    r.name, f.name
                );
                let help = format!("import the capsule in the exec slot and keep the table in module state instead of `{table}`");
                let site = Site {
                    file: fi,
                    span: r.span,
                    versions: f.versions,
                    uncertain: f.uncertain,
                };
                ctx.report(site, Some(table), Some(&f.name), message, help);
            }
        }
    }
    for (fi, f, call) in calls_where(ctx, |c| {
        IMPORT_MACROS.iter().any(|(m, _)| *m == c) && !PROCESS_WIDE_IMPORTS.contains(&c)
    }) {
        let table = IMPORT_MACROS
            .iter()
            .find(|(m, _)| *m == call.callee)
            .map_or("", |(_, t)| t);
        let message = format!(
            "`{}` in `{}` fills the process-global `{table}` table",
            call.callee, f.name
        );
        let help = format!("import the capsule in the exec slot and keep the table in module state instead of `{table}`");
        ctx.report(
            call_site(fi, call),
            Some(table),
            Some(&f.name),
            message,
            help,
        );
    }
}
