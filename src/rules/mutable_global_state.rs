use super::support::{global_role, GlobalRole};
use super::{declare_rule, write_summary, Ctx};
use crate::model::pytypes::{bare_type, is_definition_table, is_type_object};
use crate::model::WriteClass;

declare_rule! {
    /// ## What it does
    /// Flags a non-const C global or `static` (a counter, a flag, a buffer, a cache, a
    /// definition table) that is written after its initializer. One finding per variable, at
    /// its definition; its tentative definitions and `extern` declarations are related places.
    /// A same-named definition with other qualifiers or pointer levels (`static size_t n;` in
    /// one `#if` branch, `static const size_t n = 256;` in the other) is another variable: the
    /// branch that writes it is reported even when the other branch's is constant.
    /// A global written only with one value that is the same in every interpreter and run
    /// (a named constant, the address of a static, a pure C computation) is not reported
    /// here but as `idempotent-global` (info); for a variable holding objects, only the
    /// address of a static object counts. Lock and condition variables (`PyMutex`,
    /// `PyThread_type_lock`, `pthread_mutex_t`, `CRITICAL_SECTION`, `Tcl_Mutex` from
    /// `TCL_DECLARE_MUTEX`, ...) are never state to move, and data read and written only under
    /// a process-wide lock is `lock-protected-global` (info). An address handed to an
    /// argument parser is an output it stores into (`PyArg_ParseTuple(args, "I", &flags)`),
    /// except the tables it reads: the keyword list (`&kwlist[0]`) and a type object for `O!`.
    /// An address only compared (`enc == &unicode_encoding`) does not escape: nothing can
    /// write through a comparison. Nor does an address stored in a field of an object
    /// (`self->encoding = &unicode_encoding`) when the table's type is a struct of the module
    /// none of whose fields the module's code writes through any pointer (`p->lower = ...`
    /// anywhere keeps it state); a whole-struct copy through a pointer (`*p = other`) or a
    /// `memcpy` into it is not followed.
    /// Writes in a function the module cannot reach do not count: a `static` function of a
    /// header that nothing names, and, when the build file lists every source of the module
    /// (all of them C and scanned, none with code the parser could not read), a function with
    /// external linkage that nothing names and nothing exports (a time library's `gmtime64`
    /// that returns a static `struct tm`, beside the `_r` variant the module calls). A function
    /// exported by its head or its prototype (`__declspec(dllexport)`, `visibility("default")`,
    /// `PyAPI_FUNC`, a project macro such as CPython's `EXPORT(int)`), run by the loader
    /// (`__attribute__((constructor))`, `DllMain`, `DllGetClassObject`) or named `PyInit_*`
    /// stays reachable: code outside the scan calls it.
    ///
    /// ## Why is this bad?
    /// All interpreters in the process share it. With a shared GIL the writes interleave; with
    /// per-interpreter GILs (and in free-threaded builds) they race. A flag such as
    /// `initialized = 1` set by the first interpreter also makes every later interpreter skip
    /// its own initialisation.
    ///
    /// ## Example
    /// ```c
    /// static long call_count = 0;
    ///
    /// static PyObject *
    /// count(PyObject *self, PyObject *unused)
    /// {
    ///     return PyLong_FromLong(++call_count);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Keep the value in module state (or make it `const` when it never changes):
    /// ```c
    /// static PyObject *
    /// count(PyObject *module, PyObject *unused)
    /// {
    ///     mod_state *st = PyModule_GetState(module);
    ///     return PyLong_FromLong(++st->call_count);
    /// }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules"
    /// - PEP 684: A Per-Interpreter GIL
    pub static RULE = {
        id: "ISO006",
        name: "mutable-global-state",
        severity: Warning,
        min_python: "3.5",
        summary: "non-const C global written after its initializer",
        blocks: PerInterpreterGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if g.class == WriteClass::NeverWritten || v.is_immutable() || v.is_thread_local {
            continue;
        }
        // Written only with a value that is the same everywhere: `idempotent-global` (info).
        // A lock is the means of sharing safely, never state to move; and data only touched
        // under a process-wide lock is `lock-protected-global` (info).
        if super::support::idempotent(ctx, g).is_some()
            || super::free_threading::is_lock_type(&v.type_name)
            || super::lock_protected_global::protecting_lock(ctx, g).is_some()
        {
            continue;
        }
        // Definition tables, C-API tables and `_Py_Identifier`s have rules of their own.
        if is_definition_table(&v.type_name)
            || bare_type(&v.type_name) == "Py_tss_t"
            || super::py_identifier::is_identifier_type(&v.type_name)
            || global_role(ctx, g) == GlobalRole::CapiTable
        {
            continue;
        }
        // Objects have rules of their own.
        if ctx.layouts.variable_holds_objects(v)
            || is_type_object(&v.type_name)
            || ctx.layouts.is_static_object(v)
        {
            continue;
        }
        let scope = match &v.function {
            Some(f) => format!("function-local static in `{f}`"),
            None => "global".to_string(),
        };
        let message = format!(
            "`{}` (`{}`) is a mutable C {scope}, {}",
            v.name,
            v.type_display().trim(),
            write_summary(ctx, g)
        );
        let help = "keep it in module state (`PyModule_GetState`), or make it `const` if it never changes after start-up".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}
