//! Stage 1: the module state struct, its getter, `m_traverse`/`m_clear`/`m_free`, and the exec
//! code that fills it in, generated from the globals that move.

use super::context::{object_pointer, PlanCtx};
use crate::model::Global;

/// One field of the state struct.
pub struct Field {
    pub name: String,
    /// The C declaration of the field, without `;`.
    pub decl: String,
    pub comment: String,
    pub visit: Visit,
}

#[derive(PartialEq, Eq)]
pub enum Visit {
    /// Plain C data.
    None,
    /// One object pointer.
    Object,
    /// An array of object pointers.
    ObjectArray,
    /// Holds objects in a way the generator cannot name (a struct by value, a pointer to one).
    ByHand,
}

pub fn fields(ctx: &PlanCtx, globals: &[&Global]) -> Vec<Field> {
    globals.iter().map(|g| field(ctx, g)).collect()
}

fn field(ctx: &PlanCtx, g: &Global) -> Field {
    let v = ctx.project.var(g.var);
    let name = ctx.field_name(g.var);
    let site = ctx.var_site(g.var);
    let comment = match &v.function {
        Some(f) => format!(
            "was `static {}` in `{f}`, {}:{}",
            v.name, site.path, site.line
        ),
        None => format!("was `{}`, {}:{}", v.name, site.path, site.line),
    };
    if ctx.is_static_type(g.var) {
        // The heap type replaces the static one (stage 2); the state keeps a strong reference.
        return Field {
            decl: format!("PyTypeObject *{name}"),
            name,
            comment,
            visit: Visit::Object,
        };
    }
    let suffix = ctx.array_suffix(g.var);
    let decl = if !v.inline_fields.is_empty() || v.is_function_pointer {
        // The declared type does not survive being re-spelled as `type name`: keep its text.
        let text = ctx
            .text(g.var.file, v.decl_span)
            .map(declaration_without_storage)
            .unwrap_or_else(|| format!("{} {name}{suffix}", v.type_name));
        text.replacen(&v.name, &name, 1)
    } else {
        let mut ty = v.type_display();
        if !ty.ends_with('*') {
            ty.push(' ');
        }
        let volatile = if v.is_volatile { "volatile " } else { "" };
        format!("{volatile}{ty}{name}{suffix}")
    };
    let visit = if object_pointer(ctx.layouts, v) {
        match v.array_dims {
            0 => Visit::Object,
            1 => Visit::ObjectArray,
            _ => Visit::ByHand,
        }
    } else if ctx.layouts.variable_holds_objects(v) {
        Visit::ByHand
    } else {
        Visit::None
    };
    Field {
        name,
        decl,
        comment,
        visit,
    }
}

/// `static struct {...} s = {...};` → `struct {...} s`.
fn declaration_without_storage(text: &str) -> String {
    let body = text.split('=').next().unwrap_or(text).trim_end_matches(';');
    body.split_whitespace()
        .filter(|w| !matches!(*w, "static" | "extern" | "__thread" | "_Thread_local"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub struct StateNames {
    pub ty: String,
    pub getter: String,
    pub traverse: String,
    pub clear: String,
    pub free: String,
    pub exec: String,
}

impl StateNames {
    pub fn new(ctx: &PlanCtx) -> Self {
        let p = &ctx.prefix;
        Self {
            ty: ctx.state_type(),
            getter: ctx.state_getter(),
            traverse: ctx.fresh(&format!("{p}_traverse")),
            clear: ctx.fresh(&format!("{p}_clear")),
            free: ctx.fresh(&format!("{p}_free")),
            exec: ctx.fresh(&format!("{p}_exec_state")),
        }
    }
}

pub fn state_struct(names: &StateNames, fields: &[Field]) -> String {
    let mut out = String::from("typedef struct {\n");
    if fields.is_empty() {
        // C needs at least one member; the state still gives the module somewhere to grow.
        out.push_str("    char unused;\n");
    }
    for f in fields {
        out.push_str(&format!("    {};  /* {} */\n", f.decl, f.comment));
    }
    out.push_str(&format!("}} {};\n", names.ty));
    out
}

pub fn getter(names: &StateNames) -> String {
    format!(
        "static inline {ty} *\n{getter}(PyObject *module)\n{{\n    void *state = PyModule_GetState(module);\n    assert(state != NULL);\n    return ({ty} *)state;\n}}\n",
        ty = names.ty,
        getter = names.getter
    )
}

/// `m_traverse`, `m_clear` and `m_free`: every object field is visited and cleared.
pub fn gc_functions(names: &StateNames, fields: &[Field]) -> String {
    let mut visit = String::new();
    let mut clear = String::new();
    for f in fields {
        match f.visit {
            Visit::None => {}
            Visit::Object => {
                visit.push_str(&format!("    Py_VISIT(state->{});\n", f.name));
                clear.push_str(&format!("    Py_CLEAR(state->{});\n", f.name));
            }
            Visit::ObjectArray => {
                let each = |m: &str| {
                    format!(
                        "    for (size_t i = 0; i < Py_ARRAY_LENGTH(state->{n}); i++) {{\n        {m}(state->{n}[i]);\n    }}\n",
                        n = f.name
                    )
                };
                visit.push_str(&each("Py_VISIT"));
                clear.push_str(&each("Py_CLEAR"));
            }
            Visit::ByHand => {
                let note = format!(
                    "    /* `{}` holds objects: visit and clear them here by hand. */\n",
                    f.name
                );
                visit.push_str(&note);
                clear.push_str(&note);
            }
        }
    }
    let state_line = |body: &str| {
        if body.is_empty() {
            String::new()
        } else {
            format!("    {} *state = {}(module);\n", names.ty, names.getter)
        }
    };
    format!(
        "static int\n{traverse}(PyObject *module, visitproc visit, void *arg)\n{{\n{vs}{visit}    return 0;\n}}\n\n\
static int\n{clear_fn}(PyObject *module)\n{{\n{cs}{clear}    return 0;\n}}\n\n\
static void\n{free}(void *module)\n{{\n    (void){clear_fn}((PyObject *)module);\n}}\n",
        traverse = names.traverse,
        clear_fn = names.clear,
        free = names.free,
        vs = state_line(&visit),
        cs = state_line(&clear),
    )
}

/// The module definition fields stage 1 sets.
pub fn def_fields(names: &StateNames) -> String {
    format!(
        "    .m_size = sizeof({}),\n    .m_traverse = {},\n    .m_clear = {},\n    .m_free = {},\n",
        names.ty, names.traverse, names.clear, names.free
    )
}

/// The exec code that fills the state: each write the init code made to a global, aimed at
/// the state instead. A reference handed to `PyModule_AddObject` is stolen, so the state takes
/// its own with `PyModule_AddObjectRef` (3.10+).
pub fn exec_code(ctx: &PlanCtx, names: &StateNames, globals: &[&Global]) -> String {
    let alias_name = ctx
        .module
        .creation
        .as_ref()
        .and_then(|c| ctx.project.call(c.function, c.call).assigned_to.clone());
    let mut body = String::new();
    for g in globals {
        if ctx.is_static_type(g.var) {
            continue; // stage 2 creates the type
        }
        let field = ctx.field_name(g.var);
        let v = ctx.project.var(g.var);
        for w in g.writes.iter().filter(|w| w.at_init) {
            let site = ctx.project.write_site(w);
            if site.kind != crate::facts::WriteKind::Assign || site.field.is_some() {
                continue;
            }
            let Some(value) = &site.value else { continue };
            if v.array_dims > 0 {
                continue;
            }
            let function = ctx.function(w.function);
            if let Some(local) = local_in(&value.text, function, alias_name.as_deref()) {
                // The value needs a local of the init code: the statements that compute it
                // move along with it, by hand.
                body.push_str(&format!(
                    "    /* was {}:{} in `{}`: state->{field} = {}; (uses the local `{local}`: move the code that computes it too) */\n",
                    ctx.path(w.function.file),
                    site.span.line,
                    function.name,
                    value.text.replace("*/", "* /")
                ));
                continue;
            }
            body.push_str(&format!(
                "    /* was {}:{} in `{}` */\n    state->{field} = {};\n",
                ctx.path(w.function.file),
                site.span.line,
                function.name,
                value.text
            ));
            if value.callee().is_some() && object_pointer(ctx.layouts, v) {
                body.push_str(&format!(
                    "    if (state->{field} == NULL) {{\n        return -1;\n    }}\n"
                ));
            }
        }
    }
    // The init code names the module by its local in `PyInit`; keep that name valid.
    let alias = alias_name
        .filter(|m| m != "module" && m != "state")
        .map(|m| format!("    PyObject *{m} = module;\n    (void){m};\n"))
        .unwrap_or_default();
    format!(
        "static int\n{exec}(PyObject *module)\n{{\n    {ty} *state = {getter}(module);\n    (void)state;\n{alias}{body}    return 0;\n}}\n",
        exec = names.exec,
        ty = names.ty,
        getter = names.getter,
    )
}

/// The first identifier in `text` that is a local of `function` (not a global, function or
/// macro it references, not the module, not a C-API name or keyword).
fn local_in(text: &str, function: &crate::facts::Function, module: Option<&str>) -> Option<String> {
    let known = |w: &str| {
        function.references.iter().any(|r| r.name == w)
            || function.params.iter().any(|p| p.name.as_deref() == Some(w))
            || Some(w) == module
            || w.starts_with("Py")
            || w.starts_with("_Py")
            || matches!(
                w,
                "NULL"
                    | "sizeof"
                    | "const"
                    | "struct"
                    | "void"
                    | "char"
                    | "int"
                    | "long"
                    | "short"
                    | "unsigned"
                    | "signed"
                    | "double"
                    | "float"
                    | "size_t"
            )
    };
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with('"') {
            // Skip a string literal.
            let end = rest[1..].find('"').map_or(rest.len(), |i| i + 2);
            rest = &rest[end.min(rest.len())..];
            continue;
        }
        let c = rest.chars().next()?;
        if c.is_ascii_alphabetic() || c == '_' {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            // A member after `.`/`->` is not a variable.
            let before = text[..text.len() - rest.len()].trim_end();
            let member = before.ends_with('.') || before.ends_with("->");
            if !member && !known(word) {
                return Some(word.to_string());
            }
            rest = &rest[end..];
        } else if c.is_ascii_digit() {
            let end = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '.'))
                .unwrap_or(rest.len());
            rest = &rest[end..];
        } else {
            rest = &rest[c.len_utf8()..];
        }
    }
    None
}
