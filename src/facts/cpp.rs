//! C++ sources, read for one fact: which objects they hand to the C API's container calls.
//!
//! isolint's rules do not run on C++ (tree-sitter-c cannot read templates, namespaces or
//! lambdas, and findings on a misread file would be noise). But a C file's exemption "the module
//! never changes this container after construction" is false when the module's C++ half
//! appends to it: numpy's `ufunc->_loops` list is read in C and appended to only in
//! `dispatching.cpp`. So every C++ file of the scan is read lexically, comments and literals
//! blanked, and each `Py…(first, …)` call contributes its first argument, with a local that was
//! last assigned from an expression (`PyObject *loops = ufunc->_loops;`) replaced by that
//! expression. The rules decide which callees change a container.

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

/// The `Py…`/`_Py…` calls of `text` with their first arguments.
pub fn calls_in(text: &str) -> Vec<ForeignCall> {
    let code = blank_comments_and_literals(text);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident_start(bytes[i]) || (i > 0 && is_ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let name = &code[start..i];
        if !(name.starts_with("Py") || name.starts_with("_Py")) {
            continue;
        }
        let open = skip_space(bytes, i);
        if bytes.get(open) != Some(&b'(') {
            continue;
        }
        let Some(argument) = first_argument(&code, open + 1) else {
            continue;
        };
        let argument = resolve_local(&code, start, argument.trim());
        if !argument.is_empty() {
            out.push(ForeignCall {
                callee: name.to_string(),
                first_argument: argument,
            });
        }
    }
    out
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The text from `from` to the first top-level `,` or the closing `)`.
fn first_argument(code: &str, from: usize) -> Option<&str> {
    let mut depth = 0usize;
    for (offset, b) in code.as_bytes()[from..].iter().enumerate() {
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => return Some(&code[from..from + offset]),
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => return Some(&code[from..from + offset]),
            b';' => return None,
            _ => {}
        }
    }
    None
}

/// A bare identifier is replaced by what it was last assigned before `before` in the file
/// (`loops = ufunc->_loops;` or `PyObject *loops = ufunc->_loops;`), when that is found.
fn resolve_local(code: &str, before: usize, argument: &str) -> String {
    let is_name = !argument.is_empty() && argument.bytes().all(is_ident);
    if !is_name {
        return argument.to_string();
    }
    let bytes = code.as_bytes();
    let mut end = before;
    while let Some(at) = code[..end].rfind(argument) {
        end = at;
        let after = at + argument.len();
        let bounded =
            (at == 0 || !is_ident(bytes[at - 1])) && bytes.get(after).is_none_or(|b| !is_ident(*b));
        if !bounded {
            continue;
        }
        let eq = skip_space(bytes, after);
        let assigns = bytes.get(eq) == Some(&b'=') && bytes.get(eq + 1) != Some(&b'=');
        if !assigns {
            continue;
        }
        let value_start = eq + 1;
        let Some(length) = code[value_start..].find(';') else {
            break;
        };
        let value = code[value_start..value_start + length].trim();
        // An assignment from a call builds a new object; keep the local's name then.
        if value.is_empty() || value.ends_with(')') && !value.starts_with('(') {
            break;
        }
        return value.to_string();
    }
    argument.to_string()
}

/// Comments, string and character literals become spaces (newlines kept): a `Py…(` inside
/// them is no call.
fn blank_comments_and_literals(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = memchr::memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = memchr::memmem::find(&bytes[i + 2..], b"*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            quote @ (b'"' | b'\'') => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != quote && bytes[j] != b'\n' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = (j + 1).min(bytes.len());
                blank(&mut out, i, end);
                i = end;
            }
            _ => i += 1,
        }
    }
    // Only ASCII bytes were replaced, by ASCII: the text stays valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
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
