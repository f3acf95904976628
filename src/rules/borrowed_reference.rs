use super::free_threading::{
    free_threaded_compiles, hazard_of, in_critical_section_on, private_container,
};
use super::support::call_site;
use super::threadsafety::Hazard;
use super::{declare_rule, Ctx};
use crate::facts::{Call, Function};

declare_rule! {
    /// ## What it does
    /// Flags C API calls that hand out a borrowed reference into a container another thread
    /// may change, on free-threaded builds: `PyList_GetItem`/`PyList_GET_ITEM`,
    /// `PyDict_GetItem`, `PyDict_GetItemWithError`, `PyDict_GetItemString`,
    /// `PyDict_SetDefault`, `PyWeakref_GetObject`/`PyWeakref_GET_OBJECT`,
    /// `PyImport_AddModule` and `PyCell_GET`; `PyList_SET_ITEM` on a list the function did not
    /// create; and `PySequence_Fast` whose items (`PySequence_Fast_GET_ITEM`,
    /// `PySequence_Fast_ITEMS`) are read outside a critical section. Which calls count comes
    /// from the thread-safety table shipped in `data/threadsafety.toml` (CPython's
    /// `Doc/data/threadsafety.dat` and the free-threading HOWTO).
    ///
    /// It does not flag what is safe: tuples (`PyTuple_GET_ITEM` is not in the list: a tuple
    /// never changes); a container the function created itself (`PyList_New`, `PyDict_New`,
    /// `PyDict_Copy`, `PySequence_List`, ...) and has not stored in a global; the `args`
    /// tuple and `kwargs`/`kwds` dict the function receives; and a call inside
    /// `Py_BEGIN_CRITICAL_SECTION(obj)` on that same object; and a container reached through a
    /// field or accessor (`descr->fields`, `PyDataType_FIELDS(d)`) that no code of the module
    /// changes in place (`PyDict_SetItem`, `PyList_Append`, ...) except on an object the same
    /// function has just made, unless Python code can reach it as a dict (`tp_dict`, an
    /// instance `dict`, `PyModule_GetDict`, the builtins), also when a local holds what an
    /// accessor macro returned (`fields = PyDataType_FIELDS(d)`); and the calling thread's own
    /// dict (`PyThreadState_GetDict()`). Nor a result that is only compared or tested
    /// (`item == NULL`, `item != Py_None`, `if (!item)`): its address is read, never the
    /// object; nor a lookup between the calls of a Python lock the object holds
    /// (`self->lock_data()` ... `self->unlock_data()`, read by the callables' names); nor a
    /// container kept in a field of a struct that only a function's frame holds (no Python
    /// object, held by no global, static or struct field, and every store into the field
    /// `NULL` or a fresh container, initializers included), read through the struct
    /// (`data->bytes_list`) or through a static helper every caller hands that field
    /// (`join_bytestrings(join_info->list)`). A container the module hands to
    /// Python as a mutable attribute and that Python code changes, or that C code changes only
    /// through a local alias (`loops = self->loops; PyList_Append(loops, x)`), is not seen:
    /// that is this exemption's known gap. C++ files, on which no rule runs, are still read
    /// for what they change, with such local aliases resolved: a field C++ code appends to is
    /// not exempt (numpy's `ufunc->_loops`, appended to only in `dispatching.cpp`). numpy's
    /// `// noqa: borrowed-ref OK` and `// noqa: borrowed-ref - manual fix needed` markers
    /// suppress it, so a project that uses numpy's gate can switch over. Code that runs only
    /// while the module initialises (`PyInit`, the exec slot and what only they call) is not
    /// flagged: it runs under the import lock, before the module's objects reach other
    /// threads. (Containers every thread shares, such as `sys.modules` or the builtins dict,
    /// are the exception that this lets through.) Neither is code that no free-threaded build
    /// compiles (`#if PY_VERSION_HEX < 0x030D0000`, the `#else` of
    /// `#ifdef Py_GIL_DISABLED`).
    ///
    /// ## Why is this bad?
    /// Without the GIL, another thread can remove the item (or replace the weakly referenced
    /// object, or resize the list) between the lookup and the use: the borrowed pointer then
    /// points at a freed object. The strong-reference variants take the reference while the
    /// container's lock is held.
    ///
    /// ## Example
    /// ```c
    /// PyObject *value = PyDict_GetItemWithError(self->registry, key);
    /// if (value == NULL) { ... }
    /// return call_with(value);
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// PyObject *value;
    /// if (PyDict_GetItemRef(self->registry, key, &value) < 0) {
    ///     return NULL;
    /// }
    /// PyObject *res = call_with(value);
    /// Py_XDECREF(value);
    /// return res;
    /// ```
    /// For `PySequence_Fast` items, wrap the loop in
    /// `Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST(obj)` / `Py_END_CRITICAL_SECTION_SEQUENCE_FAST()`;
    /// for `PyList_SET_ITEM` on a list others can see, use `PyList_SetItem`. On Pythons older
    /// than the replacement, `pythoncapi_compat.h` provides `PyDict_GetItemRef`,
    /// `PyList_GetItemRef`, `PyWeakref_GetRef` and `PyImport_AddModuleRef`.
    ///
    /// ## Minimum Python
    /// 3.13 for the `...Ref` functions (any Python with `pythoncapi_compat.h`).
    ///
    /// ## References
    /// - CPython HOWTO: C API Extension Support for Free Threading, "Borrowed References"
    /// - CPython `Doc/data/threadsafety.dat`
    /// - numpy `tools/ci/check_c_api_usage.py`
    pub static RULE = {
        id: "ISO101",
        name: "borrowed-reference",
        severity: Warning,
        min_python: "3.13",
        summary: "borrowed reference from a container another thread may change (free-threading)",
        blocks: Nothing,
        blocks_gil: true,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let mutated = super::free_threading::mutated_containers(ctx);
    let private_fields = super::free_threading::stack_private_fields(ctx);
    for (fi, f) in super::free_threading::run_time_functions(ctx) {
        // `pythoncapi_compat.h` and its like define the strong-reference API on top of the
        // borrowed one for older Pythons: that is the fix, not the hazard.
        if super::threadsafety::is_replacement(&f.name) {
            continue;
        }
        let mut fast_reported: Vec<(Option<usize>, &str)> = Vec::new();
        for call in &f.calls {
            if !call.callee.starts_with("Py") || !free_threaded_compiles(&call.versions) {
                continue;
            }
            let Some((hazard, entry)) = hazard_of(&call.callee) else {
                continue;
            };
            let container = call.args.first().map(|a| a.text.as_str()).unwrap_or("");
            match hazard {
                Hazard::Borrowed => {
                    // `PyImport_AddModule("name")` reads `sys.modules`: no argument
                    // names the container.
                    let takes_container = call.callee != "PyImport_AddModule";
                    // Only compared (`item != Py_None`): the object is never touched, so
                    // its being freed meanwhile harms nothing.
                    let compared_only = call
                        .assigned_to
                        .as_deref()
                        .is_some_and(|n| f.threading.compared_only.iter().any(|c| c == n));
                    if compared_only || super::free_threading::python_lock_held_at(f, &call.span) {
                        continue;
                    }
                    let private_field = super::free_threading::access_key(container)
                        .is_some_and(|key| private_fields.contains(&key))
                        || super::free_threading::parameter_from_private_fields(
                            ctx,
                            f,
                            container,
                            &private_fields,
                        );
                    if takes_container && private_field {
                        continue;
                    }
                    if takes_container
                        && (private_container(f, container, &call.span).is_some()
                            || super::free_threading::read_only_container(
                                f, container, &call.span, &mutated,
                            ))
                    {
                        continue;
                    }
                    let replacement = entry.replacement.as_deref().unwrap_or("?");
                    let since = entry.since.as_deref().unwrap_or("?");
                    let message = if takes_container {
                        format!("`{}({container}, ...)` in `{}` returns a borrowed reference: without the GIL another thread can remove the item from `{container}` and free it while it is used", call.callee, f.name)
                    } else {
                        format!("`{}` in `{}` returns a borrowed reference into `sys.modules`: without the GIL another thread can remove the module and free it while it is used", call.callee, f.name)
                    };
                    let help = format!("use `{replacement}` ({since}; `pythoncapi_compat.h` on older Pythons), which returns a strong reference, and release it when done; or hold `Py_BEGIN_CRITICAL_SECTION({})` around the lookup and the use", if takes_container { container } else { "..." });
                    report(ctx, fi, f, call, message, help);
                }
                Hazard::FillNew => {
                    if private_container(f, container, &call.span).is_some() {
                        continue;
                    }
                    let message = format!("`{}({container}, ...)` in `{}` writes an item with no lock, on a list this function did not create: another thread may be reading or resizing it", call.callee, f.name);
                    let help = "use `PyList_SetItem` (it takes the list's lock) or keep `PyList_SET_ITEM` for lists created in the same function".to_string();
                    report(ctx, fi, f, call, message, help);
                }
                Hazard::FastItem => {
                    let Some(source) = fast_source(f, container, call) else {
                        continue;
                    };
                    // One finding per sequence, at the `PySequence_Fast` that made it.
                    let key = match source {
                        Some((i, _)) => (Some(i), ""),
                        None => (None, container),
                    };
                    if fast_reported.contains(&key) {
                        continue;
                    }
                    fast_reported.push(key);
                    let (site_call, object) = match source {
                        Some((i, object)) => (&f.calls[i], object),
                        None => (call, container),
                    };
                    let message = format!("the items of `PySequence_Fast({object})` are read in `{}` outside a critical section: when `{object}` is a list, they are the list's own item array, which another thread can resize or change", f.name);
                    let help = format!("wrap the reads in `Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST({object})` ... `Py_END_CRITICAL_SECTION_SEQUENCE_FAST()` (3.13; a no-op on other builds)");
                    report(ctx, fi, f, site_call, message, help);
                }
                Hazard::Iteration => {}
            }
        }
    }
}

/// For a `PySequence_Fast_GET_ITEM(seq, i)` read that is a hazard: the `PySequence_Fast`
/// call that made `seq` (its index and argument), or `None` when none is in the function.
/// `None` overall when the read is safe.
fn fast_source<'f>(f: &'f Function, seq: &str, read: &Call) -> Option<Option<(usize, &'f str)>> {
    let seq = super::free_threading::bare_object(seq);
    if in_critical_section_on(f, seq, &read.span) {
        return None;
    }
    let made = f.calls.iter().enumerate().rev().find(|(_, c)| {
        c.span.start < read.span.start
            && c.callee == "PySequence_Fast"
            && c.assigned_to.as_deref() == Some(seq)
    });
    match made {
        Some((i, c)) => {
            let object = c.args.first().map(|a| a.text.as_str()).unwrap_or("?");
            if private_container(f, object, &read.span).is_some() {
                None
            } else {
                Some(Some((i, object)))
            }
        }
        None => private_container(f, seq, &read.span)
            .is_none()
            .then_some(None),
    }
}

fn report(ctx: &mut Ctx, fi: usize, f: &Function, call: &Call, message: String, help: String) {
    ctx.report(
        call_site(fi, call),
        Some(&call.callee),
        Some(&f.name),
        message,
        help,
    );
}
