use super::free_threading::{once_callbacks, racy_writes};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags run-time writes to C globals and function-local statics (counters, flags,
    /// buffers, cached pointers) with no lock and no atomics: no lock call before the write
    /// in the same function (`PyMutex_Lock`, `PyThread_acquire_lock`, `pthread_mutex_lock`,
    /// `EnterCriticalSection`, ...), no critical section around it, not in a `pthread_once` /
    /// `call_once` callback, and the variable neither `_Atomic`, an atomic type
    /// (`atomic_int`, ...), thread-local, nor a lock itself. A write through `_Py_atomic_*`,
    /// `__atomic_*`, `__sync_*` or `atomic_*` is not one. It reads the same write sites as the
    /// isolation rules; writes while the module initialises are theirs alone. Lazy
    /// initialisation (`if (x == NULL) x = ...`) is `unlocked-lazy-init`.
    ///
    /// One finding per variable, at its first unprotected write.
    ///
    /// A lock counts from its lock call to its release: a write after `PyMutex_Unlock` is
    /// unprotected again.
    ///
    /// A global written only with one value that is the same in every interpreter and run is
    /// left to `idempotent-global` (info), which says how to make those stores airtight.
    ///
    /// ## Why is this bad?
    /// Without the GIL, two threads that run module code at once write the same C storage: a
    /// data race, undefined behaviour in C. Counters lose updates, flags and buffers tear.
    /// Unlike the isolation findings, this races inside a single interpreter.
    ///
    /// ## Example
    /// ```c
    /// static long calls;
    ///
    /// static PyObject *
    /// count(PyObject *self, PyObject *args)
    /// {
    ///     calls++;
    ///     return PyLong_FromLong(calls);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Per-module data lives in module state; when it must stay process-wide, make it atomic
    /// or take a lock:
    /// ```c
    /// static _Atomic long calls;   /* or _Py_atomic_add_ssize on 3.13+ */
    /// ```
    ///
    /// ## Minimum Python
    /// 3.13 (`PyMutex`); C11 atomics on any Python.
    ///
    /// ## References
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Protecting Internal
    ///   Extension State"
    pub static RULE = {
        id: "ISO104",
        name: "unlocked-static-write",
        severity: Warning,
        min_python: "3.13",
        summary: "run-time write to a C static with no lock or atomics (free-threading)",
        blocks: Nothing,
        blocks_gil: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let once = once_callbacks(ctx);
    for g in &ctx.module.globals {
        let racy = racy_writes(ctx, g, &once);
        // A variable initialised lazily is reported once, by `unlocked-lazy-init`.
        if racy.is_empty() || racy.iter().any(|w| w.lazy) {
            continue;
        }
        let first = &racy[0];
        let v = ctx.project.var(g.var);
        let scope = match &v.function {
            Some(f) => format!("function-local static in `{f}`"),
            None => "global".to_string(),
        };
        let more = match racy.len() {
            1 => String::new(),
            n => format!(" (and {} more unprotected writes)", n - 1),
        };
        let message = format!(
            "`{}` ({scope}) {} in `{}` with no lock or atomic operation{more}: on a free-threaded build threads race on it",
            v.name,
            first.site.kind.describe(),
            first.function.name
        );
        let help = "keep it in module or object state, or make it atomic (`_Atomic`, `_Py_atomic_*`) or take a `PyMutex` around the write".to_string();
        let site = first.report_site();
        ctx.report(
            site,
            Some(&v.name),
            Some(&first.function.name),
            message,
            help,
        );
    }
}
