use super::{declare_rule, Ctx};
use crate::model::pytypes::bare_type;

declare_rule! {
    /// ## What it does
    /// Flags thread-local state: a variable declared `_Thread_local`, `__thread` or
    /// `thread_local`, or a `static Py_tss_t` key.
    ///
    /// ## Why is this bad?
    /// Thread-local storage is per thread, not per interpreter. Several interpreters run on the
    /// same OS thread (one after the other, or nested), and they all see the same value: a
    /// cached object from one interpreter is then used in another.
    ///
    /// ## Example
    /// ```c
    /// static _Thread_local PyObject *current_context;
    /// static Py_tss_t context_key = Py_tss_NEEDS_INIT;
    /// ```
    ///
    /// ## Use instead
    /// Keep per-thread data in the thread state dictionary, which is per interpreter
    /// (`PyThreadState_GetDict()`), or key the thread-local value by interpreter
    /// (`PyInterpreterState_Get()`), or move the state into module state.
    ///
    /// ## Minimum Python
    /// 3.7 (`Py_tss_t`); any for `PyThreadState_GetDict`.
    ///
    /// ## References
    /// - CPython docs: Thread Specific Storage API
    pub static RULE = {
        id: "ISO015",
        name: "thread-local-state",
        severity: Warning,
        min_python: "any",
        summary: "thread-local state shared by the interpreters of a thread",
        blocks: PerInterpreterGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        let tss = bare_type(&v.type_name) == "Py_tss_t"
            && v.pointers.is_empty()
            && (v.is_static || v.function.is_none());
        if !(v.is_thread_local || tss) || v.is_immutable() {
            continue;
        }
        let what = if tss {
            "a `Py_tss_t` key"
        } else {
            "thread-local"
        };
        let message = format!("`{}` is {what}: per thread, not per interpreter, so every interpreter that runs on a thread shares it", v.name);
        let help = "keep per-thread data in `PyThreadState_GetDict()` (per interpreter), or in module state".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}
