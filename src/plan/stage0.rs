//! Stage 0 as an edit: the `PyInit` body moves into a `Py_mod_exec` function, `PyInit` returns
//! `PyModuleDef_Init(&def)`, `m_size` becomes at least 0, and 3.12+ is told the module does not
//! support sub-interpreters. It refuses, with the reason, wherever that is not mechanical.

use super::context::PlanCtx;
use crate::facts::{ExprKind, Init, InitList};
use crate::model::InitStyle;

/// One replacement of `start..end` in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub file: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Stage0 {
    /// Multi-phase already: nothing to do.
    Done,
    Edits(Vec<Edit>),
    Refused(String),
}

const MODULE_RELEASES: &[&str] = &["Py_DECREF", "Py_XDECREF", "Py_CLEAR"];

pub fn stage0(ctx: &PlanCtx) -> Stage0 {
    match ctx.module.init_style {
        InitStyle::MultiPhase => return Stage0::Done,
        InitStyle::Unknown => {
            return Stage0::Refused(
                "no module creation call was found in `PyInit` or what it calls".into(),
            )
        }
        InitStyle::SinglePhase => {}
    }
    match build(ctx) {
        Ok(edits) => Stage0::Edits(edits),
        Err(reason) => Stage0::Refused(reason),
    }
}

fn build(ctx: &PlanCtx) -> Result<Vec<Edit>, String> {
    let module = ctx.module;
    let init = module
        .init_function
        .ok_or("the module has no `PyInit` function")?;
    let creation = module.creation.as_ref().ok_or("no module creation call")?;
    if let Some(via) = &creation.via {
        return Err(format!(
            "the module is created through {via}, not in `PyInit` itself: move the creation by hand"
        ));
    }
    let function = ctx.function(init);
    if function.macro_head.is_some() {
        return Err("`PyInit` is written through a macro".into());
    }
    if function.uncertain {
        return Err("`PyInit` overlaps a parse error".into());
    }
    let call = ctx.project.call(creation.function, creation.call);
    if !matches!(call.callee.as_str(), "PyModule_Create" | "PyModule_Create2") {
        return Err(format!(
            "the module is created with `{}`, which has no module definition to reuse",
            call.callee
        ));
    }
    let def = module.def.as_ref().ok_or("no `PyModuleDef` was found")?;
    let def_var = ctx.project.var(def.var);
    if call.args.first().and_then(|a| match &a.kind {
        ExprKind::AddressOf(n) => Some(n.as_str()),
        _ => None,
    }) != Some(def_var.name.as_str())
    {
        return Err(format!(
            "`{}` is not given `&{}` directly",
            call.callee, def_var.name
        ));
    }
    if def.var.file != init.file {
        return Err("the module definition is in another file than `PyInit`".into());
    }
    for &fi in &module.files {
        for f in &ctx.project.files[fi].functions {
            if let Some(c) = f.calls.iter().find(|c| {
                matches!(
                    c.callee.as_str(),
                    "PyState_FindModule" | "PyState_AddModule"
                )
            }) {
                return Err(format!(
                    "`{}` calls `{}` (line {}), which does not work for multi-phase modules: replace it with module state first",
                    f.name, c.callee, c.span.line
                ));
            }
        }
    }
    let text = ctx
        .texts
        .get(&init.file)
        .ok_or("the source file could not be read again")?;
    // Every offset used below comes from these spans: check them once, so slicing cannot fail.
    let def_list_span = match &def_var.init {
        Some(Init::List(l)) => Some(l.span),
        _ => None,
    };
    let spans = [
        function.def_span,
        function.span,
        call.span,
        def_var.decl_span,
    ]
    .into_iter()
    .chain(def_list_span)
    .chain(function.returns.iter().map(|r| r.span))
    .chain(function.calls.iter().map(|c| c.span));
    for sp in spans {
        if sp.start > sp.end || text.get(sp.start..sp.end).is_none() {
            return Err("the file changed since it was read".into());
        }
    }
    let span = function.def_span;
    if !(span.start <= function.span.end
        && function.span.end <= span.end
        && span.start <= call.span.start
        && call.span.end <= span.end)
    {
        return Err("`PyInit` could not be delimited".into());
    }
    let open = text[function.span.end..span.end]
        .find('{')
        .map(|i| function.span.end + i)
        .ok_or("`PyInit` has no body")?;
    let close = span
        .end
        .checked_sub(1)
        .filter(|&c| text.as_bytes().get(c) == Some(&b'}'));
    let close = close.ok_or("the end of `PyInit` could not be found")?;
    let body = &text[open + 1..close];
    if body.lines().any(|l| l.trim_start().starts_with('#')) {
        return Err("`PyInit` has preprocessor branches in its body".into());
    }
    for r in &function.references {
        if let Some(m) = ctx.project.files[init.file]
            .macros
            .iter()
            .find(|m| m.name == r.name && contains_word(&m.body, "return"))
        {
            return Err(format!("`PyInit` returns through the macro `{}`", m.name));
        }
    }

    let module_var = call.assigned_to.clone();
    let param = module_var.clone().unwrap_or_else(|| "module".into());
    // Edits inside the body, in file offsets.
    let mut body_edits: Vec<(usize, usize, String)> = Vec::new();

    // The creation statement.
    let (stmt_start, stmt_end) =
        statement_around(text, open + 1, close, call.span.start, call.span.end)
            .ok_or("the statement that creates the module could not be delimited")?;
    // `return m;` becomes `return 0;` only if `m` is the module on every path: local
    // assignments are not in the facts, so the body text is searched.
    if let Some(m) = &module_var {
        if let Some(at) = assignment_to(text, open + 1, close, m, (stmt_start, stmt_end)) {
            let line = text[..at].matches('\n').count() + 1;
            return Err(format!(
                "`{m}` is assigned again (line {line}), so `return {m}` may not return the module"
            ));
        }
    }
    let stmt = normalize(&text[stmt_start..stmt_end]);
    let call_text = normalize(&text[call.span.start..call.span.end]);
    let mut creation_is_return = false;
    let mut removed: Option<(usize, usize)> = None;
    let mut guard_returns = 0;
    match &module_var {
        Some(m) if stmt == format!("PyObject*{m}={call_text};") => {
            body_edits.push((stmt_start, stmt_end, String::new()));
        }
        Some(m) if stmt == format!("{m}={call_text};") => {
            body_edits.push((stmt_start, stmt_end, String::new()));
            let decl = find_declaration(text, open + 1, close, m).ok_or_else(|| {
                format!("the declaration of `{m}` in `PyInit` is not a plain `PyObject *{m};`")
            })?;
            body_edits.push((decl.0, decl.1, String::new()));
        }
        Some(m) if creation_guard(&stmt, m, &call_text) => {
            // `if ((m = PyModule_Create(&def)) == NULL) return NULL;`: in exec the module
            // exists, so the whole guard goes, its `return` with it.
            let mut end = stmt_end;
            if stmt.contains('{') {
                let close_brace = text[stmt_end..close].find('}').map(|i| stmt_end + i + 1);
                end = close_brace.ok_or("the guard around the module creation has no end")?;
                if text[end..].starts_with('\n') {
                    end += 1;
                }
                if normalize(&text[stmt_start..end]) != format!("{stmt}}}") {
                    return Err("the guard around the module creation does more than return".into());
                }
            }
            guard_returns = count_word(&text[stmt_start..end], "return");
            removed = Some((stmt_start, end));
            body_edits.push((stmt_start, end, String::new()));
            let decl = find_declaration(text, open + 1, close, m).ok_or_else(|| {
                format!("the declaration of `{m}` in `PyInit` is not a plain `PyObject *{m};`")
            })?;
            body_edits.push((decl.0, decl.1, String::new()));
        }
        None if stmt == format!("return{call_text};") => {
            creation_is_return = true;
            body_edits.push((stmt_start, stmt_end, "return 0;".into()));
        }
        _ => {
            return Err(format!(
                "the module is created in `{}`, not in a plain `m = {}(...);` statement",
                text[stmt_start..stmt_end].trim(),
                call.callee
            ))
        }
    }

    // Every `return`: NULL becomes -1, the module becomes 0.
    let mut returns = 0;
    for r in &function.returns {
        // `return PyModule_Create(&def);` is the creation statement, edited above.
        if r.span.start <= call.span.start && r.span.end >= call.span.end {
            continue;
        }
        if removed.is_some_and(|(s, e)| r.span.start >= s && r.span.end <= e) {
            continue;
        }
        returns += 1;
        let t = r.text.trim();
        let new = if module_var.as_deref() == Some(t) {
            "0"
        } else if matches!(r.kind, ExprKind::Null) || matches!(t, "NULL" | "0") {
            "-1"
        } else {
            return Err(format!(
                "`PyInit` returns `{t}` (line {}): only `NULL` and the module are mechanical",
                r.span.line
            ));
        };
        body_edits.push((r.span.start, r.span.end, new.into()));
    }
    let keyword_returns =
        count_word(body, "return") - usize::from(creation_is_return) - guard_returns;
    if keyword_returns != returns {
        return Err(format!(
            "`PyInit` has {keyword_returns} `return` statements and {returns} could be read"
        ));
    }

    // Releasing the module on error: in exec the import machinery owns it.
    if let Some(m) = &module_var {
        for c in &function.calls {
            if !MODULE_RELEASES.contains(&c.callee.as_str())
                || c.args.first().map(|a| a.text.trim()) != Some(m.as_str())
            {
                continue;
            }
            let (s, e) = statement_around(text, open + 1, close, c.span.start, c.span.end)
                .filter(|(s, e)| normalize(&text[*s..*e]) == format!("{}({m});", c.callee))
                .ok_or_else(|| {
                    format!(
                        "`{}({m})` (line {}) is not a statement of its own",
                        c.callee, c.span.line
                    )
                })?;
            body_edits.push((s, e, String::new()));
        }
    }

    let slots_name = ctx.fresh(&format!("{}_slots", def_var.name));
    let exec_name = ctx.fresh(&format!("{}_exec", ctx.prefix));
    let mut edits = def_edits(ctx, def.var, &slots_name, text)?;

    // The slot array (with the exec prototype) goes just before the definition.
    edits.push(Edit {
        file: def.var.file,
        start: def_var.decl_span.start,
        end: def_var.decl_span.start,
        text: slot_array(&exec_name, &slots_name, &param),
    });

    for e in body_edits.iter_mut().filter(|e| e.2.is_empty()) {
        e.0 = line_start_if_blank(text, e.0);
    }
    let new_body = apply_local(text, open + 1, close, &mut body_edits)?;
    // `PyInit` keeps its own head, with whatever stands before it on its line (visibility
    // macros the pre-pass blanked); the exec function goes above that line.
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let span = crate::facts::Span {
        start: line_start,
        ..span
    };
    let head = text[span.start..open].trim_end();
    let replacement = format!(
        "static int\n{exec_name}(PyObject *{param})\n{{{new_body}}}\n\n{head}\n{{\n    return PyModuleDef_Init(&{});\n}}",
        def_var.name
    );
    edits.push(Edit {
        file: init.file,
        start: span.start,
        end: span.end,
        text: replacement,
    });
    Ok(edits)
}

fn slot_array(exec: &str, slots: &str, param: &str) -> String {
    format!(
        "static int {exec}(PyObject *{param});\n\n\
static PyModuleDef_Slot {slots}[] = {{\n    {{Py_mod_exec, {exec}}},\n\
#ifdef Py_mod_multiple_interpreters\n    /* 3.12+: the module keeps process-global state, so it must not be loaded in\n       sub-interpreters until that state moves into module state. */\n    {{Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED}},\n#endif\n    {{0, NULL}}\n}};\n\n"
    )
}

/// `m_size` to 0 when negative, and `m_slots` set to the new slot array.
fn def_edits(
    ctx: &PlanCtx,
    var: crate::model::VarRef,
    slots_name: &str,
    text: &str,
) -> Result<Vec<Edit>, String> {
    let v = ctx.project.var(var);
    let Some(Init::List(list)) = &v.init else {
        return Err(format!("`{}` has no initializer to edit", v.name));
    };
    if list
        .entries
        .iter()
        .any(|e| e.alternative || !e.versions.is_all())
    {
        return Err(format!(
            "`{}` has `#if` branches in its initializer",
            v.name
        ));
    }
    if text
        .get(list.span.start..list.span.end)
        .is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with('#')))
    {
        return Err(format!(
            "`{}` has preprocessor lines in its initializer",
            v.name
        ));
    }
    let designated = list
        .entries
        .iter()
        .filter(|e| e.designator.is_some())
        .count();
    if designated != 0 && designated != list.entries.len() {
        return Err(format!(
            "`{}` mixes designated and positional fields",
            v.name
        ));
    }
    let mut edits = Vec::new();
    let fields = crate::model::module_def_fields(list);
    if let Some(size) = fields.get("m_size") {
        let negative = matches!(size.kind, ExprKind::Number(Some(n)) if n < 0)
            || size.text.trim_start().starts_with('-');
        if negative {
            edits.push(Edit {
                file: var.file,
                start: size.span.start,
                end: size.span.end,
                text: "0".into(),
            });
        } else if !matches!(size.kind, ExprKind::Number(Some(_))) {
            // `sizeof(...)` or a macro: leave it, it is the author's.
        }
    }
    match fields.get("m_slots") {
        Some(e) if matches!(e.kind, ExprKind::Null | ExprKind::Number(Some(0))) => {
            edits.push(Edit {
                file: var.file,
                start: e.span.start,
                end: e.span.end,
                text: slots_name.to_string(),
            });
        }
        Some(e) => {
            return Err(format!(
                "`{}` already names slots (`{}`) while creating the module single-phase",
                v.name, e.text
            ))
        }
        None => edits.push(append_slots(var.file, list, designated > 0, slots_name)?),
    }
    Ok(edits)
}

fn append_slots(
    file: usize,
    list: &InitList,
    designated: bool,
    slots: &str,
) -> Result<Edit, String> {
    let last = list
        .entries
        .last()
        .ok_or("the module definition is empty")?;
    let end = match &last.value {
        Init::Expr(e) => e.span.end,
        Init::List(l) => l.span.end,
    };
    let text = if designated {
        format!(",\n    .m_slots = {slots}")
    } else {
        // Positions: m_base, m_name, m_doc, m_size, m_methods, m_slots.
        let defaults = ["NULL", "NULL", "NULL", "0", "NULL"];
        let n = list.entries.len();
        if n > 5 {
            return Err("positional `m_slots` could not be read".into());
        }
        let mut t = String::new();
        for d in defaults.iter().skip(n) {
            t.push_str(&format!(",\n    {d}"));
        }
        t.push_str(&format!(",\n    {slots}"));
        t
    };
    Ok(Edit {
        file,
        start: end,
        end,
        text,
    })
}

/// The statement containing `start..end`, from just after the previous `;`, `{` or `}` to its
/// `;`, within the body.
fn statement_around(
    text: &str,
    lo: usize,
    hi: usize,
    start: usize,
    end: usize,
) -> Option<(usize, usize)> {
    let before = text.get(lo..start)?;
    let s = before.rfind([';', '{', '}']).map_or(lo, |i| lo + i + 1);
    let after = text.get(end..hi)?;
    let e = end + after.find(';')? + 1;
    // Keep the line's leading whitespace out, take its trailing newline in.
    let s = s + text[s..start].len() - text[s..start].trim_start().len();
    let e = if text[e..].starts_with('\n') {
        e + 1
    } else {
        e
    };
    Some((s, e))
}

/// `if((m=CALL)==NULL)returnNULL;` and its spellings, normalized, with or without braces.
fn creation_guard(stmt: &str, m: &str, call: &str) -> bool {
    let conditions = [
        format!("if(({m}={call})==NULL)"),
        format!("if(({m}={call})==0)"),
        format!("if(!({m}={call}))"),
        format!("if(NULL==({m}={call}))"),
    ];
    let Some(rest) = conditions
        .iter()
        .find_map(|c| stmt.strip_prefix(c.as_str()))
    else {
        return false;
    };
    matches!(
        rest,
        "returnNULL;" | "return0;" | "{returnNULL;" | "{return0;"
    )
}

/// A deleted statement alone on its line takes its indentation with it.
fn line_start_if_blank(text: &str, start: usize) -> usize {
    let line = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if text[line..start].trim().is_empty() {
        line
    } else {
        start
    }
}

/// `PyObject *m;` or `PyObject *m = NULL;` as a statement of the body.
fn find_declaration(text: &str, lo: usize, hi: usize, m: &str) -> Option<(usize, usize)> {
    let body = text.get(lo..hi)?;
    let wanted = [
        format!("PyObject*{m};"),
        format!("PyObject*{m}=NULL;"),
        format!("PyObject*{m}=0;"),
    ];
    let mut pos = 0;
    while let Some(i) = body[pos..].find(';') {
        let semi = lo + pos + i;
        let start = body[..pos + i]
            .rfind([';', '{', '}'])
            .map_or(lo, |j| lo + j + 1);
        if wanted.contains(&normalize(&text[start..=semi])) {
            return statement_around(text, lo, hi, semi, semi);
        }
        pos += i + 1;
    }
    None
}

/// Whitespace and comments removed.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if !c.is_whitespace() {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The offset of an assignment `m = ...` (not `==`) in `lo..hi` outside `skip`.
fn assignment_to(text: &str, lo: usize, hi: usize, m: &str, skip: (usize, usize)) -> Option<usize> {
    let body = text.get(lo..hi)?;
    let bytes = body.as_bytes();
    body.match_indices(m)
        .map(|(i, _)| i)
        .find(|&i| {
            let at = lo + i;
            if at >= skip.0 && at < skip.1 {
                return false;
            }
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after_word = bytes.get(i + m.len()).copied();
            if before.is_some_and(|b| is_word_byte(b) || b == b'.' || b == b'>')
                || after_word.is_some_and(is_word_byte)
            {
                return false;
            }
            // `PyObject *m = NULL;` declares, it does not reassign.
            if body[..i].trim_end().ends_with('*') {
                return false;
            }
            let rest = body[i + m.len()..].trim_start();
            rest.starts_with('=') && !rest.starts_with("==")
        })
        .map(|i| lo + i)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn count_word(text: &str, word: &str) -> usize {
    let bytes = text.as_bytes();
    text.match_indices(word)
        .filter(|(i, _)| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + word.len()).copied();
            !before.is_some_and(is_word_byte) && !after.is_some_and(is_word_byte)
        })
        .count()
}

fn contains_word(text: &str, word: &str) -> bool {
    count_word(text, word) > 0
}

/// The body with its edits applied (offsets are file offsets within `lo..hi`).
fn apply_local(
    text: &str,
    lo: usize,
    hi: usize,
    edits: &mut [(usize, usize, String)],
) -> Result<String, String> {
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::new();
    let mut at = lo;
    for (s, e, t) in edits.iter() {
        if *s < at || *e > hi {
            return Err("two edits in `PyInit` overlap".into());
        }
        out.push_str(&text[at..*s]);
        out.push_str(t);
        at = *e;
    }
    out.push_str(&text[at..hi]);
    Ok(out)
}

/// Applies edits to one file's text; `None` when two overlap.
pub fn apply(text: &str, edits: &[&Edit]) -> Option<String> {
    let mut sorted: Vec<&Edit> = edits.to_vec();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = String::new();
    let mut at = 0;
    for e in sorted {
        if e.start < at || e.end > text.len() {
            return None;
        }
        out.push_str(text.get(at..e.start)?);
        out.push_str(&e.text);
        at = e.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}
