//! Stage 0 as an edit: the `PyInit` body moves into a `Py_mod_exec` function, `PyInit` returns
//! `PyModuleDef_Init(&def)`, `m_size` becomes at least 0, and 3.12+ is told the module does not
//! support sub-interpreters. It refuses, with the reason, wherever that is not mechanical.

use super::context::PlanCtx;
use crate::facts::{ExprKind, Init};
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

/// Every reason stage 0 cannot go on, each with its line, so one run names them all.
#[derive(Default)]
struct Refusals(Vec<String>);

impl Refusals {
    fn push(&mut self, line: Option<usize>, reason: impl Into<String>) {
        let reason = reason.into();
        self.0.push(match line {
            Some(line) => format!("line {line}: {reason}"),
            None => reason,
        });
    }
    /// `Err` with every reason so far, one per line, when there is any.
    fn check(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join("\n"))
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

fn build(ctx: &PlanCtx) -> Result<Vec<Edit>, String> {
    let module = ctx.module;
    let init = module
        .init_function
        .ok_or("the module has no `PyInit` function")?;
    let creation = module.creation.as_ref().ok_or("no module creation call")?;
    let function = ctx.function(init);
    let call = ctx.project.call(creation.function, creation.call);
    let mut refusals = Refusals::default();

    // Whatever can be checked without reading the body: all of it, before giving up.
    if let Some(via) = &creation.via {
        refusals.push(
            Some(call.span.line),
            format!("the module is created through {via}, not in `PyInit` itself: move the creation by hand"),
        );
    }
    if function.macro_head.is_some() {
        refusals.push(
            Some(function.span.line),
            "`PyInit` is written through a macro",
        );
    }
    if function.uncertain {
        refusals.push(Some(function.span.line), "`PyInit` overlaps a parse error");
    }
    if !matches!(call.callee.as_str(), "PyModule_Create" | "PyModule_Create2") {
        refusals.push(
            Some(call.span.line),
            format!(
                "the module is created with `{}`, which has no module definition to reuse",
                call.callee
            ),
        );
    }
    let def = module.def.as_ref();
    if def.is_none() {
        refusals.push(None, "no `PyModuleDef` was found");
    }
    if let Some(def) = def {
        let def_var = ctx.project.var(def.var);
        let passed = call.args.first().and_then(|a| match &a.kind {
            ExprKind::AddressOf(n) => Some(n.as_str()),
            _ => None,
        });
        if passed != Some(def_var.name.as_str()) {
            refusals.push(
                Some(call.span.line),
                format!(
                    "`{}` is not given `&{}` directly",
                    call.callee, def_var.name
                ),
            );
        }
        if def.var.file != init.file {
            refusals.push(
                None,
                "the module definition is in another file than `PyInit`",
            );
        }
    }
    for &fi in &module.files {
        for f in &ctx.project.files[fi].functions {
            for c in f.calls.iter().filter(|c| {
                matches!(
                    c.callee.as_str(),
                    "PyState_FindModule" | "PyState_AddModule"
                )
            }) {
                refusals.push(
                    Some(c.span.line),
                    format!(
                        "`{}` calls `{}`, which does not work for multi-phase modules: replace it with module state first",
                        f.name, c.callee
                    ),
                );
            }
        }
    }
    for r in &function.references {
        if let Some(m) = ctx.project.files[init.file]
            .macros
            .iter()
            .find(|m| m.name == r.name && contains_word(&m.body, "return"))
        {
            refusals.push(
                Some(r.span.line),
                format!("`PyInit` returns through the macro `{}`", m.name),
            );
        }
    }
    let text = ctx
        .texts
        .get(&init.file)
        .ok_or("the source file could not be read again")?;
    let def_edits = def.map(|def| def_edits(ctx, def.var, text));
    if let Some(Err(reasons)) = &def_edits {
        refusals.0.extend(reasons.iter().cloned());
    }
    // The body can only be read when the creation is in it and the definition is known.
    if creation.via.is_some() || function.macro_head.is_some() || def.is_none() {
        refusals.check()?;
    }
    let Some(def) = def else {
        return Err("no `PyModuleDef` was found".into());
    };
    let def_var = ctx.project.var(def.var);

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
        refusals.push(Some(function.span.line), "`PyInit` could not be delimited");
        refusals.check()?;
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

    // `#if` lines in the body: Python 2 branches go, branches every Python 3 takes lose their
    // directives, the rest stay where they are and move into exec with the body. `scan` is the
    // file with what goes blanked and every directive line blanked, for reading statements.
    let mut version_macros = crate::parse::condition::VersionMacros::new();
    for &fi in &module.files {
        if let Some(file_text) = ctx.texts.get(&fi) {
            crate::parse::condition::collect_version_macros(file_text, &mut version_macros);
        }
    }
    let branches = python_branches(text, open + 1, close, &version_macros);
    let scan = blanked(text, &branches.deleted, &branches.directive_lines);
    let deleted = |s: usize, e: usize| branches.deleted.iter().any(|&(a, b)| a <= s && e <= b);
    if let Some(line) = branches.kept_containing(call.span.start) {
        refusals.push(
            Some(call.span.line),
            format!("the module is created inside the `#if` of line {line}, which stays: move the creation out of it by hand"),
        );
    }
    let body = &scan[open + 1..close];

    let module_var = call.assigned_to.clone();
    let param = module_var.clone().unwrap_or_else(|| "module".into());
    // Edits inside the body, in file offsets.
    let mut body_edits: Vec<(usize, usize, String)> = branches
        .deleted
        .iter()
        .map(|&(s, e)| (s, e, String::new()))
        .collect();

    // The creation statement.
    let Some((stmt_start, stmt_end)) =
        statement_around(&scan, open + 1, close, call.span.start, call.span.end)
    else {
        refusals.push(
            Some(call.span.line),
            "the statement that creates the module could not be delimited",
        );
        return Err(refusals.0.join("\n"));
    };
    // `return m;` becomes `return 0;` only if `m` is the module on every path: local
    // assignments are not in the facts, so the body text is searched.
    if let Some(m) = &module_var {
        if let Some(at) = assignment_to(&scan, open + 1, close, m, (stmt_start, stmt_end)) {
            refusals.push(
                Some(line_of(text, at)),
                format!("`{m}` is assigned again, so `return {m}` may not return the module"),
            );
        }
    }
    let stmt = normalize(&scan[stmt_start..stmt_end]);
    let call_text = normalize(&text[call.span.start..call.span.end]);
    let mut creation_is_return = false;
    let mut removed: Option<(usize, usize)> = None;
    let mut guard_returns = 0;
    let declaration =
        |m: &str, refusals: &mut Refusals| match find_declaration(&scan, open + 1, close, m) {
            Some(decl) => Some((decl.0, decl.1, String::new())),
            None => {
                refusals.push(
                    Some(call.span.line),
                    format!("the declaration of `{m}` in `PyInit` is not a plain `PyObject *{m};`"),
                );
                None
            }
        };
    match &module_var {
        Some(m) if stmt == format!("PyObject*{m}={call_text};") => {
            body_edits.push((stmt_start, stmt_end, String::new()));
        }
        Some(m) if stmt == format!("{m}={call_text};") => {
            body_edits.push((stmt_start, stmt_end, String::new()));
            body_edits.extend(declaration(m, &mut refusals));
        }
        Some(m) if creation_guard(&stmt, m, &call_text) => {
            // `if ((m = PyModule_Create(&def)) == NULL) return NULL;`: in exec the module
            // exists, so the whole guard goes, its `return` with it.
            let mut end = stmt_end;
            let mut ok = true;
            if stmt.contains('{') {
                match scan[stmt_end..close].find('}').map(|i| stmt_end + i + 1) {
                    Some(e) => {
                        end = e + line_break_len(&scan[e..]);
                        if normalize(&scan[stmt_start..end]) != format!("{stmt}}}") {
                            refusals.push(
                                Some(call.span.line),
                                "the guard around the module creation does more than return",
                            );
                            ok = false;
                        }
                    }
                    None => {
                        refusals.push(
                            Some(call.span.line),
                            "the guard around the module creation has no end",
                        );
                        ok = false;
                    }
                }
            }
            if ok {
                guard_returns = count_word(&scan[stmt_start..end], "return");
                removed = Some((stmt_start, end));
                body_edits.push((stmt_start, end, String::new()));
                body_edits.extend(declaration(m, &mut refusals));
            }
        }
        None if stmt == format!("return{call_text};") => {
            creation_is_return = true;
            // The statement's range takes its line break with it: the replacement keeps it,
            // or the body's closing brace would land on the `return` line.
            let replaced = &text[stmt_start..stmt_end];
            let line_break = &replaced[replaced.trim_end_matches(['\r', '\n']).len()..];
            body_edits.push((stmt_start, stmt_end, format!("return 0;{line_break}")));
        }
        _ => refusals.push(
            Some(call.span.line),
            format!(
                "the module is created in `{}`, not in a plain `m = {}(...);` statement",
                scan[stmt_start..stmt_end].trim(),
                call.callee
            ),
        ),
    }

    // Every `return`: NULL becomes -1, the module becomes 0, whatever the parentheses.
    let mut returns = 0;
    let mut unreadable_returns = 0;
    for r in &function.returns {
        // `return PyModule_Create(&def);` is the creation statement, edited above.
        if r.span.start <= call.span.start && r.span.end >= call.span.end {
            continue;
        }
        if removed.is_some_and(|(s, e)| r.span.start >= s && r.span.end <= e)
            || deleted(r.span.start, r.span.end)
        {
            continue;
        }
        returns += 1;
        let t = strip_parens(r.text.trim());
        let new = if module_var.as_deref() == Some(t) {
            "0"
        } else if matches!(r.kind, ExprKind::Null) || matches!(t, "NULL" | "0") {
            "-1"
        } else {
            unreadable_returns += 1;
            refusals.push(
                Some(r.span.line),
                format!("`PyInit` returns `{t}`: only `NULL` and the module are mechanical"),
            );
            continue;
        };
        body_edits.push((r.span.start, r.span.end, new.into()));
    }
    let keyword_returns =
        count_word(body, "return") - usize::from(creation_is_return) - guard_returns;
    if keyword_returns != returns && unreadable_returns == 0 {
        refusals.push(
            Some(function.span.line),
            format!(
                "`PyInit` has {keyword_returns} `return` statements and {returns} could be read"
            ),
        );
    }

    // Releasing the module on error: in exec the import machinery owns it.
    if let Some(m) = &module_var {
        for c in &function.calls {
            if !MODULE_RELEASES.contains(&c.callee.as_str())
                || c.args.first().map(|a| a.text.trim()) != Some(m.as_str())
                || deleted(c.span.start, c.span.end)
            {
                continue;
            }
            match statement_around(&scan, open + 1, close, c.span.start, c.span.end)
                .filter(|(s, e)| normalize(&scan[*s..*e]) == format!("{}({m});", c.callee))
            {
                Some((s, e)) => body_edits.push((s, e, String::new())),
                None => refusals.push(
                    Some(c.span.line),
                    format!("`{}({m})` is not a statement of its own", c.callee),
                ),
            }
        }
    }

    // `PyUnstable_Module_SetGIL(m, X)` becomes a `Py_mod_gil` slot; an `#ifdef` around it
    // that holds nothing else goes with it.
    let mut gil = None;
    for c in function
        .calls
        .iter()
        .filter(|c| c.callee == "PyUnstable_Module_SetGIL" && !deleted(c.span.start, c.span.end))
    {
        let value = set_gil_value(&text[c.span.start..c.span.end]);
        let stmt = statement_around(&scan, open + 1, close, c.span.start, c.span.end)
            .filter(|(s, e)| normalize(&scan[*s..*e]).starts_with("PyUnstable_Module_SetGIL("));
        match (value, stmt) {
            (Some(value), Some((s, e))) => {
                let (s, e) = branches.only_content_of(&scan, s, e).unwrap_or((s, e));
                body_edits.push((s, e, String::new()));
                gil = Some(value);
            }
            _ => refusals.push(
                Some(c.span.line),
                "`PyUnstable_Module_SetGIL(...)` is not a plain statement: turn it into a `Py_mod_gil` slot by hand",
            ),
        }
    }

    refusals.check()?;
    let slots_name = ctx.fresh(&format!("{}_slots", def_var.name));
    let exec_name = ctx.fresh(&format!("{}_exec", ctx.prefix));
    let mut edits = match &def_edits {
        Some(Ok(def_edit)) => def_edit.make(&slots_name),
        _ => return Err("the module definition could not be edited".into()),
    };

    // The slot array (with the exec prototype) goes just before the definition.
    edits.push(Edit {
        file: def.var.file,
        start: def_var.decl_span.start,
        end: def_var.decl_span.start,
        text: slot_array(&exec_name, &slots_name, &param, gil.as_deref()),
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

/// `(NULL)` and `((m))` as `NULL` and `m`.
fn strip_parens(mut t: &str) -> &str {
    while let Some(inner) = t.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        t = inner.trim();
    }
    t
}

/// The second argument of `PyUnstable_Module_SetGIL(m, X)`, when it is a plain name.
fn set_gil_value(call: &str) -> Option<String> {
    let args = call.split_once('(')?.1.rsplit_once(')')?.0;
    let (_, value) = args.split_once(',')?;
    let value = value.trim();
    (!value.is_empty() && value.bytes().all(is_word_byte)).then(|| value.to_string())
}

/// The `#if` structure of a function body, resolved for Python 3.
#[derive(Debug, Default)]
struct Branches {
    /// Ranges to delete: Python 2 branches with their directives, and the directive lines of
    /// branches that every Python 3 takes.
    deleted: Vec<(usize, usize)>,
    /// Every directive line left in place.
    directive_lines: Vec<(usize, usize)>,
    /// Conditionals left in place: (first directive line, its line number, end of `#endif`
    /// line, content ranges of its branches).
    kept: Vec<KeptConditional>,
}

#[derive(Debug)]
struct KeptConditional {
    start: usize,
    line: usize,
    end: usize,
    contents: Vec<(usize, usize)>,
}

impl Branches {
    /// The line of the innermost kept `#if` whose block holds `offset`.
    fn kept_containing(&self, offset: usize) -> Option<usize> {
        self.kept
            .iter()
            .filter(|k| k.start <= offset && offset < k.end)
            .max_by_key(|k| k.start)
            .map(|k| k.line)
    }
    /// When `s..e` is all a kept conditional holds (one branch, nothing else in it), the
    /// whole conditional, directives included.
    fn only_content_of(&self, scan: &str, s: usize, e: usize) -> Option<(usize, usize)> {
        self.kept.iter().find_map(|k| {
            let [(cs, ce)] = k.contents[..] else {
                return None;
            };
            let outside = format!("{}{}", &scan[cs..s.max(cs)], &scan[e.min(ce)..ce]);
            (cs <= s && e <= ce && normalize(&outside).is_empty()).then_some((k.start, k.end))
        })
    }
}

struct OpenConditional {
    start: usize,
    line: usize,
    /// (directive start, directive end, the versions the branch alone selects).
    branches: Vec<(usize, usize, Option<crate::version::VersionRange>)>,
    /// Versions the earlier branches took, when all were about versions.
    taken: Option<crate::version::VersionRange>,
}

fn python_branches(
    text: &str,
    lo: usize,
    hi: usize,
    macros: &crate::parse::condition::VersionMacros,
) -> Branches {
    use crate::parse::condition::{directive, directive_versions};
    use crate::version::VersionRange;
    let mut out = Branches::default();
    let mut stack: Vec<OpenConditional> = Vec::new();
    let mut at = lo;
    while at < hi {
        // One logical line: a directive continues over `\` + newline.
        let mut end = at;
        loop {
            let nl = text[end..hi].find('\n').map_or(hi, |i| end + i + 1);
            let continued = text[end..nl].trim_end().ends_with('\\');
            end = nl;
            if !continued || end >= hi {
                break;
            }
        }
        let line = &text[at..end];
        if let Some((word, rest)) = directive(line) {
            let line_no = line_of(text, at);
            match word {
                "if" | "ifdef" | "ifndef" => {
                    let range = directive_versions(word, rest, macros);
                    stack.push(OpenConditional {
                        start: at,
                        line: line_no,
                        branches: vec![(at, end, range)],
                        taken: range,
                    });
                }
                "elif" | "else" => {
                    if let Some(open) = stack.last_mut() {
                        let own = if word == "else" {
                            Some(VersionRange::ALL)
                        } else {
                            directive_versions(word, rest, macros)
                        };
                        // What this branch selects: its own condition minus what came before.
                        let range = match (own, open.taken) {
                            (Some(r), Some(taken)) => Some(r.intersect(&taken.complement())),
                            _ => None,
                        };
                        open.taken = match (open.taken, own) {
                            (Some(t), Some(r)) => Some(t.hull(&r)),
                            _ => None,
                        };
                        open.branches.push((at, end, range));
                    }
                }
                "endif" => {
                    if let Some(open) = stack.pop() {
                        resolve(&mut out, open, at, end);
                    }
                }
                _ => {}
            }
            if !matches!(word, "if" | "ifdef" | "ifndef" | "elif" | "else" | "endif") {
                out.directive_lines.push((at, end));
            }
        }
        at = end;
    }
    // An `#if` without its `#endif` in the body: leave it, and everything after it, alone.
    for open in stack {
        out.kept.push(KeptConditional {
            start: open.start,
            line: open.line,
            end: hi,
            contents: Vec::new(),
        });
        for (s, e, _) in open.branches {
            out.directive_lines.push((s, e));
        }
    }
    // Deletions inside a deleted range are part of it; directive lines inside one are gone.
    let deleted = out.deleted.clone();
    let inside = |s: usize, e: usize, own: (usize, usize)| {
        deleted
            .iter()
            .any(|&(a, b)| (a, b) != own && a <= s && e <= b)
    };
    out.deleted.retain(|&(s, e)| !inside(s, e, (s, e)));
    out.directive_lines
        .retain(|&(s, e)| !inside(s, e, (usize::MAX, 0)));
    out.kept
        .retain(|k| !inside(k.start, k.end, (usize::MAX, 0)));
    out.deleted.sort_unstable();
    out
}

/// Decides one closed conditional: `endif` spans `end_start..end_end`.
fn resolve(out: &mut Branches, open: OpenConditional, end_start: usize, end_end: usize) {
    use crate::version::{py, UNBOUNDED};
    let n = open.branches.len();
    // Content of branch i: after its directive, up to the next directive.
    let content = |i: usize| {
        let from = open.branches[i].1;
        let to = open.branches.get(i + 1).map_or(end_start, |b| b.0);
        (from, to)
    };
    let python2_only = |i: usize| {
        open.branches[i]
            .2
            .is_some_and(|r| r.python2_only() || r.is_empty())
    };
    let every_python3 = |i: usize| {
        open.branches[i]
            .2
            .is_some_and(|r| r.lo <= py(3, 0) && r.hi == UNBOUNDED)
    };
    let gone: Vec<usize> = (0..n).filter(|&i| python2_only(i)).collect();
    let kept: Vec<usize> = (0..n).filter(|i| !gone.contains(i)).collect();
    let keep_in_place = |out: &mut Branches| {
        out.kept.push(KeptConditional {
            start: open.start,
            line: open.line,
            end: end_end,
            contents: (0..n).map(content).collect(),
        });
        for &(s, e, _) in &open.branches {
            out.directive_lines.push((s, e));
        }
        out.directive_lines.push((end_start, end_end));
    };
    if let Some(only) = (0..n).find(|&i| every_python3(i)) {
        // Every Python 3 takes this branch and no other: keep its content, drop the rest
        // (with `#ifdef IS_PY3K` and no `#else`, just the directives).
        for i in 0..n {
            out.deleted.push((open.branches[i].0, open.branches[i].1));
            if i != only {
                out.deleted.push(content(i));
            }
        }
        out.deleted.push((end_start, end_end));
    } else if !gone.is_empty() && kept.is_empty() {
        // Only Python 2 compiles any of it.
        out.deleted.push((open.start, end_end));
    } else {
        keep_in_place(out);
    }
}

/// `text` with the deleted ranges and the directive lines turned into spaces (newlines kept),
/// so statements read across them and offsets stay those of `text`.
fn blanked(text: &str, deleted: &[(usize, usize)], directives: &[(usize, usize)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(s, e) in deleted.iter().chain(directives) {
        for b in &mut bytes[s..e] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes inside the body were replaced, one for one... unless a range cut a
    // multi-byte character; fall back to the original then.
    String::from_utf8(bytes).unwrap_or_else(|_| text.to_string())
}

fn slot_array(exec: &str, slots: &str, param: &str, gil: Option<&str>) -> String {
    let gil = gil
        .map(|value| {
            format!("#ifdef Py_mod_gil\n    /* was PyUnstable_Module_SetGIL() in PyInit */\n    {{Py_mod_gil, {value}}},\n#endif\n")
        })
        .unwrap_or_default();
    format!(
        "static int {exec}(PyObject *{param});\n\n\
static PyModuleDef_Slot {slots}[] = {{\n    {{Py_mod_exec, {exec}}},\n\
#ifdef Py_mod_multiple_interpreters\n    /* 3.12+: the level `isolint check` finds honest today; `isolint fix --stage 3`\n       raises it once the module's state is its own. */\n    {{Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED}},\n#endif\n{gil}    {{0, NULL}}\n}};\n\n"
    )
}

/// The edits to the module definition, once the slot array's name is known.
struct DefEdit {
    file: usize,
    /// A negative `m_size` to set to 0.
    m_size: Option<crate::facts::Span>,
    slots: SlotsPlace,
}

enum SlotsPlace {
    /// `m_slots` is there, as `NULL` or `0`.
    Replace(crate::facts::Span),
    /// Added after the last entry: designated, or positional with the defaults before it.
    Append {
        at: usize,
        designated: bool,
        entries: usize,
    },
}

impl DefEdit {
    fn make(&self, slots_name: &str) -> Vec<Edit> {
        let mut edits = Vec::new();
        if let Some(span) = self.m_size {
            edits.push(Edit {
                file: self.file,
                start: span.start,
                end: span.end,
                text: "0".into(),
            });
        }
        let (start, end, text) = match self.slots {
            SlotsPlace::Replace(span) => (span.start, span.end, slots_name.to_string()),
            SlotsPlace::Append {
                at,
                designated: true,
                ..
            } => (at, at, format!(",\n    .m_slots = {slots_name}")),
            SlotsPlace::Append { at, entries, .. } => {
                // Positions: m_base, m_name, m_doc, m_size, m_methods, m_slots.
                let defaults = ["NULL", "NULL", "NULL", "0", "NULL"];
                let mut t = String::new();
                for d in defaults.iter().skip(entries) {
                    t.push_str(&format!(",\n    {d}"));
                }
                t.push_str(&format!(",\n    {slots_name}"));
                (at, at, t)
            }
        };
        edits.push(Edit {
            file: self.file,
            start,
            end,
            text,
        });
        edits
    }
}

/// `m_size` to 0 when negative, and `m_slots` set to the new slot array; every reason it
/// cannot be done, when it cannot.
fn def_edits(ctx: &PlanCtx, var: crate::model::VarRef, text: &str) -> Result<DefEdit, Vec<String>> {
    let v = ctx.project.var(var);
    let line = v.span.line;
    let mut refusals = Refusals::default();
    let Some(Init::List(list)) = &v.init else {
        refusals.push(
            Some(line),
            format!("`{}` has no initializer to edit", v.name),
        );
        return Err(refusals.0);
    };
    // Entries every Python 3 compiles are plain entries, even under `#ifdef IS_PY3K`.
    let every_python3 = |r: &crate::version::VersionRange| {
        r.lo <= crate::version::py(3, 0) && r.hi == crate::version::UNBOUNDED
    };
    if list
        .entries
        .iter()
        .any(|e| e.alternative || !every_python3(&e.versions))
    {
        refusals.push(
            Some(line),
            format!("`{}` has `#if` branches in its initializer", v.name),
        );
    }
    if text
        .get(list.span.start..list.span.end)
        .is_some_and(|t| t.lines().any(|l| l.trim_start().starts_with('#')))
    {
        refusals.push(
            Some(line),
            format!("`{}` has preprocessor lines in its initializer", v.name),
        );
    }
    // Positional entries first (`PyModuleDef_HEAD_INIT,`), then designated ones, is how
    // mixed definitions are written; a positional entry after a designated one continues
    // from that field, which is not worth guessing at.
    let first_designated = list.entries.iter().position(|e| e.designator.is_some());
    let designated = first_designated.is_some();
    if let Some(first) = first_designated {
        if list.entries[first..].iter().any(|e| e.designator.is_none()) {
            refusals.push(
                Some(line),
                format!("`{}` has a positional field after a designated one", v.name),
            );
        }
    }
    let fields = crate::model::module_def_fields(list);
    let m_size = fields.get("m_size").and_then(|size| {
        let negative = matches!(size.kind, ExprKind::Number(Some(n)) if n < 0)
            || size.text.trim_start().starts_with('-');
        // `sizeof(...)` or a macro is the author's: left as it is.
        negative.then_some(size.span)
    });
    let slots = match fields.get("m_slots") {
        Some(e) if matches!(e.kind, ExprKind::Null | ExprKind::Number(Some(0))) => {
            Some(SlotsPlace::Replace(e.span))
        }
        Some(e) => {
            refusals.push(
                Some(line),
                format!(
                    "`{}` already names slots (`{}`) while creating the module single-phase",
                    v.name, e.text
                ),
            );
            None
        }
        None => match list.entries.last() {
            None => {
                refusals.push(Some(line), "the module definition is empty");
                None
            }
            Some(_) if !designated && list.entries.len() > 5 => {
                refusals.push(Some(line), "positional `m_slots` could not be read");
                None
            }
            Some(last) => Some(SlotsPlace::Append {
                at: match &last.value {
                    Init::Expr(e) => e.span.end,
                    Init::List(l) => l.span.end,
                },
                designated,
                entries: list.entries.len(),
            }),
        },
    };
    match slots {
        Some(slots) if refusals.0.is_empty() => Ok(DefEdit {
            file: var.file,
            m_size,
            slots,
        }),
        _ => Err(refusals.0),
    }
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
    Some((s, e + line_break_len(&text[e..])))
}

/// The length of the line break `rest` starts with: CR LF, LF, or none.
fn line_break_len(rest: &str) -> usize {
    if rest.starts_with("\r\n") {
        2
    } else {
        usize::from(rest.starts_with('\n'))
    }
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
pub(super) fn normalize(text: &str) -> String {
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
    let crlf = super::write::uses_crlf(text);
    let mut out = String::new();
    let mut at = 0;
    for e in sorted {
        if e.start < at || e.end > text.len() {
            return None;
        }
        out.push_str(text.get(at..e.start)?);
        if crlf {
            out.push_str(&super::write::to_crlf(&e.text));
        } else {
            out.push_str(&e.text);
        }
        at = e.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}
