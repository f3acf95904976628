use super::free_threading::{free_threaded_compiles, hazard_of, private_container};
use super::support::call_site;
use super::threadsafety::Hazard;
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags `PyDict_Next` over a dict that may be shared, outside a critical section on that
    /// dict. The calls come from the thread-safety table (`data/threadsafety.toml`, hazard
    /// `iteration`).
    ///
    /// It does not flag a dict the function created itself and has not stored in a global,
    /// the `kwargs`/`kwds` dict the function receives, or a loop inside
    /// `Py_BEGIN_CRITICAL_SECTION(dict)`, nor a dict reached through a field the module never
    /// changes after construction (see `borrowed-reference`), nor code that runs only while the module
    /// initialises or that no free-threaded build compiles. Indexing a list item by item (`PyList_GET_ITEM` in a
    /// loop) is reported by `borrowed-reference`.
    ///
    /// ## Why is this bad?
    /// `PyDict_Next` takes no lock: on a free-threaded build another thread can insert into or
    /// delete from the dict while the loop runs, and the loop reads a resized table or gets
    /// borrowed keys and values that are freed under it.
    ///
    /// ## Example
    /// ```c
    /// Py_ssize_t pos = 0;
    /// PyObject *key, *value;
    /// while (PyDict_Next(self->handlers, &pos, &key, &value)) {
    ///     ...
    /// }
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// Py_BEGIN_CRITICAL_SECTION(self->handlers);
    /// while (PyDict_Next(self->handlers, &pos, &key, &value)) {
    ///     ...
    /// }
    /// Py_END_CRITICAL_SECTION();
    /// ```
    /// or iterate a copy (`PyDict_Copy`, `PyDict_Items`) when the body calls back into Python.
    ///
    /// ## Minimum Python
    /// 3.13 (`Py_BEGIN_CRITICAL_SECTION`; a no-op on builds with the GIL).
    ///
    /// ## References
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Container Thread Safety"
    /// - CPython docs: `PyDict_Next`
    pub static RULE = {
        id: "ISO102",
        name: "unlocked-container-iteration",
        severity: Warning,
        min_python: "3.13",
        summary: "`PyDict_Next` over a dict that may be shared, outside a critical section (free-threading)",
        blocks: Nothing,
        blocks_gil: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let mutated = super::free_threading::mutated_containers(ctx);
    for (fi, f) in super::free_threading::run_time_functions(ctx) {
        for call in &f.calls {
            if !call.callee.starts_with("Py") || !free_threaded_compiles(&call.versions) {
                continue;
            }
            if !matches!(hazard_of(&call.callee), Some((Hazard::Iteration, _))) {
                continue;
            }
            let container = call.args.first().map(|a| a.text.as_str()).unwrap_or("?");
            if private_container(f, container, &call.span).is_some()
                || super::free_threading::read_only_container(f, container, &call.span, &mutated)
            {
                continue;
            }
            let message = format!("`{}({container}, ...)` in `{}` iterates with no lock: on a free-threaded build another thread can change `{container}` during the loop", call.callee, f.name);
            let help = format!("hold `Py_BEGIN_CRITICAL_SECTION({container})` ... `Py_END_CRITICAL_SECTION()` around the loop, or iterate a copy when the body calls back into Python");
            ctx.report(
                call_site(fi, call),
                Some(&call.callee),
                Some(&f.name),
                message,
                help,
            );
        }
    }
}
