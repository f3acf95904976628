//! C++ sources, read for one fact: which objects they hand to the C API's container calls.
//!
//! isolint's rules do not run on C++ (tree-sitter-c cannot read templates, namespaces or
//! lambdas, and findings on a misread file would be noise). But a C file's exemption "the module
//! never changes this container after construction" is false when the module's C++ half
//! appends to it: numpy's `ufunc->_loops` list is read in C and appended to only in
//! `dispatching.cpp`. So every C++ file of the scan is read lexically, comments and literals
//! skipped, and each `Py…(first, …)` call contributes its first argument, with a local that was
//! last assigned from an expression (`PyObject *loops = ufunc->_loops;`) replaced by that
//! expression. The rules decide which callees change a container.

use crate::parse::lexer::{tokenize, Tok, TokKind};
use std::path::Path;

/// A C API call in a C++ file: the callee and its first argument, aliases resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCall {
    pub callee: String,
    pub first_argument: String,
}

/// Reads one C++ file; an unreadable file contributes nothing (it is already reported as a
/// skipped C++ source).
pub fn read_calls(path: &Path) -> (Vec<ForeignCall>, u64) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            (calls_in(&text), xxhash_rust::xxh3::xxh3_64(&bytes))
        }
        Err(_) => (Vec::new(), 0),
    }
}

/// The `Py…`/`_Py…` calls of `text` with their first arguments. The pre-pass's tokenizer
/// already skips comments and keeps literals whole, so a `Py…(` inside them is no call.
pub fn calls_in(text: &str) -> Vec<ForeignCall> {
    let src = text.as_bytes();
    let toks = tokenize(src);
    let word = |t: &Tok| slice(text, t.start, t.end);
    let mut out = Vec::new();
    for (i, tok) in toks.iter().enumerate() {
        let name = word(tok);
        let is_call = tok.kind == TokKind::Ident
            && (name.starts_with("Py") || name.starts_with("_Py"))
            && toks.get(i + 1).map(|t| t.kind) == Some(TokKind::Punct(b'('));
        if !is_call {
            continue;
        }
        let Some(argument) = first_argument(&toks, i + 2) else {
            continue;
        };
        let first = &toks[argument.clone()];
        let argument = match first {
            [only] if only.kind == TokKind::Ident => resolve_local(text, &toks[..i], word(only)),
            [a, .., b] => slice(text, a.start, b.end).to_string(),
            [only] => word(only).to_string(),
            [] => continue,
        };
        out.push(ForeignCall {
            callee: name.to_string(),
            first_argument: argument,
        });
    }
    out
}

/// The token range of the argument that starts at `from`: up to the first top-level `,` or
/// the closing `)`; `None` at a `;` (a half-written call).
fn first_argument(toks: &[Tok], from: usize) -> Option<std::ops::Range<usize>> {
    let mut depth = 0usize;
    for (offset, t) in toks.get(from..)?.iter().enumerate() {
        match t.kind {
            TokKind::Punct(b'(' | b'[' | b'{') => depth += 1,
            TokKind::Punct(b')' | b']' | b'}') if depth == 0 => return Some(from..from + offset),
            TokKind::Punct(b')' | b']' | b'}') => depth -= 1,
            TokKind::Punct(b',') if depth == 0 => return Some(from..from + offset),
            TokKind::Punct(b';') => return None,
            _ => {}
        }
    }
    None
}

/// A local is replaced by what it was last assigned before the call (`loops = ufunc->_loops;`
/// or `PyObject *loops = ufunc->_loops;`), when that is found; an assignment from a call builds
/// a new object, so the local's name stays then.
fn resolve_local(text: &str, before: &[Tok], name: &str) -> String {
    let assigned = before.iter().enumerate().rev().find(|(i, t)| {
        t.kind == TokKind::Ident
            && slice(text, t.start, t.end) == name
            && before.get(i + 1).map(|t| t.kind) == Some(TokKind::Punct(b'='))
            && before.get(i + 2).map(|t| t.kind) != Some(TokKind::Punct(b'='))
    });
    let Some((i, _)) = assigned else {
        return name.to_string();
    };
    let value = &before[i + 2..];
    let end = value
        .iter()
        .position(|t| t.kind == TokKind::Punct(b';'))
        .unwrap_or(value.len());
    match &value[..end] {
        [] => name.to_string(),
        [.., last]
            if last.kind == TokKind::Punct(b')') && value[0].kind != TokKind::Punct(b'(') =>
        {
            name.to_string()
        }
        [a, .., b] => slice(text, a.start, b.end).to_string(),
        [only] => slice(text, only.start, only.end).to_string(),
    }
}

/// The tokenizer works on bytes: a range that cuts a multi-byte character is no name.
fn slice(text: &str, start: usize, end: usize) -> &str {
    text.get(start..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(text: &str) -> Vec<(String, String)> {
        calls_in(text)
            .into_iter()
            .map(|c| (c.callee, c.first_argument))
            .collect()
    }

    #[test]
    fn a_local_alias_of_a_field_is_resolved() {
        let text = r#"
template <typename T> static int add(PyUFuncObject *ufunc, PyObject *info) {
    PyObject *loops = ufunc->_loops;  // the list of loops
    Py_ssize_t length = PyList_Size(loops);
    return PyList_Append(loops, info);
}"#;
        assert_eq!(
            calls(text),
            [
                ("PyList_Size".into(), "ufunc->_loops".into()),
                ("PyList_Append".into(), "ufunc->_loops".into())
            ]
        );
    }

    #[test]
    fn comments_literals_and_calls_assigned_locals_are_not_resolved_away() {
        let text = r#"
// PyList_Append(fake->_loops, x);
const char *s = "PyDict_SetItem(self->d, k, v)";
PyObject *fresh = PyList_New(0);
PyList_Append(fresh, item);
PyDict_SetItem(self->cache, key, value);
if (x == y) PyList_Append(y, z);
"#;
        assert_eq!(
            calls(text),
            [
                ("PyList_New".into(), "0".into()),
                ("PyList_Append".into(), "fresh".into()),
                ("PyDict_SetItem".into(), "self->cache".into()),
                ("PyList_Append".into(), "y".into()),
            ]
        );
    }

    #[test]
    fn half_written_input_does_not_panic() {
        for text in [
            "PyList_Append(",
            "PyList_Append(x",
            "/* open",
            "\"open",
            "x = ;PyList_Append(x,",
            "é PyList_Append(é, 1)",
        ] {
            let _ = calls_in(text);
        }
    }
}
