//! Writes hidden in function-like macros defined in the same file, such as
//! `#define INTERN(v, s) v = PyUnicode_InternFromString(s)`. At each call site the macro is
//! expanded with its arguments and the expansion is parsed and walked like the function body it
//! stands in.

use super::{Call, MacroDef, Reference, WriteSite};
use crate::parse::macros::{ProjectMacros, Role};
use std::collections::HashMap;

/// Function-like macros whose bodies may write: the only ones worth expanding.
#[derive(Debug, Default)]
pub(crate) struct MacroTable {
    by_name: HashMap<String, (Vec<String>, String)>,
}

/// Expansions nest at most this deep (a macro calling a macro calling a macro).
pub(crate) const MAX_EXPANSION_DEPTH: u8 = 3;
/// A larger expansion is a code generator, not a helper; it is left alone.
const MAX_EXPANSION_BYTES: usize = 4096;

impl MacroTable {
    pub fn new(macros: &[MacroDef]) -> Self {
        // Of several definitions (`#if` branches), the one a current Python compiles: the
        // Python 2 branch of `MODULE_CREATE` calls `Py_InitModule3`, the Python 3 one
        // `PyModule_Create(&moduledef)`. Among equals, the last, as before.
        let current = |m: &MacroDef| {
            if m.versions.contains(crate::version::py(3, 99)) {
                2
            } else {
                u8::from(!m.versions.is_empty())
            }
        };
        let mut rank: HashMap<&str, u8> = HashMap::new();
        let chosen: Vec<&MacroDef> = macros.iter().filter(|m| m.params.is_some()).collect();
        for m in &chosen {
            let r = current(m);
            let best = rank.entry(m.name.as_str()).or_insert(r);
            *best = (*best).max(r);
        }
        let by_name = chosen
            .into_iter()
            .filter(|m| rank.get(m.name.as_str()) == Some(&current(m)))
            .filter_map(|m| {
                let params = m.params.clone()?;
                let writes = m.body.contains("++")
                    || m.body.contains("--")
                    || m.body
                        .replace("==", "")
                        .replace("!=", "")
                        .replace("<=", "")
                        .replace(">=", "")
                        .contains('=');
                (writes && !m.body.is_empty()).then(|| (m.name.clone(), (params, m.body.clone())))
            })
            .collect();
        Self { by_name }
    }

    /// A function-like macro of this name is defined in the file.
    pub fn defines(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Its parameters and body as written.
    pub fn definition(&self, name: &str) -> Option<(&[String], &str)> {
        self.by_name
            .get(name)
            .map(|(params, body)| (params.as_slice(), body.as_str()))
    }

    /// The macro's body with `args` substituted, `#param` stringized and `##` pasted.
    pub fn expand(&self, name: &str, args: &[String]) -> Option<String> {
        let (params, body) = self.by_name.get(name)?;
        substitute(params, body, args)
    }
}

/// A macro body with `args` substituted for `params`, `#param` stringized and `##` pasted;
/// `None` when the arguments do not fit or the expansion is too large.
pub(crate) fn substitute(params: &[String], body: &str, args: &[String]) -> Option<String> {
    {
        let variadic = params.last().is_some_and(|p| p == "...");
        if args.len() != params.len() && !variadic && !(params.is_empty() && args.len() <= 1) {
            return None;
        }
        let arg_of = |ident: &str| -> Option<String> {
            if ident == "__VA_ARGS__" && variadic {
                return Some(args[params.len().saturating_sub(1).min(args.len())..].join(", "));
            }
            params
                .iter()
                .position(|p| p == ident)
                .and_then(|i| args.get(i).cloned())
        };
        let bytes = body.as_bytes();
        let mut out = String::with_capacity(body.len() * 2);
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'#' && bytes.get(i + 1) == Some(&b'#') {
                // Token pasting: drop the operator and the white space around it.
                while out.ends_with(' ') {
                    out.pop();
                }
                i += 2;
                while i < bytes.len() && bytes[i] == b' ' {
                    i += 1;
                }
            } else if c == b'#' {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end] == b'_' || bytes[end].is_ascii_alphanumeric())
                {
                    end += 1;
                }
                match arg_of(&body[start..end]) {
                    Some(arg) => out.push_str(&format!("{:?}", arg)),
                    None => out.push_str(&body[i..end]),
                }
                i = end;
            } else if c == b'"' || c == b'\'' {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                out.push_str(&body[start..i]);
            } else if c == b'_' || c.is_ascii_alphabetic() {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                match arg_of(&body[start..i]) {
                    Some(arg) => out.push_str(&arg),
                    None => out.push_str(&body[start..i]),
                }
            } else {
                let len = body[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&body[i..i + len]);
                i += len;
            }
        }
        (out.len() <= MAX_EXPANSION_BYTES).then_some(out)
    }
}

/// What a macro body does once expanded and walked: kept per file for each (macro, arguments)
/// so that a preamble used in 28 callbacks is parsed once.
#[derive(Debug, Default)]
pub(crate) struct ExpandedFacts {
    pub writes: Vec<WriteSite>,
    pub definition_writes: Vec<WriteSite>,
    pub calls: Vec<Call>,
    pub references: Vec<Reference>,
    /// Walked from the body as written, parameters unsubstituted: what it does depends on the
    /// arguments (it writes or calls a parameter, or pastes or stringizes one), so each use
    /// needs its own expansion.
    pub depends_on_arguments: bool,
}

/// The macro `name` to expand, as written: a same-file macro that writes first, then a project
/// macro whose role leaves its body out of the tree.
pub(crate) fn written_definition<'a>(
    table: &'a MacroTable,
    project: &'a ProjectMacros,
    name: &str,
) -> Option<(Option<&'a [String]>, &'a str)> {
    if let Some((params, body)) = table.definition(name) {
        return Some((Some(params), body));
    }
    let role = project.role(name)?;
    if !matches!(
        role,
        Role::Open(_) | Role::Close(_) | Role::Statement | Role::Code
    ) {
        return None;
    }
    let def = project.definition(name)?;
    (def.body.len() <= MAX_EXPANSION_BYTES).then_some((def.params.as_deref(), def.body.as_str()))
}

pub(crate) type ExpansionMemo =
    std::cell::RefCell<rustc_hash::FxHashMap<String, std::rc::Rc<ExpandedFacts>>>;

/// The project macro `name` as code to expand: a definition with a role that leaves its body
/// out of the tree (blocks, statements, other code), with `args` substituted.
pub(crate) fn project_expansion(
    project: &ProjectMacros,
    name: &str,
    args: Option<&[String]>,
) -> Option<String> {
    let role = project.role(name)?;
    if !matches!(
        role,
        Role::Open(_) | Role::Close(_) | Role::Statement | Role::Code
    ) {
        return None;
    }
    let def = project.definition(name)?;
    match (&def.params, args) {
        (Some(params), Some(args)) => substitute(params, &def.body, args),
        (None, None) => (def.body.len() <= MAX_EXPANSION_BYTES).then(|| def.body.clone()),
        _ => None,
    }
}

/// How one argument of a use enters a shared expansion (see [`ArgumentTemplate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A plain name: stands in as `isolint_arg<depth>_<i>` (the depth keeps the stand-ins of a
    /// macro used inside another macro apart from the outer one's).
    Name,
    /// A string literal: stands in as `"isolint_arg<depth>_<i>"`.
    Text,
    /// Anything else: written into the expansion as it is.
    AsWritten,
}

/// A macro's uses that differ only in the names and string literals they pass
/// (`ADD_INT_MACRO(m, AF_INET)`, `ADD_INT_MACRO(m, AF_UNIX)`, ...) share one expansion: it is
/// walked once with a placeholder in place of each such argument, and each use renames the
/// placeholders in the facts. A name stands in for a name and a string for a string, so the
/// expansion parses the same and the walk records the same facts, up to those names: parsing
/// the expansion anew for each of hundreds of uses was the largest cost of macro expansion.
///
/// An argument is passed as written when it is anything else, when it is a name the body also
/// uses, names a macro, or is a C keyword, and when the parameter is stringized or pasted where
/// only the real text gives the right tokens.
#[derive(Debug)]
pub(crate) struct ArgumentTemplate {
    /// The arguments to expand the body with: placeholders and arguments as written.
    pub args: Vec<String>,
    /// (placeholder as it appears in a fact's text, the argument it stands for).
    renames: Vec<(String, String)>,
}

impl ArgumentTemplate {
    /// `None` when no argument can stand in (every use has its own expansion then).
    pub fn new(
        params: &[String],
        body: &str,
        args: &[String],
        table: &MacroTable,
        project: &ProjectMacros,
        depth: u8,
        statement_parameter: impl Fn(&str) -> bool,
    ) -> Option<Self> {
        let variadic = params.last().is_some_and(|p| p == "...");
        if variadic || params.len() != args.len() || body.contains("##") {
            return None;
        }
        let body_names: Vec<&str> = names_in(body).collect();
        let mut template = Self {
            args: Vec::with_capacity(args.len()),
            renames: Vec::new(),
        };
        for (i, (param, arg)) in params.iter().zip(args).enumerate() {
            let stringized = is_stringized(body, param);
            let slot = match slot_of(arg) {
                Slot::Name
                    if !is_c_word(arg)
                        && !body_names.contains(&arg.as_str())
                        && !args
                            .iter()
                            .enumerate()
                            .any(|(j, other)| j != i && names_in(other).any(|n| n == arg))
                        && !table.defines(arg)
                        && project.role(arg).is_none()
                        && !statement_parameter(param) =>
                {
                    Slot::Name
                }
                Slot::Text if !stringized && !statement_parameter(param) => Slot::Text,
                _ => Slot::AsWritten,
            };
            let stand_in = match slot {
                Slot::Name => format!("isolint_arg{depth}_{i}"),
                Slot::Text => format!("\"isolint_arg{depth}_{i}\""),
                Slot::AsWritten => {
                    template.args.push(arg.clone());
                    continue;
                }
            };
            template.args.push(stand_in.clone());
            template.renames.push((stand_in, arg.clone()));
        }
        (!template.renames.is_empty()).then_some(template)
    }

    /// The facts of one use: the shared expansion's, placeholders renamed. `None` when a text
    /// holding a placeholder was cut short, so that the use's own text cannot be known from it.
    pub fn rename(&self, shared: &ExpandedFacts) -> Option<ExpandedFacts> {
        let mut out = ExpandedFacts {
            writes: shared.writes.clone(),
            definition_writes: shared.definition_writes.clone(),
            calls: shared.calls.clone(),
            references: shared.references.clone(),
            depends_on_arguments: shared.depends_on_arguments,
        };
        let mut ok = true;
        let mut name = |s: &mut String| ok &= self.rename_in(s);
        for w in out
            .writes
            .iter_mut()
            .chain(out.definition_writes.iter_mut())
        {
            name(&mut w.target);
            for s in [
                &mut w.field,
                &mut w.via_call,
                &mut w.stored_in_field,
                &mut w.index,
            ]
            .into_iter()
            .flatten()
            {
                name(s);
            }
            w.reads.iter_mut().for_each(&mut name);
            if let Some(v) = &mut w.value {
                rename_expr(v, &mut name);
            }
        }
        for c in &mut out.calls {
            name(&mut c.callee);
            if let Some(a) = &mut c.assigned_to {
                name(a);
            }
            c.field_arguments
                .iter_mut()
                .for_each(|f| name(&mut f.field));
            c.args.iter_mut().for_each(|e| rename_expr(e, &mut name));
        }
        out.references.iter_mut().for_each(|r| name(&mut r.name));
        // A name used twice stays one reference, as a walk of the use's own expansion has it.
        let mut seen = std::collections::HashSet::new();
        out.references.retain(|r| seen.insert(r.name.clone()));
        ok.then_some(out)
    }

    /// Renames the placeholders in `text`; false when `text` holds one and was cut (`...`).
    fn rename_in(&self, text: &mut String) -> bool {
        if !text.contains("isolint_arg") {
            return true;
        }
        if text.ends_with("...") {
            return false;
        }
        let bytes = text.as_bytes();
        let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let mut out = String::with_capacity(text.len() + 16);
        let mut i = 0;
        'scan: while i < bytes.len() {
            for (stand_in, arg) in &self.renames {
                if text[i..].starts_with(stand_in.as_str())
                    && (i == 0 || !is_ident(bytes[i - 1]) || stand_in.starts_with('"'))
                    && bytes
                        .get(i + stand_in.len())
                        .is_none_or(|b| !is_ident(*b) || stand_in.ends_with('"'))
                {
                    out.push_str(arg);
                    i += stand_in.len();
                    continue 'scan;
                }
            }
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
        // A longer text would have been cut where the use's own walk cuts it.
        let fits = out.len() <= super::expr::MAX_TEXT;
        *text = out;
        fits
    }
}

fn rename_expr(e: &mut super::Expr, name: &mut impl FnMut(&mut String)) {
    use super::ExprKind;
    name(&mut e.text);
    match &mut e.kind {
        ExprKind::Ident(s)
        | ExprKind::AddressOf(s)
        | ExprKind::Call { callee: s }
        | ExprKind::SizeOf(s) => name(s),
        ExprKind::Number(_) | ExprKind::Str | ExprKind::Null | ExprKind::Other => {}
    }
}

fn slot_of(arg: &str) -> Slot {
    let b = arg.as_bytes();
    if !b.is_empty()
        && (b[0] == b'_' || b[0].is_ascii_alphabetic())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return Slot::Name;
    }
    // One plain literal: no prefix, no second literal, no escape that could end it early, and
    // no white space that folding would change.
    if b.len() >= 2
        && b[0] == b'"'
        && b[b.len() - 1] == b'"'
        && !arg[1..arg.len() - 1].contains(['"', '\\', '\t', '\n', '\r', '\x0b', '\x0c'])
        && !arg.contains("  ")
        && arg.is_ascii()
    {
        return Slot::Text;
    }
    Slot::AsWritten
}

/// The words of `text` that may be names.
fn names_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

/// Names the grammar or the walk reads as more than a name.
fn is_c_word(word: &str) -> bool {
    matches!(
        word,
        "NULL" | "nullptr" | "true" | "false" | "TRUE" | "FALSE" | "sizeof" | "return" | "goto"
            | "if" | "else" | "while" | "do" | "for" | "switch" | "case" | "default" | "break"
            | "continue" | "static" | "extern" | "const" | "volatile" | "struct" | "union"
            | "enum" | "typedef" | "int" | "char" | "void" | "long" | "short" | "unsigned"
            | "signed" | "float" | "double" | "auto" | "register" | "inline" | "restrict"
            | "_Bool" | "bool" | "_Thread_local" | "thread_local" | "__thread" | "offsetof"
            | "defined" | "asm" | "__asm__" | "_Alignof" | "alignof" | "_Static_assert"
    ) || word.starts_with("isolint_")
        // tree-sitter-c reads `size_t`, `int32_t`, `uintptr_t`, ... as primitive types.
        || word.ends_with("_t")
}

/// `#param` in the body (stringizing), not `##`.
fn is_stringized(body: &str, param: &str) -> bool {
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(at) = body[from..].find('#').map(|i| from + i) {
        from = at + 1;
        if bytes.get(at + 1) == Some(&b'#') || (at > 0 && bytes[at - 1] == b'#') {
            continue;
        }
        let rest = body[at + 1..].trim_start();
        if rest.starts_with(param)
            && rest[param.len()..]
                .bytes()
                .next()
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, params: &[&str], body: &str) -> MacroTable {
        MacroTable::new(&[MacroDef {
            name: name.into(),
            params: Some(params.iter().map(|p| p.to_string()).collect()),
            body: body.into(),
            span: Default::default(),
            versions: Default::default(),
        }])
    }

    #[test]
    fn pastes_and_stringizes() {
        let t = table(
            "INIT_STRING",
            &["S"],
            "if (!(py_ ## S = INTERN(#S))) return -1;",
        );
        assert_eq!(
            t.expand("INIT_STRING", &["keys".into()]).unwrap(),
            "if (!(py_keys = INTERN(\"keys\"))) return -1;"
        );
    }

    #[test]
    fn macros_that_only_compare_are_not_expanded() {
        let t = table("IS_NONE", &["x"], "((x) == Py_None)");
        assert!(t.expand("IS_NONE", &["o".into()]).is_none());
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn template(params: &[&str], body: &str, args: &[&str]) -> Option<ArgumentTemplate> {
        ArgumentTemplate::new(
            &strings(params),
            body,
            &strings(args),
            &MacroTable::default(),
            &ProjectMacros::default(),
            0,
            |_| false,
        )
    }

    #[test]
    fn names_and_plain_strings_stand_in_and_the_rest_is_passed_as_written() {
        let t = template(
            &["var", "text", "n"],
            "var = PyUnicode_InternFromString(text) + n",
            &["cache", "\"first\"", "(int)1"],
        )
        .unwrap();
        assert_eq!(
            t.args,
            strings(&["isolint_arg0_0", "\"isolint_arg0_1\"", "(int)1"])
        );
        let mut text = "isolint_arg0_0 = f(\"isolint_arg0_1\", isolint_arg0_00)".to_string();
        assert!(t.rename_in(&mut text));
        // A longer name that starts like a stand-in is not one.
        assert_eq!(text, "cache = f(\"first\", isolint_arg0_00)");
    }

    #[test]
    fn arguments_that_change_the_parse_or_the_walk_are_passed_as_written() {
        // A type name tree-sitter knows, a C word, a name the body uses, a name another
        // argument holds too.
        for args in [
            ["size_t", "y"],
            ["NULL", "y"],
            ["other", "y"],
            ["x", "x + 1"],
        ] {
            let t = template(&["a", "b"], "a = other + b", &args);
            assert!(t.is_none_or(|t| t.args[0] == args[0]), "{args:?}");
        }
        // A stringized parameter takes its string as written; `##` pastes the real text.
        assert!(template(&["s"], "f(#s)", &["\"a b\""]).is_none());
        assert!(template(&["s"], "py_ ## s = 0", &["keys"]).is_none());
        // White space the walk would fold.
        assert!(template(&["s"], "f(s)", &["\"a  b\""]).is_none());
    }

    #[test]
    fn a_cut_text_cannot_be_renamed() {
        let t = template(&["v"], "v = 0", &["cache"]).unwrap();
        let mut cut = "isolint_arg0_0 + another_long_name...".to_string();
        assert!(!t.rename_in(&mut cut));
        let mut long = format!("isolint_arg0_0 {}", "x".repeat(150));
        let t = template(&["v"], "v = 0", &["a_much_longer_argument_name"]).unwrap();
        assert!(
            !t.rename_in(&mut long),
            "the use's own text would be cut at 160"
        );
    }
}
