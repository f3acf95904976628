//! What the project's own `#define`s say about the code that uses them. tree-sitter sees a
//! macro as a name; a project macro that opens a block, stands for `static`, or wraps a
//! function head corrupts the tree around every use. The definitions are read from the text of
//! every file of the scan once (headers define, `.c` files use), given a [`Role`], and the
//! pre-pass rewrites each use by its role, in text of the same length.

use super::lexer::{tokenize, Tok, TokKind};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// The most blocks one macro may open or close (`CHAIN_EXC_BEGIN` opens two); more is not a
/// statement helper.
const MAX_BLOCKS: i32 = 3;

/// A longer body is a code generator or data, not a helper; it is not learned (a 10,000-line
/// macro costs one scan of its text, nothing more).
pub const MAX_BODY_BYTES: usize = 4096;

/// One `#define`, as written: continuation lines joined, comments dropped, white space folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacroDefinition {
    pub name: String,
    /// `Some` for a function-like macro.
    pub params: Option<Vec<String>>,
    pub body: String,
}

/// How the pre-pass reads a use of a project macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Empty, or attributes only (`__attribute__((...))`, `__declspec(...)`, `_Pragma(...)`,
    /// `inline`): blanked.
    Blank,
    /// A storage class with attributes (`#define MEM_STATIC static __inline UNUSED_ATTR`):
    /// the keyword is written in its place when it fits, so the declaration keeps it.
    Storage(&'static str),
    /// Opens blocks (`{`, `do {`, `{ PyObject *t; PyErr_Fetch(...);`, or two: `do { FETCH(e);
    /// do {`): becomes that many `{`.
    Open(u8),
    /// Closes blocks (`}`, `} while (0)`, `PyErr_Restore(...); }`, or two): becomes `;` and
    /// that many `}`.
    Close(u8),
    /// A whole statement (ends with `;`, `}` or `while (0)`): a use without `;` gets one.
    Statement,
    /// A function-like macro whose body is its parameters in order (`#define
    /// EXPORT(ret, name, args) ret name args`): the name, parentheses and commas are blanked,
    /// so `EXPORT(PyMODINIT_FUNC, PyInit_m, (void))` reads as the head it stands for.
    PassThrough,
    /// Any other body with a call or an assignment: its uses are expanded by the facts layer.
    Code,
}

const STORAGE_WORDS: &[&str] = &["static", "extern"];
/// `#define THREAD_LOCAL _Thread_local` (and `__declspec(thread)` in another branch, an
/// attribute, merged into this): written as `__thread`, which the declaration reader takes for
/// a thread-local variable.
const THREAD_LOCAL_WORDS: &[&str] = &["_Thread_local", "__thread", "thread_local"];
const THREAD_LOCAL_WORD: &str = "__thread";
const BLANK_WORDS: &[&str] = &[
    "inline",
    "__inline",
    "__inline__",
    "__forceinline",
    "register",
    "__extension__",
];
const ATTRIBUTE_CALLS: &[&str] = &[
    "__attribute__",
    "__attribute",
    "__declspec",
    "_Pragma",
    "__pragma",
    "__asm__",
];

/// The `#define`s of one file worth knowing: every one with a role or with code.
pub fn definitions_in(src: &[u8]) -> Vec<MacroDefinition> {
    let src = super::prepass::normalize_line_breaks(src);
    let mut out = Vec::new();
    let mut line_start = 0;
    while line_start < src.len() {
        let line_end = logical_line_end(&src, line_start);
        let line = &src[line_start..line_end];
        line_start = line_end + 1;
        let Some(rest) = directive_rest(line, b"define") else {
            continue;
        };
        if line.len() > MAX_BODY_BYTES + 256 {
            continue;
        }
        if let Some(def) = definition(rest) {
            // The C API's own macros are the pre-pass's curated list, not learned: scanning
            // CPython itself must not turn `PyObject_HEAD` into a statement.
            if def.name.starts_with("Py") || def.name.starts_with("_Py") {
                continue;
            }
            // Names in the body may be other files' attribute macros: kept optimistically,
            // resolved once every file's definitions are known. So may a body of statements
            // around other files' block macros (`CHAIN_EXC_BEGIN x; CHAIN_EXC_END`).
            if classify(&def, &|_| Some(Role::Blank)).is_some() || def.body.contains(';') {
                out.push(def);
            }
        }
    }
    out
}

/// The end of the logical line at `start`: backslash-newline continues it.
fn logical_line_end(src: &[u8], start: usize) -> usize {
    // memchr: the pre-scan runs this over every line of every file.
    let mut i = start;
    while let Some(at) = memchr::memchr(b'\n', &src[i..]).map(|p| i + p) {
        if at > start && src[at - 1] == b'\\' {
            i = at + 1;
        } else {
            return at;
        }
    }
    src.len()
}

/// `# define rest...` → `rest...`.
fn directive_rest<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let trimmed = line
        .trim_ascii_start()
        .strip_prefix(b"#")?
        .trim_ascii_start();
    let rest = trimmed.strip_prefix(word)?;
    rest.first()
        .is_some_and(|c| c.is_ascii_whitespace())
        .then_some(rest)
}

fn definition(rest: &[u8]) -> Option<MacroDefinition> {
    let text = String::from_utf8_lossy(rest);
    let text = strip_comments(&text.replace("\\\n", " "));
    let text = text.trim_start();
    let name_len = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    if name_len == 0 || text.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let name = text[..name_len].to_string();
    let mut body = &text[name_len..];
    let mut params = None;
    if body.starts_with('(') {
        let close = body.find(')')?;
        params = Some(
            body[1..close]
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
        );
        body = &body[close + 1..];
    }
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(MacroDefinition { name, params, body })
}

/// Drops `/* */` and `//` comments outside string and character literals.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                out.push_str(&text[copied..i]);
                out.push(' ');
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |p| i + 2 + p + 2);
                copied = i;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                out.push_str(&text[copied..i]);
                i = bytes.len();
                copied = i;
            }
            _ => i += 1,
        }
    }
    if copied < bytes.len() {
        out.push_str(&text[copied.min(text.len())..]);
    }
    out
}

/// The role of a definition, given the roles already known for the names in its body.
fn classify(def: &MacroDefinition, known: &dyn Fn(&str) -> Option<Role>) -> Option<Role> {
    let body = def.body.as_bytes();
    if body.len() > MAX_BODY_BYTES {
        return None;
    }
    if body.is_empty() {
        return Some(Role::Blank);
    }
    let toks = tokenize(body);
    let text = |t: &Tok| &def.body[t.start..t.end];
    if let Some(role) = declaration_specifier(&toks, &text, known) {
        return Some(role);
    }
    let mut depth = 0i32;
    let mut lowest = 0i32;
    // A project macro in the body that opens or closes blocks counts as its braces
    // (`#define CHAIN_EXC(x) CHAIN_EXC_BEGIN x; CHAIN_EXC_END`).
    for t in &toks {
        // The macro's own name in its body is not expanded again (C 6.10.3.4).
        let role = if t.kind == TokKind::Ident && text(t) != def.name {
            known(text(t))
        } else {
            None
        };
        match role {
            Some(Role::Open(n)) => depth += i32::from(n),
            Some(Role::Close(n)) => {
                depth -= i32::from(n);
                lowest = lowest.min(depth);
            }
            _ => match t.kind {
                TokKind::Punct(b'{') => depth += 1,
                TokKind::Punct(b'}') => {
                    depth -= 1;
                    lowest = lowest.min(depth);
                }
                _ => {}
            },
        }
    }
    match (depth, lowest) {
        (1..=MAX_BLOCKS, 0) => return Some(Role::Open(depth as u8)),
        (_, _) if (-MAX_BLOCKS..=-1).contains(&depth) && lowest == depth => {
            return Some(Role::Close(-depth as u8))
        }
        (0, 0) => {}
        _ => return None,
    }
    if let Some(params) = &def.params {
        let words: Vec<&str> = toks.iter().map(text).collect();
        if !params.is_empty() && words == params.iter().map(String::as_str).collect::<Vec<_>>() {
            return Some(Role::PassThrough);
        }
    }
    let ends_with_statement_macro = toks.last().is_some_and(|t| {
        t.kind == TokKind::Ident
            && text(t) != def.name
            && matches!(known(text(t)), Some(Role::Statement) | Some(Role::Close(_)))
    });
    let ends_statement = def.body.ends_with(';')
        || def.body.ends_with('}')
        || def.body.replace(' ', "").ends_with("while(0)")
        || ends_with_statement_macro;
    if ends_statement {
        return Some(Role::Statement);
    }
    let has_code = toks.iter().any(|t| {
        matches!(
            t.kind,
            TokKind::Punct(b'(')
                | TokKind::Punct(b'=')
                | TokKind::Punct(b'+')
                | TokKind::Punct(b'-')
        )
    });
    has_code.then_some(Role::Code)
}

/// Storage words, attribute groups and macros that are themselves such: `Blank` or
/// `Storage`. `None` when anything else is in the body.
fn declaration_specifier<'t>(
    toks: &[Tok],
    text: &dyn Fn(&Tok) -> &'t str,
    known: &dyn Fn(&str) -> Option<Role>,
) -> Option<Role> {
    let mut storage = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.kind != TokKind::Ident {
            return None;
        }
        let word = text(t);
        if ATTRIBUTE_CALLS.contains(&word) {
            let close = group_end(toks, i + 1)?;
            i = close + 1;
            continue;
        }
        if let Some(s) = STORAGE_WORDS.iter().find(|s| **s == word) {
            // `static _Thread_local`: thread-locality is what the analysis needs to keep.
            if storage != Some(THREAD_LOCAL_WORD) {
                storage = Some(*s);
            }
        } else if THREAD_LOCAL_WORDS.contains(&word) {
            storage = Some(THREAD_LOCAL_WORD);
        } else if BLANK_WORDS.contains(&word) {
        } else {
            match known(word) {
                Some(Role::Blank) => {}
                Some(Role::Storage(s)) => storage = Some(s),
                _ => return None,
            }
        }
        i += 1;
    }
    Some(storage.map_or(Role::Blank, Role::Storage))
}

/// The index of the `)` closing the group that opens at `toks[open]`.
fn group_end(toks: &[Tok], open: usize) -> Option<usize> {
    if toks.get(open)?.kind != TokKind::Punct(b'(') {
        return None;
    }
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.kind {
            TokKind::Punct(b'(') => depth += 1,
            TokKind::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The macros of a whole scan, with their roles, built once and shared by every file's parse.
#[derive(Debug, Default)]
pub struct ProjectMacros {
    /// By the name's bytes: the pre-pass looks up every identifier of every file as it is.
    roles: FxHashMap<Box<[u8]>, Role>,
    definitions: FxHashMap<String, MacroDefinition>,
    /// Integer values the scan's headers give macros on every Python (see
    /// [`super::condition::header_values`]); names two headers disagree on are left out.
    values: FxHashMap<String, super::condition::Pieces>,
    /// Names the scan switches off and never defines (see
    /// [`super::condition::off_by_default_hints`]): undefined for `#ifdef` and `#if`.
    off_by_default: Vec<String>,
    fingerprint: u64,
}

impl ProjectMacros {
    /// Roles are resolved to a fixed point (a storage macro made of other storage macros), at
    /// most a few rounds deep: a self-referential or mutually recursive macro simply gets no
    /// role from the names it refers to.
    pub fn new(mut definitions: Vec<MacroDefinition>) -> Self {
        definitions.sort_by(|a, b| a.name.cmp(&b.name).then(a.body.cmp(&b.body)));
        definitions.dedup();
        let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
        for d in &definitions {
            fingerprint.update(d.name.as_bytes());
            fingerprint.update(b"\0");
            if let Some(params) = &d.params {
                fingerprint.update(params.join(",").as_bytes());
            }
            fingerprint.update(b"\0");
            fingerprint.update(d.body.as_bytes());
            fingerprint.update(b"\0");
        }
        let mut roles: FxHashMap<String, Role> = FxHashMap::default();
        for _round in 0..4 {
            // Several definitions of a name (`#if` branches) are merged; `None` is a plain value
            // (`#define _W64 __w64`).
            let mut merged: FxHashMap<&str, Option<Role>> = FxHashMap::default();
            for d in &definitions {
                let role = classify(d, &|w| roles.get(w).copied());
                merged
                    .entry(d.name.as_str())
                    .and_modify(|existing| *existing = merge(*existing, role))
                    .or_insert(role);
            }
            let next: FxHashMap<String, Role> = merged
                .into_iter()
                .filter_map(|(name, role)| Some((name.to_string(), role?)))
                .collect();
            if next == roles {
                break;
            }
            roles = next;
        }
        let mut by_name: FxHashMap<String, MacroDefinition> = FxHashMap::default();
        for d in definitions {
            by_name.entry(d.name.clone()).or_insert(d);
        }
        Self {
            roles: roles
                .into_iter()
                .map(|(name, role)| (name.into_bytes().into_boxed_slice(), role))
                .collect(),
            definitions: by_name,
            values: FxHashMap::default(),
            off_by_default: Vec::new(),
            fingerprint: fingerprint.digest(),
        }
    }

    /// Adds the values of the scan's headers: `(name, value)` per header and name, `None` for
    /// a name a header defines without a value the versions decide.
    pub fn with_values(
        mut self,
        values: impl IntoIterator<Item = (String, Option<super::condition::Pieces>)>,
    ) -> Self {
        let mut merged: FxHashMap<String, Option<super::condition::Pieces>> = FxHashMap::default();
        for (name, value) in values {
            merged
                .entry(name)
                .and_modify(|v| {
                    if *v != value {
                        *v = None;
                    }
                })
                .or_insert(value);
        }
        let mut known: Vec<(String, super::condition::Pieces)> = merged
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect();
        known.sort_unstable();
        let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
        fingerprint.update(&self.fingerprint.to_le_bytes());
        for (name, pieces) in &known {
            fingerprint.update(name.as_bytes());
            for (range, value) in pieces {
                fingerprint.update(format!("{range:?}").as_bytes());
                fingerprint.update(&value.to_le_bytes());
            }
        }
        self.fingerprint = fingerprint.digest();
        self.values = known.into_iter().collect();
        self
    }

    /// Adds the names the scan switches off (a commented-out `#define NAME`, a header's
    /// `#undef NAME`) and CPython's own build flags, those that no `#define` of the scan
    /// defines.
    pub fn with_off_by_default(mut self, hints: impl IntoIterator<Item = String>) -> Self {
        let cpython_core = super::condition::CPYTHON_CORE_BUILD_FLAGS
            .iter()
            .map(|s| s.to_string());
        let mut off: Vec<String> = hints
            .into_iter()
            .chain(cpython_core)
            .filter(|name| !self.definitions.contains_key(name))
            .collect();
        off.sort_unstable();
        off.dedup();
        let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
        fingerprint.update(&self.fingerprint.to_le_bytes());
        for name in &off {
            fingerprint.update(name.as_bytes());
            fingerprint.update(b"\0");
        }
        self.fingerprint = fingerprint.digest();
        self.off_by_default = off;
        self
    }

    /// Names undefined unless the build defines them (see [`Self::with_off_by_default`]).
    pub fn off_by_default(&self) -> &[String] {
        &self.off_by_default
    }

    /// The integer values the scan's headers give macros on every Python; each file's
    /// pre-pass reads the table in place.
    pub fn value_table(&self) -> &FxHashMap<String, super::condition::Pieces> {
        &self.values
    }

    pub fn role(&self, name: &str) -> Option<Role> {
        self.role_of(name.as_bytes())
    }

    pub fn role_of(&self, name: &[u8]) -> Option<Role> {
        self.roles.get(name).copied()
    }

    /// The first definition of `name` (by body, when there are several).
    pub fn definition(&self, name: &str) -> Option<&MacroDefinition> {
        self.definitions.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty() && self.values.is_empty()
    }

    /// Changes whenever any definition does: part of the facts cache key.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// Two definitions of one name. Definitions that disagree on structure (`{` in one `#if`
/// branch, nothing in the other) give no role, and the use is left as written.
fn merge(a: Option<Role>, b: Option<Role>) -> Option<Role> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        // A plain value in one branch, nothing (or an attribute) in another: blanked, as the
        // pre-pass always read an empty definition.
        (Some(r @ (Role::Blank | Role::Storage(_))), None)
        | (None, Some(r @ (Role::Blank | Role::Storage(_)))) => return Some(r),
        (Some(Role::Code), None) | (None, Some(Role::Code)) => return Some(Role::Code),
        _ => return None,
    };
    match (a, b) {
        _ if a == b => Some(a),
        (Role::Blank, Role::Storage(s)) | (Role::Storage(s), Role::Blank) => Some(Role::Storage(s)),
        (Role::Statement, Role::Code) | (Role::Code, Role::Statement) => Some(Role::Code),
        // `#define TRACE(x) printf x;` in debug builds, nothing otherwise: a statement (a use
        // without `;` gets one, which is an empty statement in the other build).
        (Role::Blank, Role::Statement) | (Role::Statement, Role::Blank) => Some(Role::Statement),
        // A debug hook that is code in one build and nothing in the other: blanked, as the
        // build without it reads.
        (Role::Blank, Role::Code) | (Role::Code, Role::Blank) => Some(Role::Blank),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(src: &str) -> ProjectMacros {
        ProjectMacros::new(definitions_in(src.as_bytes()))
    }

    #[test]
    fn roles_from_bodies() {
        let m = roles(concat!(
            "#define EMPTY\n",
            "#define HIDDEN __attribute__((visibility(\"hidden\")))\n",
            "#define UNUSED_ATTR __attribute__((unused))\n",
            "#define MEM_STATIC static __inline UNUSED_ATTR\n",
            "#define BEGIN_SAVE { PyObject *t, *v, *tb; PyErr_Fetch(&t, &v, &tb);\n",
            "#define END_SAVE PyErr_Restore(t, v, tb); }\n",
            "#define LOCK do { \\\n    lock();\n",
            "#define UNLOCK unlock(); } while (0)\n",
            "#define PREAMBLE PyGILState_STATE st = PyGILState_Ensure();\n",
            "#define EXPORT(ret, name, args) ret name args\n",
            "#define N 3\n",
            "#define SELF SELF\n",
        ));
        assert_eq!(m.role("EMPTY"), Some(Role::Blank));
        assert_eq!(m.role("HIDDEN"), Some(Role::Blank));
        assert_eq!(m.role("MEM_STATIC"), Some(Role::Storage("static")));
        assert_eq!(m.role("BEGIN_SAVE"), Some(Role::Open(1)));
        assert_eq!(m.role("END_SAVE"), Some(Role::Close(1)));
        assert_eq!(m.role("LOCK"), Some(Role::Open(1)));
        assert_eq!(m.role("UNLOCK"), Some(Role::Close(1)));
        assert_eq!(m.role("PREAMBLE"), Some(Role::Statement));
        assert_eq!(m.role("EXPORT"), Some(Role::PassThrough));
        assert_eq!(m.role("N"), None);
        assert_eq!(m.role("SELF"), None);
        assert!(m.definition("PREAMBLE").is_some());
    }

    #[test]
    fn thread_local_macros_keep_their_storage() {
        let m = roles(concat!(
            "#if defined(_MSC_VER)\n#define THREAD_LOCAL __declspec(thread)\n",
            "#else\n#define THREAD_LOCAL _Thread_local\n#endif\n",
            "#define TLS_STATIC static __thread\n",
        ));
        assert_eq!(m.role("THREAD_LOCAL"), Some(Role::Storage("__thread")));
        assert_eq!(m.role("TLS_STATIC"), Some(Role::Storage("__thread")));
    }

    #[test]
    fn disagreeing_definitions_give_no_structural_role() {
        let m = roles("#ifdef X\n#define B {\n#else\n#define B\n#endif\n");
        assert_ne!(m.role("B"), Some(Role::Open(1)));
        assert_ne!(m.role("B"), Some(Role::Blank));
    }

    #[test]
    fn huge_and_recursive_macros_are_harmless() {
        let mut src = String::from("#define HUGE \\\n");
        for i in 0..10_000 {
            src.push_str(&format!("    x{i} = {i}; \\\n"));
        }
        src.push_str("    done\n#define A B\n#define B A\n#define C C(C)\n");
        let m = roles(&src);
        assert_eq!(m.role("HUGE"), None);
        assert_eq!(m.role("A"), None);
        assert_eq!(m.role("C"), Some(Role::Code));
    }

    #[test]
    fn a_macro_made_of_block_macros_takes_their_braces() {
        let src = "#define CHAIN_BEGIN \\\n  do \\\n  { \\\n    FETCH(e); \\\n    do \\\n    {\n\
                   #define CHAIN_END \\\n  do { } while (0); \\\n  } \\\n  while (0) \\\n    ; \\\n  if (e) { RESTORE(e); } \\\n  }\n\
                   #define CHAIN(x) \\\n  CHAIN_BEGIN x; \\\n  CHAIN_END\n";
        let m = ProjectMacros::new(definitions_in(src.as_bytes()));
        assert_eq!(m.role("CHAIN_BEGIN"), Some(Role::Open(2)));
        assert_eq!(m.role("CHAIN_END"), Some(Role::Close(2)));
        assert_eq!(m.role("CHAIN"), Some(Role::Statement));
    }
}
