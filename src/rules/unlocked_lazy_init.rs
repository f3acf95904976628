use super::free_threading::{once_callbacks, racy_writes};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags lazy initialisation of a global or function-local static at run time,
    /// `if (cache == NULL) { cache = ...; }` (or `if (!cache)`), with no lock taken before it
    /// in the same function (`PyMutex_Lock`, `PyThread_acquire_lock`, `pthread_mutex_lock`,
    /// ...), no critical section around it, and not in a callback run by `pthread_once` /
    /// `call_once`. Writes while the module initialises are left to the isolation rules.
    ///
    /// ## Why is this bad?
    /// On a free-threaded build two threads can both see `NULL` and both initialise: one
    /// result leaks, and a reader can see the pointer before what it points at is complete.
    /// It races even in a single interpreter.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *
    /// get_decoder(void)
    /// {
    ///     static PyObject *decoder = NULL;
    ///     if (decoder == NULL) {
    ///         decoder = PyObject_GetAttrString(codecs, "decode");
    ///     }
    ///     return decoder;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Create the value in the module's exec slot and keep it in module state. When it must
    /// stay lazy, guard it:
    /// ```c
    /// static PyMutex decoder_lock;
    /// PyMutex_Lock(&decoder_lock);
    /// if (decoder == NULL) {
    ///     decoder = PyObject_GetAttrString(codecs, "decode");
    /// }
    /// PyMutex_Unlock(&decoder_lock);
    /// ```
    /// (or a `_Py_atomic_compare_exchange_ptr` on the pointer, or a once-flag).
    ///
    /// ## Minimum Python
    /// 3.13 (`PyMutex`); `PyThread_allocate_lock` on any Python.
    ///
    /// ## References
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Protecting Internal
    ///   Extension State"
    pub static RULE = {
        id: "ISO103",
        name: "unlocked-lazy-init",
        severity: Warning,
        min_python: "3.13",
        summary: "`if (x == NULL) x = ...` on a static with no lock (free-threading)",
        blocks: Nothing,
        blocks_gil: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let once = once_callbacks(ctx);
    for g in &ctx.module.globals {
        let racy = racy_writes(ctx, g, &once);
        let Some(first) = racy.iter().find(|w| w.lazy) else {
            continue;
        };
        let v = ctx.project.var(g.var);
        let message = format!(
            "`{}` is initialised lazily in `{}` (line {}) with no lock: on a free-threaded build two threads can both see it unset and both write it",
            v.name, first.function.name, first.site.span.line
        );
        let help = "create it in the exec slot (module state), or take a `PyMutex` (or a once-flag) around the test and the write".to_string();
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
