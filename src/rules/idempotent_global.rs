use super::support::{describe_writes, idempotent, process_wide_imports};
use super::{declare_rule, Ctx, Site};
use crate::model::FixedValue;

declare_rule! {
    /// ## What it does
    /// Points out a global that is written, but only ever with one value that is the same in
    /// every interpreter and every run:
    ///
    /// - a named C constant, a string literal, `sizeof`/`offsetof`, a function's address;
    /// - the address of a static (`p_Foo_Type = &Foo_Type;`; the static itself is reported
    ///   by its own rule);
    /// - a C computation that reads no Python state (`int one = 1; is_big_endian =
    ///   (*(char *)&one == 0);` in the exec slot);
    /// - the pointer of a process-wide capsule: `PyDateTime_IMPORT` fills `PyDateTimeAPI`
    ///   with CPython's static table of its static types, and `PyCapsule_Import` or
    ///   `PyCapsule_GetPointer` of a capsule that a module of the scan creates with
    ///   `PyCapsule_New(table, name, ...)` over a static table of fixed values;
    /// - one of CPython's immortal objects, the same object in every interpreter from 3.12
    ///   on (PEP 683): `Py_None`, `Py_True`, `Py_False`, `Py_Ellipsis`, `Py_NotImplemented`,
    ///   and what the C API returns for a small int (-5 to 256), an empty str, bytes or tuple,
    ///   a bool, or `Py_GetConstant` (zope.proxy's `empty_tuple = PyTuple_New(0)`, and the
    ///   `constants[]` table of `pythoncapi_compat.h`'s `Py_GetConstant` shim);
    /// - a table filled slot by slot at constant indices with such values
    ///   (`api[WRITE_INDEX] = (void *)write;`: a C-API table of function addresses), each slot
    ///   always with the same value.
    ///
    /// Such a global is not state to move: every interpreter that writes it stores what is
    /// already there. It blocks no isolation level and not `Py_MOD_GIL_NOT_USED`, and
    /// `mutable-global-state`, `global-pyobject`, `static-local-pyobject`,
    /// `capi-table-global` and `unlocked-static-write` leave it to this rule.
    ///
    /// Other Python objects are never idempotent (`static PyObject *s; s =
    /// PyUnicode_FromString("x");` stays a `global-pyobject` warning: each interpreter makes
    /// its own object; so does `PyLong_FromLong(1000)`). Nor are flags and resets: a literal
    /// number, `NULL` or a truth value (`initialized = 1;`, `enabled = Py_True;`) changes what
    /// the code does the next time it reads it, in every interpreter after the first (a truth
    /// value in one slot of a table of immortal objects fills the table). A global written with two different values, or in an
    /// array element at a computed index (`seen[i] = 1`), is state too. A capsule that is
    /// neither CPython's own nor made by the scan from a fixed table is not known to be
    /// process-wide, and stays a `capi-table-global` warning.
    ///
    /// ## Why is this bad?
    /// It is benign, but formally racy: two interpreters with their own GILs (or two threads
    /// of a free-threaded build) may store the same value at the same moment, which C11 calls
    /// a data race, and a reader may in principle see a torn value on a platform where the
    /// store is not one instruction. Nothing in the analysis depends on that never happening.
    ///
    /// ## Example
    /// ```c
    /// static int is_big_endian;
    /// static int exec(PyObject *m) {
    ///     int one = 1;
    ///     is_big_endian = (*(char *)&one == 0);
    ///     return 0;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Make it airtight: compute it at compile time (a `static const` initializer, a
    /// `#define`), or store and load it atomically (`_Py_atomic_store_int_relaxed`,
    /// `atomic_store_explicit(..., memory_order_relaxed)`), or keep it in module state.
    ///
    /// ## Minimum Python
    /// Any.
    ///
    /// ## References
    /// - PEP 684: A Per-Interpreter GIL
    /// - C11 5.1.2.4 (data races)
    pub static RULE = {
        id: "ISO025",
        name: "idempotent-global",
        severity: Info,
        min_python: "any",
        summary: "global written only with a value that is the same in every interpreter",
        blocks: Nothing,
        check: check,
    };
}

const HELP: &str = "benign but formally racy: make it airtight with a compile-time constant, an atomic relaxed store and load (`_Py_atomic_store_*_relaxed`), or module state";

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for g in &ctx.module.globals {
        let Some(kinds) = idempotent(ctx, g) else {
            continue;
        };
        let v = project.var(g.var);
        let what: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
        let message = format!(
            "`{}` (`{}`) is written only with {}, the same in every interpreter and every run (in {}): not state to move, but the stores race formally",
            v.name,
            v.type_display().trim(),
            what.join(" or "),
            describe_writes(project, g)
        );
        let site = ctx.var_site(g.var);
        ctx.report(
            site,
            Some(&v.name),
            v.function.as_deref(),
            message,
            HELP.to_string(),
        );
    }
    for (site, name, function) in process_wide_imports(ctx) {
        report_import(ctx, site, &name, &function);
    }
}

fn report_import(ctx: &mut Ctx, site: Site, name: &str, function: &str) {
    let message = format!(
        "`{name}` in `{function}` fills the process-global `PyDateTimeAPI` with {}, the same in every interpreter (CPython's static table of its static types): not state to move, but the stores race formally",
        FixedValue::CapsuleImport.describe()
    );
    ctx.report(
        site,
        Some("PyDateTimeAPI"),
        Some(function),
        message,
        HELP.to_string(),
    );
}
