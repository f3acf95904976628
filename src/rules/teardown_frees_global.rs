use super::free_threading::bare_object;
use super::support::{call_site, module_function};
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags a module or type teardown function (`m_free`, `m_clear`, `tp_dealloc`, and the
    /// module functions it calls directly) that releases a process-global object: `Py_CLEAR`,
    /// `Py_DECREF` or `Py_XDECREF` of a global or `static` that holds Python objects. The
    /// finding names the teardown function, and comes in addition to the global's own finding
    /// (`global-pyobject`, `global-exception-object`, ...).
    ///
    /// ## Why is this bad?
    /// Teardown runs once per module object, that is once per interpreter that imported the
    /// module, but the global is one for the whole process. The first interpreter to tear
    /// the module down frees (or drops a reference to) an object every other interpreter
    /// still uses: a dangling pointer, a double free on the next teardown, or an object that
    /// belongs to a finalised interpreter.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *cache;
    /// static void mod_free(void *m) { Py_CLEAR(cache); }
    /// ```
    ///
    /// ## Use instead
    /// Keep the object in module state and release it from there:
    /// ```c
    /// static void mod_free(void *m) { Py_CLEAR(get_state((PyObject *)m)->cache); }
    /// ```
    ///
    /// ## Minimum Python
    /// 3.5 (module state with multi-phase init).
    ///
    /// ## References
    /// - CPython HOWTO: Isolating Extension Modules
    /// - CPython docs: `PyModuleDef.m_free`, `m_clear`; `tp_dealloc`
    pub static RULE = {
        id: "ISO027",
        name: "teardown-frees-global",
        severity: Warning,
        min_python: "3.5",
        summary: "`m_free`/`m_clear`/`tp_dealloc` releases a process-global object",
        blocks: SharedGil,
        check: check,
    };
}

const RELEASES: &[&str] = &["Py_CLEAR", "Py_DECREF", "Py_XDECREF"];

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    let module = ctx.module;
    // (the teardown's role, its function name)
    let mut teardowns: Vec<(&str, String)> = Vec::new();
    if let Some(def) = &module.def {
        for field in ["m_free", "m_clear"] {
            if let Some(name) = def.function_field(field) {
                teardowns.push((field, name.to_string()));
            }
        }
    }
    for t in &module.types {
        for key in ["tp_dealloc", "Py_tp_dealloc"] {
            if let Some(name) = t.slots.get(key).and_then(|e| e.ident()) {
                teardowns.push(("tp_dealloc", name.to_string()));
            }
        }
    }
    let mut seen: Vec<(String, String)> = Vec::new();
    for (role, name) in teardowns {
        let Some((fi, f)) = module_function(ctx, &name) else {
            continue;
        };
        // The teardown and the module helpers it calls (`clear_state(m)`).
        let mut bodies = vec![(fi, f)];
        for c in &f.calls {
            if let Some((hfi, helper)) = module_function(ctx, &c.callee) {
                if helper.name != f.name && !bodies.iter().any(|(_, b)| b.name == helper.name) {
                    bodies.push((hfi, helper));
                }
            }
        }
        for (bfi, body) in bodies {
            for call in body
                .calls
                .iter()
                .filter(|c| RELEASES.contains(&c.callee.as_str()))
            {
                let Some(arg) = call.args.first() else {
                    continue;
                };
                let target = bare_object(&arg.text);
                if target.is_empty()
                    || !target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    continue;
                }
                let global = module.globals.iter().find(|g| {
                    let v = project.var(g.var);
                    v.name == target
                        && v.function.as_deref().is_none_or(|fname| fname == body.name)
                        && ctx.layouts.variable_holds_objects(v)
                });
                let Some(g) = global else {
                    continue;
                };
                let key = (name.clone(), target.to_string());
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let v = project.var(g.var);
                let via = if body.name == name {
                    String::new()
                } else {
                    format!(" (through `{}`)", body.name)
                };
                let message = format!(
                    "`{role}` function `{name}`{via} releases the process-global `{}` with `{}`: it runs for each interpreter's module, so the first teardown frees what the other interpreters still use",
                    v.name, call.callee
                );
                let help = format!(
                    "keep `{}` in module state and release it there, so each module object frees only its own",
                    v.name
                );
                ctx.report(
                    call_site(bfi, call),
                    Some(&v.name),
                    Some(&body.name),
                    message,
                    help,
                );
            }
        }
    }
}
