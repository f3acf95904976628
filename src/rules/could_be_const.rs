use super::{declare_rule, Ctx};
use crate::model::pytypes::{is_definition_table, is_type_object};
use crate::model::WriteClass;

declare_rule! {
    /// ## What it does
    /// Points out a non-const global or `static` scalar or pointer that is never written after
    /// its initializer. Arrays are left alone.
    ///
    /// ## Why is this bad?
    /// It is not a bug: nothing writes it, so interpreters cannot disturb each other through
    /// it. Declaring it `const` says so to readers and to the compiler, and keeps a later change
    /// from turning it into shared mutable state.
    ///
    /// ## Example
    /// ```c
    /// static int default_level = 3;
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// static const int default_level = 3;
    /// ```
    ///
    /// ## Minimum Python
    /// Any.
    ///
    /// ## References
    /// - CPython HOWTO "Isolating Extension Modules"
    pub static RULE = {
        id: "ISO008",
        name: "could-be-const",
        severity: Info,
        min_python: "any",
        summary: "global never written after its initializer could be `const`",
        blocks: Nothing,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    for g in &ctx.module.globals {
        let v = ctx.project.var(g.var);
        if g.class != WriteClass::NeverWritten
            || v.is_immutable()
            || v.is_thread_local
            || v.is_volatile
        {
            continue;
        }
        // The C API takes these tables as non-const pointers; they are immutable data.
        if is_definition_table(&v.type_name)
            || is_type_object(&v.type_name)
            || ctx.layouts.is_static_object(v)
            // A lock is written by locking it, through its address.
            || super::free_threading::is_lock_type(&v.type_name)
            // CPython writes the interned string's index into it (py-identifier says so).
            || super::py_identifier::is_identifier_type(&v.type_name)
        {
            continue;
        }
        // Tables (`static char *kwlist[]`, generated lookup tables) are left alone: the C API
        // often wants them non-const (`PyArg_ParseTupleAndKeywords` takes `char **`), and
        // a hint per table drowns the findings that matter.
        if v.array_dims > 0 {
            continue;
        }
        if v.init.is_none() || v.is_function_pointer {
            continue;
        }
        let message = format!(
            "`{}` is never written after its initializer and could be `const`",
            v.name
        );
        let help = format!("declare it `const` ({})", const_spelling(v));
        let site = ctx.var_site(g.var);
        ctx.report(site, Some(&v.name), v.function.as_deref(), message, help);
    }
}

fn const_spelling(v: &crate::facts::Variable) -> String {
    let dims = "[]".repeat(v.array_dims);
    if v.pointers.is_empty() {
        format!("`static const {} {}{dims}`", v.type_name, v.name)
    } else {
        let stars: String = "*".repeat(v.pointers.len());
        let base = if v.type_const {
            format!("const {}", v.type_name)
        } else {
            v.type_name.clone()
        };
        format!("`static {base} {stars}const {}{dims}`", v.name)
    }
}
