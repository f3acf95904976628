use super::{declare_rule, Ctx, Site};
use crate::facts::{ExprKind, Init};
use crate::model::module_def_fields;
use crate::model::pytypes::bare_type;

declare_rule! {
    /// ## What it does
    /// Flags a `PyModuleDef` whose `m_size` is `-1`, also one that a function-like macro
    /// defines (`MOD_DEF(m, name, doc, methods)` expanding to `static struct PyModuleDef
    /// moduledef = {PyModuleDef_HEAD_INIT, name, doc, -1, methods}`), reported at the macro.
    ///
    /// ## Why is this bad?
    /// `m_size = -1` declares that the module keeps its state in C globals and cannot be
    /// re-initialised. CPython then shares one copy of the module's dict across interpreters
    /// and refuses to load it in isolated sub-interpreters.
    ///
    /// ## Example
    /// ```c
    /// static struct PyModuleDef moduledef = {
    ///     PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods
    /// };
    /// ```
    ///
    /// ## Use instead
    /// `m_size = 0` when the module has no state, or `sizeof(speedups_state)` once the globals
    /// live in a module state struct:
    /// ```c
    /// static struct PyModuleDef moduledef = {
    ///     PyModuleDef_HEAD_INIT,
    ///     .m_name = "_speedups",
    ///     .m_size = sizeof(speedups_state),
    ///     .m_methods = methods,
    /// };
    /// ```
    ///
    /// ## Minimum Python
    /// 3.0.
    ///
    /// ## References
    /// - CPython docs: `PyModuleDef.m_size`
    /// - CPython HOWTO "Isolating Extension Modules" (PEP 630)
    pub static RULE = {
        id: "ISO002",
        name: "negative-m-size",
        severity: Warning,
        min_python: "3.0",
        summary: "`PyModuleDef.m_size` is -1: state lives in C globals",
        blocks: SharedGil,
        check: check,
    };
}

fn check(ctx: &mut Ctx) {
    // Every PyModuleDef in the module's files, not only the one PyInit uses: a second
    // definition kept under `#if` is still compiled for some Python.
    let module = ctx.module;
    for &fi in &module.files {
        for v in &ctx.project.files[fi].variables {
            if bare_type(&v.type_name) != "PyModuleDef" {
                continue;
            }
            let Some(Init::List(list)) = &v.init else {
                continue;
            };
            let fields = module_def_fields(list);
            let Some(m_size) = fields
                .get("m_size")
                .filter(|e| e.kind == ExprKind::Number(Some(-1)))
            else {
                continue;
            };
            let site = Site {
                file: fi,
                span: m_size.span,
                versions: v.versions,
                uncertain: v.uncertain,
            };
            let message = format!(
                "`{}` sets `m_size = -1`: the module keeps its state in C globals",
                v.name
            );
            let help = "set `m_size` to `sizeof(<module>_state)` and keep the state there (or 0 when the module has no state)".to_string();
            ctx.report(site, Some(&v.name), None, message, help);
        }
    }
    check_macro_defined(ctx);
}

/// A `PyModuleDef` written inside a function-like macro (`MOD_DEF(m, name, doc, methods)`
/// expanding to `static struct PyModuleDef moduledef = {..., -1, ...}; m =
/// PyModule_Create(&moduledef);`) is no variable of the facts: when the module's creation
/// call names a definition that no variable is, the macro whose body defines it is read.
fn check_macro_defined(ctx: &mut Ctx) {
    let module = ctx.module;
    if module.def.is_some() {
        return;
    }
    let Some(creation) = &module.creation else {
        return;
    };
    let call = &ctx.project.files[creation.function.file].functions[creation.function.index].calls
        [creation.call];
    let Some(name) = call.args.first().map(|a| {
        a.text
            .trim_start_matches(['&', '(', ' '])
            .trim_end_matches([')', ' '])
            .to_string()
    }) else {
        return;
    };
    let mut found = None;
    for &fi in &module.files {
        for m in &ctx.project.files[fi].macros {
            if m.params.is_some() && !m.versions.is_empty() {
                if let Some(m_size) = macro_module_def_m_size(&m.body, &name) {
                    found.get_or_insert((fi, m, m_size));
                }
            }
        }
    }
    let Some((fi, m, m_size)) = found else {
        return;
    };
    if m_size != "-1" {
        return;
    }
    let site = Site {
        file: fi,
        span: m.span,
        versions: m.versions,
        uncertain: false,
    };
    let message = format!(
        "`{name}`, defined by the macro `{}`, sets `m_size = -1`: the module keeps its state in C globals",
        m.name
    );
    let help = "set `m_size` to `sizeof(<module>_state)` and keep the state there (or 0 when the module has no state)".to_string();
    ctx.report(site, Some(&name), None, message, help);
}

/// The `m_size` a macro body's `PyModuleDef name = { ... }` gives, as written: the designated
/// `.m_size`, or the fourth positional entry (after `PyModuleDef_HEAD_INIT`, `m_name`,
/// `m_doc`).
fn macro_module_def_m_size(body: &str, name: &str) -> Option<String> {
    let at = body.find("PyModuleDef")?;
    let rest = &body[at + "PyModuleDef".len()..];
    let rest = rest.trim_start().strip_prefix(name)?;
    let rest = rest
        .trim_start()
        .strip_prefix('=')?
        .trim_start()
        .strip_prefix('{')?;
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '{' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            '}' if depth == 0 => {
                entries.push(&rest[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                entries.push(&rest[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let entries: Vec<&str> = entries.iter().map(|e| e.trim()).collect();
    if let Some(designated) = entries.iter().find_map(|e| e.strip_prefix(".m_size")) {
        return Some(
            designated
                .trim_start()
                .strip_prefix('=')?
                .trim()
                .to_string(),
        );
    }
    if entries.iter().any(|e| e.starts_with('.')) {
        return None;
    }
    entries
        .get(3)
        .map(|e| e.trim_matches(['(', ')', ' ']).to_string())
}

#[cfg(test)]
mod tests {
    use super::macro_module_def_m_size;

    #[test]
    fn m_size_of_a_definition_in_a_macro_body() {
        let zope = "static struct PyModuleDef moduledef = { PyModuleDef_HEAD_INIT, name, doc, -1, methods, }; ob = PyModule_Create(&moduledef);";
        assert_eq!(
            macro_module_def_m_size(zope, "moduledef").as_deref(),
            Some("-1")
        );
        assert_eq!(macro_module_def_m_size(zope, "other"), None);
        let designated = "static PyModuleDef def = { PyModuleDef_HEAD_INIT, .m_name = (n), .m_size = sizeof(st) };";
        assert_eq!(
            macro_module_def_m_size(designated, "def").as_deref(),
            Some("sizeof(st)")
        );
        let short = "static PyModuleDef def = { PyModuleDef_HEAD_INIT, (name) };";
        assert_eq!(macro_module_def_m_size(short, "def"), None);
        assert_eq!(macro_module_def_m_size("PyModuleDef def = {", "def"), None);
    }
}
