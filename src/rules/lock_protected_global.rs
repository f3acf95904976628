use super::free_threading::{bare_object, is_lock_type, lock_held_at};
use super::support::describe_writes;
use super::{declare_rule, Ctx};
use crate::model::{Global, WriteClass};

declare_rule! {
    /// ## What it does
    /// Points out a C global (not a Python object) that is read and written only while a
    /// process-wide lock is held: a `static` `PyMutex`, `PyThread_type_lock`,
    /// `pthread_mutex_t`, `CRITICAL_SECTION`, `mtx_t` or `Tcl_Mutex` taken with
    /// `PyMutex_Lock`, `PyThread_acquire_lock`, `pthread_mutex_lock`, `EnterCriticalSection`,
    /// `mtx_lock` or `Tcl_MutexLock` before each use, in the same function, with no release in
    /// between. Such data does not block `Py_MOD_PER_INTERPRETER_GIL_SUPPORTED`: the lock
    /// serialises the interpreters as it serialises threads. `mutable-global-state` leaves it
    /// to this rule.
    ///
    /// The lock variables themselves are never reported as state to move, by any rule.
    ///
    /// A lock held through an object or module state (`self->lock`, `st->mutex`) is not
    /// process-wide, and protects nothing across interpreters. Python objects behind a lock
    /// still block: an object belongs to the interpreter that made it, and a lock does not
    /// change that (`global-pyobject`). The check reads straight-line code: a lock taken
    /// before the use in the same function, the first use of the global in each function that
    /// reads it, and every write.
    ///
    /// ## Why is this bad?
    /// It is not a bug. It is shared by every interpreter: one interpreter's update is seen by
    /// all of them, which may or may not be what the module means (a process-wide cache, a
    /// registry of loaded libraries), and the lock is a point of contention between them.
    ///
    /// ## Example
    /// ```c
    /// static PyMutex registry_lock;
    /// static int registered;
    /// static PyObject *add(PyObject *m, PyObject *arg) {
    ///     PyMutex_Lock(&registry_lock);
    ///     registered++;
    ///     PyMutex_Unlock(&registry_lock);
    ///     Py_RETURN_NONE;
    /// }
    /// ```
    ///
    /// ## Use instead
    /// Nothing, if the data is meant to be process-wide. Otherwise move it into module state,
    /// where it is per interpreter.
    ///
    /// ## Minimum Python
    /// Any (`PyMutex` is 3.13).
    ///
    /// ## References
    /// - PEP 684: A Per-Interpreter GIL
    /// - CPython HOWTO: Isolating Extension Modules
    pub static RULE = {
        id: "ISO026",
        name: "lock-protected-global",
        severity: Info,
        min_python: "any",
        summary: "C global used only under a process-wide lock: safe with per-interpreter GILs",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for g in &ctx.module.globals {
        let Some(lock) = protecting_lock(ctx, g) else {
            continue;
        };
        let v = project.var(g.var);
        let message = format!(
            "`{}` (`{}`) is read and written only while the process-wide lock `{lock}` is held (written in {}): safe with per-interpreter GILs, and shared by every interpreter",
            v.name,
            v.type_display().trim(),
            describe_writes(project, g)
        );
        let help =
            "nothing to do if it is meant to be process-wide; otherwise keep it in module state"
                .to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}

/// The process-wide lock every read and write of `global` holds, when there is one: a
/// non-object C global, written and read only after the same lock, a static of the module,
/// was taken in the same function.
pub fn protecting_lock(ctx: &Ctx, global: &Global) -> Option<String> {
    let project = ctx.project;
    let v = project.var(global.var);
    if global.class == WriteClass::NeverWritten
        || !global.address_in_initializers.is_empty()
        || v.is_thread_local
        || v.is_immutable()
        || is_lock_type(&v.type_name)
        || ctx.layouts.variable_holds_objects(v)
        || crate::model::pytypes::is_type_object(&v.type_name)
        || ctx.layouts.is_static_object(v)
    {
        return None;
    }
    let mut lock: Option<String> = None;
    let mut same_lock = |held: Option<&str>| -> bool {
        let Some(name) = held.and_then(|h| process_wide_lock(ctx, h)) else {
            return false;
        };
        match &lock {
            Some(l) => *l == name,
            None => {
                lock = Some(name);
                true
            }
        }
    };
    for w in &global.writes {
        let site = project.write_site(w);
        if site.versions.python2_only() {
            continue;
        }
        // `&x` handed to an unknown callee may be written anywhere, locked or not.
        if site.kind.escapes() {
            return None;
        }
        if !same_lock(lock_held_at(project.function(w.function), &site.span)) {
            return None;
        }
    }
    for &r in &global.readers {
        let f = project.function(r);
        let Some(first_use) = f.references.iter().find(|x| x.name == v.name) else {
            continue;
        };
        if !same_lock(lock_held_at(f, &first_use.span)) {
            return None;
        }
    }
    lock
}

/// The lock's name when the argument names a static of the module (`&registry_lock`,
/// `registry_lock`); `None` for a lock reached through an object or a state struct.
fn process_wide_lock(ctx: &Ctx, argument: &str) -> Option<String> {
    let text = bare_object(argument.trim());
    let name = bare_object(text.strip_prefix('&').unwrap_or(text).trim());
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let project = ctx.project;
    ctx.module
        .globals
        .iter()
        .any(|g| {
            let v = project.var(g.var);
            v.name == name && is_lock_type(&v.type_name)
        })
        .then(|| name.to_string())
}
