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
}
