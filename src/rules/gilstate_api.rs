use super::support::{call_site, calls_where};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags calls to the `PyGILState_*` API: `PyGILState_Ensure`, `PyGILState_Release`,
    /// `PyGILState_GetThisThreadState` and `PyGILState_Check`.
    ///
    /// ## Why is this bad?
    /// The GILState API assumes one interpreter: `PyGILState_Ensure` attaches the thread to the
    /// main interpreter (or to whichever one the thread last used), not to the interpreter
    /// that owns the module. Callbacks from C threads then run Python code in the wrong
    /// interpreter. CPython documents it as unsupported with several interpreters.
    ///
    /// ## Example
    /// ```c
    /// static void
    /// on_event(void *arg)
    /// {
    ///     PyGILState_STATE g = PyGILState_Ensure();
    ///     PyObject_CallNoArgs((PyObject *)arg);
    ///     PyGILState_Release(g);
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Store the interpreter when the callback is registered, and attach a thread state of
    /// that interpreter:
    /// ```c
    /// ctx->interp = PyInterpreterState_Get();            /* at registration */
    /// PyThreadState *ts = PyThreadState_New(ctx->interp);  /* in the C thread */
    /// PyEval_RestoreThread(ts);
    /// ... /* call into Python */
    /// PyThreadState_Clear(ts);
    /// PyThreadState_DeleteCurrent();
    /// ```
    /// (`PyThreadState_Swap` works the same way when a thread state is already attached.)
    ///
    /// ## Minimum Python
    /// 3.9 (`PyInterpreterState_Get`).
    ///
    /// ## References
    /// - CPython docs: Non-Python created threads; Bugs and caveats of sub-interpreters
    pub static RULE = {
        id: "ISO010",
        name: "gilstate-api",
        severity: Warning,
        min_python: "3.9",
        summary: "`PyGILState_*` call, unsupported with several interpreters",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for (fi, f, call) in calls_where(ctx, |c| c.starts_with("PyGILState_")) {
        let message = format!("`{}` in `{}` assumes a single interpreter: the thread is attached to the main interpreter, not the module's", call.callee, f.name);
        let help = "store `PyInterpreterState_Get()` when the callback is set up, then attach with `PyThreadState_New(interp)` and `PyEval_RestoreThread`/`PyThreadState_Swap`".to_string();
        ctx.report(
            call_site(fi, call),
            Some(&call.callee),
            Some(&f.name),
            message,
            help,
        );
    }
}
