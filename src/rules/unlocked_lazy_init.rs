use super::free_threading::{
    free_threaded_compiles, locked_at, once_callbacks, racy_writes, run_time_functions,
};
use super::{declare_rule, Ctx, Site};
use crate::facts::ExprKind;

declare_rule! {
    /// ## What it does
    /// Flags lazy initialisation of a global or function-local static at run time,
    /// `if (cache == NULL) { cache = ...; }` (or `if (!cache)`), with no lock taken before it
    /// in the same function (`PyMutex_Lock`, `PyThread_acquire_lock`, `pthread_mutex_lock`,
    /// ...), no critical section around it, and not in a callback run by `pthread_once` /
    /// `call_once`. Writes while the module initialises are left to the isolation rules.
    ///
    /// A field of the module's state filled the same way (`if (st->cache == NULL)
    /// st->cache = ...;`, `if ((t = st->cache[i]) == NULL) { ... st->cache[i] = t; }`), read
    /// through the state pointer (a local or parameter of the state's type, a cast to it, or a
    /// function of the module that returns it), is reported too: moving a global into module
    /// state gives each interpreter its own, but threads of one interpreter still share it. A
    /// field filled only while the module initialises (its exec slot) is not.
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
    state_fields(ctx, &once);
}

/// The lazily filled fields of the module's state (`m_size = sizeof(S)`), one finding each at
/// its first unprotected fill.
fn state_fields(ctx: &mut Ctx, once: &[&str]) {
    let Some(def) = &ctx.module.def else { return };
    let Some(ExprKind::SizeOf(state_type)) = def.m_size().map(|e| &e.kind) else {
        return;
    };
    let state_type = state_type
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let state_type = state_type.strip_prefix("struct ").unwrap_or(state_type);
    // The names the state goes by: its tag and typedefs.
    let mut names: Vec<&str> = vec![state_type];
    if let Some(layout) = ctx.layouts.get_in(state_type, &ctx.module.files) {
        names.extend(layout.names.iter().map(String::as_str));
    }
    let project = ctx.project;
    let is_state = |t: &str| names.contains(&t);
    let files = || ctx.module.files.iter().map(|&fi| &project.files[fi]);
    // Functions and macros of the module that hand out the state pointer
    // (`static inline mod_state *get_state(PyObject *m)`, `#define STATE(m) ((mod_state *)...)`).
    let returns_state = |ret: &str| {
        let ret = ret.trim();
        let Some(base) = ret.strip_suffix('*') else {
            return false;
        };
        let base = base.trim();
        let base = base.rsplit(' ').next().unwrap_or(base);
        is_state(base)
    };
    let accessors: Vec<&str> = files()
        .flat_map(|f| &f.functions)
        .filter(|f| returns_state(&f.return_type))
        .map(|f| f.name.as_str())
        .chain(
            files()
                .flat_map(|f| &f.macros)
                .filter(|m| {
                    names.iter().any(|n| {
                        m.body
                            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .any(|w| w == *n)
                    })
                })
                .map(|m| m.name.as_str()),
        )
        .collect();
    let mut reported: Vec<&str> = Vec::new();
    let fills: Vec<_> = run_time_functions(ctx)
        .flat_map(|(fi, f)| {
            f.threading
                .lazy_field_fills
                .iter()
                .map(move |fill| (fi, f, fill))
        })
        .collect();
    for (file, function, fill) in fills {
        let through_state = fill.base_type.as_deref().is_some_and(is_state)
            || fill
                .base_call
                .as_deref()
                .is_some_and(|c| accessors.contains(&c));
        if !through_state
            || reported.contains(&fill.field.as_str())
            || !free_threaded_compiles(&fill.versions)
            || locked_at(function, &fill.span)
            || once.contains(&function.name.as_str())
        {
            continue;
        }
        reported.push(&fill.field);
        let message = format!(
            "`{}` of the module state (`{state_type}`) is filled lazily in `{}` (line {}) with no lock: each interpreter has its own state, but on a free-threaded build two threads of one interpreter can both see it unset and both fill it",
            fill.field, function.name, fill.span.line
        );
        let help = "create it in the exec slot, or take a `PyMutex` (kept in the state) or a critical section around the test and the write".to_string();
        ctx.report(
            Site {
                file,
                span: fill.span,
                versions: fill.versions,
                uncertain: fill.uncertain,
            },
            Some(&fill.field),
            Some(&function.name),
            message,
            help,
        );
    }
}
