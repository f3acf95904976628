use super::support::call_site;
use super::{declare_rule, Ctx};

declare_rule! {
    /// ## What it does
    /// Flags `_Py_IDENTIFIER(name)`, `Py_IDENTIFIER(name)` and `_Py_static_string(...)`,
    /// wherever they are written: at file scope, in a function, or inside a macro of the
    /// project used there (`#define DECLARE_ID(n) _Py_IDENTIFIER(n)`), which is reported at
    /// the use with the name it declares. A variable declared `_Py_Identifier` by hand
    /// (`static _Py_Identifier PyId_x = _Py_static_string_init("x");`) is the same cache.
    ///
    /// ## Why is this bad?
    /// Each declares a static `_Py_Identifier`: a process-global cache of an interned string,
    /// private API that CPython removed from its public headers in 3.12. Modules that use it do
    /// not build against 3.12+ without CPython's internal headers, and the cache is shared by
    /// every interpreter.
    ///
    /// ## Example
    /// ```c
    /// _Py_IDENTIFIER(flush);
    /// ...
    /// res = _PyObject_CallMethodIdNoArgs(file, &PyId_flush);
    /// ```
    ///
    /// ## Use instead
    /// Intern the string in the exec slot and keep it in module state:
    /// ```c
    /// st->str_flush = PyUnicode_InternFromString("flush");
    /// ...
    /// res = PyObject_CallMethodNoArgs(file, st->str_flush);
    /// ```
    ///
    /// ## Minimum Python
    /// 3.9 (`PyObject_CallMethodNoArgs`).
    ///
    /// ## References
    /// - CPython issue gh-91333 (removing `_Py_IDENTIFIER` from the public API)
    pub static RULE = {
        id: "ISO009",
        name: "py-identifier",
        severity: Warning,
        min_python: "3.9",
        summary: "`_Py_IDENTIFIER` static string cache (private, process-global)",
        blocks: PerInterpreterGil,
        check: check,
    };
}

const IDENTIFIER_MACROS: &[&str] = &["_Py_IDENTIFIER", "Py_IDENTIFIER", "_Py_static_string"];

fn check(ctx: &mut Ctx) {
    let project = ctx.project;
    for &fi in &ctx.module.files {
        let file = &project.files[fi];
        let in_functions = file
            .functions
            .iter()
            .flat_map(|f| f.calls.iter().map(move |c| (Some(f.name.as_str()), c)));
        let at_file_scope = file.file_scope_calls.iter().map(|c| (None, c));
        for (function, call) in at_file_scope.chain(in_functions) {
            if !IDENTIFIER_MACROS.contains(&call.callee.as_str()) {
                continue;
            }
            let name = call
                .args
                .first()
                .map(|a| a.text.clone())
                .unwrap_or_default();
            let message = format!("`{}({name})` declares a process-global `_Py_Identifier`, private API removed from the public headers in 3.12", call.callee);
            let help = format!("intern \"{name}\" with `PyUnicode_InternFromString` in the exec slot and keep it in module state");
            ctx.report(call_site(fi, call), Some(&name), function, message, help);
        }
    }
    // Spelled out by hand: `static _Py_Identifier PyId_x = _Py_static_string_init("x");`.
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if !(is_identifier_type(&v.type_name) && v.pointers.is_empty()) {
            continue;
        }
        let message = format!("`{}` is a process-global `_Py_Identifier`, private API removed from the public headers in 3.12", v.name);
        let help = "intern the string with `PyUnicode_InternFromString` in the exec slot and keep it in module state".to_string();
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}

/// `_Py_Identifier` (or `struct _Py_Identifier`): CPython writes the string's index into it
/// on first use.
pub(crate) fn is_identifier_type(type_name: &str) -> bool {
    crate::model::pytypes::bare_type(type_name) == "_Py_Identifier"
}
