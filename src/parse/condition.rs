//! Evaluating `#if` conditions into the Python versions they select.

use crate::version::{py, PyVersion, VersionRange};
use std::collections::HashMap;

/// What a condition says about the Python version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Selects exactly these versions (`#if 0` is `Version(EMPTY)`).
    Version(VersionRange),
    /// Depends on something else (a feature macro, the platform).
    Unknown,
}

impl Cond {
    pub fn range(self) -> VersionRange {
        match self {
            Cond::Version(r) => r,
            Cond::Unknown => VersionRange::ALL,
        }
    }
    fn not(self) -> Cond {
        match self {
            Cond::Version(r) => Cond::Version(r.complement()),
            Cond::Unknown => Cond::Unknown,
        }
    }
    fn and(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::Version(a), Cond::Version(b)) => Cond::Version(a.intersect(&b)),
            (Cond::Version(a), Cond::Unknown) | (Cond::Unknown, Cond::Version(a)) => {
                Cond::Version(a)
            }
            _ => Cond::Unknown,
        }
    }
    fn or(self, other: Cond) -> Cond {
        match (self, other) {
            (Cond::Version(a), Cond::Version(b)) => Cond::Version(a.hull(&b)),
            (Cond::Version(a), Cond::Unknown) | (Cond::Unknown, Cond::Version(a)) if a.is_all() => {
                Cond::Version(a)
            }
            _ => Cond::Unknown,
        }
    }
}

/// Macros defined (without parameters) only for some versions, e.g. `#define IS_PY3K` inside
/// `#if PY_MAJOR_VERSION >= 3`. Testing them is testing the version.
pub type VersionMacros = HashMap<String, VersionRange>;

/// Object-like macros with integer values the file gives them, per Python version: `#define
/// USE_STATIC_TYPES 1` in the `#else` of `#if PY_VERSION_HEX >= 0x030B0000` (which defines it
/// `0`), or the default of `#ifndef WITH_CACHE` / `#define WITH_CACHE 0`. `#if WITH_CACHE`
/// then selects versions, not "unknown".
///
/// The values of the scan's headers are the same for every file: they are read from the
/// project's table in place (`base`), and only what a file defines or undefines is held per
/// file. Copying the table into each file's map cost 1.5 % of `check` on CPython.
#[derive(Debug, Clone, Default)]
pub struct MacroValues<'a> {
    base: Option<&'a rustc_hash::FxHashMap<String, Pieces>>,
    values: HashMap<String, Valued>,
}

/// A macro's integer value per Python version, later entries winning where they overlap.
pub type Pieces = Vec<(VersionRange, i64)>;

#[derive(Debug, Clone)]
enum Valued {
    /// Defined with these values on these versions, later definitions last; every version
    /// is covered (else the name is `Opaque`).
    Pieces(Vec<(VersionRange, i64)>),
    /// Defined or undefined where the versions do not tell, or to something not a number.
    Opaque,
}

/// At most this many definitions of one name are followed; more make it `Opaque`.
const MAX_PIECES: usize = 16;

impl<'a> MacroValues<'a> {
    /// A file's values on top of the integer values the scan's headers give macros, before
    /// the file's own `#define`s.
    pub fn over(base: &'a rustc_hash::FxHashMap<String, Pieces>) -> Self {
        MacroValues {
            base: Some(base),
            values: HashMap::new(),
        }
    }
    /// `#define name value` on `range` (`value` is `None` when the body is no integer or the
    /// branch is not one the versions decide).
    pub fn define(&mut self, name: &str, range: Option<VersionRange>, value: Option<i64>) {
        let base = self.base;
        let entry = self.values.entry(name.to_string()).or_insert_with(|| {
            // A header's value, then the file's definitions after it.
            Valued::Pieces(base.and_then(|b| b.get(name)).cloned().unwrap_or_default())
        });
        match (range, value, &mut *entry) {
            (Some(r), _, _) if r.is_empty() => {}
            (Some(r), Some(v), Valued::Pieces(pieces))
                if r.free_threaded.is_none() && pieces.len() < MAX_PIECES =>
            {
                pieces.push((r, v));
            }
            _ => *entry = Valued::Opaque,
        }
    }
    /// `#undef name`, or a definition the scan cannot follow.
    pub fn forget(&mut self, name: &str) {
        self.values.insert(name.to_string(), Valued::Opaque);
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.base.is_none_or(|b| b.is_empty())
    }
    /// The value on every version: `Err` when unknown somewhere.
    fn pieces(&self, name: &str) -> Option<&[(VersionRange, i64)]> {
        let pieces = match self.values.get(name) {
            Some(Valued::Pieces(p)) => p,
            Some(Valued::Opaque) => return None,
            None => self.base?.get(name)?,
        };
        covers_all(pieces).then_some(pieces.as_slice())
    }
    /// The versions on which `name` is nonzero, when it is one range (the empty one included).
    fn truthy(&self, name: &str) -> Option<VersionRange> {
        let pieces = self.pieces(name)?;
        let mut cuts: Vec<u16> = pieces.iter().flat_map(|(r, _)| [r.lo, r.hi]).collect();
        cuts.push(0);
        cuts.push(crate::version::UNBOUNDED);
        cuts.sort_unstable();
        cuts.dedup();
        let mut truthy = VersionRange::EMPTY;
        for w in cuts.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            let value = pieces
                .iter()
                .rev()
                .find(|(r, _)| r.lo <= lo && hi <= r.hi)
                .map(|p| p.1)?;
            if value != 0 {
                if !truthy.is_empty() && truthy.hi != lo {
                    return None;
                }
                truthy = VersionRange::new(if truthy.is_empty() { lo } else { truthy.lo }, hi);
            }
        }
        Some(truthy)
    }
    /// The value, when every version gives the same.
    fn constant(&self, name: &str) -> Option<i64> {
        let pieces = self.pieces(name)?;
        let last = pieces.last()?.1;
        pieces.iter().all(|p| p.1 == last).then_some(last)
    }
}

/// The integer values a header gives its macros on every Python, read as the pre-pass reads
/// them (versions, the default of `#ifndef NAME`, include guards; see
/// `prepass::value_context_known`): what `#if NAME` in a file that includes it sees. `None`
/// for a name the header defines some other way (to something not a number, only on some
/// versions, under a feature test) or undefines. Include guards are left out: they say
/// nothing to other files, and the header's own `#ifndef` must not read them as defined.
pub fn header_values(text: &str) -> Vec<(String, Option<Pieces>)> {
    struct Open {
        exact: bool,
        taken: Cond,
        range: VersionRange,
        parent: VersionRange,
        guard: Option<String>,
        guard_defined: bool,
        first_branch: bool,
        /// Directives and lines seen in the first branch after the guard's `#define`.
        guard_wraps: bool,
    }
    let macros = VersionMacros::new();
    let mut values = MacroValues::default();
    let mut open: Vec<Open> = Vec::new();
    let mut guards: Vec<String> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some((word, arg)) = directive(line) else {
            if let Some(top) = open.last_mut() {
                if top.guard_defined && !line.trim().is_empty() {
                    top.guard_wraps = true;
                }
            }
            continue;
        };
        if let Some(top) = open.last_mut() {
            if top.guard_defined && !matches!(word, "endif") {
                top.guard_wraps = true;
            }
        }
        let parent = open.last().map_or(VersionRange::ALL, |o| o.range);
        match word {
            "if" | "ifdef" | "ifndef" => {
                let expr = match word {
                    "if" => arg.to_string(),
                    "ifdef" => format!("defined({arg})"),
                    _ => format!("!defined({arg})"),
                };
                let (cond, exact) = evaluate_with(&expr, &macros, &values);
                let guard = match word {
                    "ifndef" => Some(arg.split_whitespace().next().unwrap_or("").to_string()),
                    "if" => arg
                        .replace(' ', "")
                        .strip_prefix("!defined(")
                        .and_then(|t| t.strip_suffix(')'))
                        .map(str::to_string),
                    _ => None,
                };
                open.push(Open {
                    exact: exact && matches!(cond, Cond::Version(_)),
                    taken: cond,
                    range: cond.range().intersect(&parent),
                    parent,
                    guard,
                    guard_defined: false,
                    first_branch: true,
                    guard_wraps: false,
                });
            }
            "elif" | "else" => {
                if let Some(top) = open.last_mut() {
                    let (cond, exact) = if word == "elif" {
                        evaluate_with(arg, &macros, &values)
                    } else {
                        (Cond::Version(VersionRange::ALL), true)
                    };
                    let not_taken = match top.taken {
                        Cond::Version(r) => r.complement(),
                        Cond::Unknown => VersionRange::ALL,
                    };
                    let before_exact = matches!(top.taken, Cond::Version(r)
                        if r.free_threaded.is_none()
                            && (r.is_empty() || r.lo == 0 || r.hi == crate::version::UNBOUNDED));
                    let union_exact = match (top.taken, cond) {
                        (Cond::Version(a), Cond::Version(b)) => {
                            word == "else"
                                || (b.free_threaded.is_none()
                                    && (a.is_empty()
                                        || b.is_empty()
                                        || (a.lo <= b.hi && b.lo <= a.hi)))
                        }
                        _ => false,
                    };
                    top.exact = top.exact
                        && exact
                        && matches!(cond, Cond::Version(_))
                        && before_exact
                        && union_exact;
                    top.range = cond.range().intersect(&not_taken).intersect(&top.parent);
                    top.taken = match (top.taken, cond) {
                        (Cond::Version(a), Cond::Version(b)) => Cond::Version(a.hull(&b)),
                        _ => Cond::Unknown,
                    };
                    top.first_branch = false;
                }
            }
            "endif" => {
                if let Some(top) = open.pop() {
                    if top.guard_wraps {
                        guards.extend(top.guard);
                    }
                }
            }
            "undef" => {
                let name = arg.split_whitespace().next().unwrap_or("");
                values.forget(name);
                names.push(name.to_string());
            }
            "define" => {
                let name_len = arg
                    .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .unwrap_or(arg.len());
                let (name, after) = arg.split_at(name_len);
                if name.is_empty() || after.starts_with('(') {
                    continue;
                }
                let known = open.iter().all(|o| {
                    o.exact
                        || (o.first_branch && (o.guard_defined || o.guard.as_deref() == Some(name)))
                });
                if known {
                    values.define(name, Some(parent), integer_body(after));
                } else {
                    values.forget(name);
                }
                names.push(name.to_string());
                if let Some(top) = open.last_mut() {
                    if top.first_branch && top.guard.as_deref() == Some(name) {
                        top.guard_defined = true;
                    }
                }
            }
            _ => {}
        }
    }
    // An unterminated guard (a header cut short) is still a guard.
    guards.extend(
        open.into_iter()
            .filter(|o| o.guard_defined)
            .filter_map(|o| o.guard),
    );
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| !guards.contains(n))
        .map(|n| {
            let value = values.pieces(&n).map(<[_]>::to_vec);
            (n, value)
        })
        .collect()
}

/// The pieces leave no version undefined (a name defined on some versions only is a
/// [`VersionMacros`] entry, read as before).
fn covers_all(pieces: &[(VersionRange, i64)]) -> bool {
    let mut at = 0u16;
    loop {
        match pieces
            .iter()
            .filter(|(r, _)| r.lo <= at && at < r.hi)
            .map(|(r, _)| r.hi)
            .max()
        {
            Some(hi) if hi == crate::version::UNBOUNDED => return true,
            Some(hi) => at = hi,
            None => return false,
        }
    }
}

/// The integer a macro body stands for: `0`, `(1)`, `0x10`, `1L`.
pub fn integer_body(body: &str) -> Option<i64> {
    let toks = lex(body)?;
    match toks.as_slice() {
        [Token::Num(n)] => Some(*n),
        [Token::Op("("), Token::Num(n), Token::Op(")")] => Some(*n),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Num(i64),
    Op(&'static str),
}

fn lex(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() || c == b'\\' {
            i += 1;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = text[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |p| i + 2 + p + 2);
            i = end;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            break;
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            out.push(Token::Ident(text[start..i].to_string()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let lit = text[start..i].trim_end_matches(['u', 'U', 'l', 'L']);
            let value = if let Some(hex) = lit.strip_prefix("0x").or_else(|| lit.strip_prefix("0X"))
            {
                i64::from_str_radix(hex, 16).ok()?
            } else {
                lit.parse().ok()?
            };
            out.push(Token::Num(value));
        } else {
            let two = text.get(i..i + 2).unwrap_or("");
            let op = ["&&", "||", ">=", "<=", "==", "!="]
                .into_iter()
                .find(|op| *op == two);
            if let Some(op) = op {
                out.push(Token::Op(op));
                i += 2;
            } else {
                let op = match c {
                    b'(' => "(",
                    b')' => ")",
                    b'!' => "!",
                    b'<' => "<",
                    b'>' => ">",
                    _ => return None,
                };
                out.push(Token::Op(op));
                i += 1;
            }
        }
    }
    Some(out)
}

/// A value in the little expression language of `#if`.
#[derive(Debug, Clone, Copy)]
enum Value {
    Cond(Cond),
    Num(i64),
    /// `PY_VERSION_HEX`, `PY_MAJOR_VERSION`, `PY_MINOR_VERSION`.
    VersionVar(VersionVar),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum VersionVar {
    Hex,
    Major,
    Minor,
}

impl Value {
    fn cond(self) -> Cond {
        match self {
            Value::Cond(c) => c,
            Value::Num(0) => Cond::Version(VersionRange::EMPTY),
            Value::Num(_) => Cond::Version(VersionRange::ALL),
            Value::VersionVar(_) => Cond::Version(VersionRange::ALL),
        }
    }
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    macros: &'a VersionMacros,
    values: &'a MacroValues<'a>,
    /// Something the versions do not decide was folded into the result (`HAVE_X &&
    /// PY_VERSION_HEX >= ...` is read as its version test): the result is an upper bound.
    inexact: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek()
            == Some(&Token::Op(match op {
                "&&" => "&&",
                "||" => "||",
                "(" => "(",
                ")" => ")",
                "!" => "!",
                _ => return false,
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn or_expr(&mut self) -> Option<Value> {
        let mut left = self.and_expr()?;
        while self.eat_op("||") {
            let right = self.and_expr()?;
            left = Value::Cond(self.note(left.cond().or(right.cond()), left, right));
        }
        Some(left)
    }
    fn and_expr(&mut self) -> Option<Value> {
        let mut left = self.cmp_expr()?;
        while self.eat_op("&&") {
            let right = self.cmp_expr()?;
            left = Value::Cond(self.note(left.cond().and(right.cond()), left, right));
        }
        Some(left)
    }
    /// `result` of `&&` / `||`: it is known while one side was unknown, so it only bounds
    /// the versions.
    fn note(&mut self, result: Cond, left: Value, right: Value) -> Cond {
        let unknown = |v: Value| matches!(v.cond(), Cond::Unknown);
        if matches!(result, Cond::Version(_)) && (unknown(left) || unknown(right)) {
            self.inexact = true;
        }
        result
    }
    fn cmp_expr(&mut self) -> Option<Value> {
        let left = self.unary()?;
        let op = match self.peek() {
            Some(Token::Op(op)) if matches!(*op, ">=" | "<=" | ">" | "<" | "==" | "!=") => *op,
            _ => return Some(left),
        };
        self.pos += 1;
        let right = self.unary()?;
        Some(Value::Cond(compare(left, op, right)))
    }
    fn unary(&mut self) -> Option<Value> {
        if self.eat_op("!") {
            let v = self.unary()?;
            return Some(match v {
                Value::Num(n) => Value::Num((n == 0) as i64),
                other => Value::Cond(other.cond().not()),
            });
        }
        if self.eat_op("(") {
            let v = self.or_expr()?;
            self.eat_op(")");
            return Some(v);
        }
        match self.toks.get(self.pos).cloned()? {
            Token::Num(n) => {
                self.pos += 1;
                Some(Value::Num(n))
            }
            Token::Ident(name) => {
                self.pos += 1;
                if name == "defined" {
                    let paren = self.eat_op("(");
                    let target = match self.toks.get(self.pos).cloned() {
                        Some(Token::Ident(t)) => t,
                        _ => return None,
                    };
                    self.pos += 1;
                    if paren {
                        self.eat_op(")");
                    }
                    return Some(Value::Cond(self.macro_cond(&target)));
                }
                // A function-like macro call: its value is unknown.
                if self.peek() == Some(&Token::Op("(")) {
                    let mut depth = 0;
                    while let Some(tok) = self.toks.get(self.pos) {
                        self.pos += 1;
                        match tok {
                            Token::Op("(") => depth += 1,
                            Token::Op(")") => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                    return Some(Value::Cond(Cond::Unknown));
                }
                Some(match name.as_str() {
                    "PY_VERSION_HEX" => Value::VersionVar(VersionVar::Hex),
                    "PY_MAJOR_VERSION" => Value::VersionVar(VersionVar::Major),
                    "PY_MINOR_VERSION" => Value::VersionVar(VersionVar::Minor),
                    _ => match (self.values.constant(&name), self.values.truthy(&name)) {
                        (Some(n), _) => Value::Num(n),
                        (None, Some(r)) => Value::Cond(Cond::Version(r)),
                        (None, None) => Value::Cond(self.macro_cond(&name)),
                    },
                })
            }
            Token::Op(_) => None,
        }
    }
    fn macro_cond(&self, name: &str) -> Cond {
        // The free-threaded build defines it (3.13+): `#ifdef Py_GIL_DISABLED`.
        if name == "Py_GIL_DISABLED" {
            return Cond::Version(VersionRange::build(true));
        }
        // Given a value on every version: defined everywhere.
        if self.values.pieces(name).is_some() {
            return Cond::Version(VersionRange::ALL);
        }
        match self.macros.get(name) {
            Some(range) => Cond::Version(*range),
            None => Cond::Unknown,
        }
    }
}

/// The minor version a `PY_VERSION_HEX` constant falls in, and whether some released builds
/// of that minor version are on each side of it. Ranges are of released Pythons: a cut at a
/// pre-release of x.y.0 (`0x030D00A6`, 3.13.0a6, as `pythoncapi_compat.h` writes them) puts
/// every release of 3.13 on the `>=` side, so it is the 3.13 boundary itself; a cut at a
/// patch release (`0x030B0200`, 3.11.2) splits 3.11.
fn hex_version(hex: i64) -> (PyVersion, bool) {
    let major = ((hex >> 24) & 0xff) as u16;
    let minor = ((hex >> 16) & 0xff) as u16;
    let micro = (hex >> 8) & 0xff;
    let final_x_y_0 = 0xf0;
    let partial = micro != 0 || (hex & 0xff) > final_x_y_0;
    (py(major, minor), partial)
}

fn next_minor(v: PyVersion) -> PyVersion {
    v.saturating_add(1)
}

fn compare(left: Value, op: &str, right: Value) -> Cond {
    let (var, num, op) = match (left, right) {
        (Value::VersionVar(var), Value::Num(n)) => (var, n, op),
        (Value::Num(n), Value::VersionVar(var)) => {
            let flipped = match op {
                ">=" => "<=",
                "<=" => ">=",
                ">" => "<",
                "<" => ">",
                other => other,
            };
            (var, n, flipped)
        }
        (Value::Num(a), Value::Num(b)) => {
            let truth = match op {
                ">=" => a >= b,
                "<=" => a <= b,
                ">" => a > b,
                "<" => a < b,
                "==" => a == b,
                _ => a != b,
            };
            return Cond::Version(if truth {
                VersionRange::ALL
            } else {
                VersionRange::EMPTY
            });
        }
        _ => return Cond::Unknown,
    };
    // Each comparison is mapped onto whole minor versions: a patch-level test such as
    // `PY_VERSION_HEX >= 0x030B0200` counts as selecting 3.11 too, because some 3.11 builds
    // compile that code.
    let (at, partial) = match var {
        VersionVar::Hex => hex_version(num),
        VersionVar::Major => (py(num.clamp(0, 255) as u16, 0), false),
        VersionVar::Minor => (py(3, num.clamp(0, 255) as u16), false),
    };
    let step = |v: PyVersion| match var {
        VersionVar::Major => py(v / 256 + 1, 0),
        _ => next_minor(v),
    };
    let range = match op {
        ">=" => VersionRange::at_least(at),
        ">" if partial || var == VersionVar::Hex => VersionRange::at_least(at),
        ">" => VersionRange::at_least(step(at)),
        "<" if partial => VersionRange::below(step(at)),
        "<" => VersionRange::below(at),
        "<=" => VersionRange::below(step(at)),
        "==" => VersionRange::new(at, step(at)),
        "!=" => return Cond::Unknown,
        _ => return Cond::Unknown,
    };
    if var == VersionVar::Minor {
        // PY_MINOR_VERSION alone says nothing of Python 2 vs 4; keep it to 3.x.
        Cond::Version(range.intersect(&VersionRange::new(py(3, 0), py(4, 0))))
    } else {
        Cond::Version(range)
    }
}

/// `#  ifdef X` as (`ifdef`, `X`): the directive's word and the rest, trimmed.
pub fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some((&rest[..word_end], rest[word_end..].trim()))
}

/// CPython's own build flags: its Makefile defines them for the interpreter's core and its
/// built-in modules, and no extension build does unless its sources or flags say so. Argument
/// Clinic output keeps a statically allocated keyword tuple (`_kwtuple`) under
/// `#if defined(Py_BUILD_CORE) && !defined(Py_BUILD_CORE_MODULE)`; read as maybe compiled, it
/// was a false `static-local-pyobject` in every clinic function of a vendored copy
/// (backports.zstd) and of CPython's own modules. In CPython's core the tuple is an immortal
/// static object shared by design, so leaving it out hides nothing there either.
pub const CPYTHON_CORE_BUILD_FLAGS: &[&str] = &["Py_BUILD_CORE", "Py_BUILD_CORE_BUILTIN"];

/// The versions an `#if` / `#ifdef` / `#ifndef` / `#elif` line selects on its own, when it is
/// about versions.
/// Names a file switches off: a commented-out `#define NAME` at the start of a line
/// (`//#define MEMORY_DEBUG`, `/* #define X */`), and in a header an `#undef NAME` outside every
/// `#if` but an include guard (`#undef TRACE_LOG  /* Define to log. */`). A developer's toggle,
/// off as shipped: with no `#define` of it in the scan (`ProjectMacros::with_off_by_default`)
/// and none from the build, the code behind `#ifdef NAME` is not compiled. Likewise the
/// switch of a whole `.c` file included only under `#ifdef NAME` / `#if defined(NAME)`
/// (pyahocorasick's `#ifdef PYCALLS_INJECT_FAULTS` / `#include "pycallfault/pycallfault.c"`,
/// a test build's `-D`), unless the name is one a configure script, the platform or Python
/// defines (see [`may_come_from_outside`]): those stay unknown.
pub fn off_by_default_hints(text: &str, header: bool) -> Vec<String> {
    fn name_after<'t>(rest: &'t str, word: &str) -> Option<&'t str> {
        let rest = rest.trim_start().strip_prefix('#')?.trim_start();
        let rest = rest.strip_prefix(word)?;
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
    }
    let mut names = Vec::new();
    // Open `#if`s; whether the outermost is an include guard (`#ifndef X` then `#define X`).
    let mut depth = 0usize;
    let mut guard: Option<String> = None;
    let mut guarded = false;
    // Per open `#if`: the name it tests alone (`#ifdef NAME`, `#if defined(NAME)`), until an
    // `#else` or `#elif`.
    let mut switches: Vec<Option<&str>> = Vec::new();
    // Every line read below has a `#` (a directive, or a commented-out `#define`).
    for line in lines_containing(text, b'#') {
        let trimmed = line.trim_start();
        if let Some(comment) = trimmed
            .strip_prefix("//")
            .or_else(|| trimmed.strip_prefix("/*"))
        {
            if let Some(name) = name_after(comment, "define") {
                names.push(name.to_string());
            }
            continue;
        }
        let Some((word, arg)) = directive(line) else {
            continue;
        };
        match word {
            "if" | "ifdef" | "ifndef" => {
                if depth == 0 && word == "ifndef" {
                    guard = Some(arg.trim().to_string());
                }
                depth += 1;
                switches.push(tested_name(word, arg));
            }
            "else" | "elif" => {
                if let Some(top) = switches.last_mut() {
                    *top = None;
                }
            }
            "endif" => {
                depth = depth.saturating_sub(1);
                switches.pop();
            }
            "include" => {
                let target = arg.trim().trim_matches('"');
                let source_file = arg.trim_start().starts_with('"')
                    && [".c", ".cc", ".cpp"].iter().any(|e| target.ends_with(e));
                if let Some(Some(name)) = switches.last().filter(|_| source_file) {
                    if !may_come_from_outside(name) {
                        names.push((*name).to_string());
                    }
                }
            }
            "define" if depth == 1 && !guarded => {
                guarded = guard
                    .as_deref()
                    .is_some_and(|g| arg.trim_start().starts_with(g));
            }
            "undef" if header && (depth == 0 || (depth == 1 && guarded)) => {
                if let Some(name) = name_after(line, "undef") {
                    names.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    names
}

/// The lines of `text`, split as `str::lines` splits them, that contain `byte`, in order. A
/// line scan that reads only directives skips the other lines with `memchr` instead of
/// looking at each: on CPython's sources the switched-off names' scan cost 0.9 % of `check`.
pub fn lines_containing(text: &str, byte: u8) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + memchr::memchr(byte, bytes.get(from..)?)?;
        let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
        let line = match memchr::memchr(b'\n', &bytes[at..]) {
            // `str::lines` drops a `\r` before the `\n`, not one that ends the text.
            Some(i) => {
                from = at + i + 1;
                let line = &text[start..at + i];
                line.strip_suffix('\r').unwrap_or(line)
            }
            None => {
                from = bytes.len();
                &text[start..]
            }
        };
        Some(line)
    })
}

/// The name `#ifdef NAME` or `#if defined(NAME)` / `#if defined NAME` tests, alone.
fn tested_name<'t>(word: &str, arg: &'t str) -> Option<&'t str> {
    let arg = arg.split("//").next()?.split("/*").next()?.trim();
    let name = match word {
        "ifdef" => arg,
        "if" => {
            let rest = arg.strip_prefix("defined")?.trim();
            match rest.strip_prefix('(') {
                Some(inner) => inner.strip_suffix(')')?.trim(),
                None => rest,
            }
        }
        _ => return None,
    };
    let is_name = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then_some(name)
}

/// A name that a configure script (`HAVE_*`, `SIZEOF_*`, `WITH_*`, `ENABLE_*`, `USE_*`), the
/// compiler or platform (a leading underscore, lower case: `_WIN32`, `__APPLE__`, `linux`,
/// `MS_WINDOWS`, `WIN32`) or Python (`Py_*`, `PY_*`, `PYPY_VERSION`) may define where the scan cannot see it:
/// undefined in the scan, it is unknown, not off.
fn may_come_from_outside(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "_", "HAVE_", "SIZEOF_", "WITH_", "ENABLE_", "USE_", "Py_", "PY_", "PYPY", "MS_", "WIN",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || name.chars().any(|c| c.is_ascii_lowercase())
}

pub fn directive_versions(word: &str, arg: &str, macros: &VersionMacros) -> Option<VersionRange> {
    let cond = match word {
        "if" | "elif" => evaluate(arg, macros),
        "ifdef" => evaluate(&format!("defined({arg})"), macros),
        "ifndef" => evaluate(&format!("!defined({arg})"), macros),
        _ => Cond::Unknown,
    };
    match cond {
        Cond::Version(r) => Some(r),
        Cond::Unknown => None,
    }
}

/// Adds to `macros` the object-like macros `text` defines only under a version condition
/// (`#define IS_PY3K` inside `#if PY_MAJOR_VERSION >= 3`), for reading another file's
/// `#ifdef IS_PY3K`. A line scan: cheap, and wrong only where the pre-pass is too.
pub fn collect_version_macros(text: &str, macros: &mut VersionMacros) {
    // (range of the enclosing branch, versions earlier branches took) per open `#if`.
    let mut open: Vec<(VersionRange, Option<VersionRange>)> = Vec::new();
    for line in text.lines() {
        let Some((word, arg)) = directive(line) else {
            continue;
        };
        let parent = open.last().map_or(VersionRange::ALL, |o| o.0);
        match word {
            "if" | "ifdef" | "ifndef" => {
                let own = directive_versions(word, arg, macros);
                open.push((own.unwrap_or(VersionRange::ALL).intersect(&parent), own));
            }
            "elif" | "else" => {
                let grand = open
                    .len()
                    .checked_sub(2)
                    .map_or(VersionRange::ALL, |i| open[i].0);
                if let Some(top) = open.last_mut() {
                    let own = if word == "else" {
                        Some(VersionRange::ALL)
                    } else {
                        directive_versions(word, arg, macros)
                    };
                    let range = match (own, top.1) {
                        (Some(r), Some(taken)) => r.intersect(&taken.complement()),
                        _ => VersionRange::ALL,
                    };
                    top.1 = match (top.1, own) {
                        (Some(t), Some(r)) => Some(t.hull(&r)),
                        _ => None,
                    };
                    top.0 = range.intersect(&grand);
                }
            }
            "endif" => {
                open.pop();
            }
            "define" if !parent.is_all() => {
                let name: String = arg
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && !arg[name.len()..].starts_with('(') {
                    macros.insert(name, parent);
                }
            }
            _ => {}
        }
    }
}

/// Evaluates the text after `#if` / `#elif`.
pub fn evaluate(expr: &str, macros: &VersionMacros) -> Cond {
    evaluate_with(expr, macros, &MacroValues::default()).0
}

/// [`evaluate`], with the values of the file's macros; also says whether the result is exact
/// (`false` when part of the condition was unknown and left out).
pub fn evaluate_with(expr: &str, macros: &VersionMacros, values: &MacroValues) -> (Cond, bool) {
    let Some(toks) = lex(expr) else {
        return (Cond::Unknown, false);
    };
    if toks.is_empty() {
        return (Cond::Unknown, false);
    }
    let mut parser = Parser {
        toks,
        pos: 0,
        macros,
        values,
        inexact: false,
    };
    match parser.or_expr() {
        Some(v) if parser.pos >= parser.toks.len() => (v.cond(), !parser.inexact),
        _ => (Cond::Unknown, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_turned_off() {
        let c = "//#define MEMORY_DEBUG\n  /* #define VERBOSE */\n// # define SPACED 1\n\
                 // define NOT_A_DIRECTIVE\n#undef IN_C_FILE\n";
        assert_eq!(
            off_by_default_hints(c, false),
            ["MEMORY_DEBUG", "VERBOSE", "SPACED"]
        );
        let h = "#ifndef G_H\n#define G_H\n#undef TRACE_LOG /* Define to log. */\n\
                 #ifdef X\n#undef INSIDE_AN_IF\n#endif\n#endif\n#undef AT_TOP\n";
        assert_eq!(off_by_default_hints(h, true), ["TRACE_LOG", "AT_TOP"]);
        // Not an include guard: the `#undef` is under a real condition.
        let h = "#ifndef FEATURE\n#undef UNDER_FEATURE\n#endif\n";
        assert!(off_by_default_hints(h, true).is_empty());
    }

    #[test]
    fn source_files_included_under_a_switch() {
        let c = "#ifdef PYCALLS_INJECT_FAULTS\n#include \"pycallfault/pycallfault.c\"\n#endif\n\
                 #if defined(SELF_TEST) // tests\n#  include \"selftest.c\"\n#endif\n\
                 #ifdef HAVE_OPENSSL\n#include \"ssl.c\"\n#endif\n\
                 #ifdef _WIN32\n#include \"win.c\"\n#endif\n\
                 #ifdef PYPY_VERSION\n#include \"pypy.c\"\n#endif\n\
                 #ifdef DEBUG_HEADERS\n#include \"debug.h\"\n#endif\n\
                 #ifdef FAST\n#include \"fast.c\"\n#else\n#include \"slow.c\"\n#endif\n\
                 #if defined(A) && defined(B)\n#include \"both.c\"\n#endif\n";
        // Configure, platform and Python names stay unknown; a header, an `#else` branch and a
        // compound test give no hint.
        assert_eq!(
            off_by_default_hints(c, false),
            ["PYCALLS_INJECT_FAULTS", "SELF_TEST", "FAST"]
        );
    }

    fn eval(text: &str) -> Cond {
        evaluate(text, &VersionMacros::new())
    }

    #[test]
    fn version_tests() {
        assert_eq!(
            eval("PY_VERSION_HEX >= 0x030C0000"),
            Cond::Version(VersionRange::at_least(py(3, 12)))
        );
        // 3.9.0a4: every released 3.9 is above it.
        assert_eq!(
            eval("PY_VERSION_HEX < 0x030900A4"),
            Cond::Version(VersionRange::below(py(3, 9)))
        );
        assert_eq!(
            eval("PY_VERSION_HEX >= 0x030D00A6"),
            Cond::Version(VersionRange::at_least(py(3, 13)))
        );
        // 3.11.2: 3.11.0 and 3.11.1 compile the code, later 3.11s do not.
        assert_eq!(
            eval("PY_VERSION_HEX < 0x030B0200"),
            Cond::Version(VersionRange::below(py(3, 12)))
        );
        assert_eq!(
            eval("PY_MAJOR_VERSION < 3"),
            Cond::Version(VersionRange::below(py(3, 0)))
        );
        assert_eq!(
            eval("PY_MAJOR_VERSION >= 3"),
            Cond::Version(VersionRange::at_least(py(3, 0)))
        );
        assert_eq!(
            eval("PY_MAJOR_VERSION > 3 || (PY_MAJOR_VERSION == 3 && PY_MINOR_VERSION >= 12)"),
            Cond::Version(VersionRange::at_least(py(3, 12)))
        );
        assert_eq!(
            eval("!defined(PYPY_VERSION) && PY_VERSION_HEX >= 0x030D0000"),
            Cond::Version(VersionRange::at_least(py(3, 13)))
        );
        assert_eq!(eval("defined(HAVE_FOO)"), Cond::Unknown);
        assert_eq!(eval("0"), Cond::Version(VersionRange::EMPTY));
        assert_eq!(
            eval("Py_GIL_DISABLED || 1"),
            Cond::Version(VersionRange::ALL)
        );
        assert_eq!(eval("HAVE_Y && HAVE_X"), Cond::Unknown);
        // The free-threaded build's macro selects a build, not versions.
        assert_eq!(
            eval("defined(Py_GIL_DISABLED) && HAVE_X"),
            Cond::Version(VersionRange::build(true))
        );
        assert_eq!(
            eval("!defined(Py_GIL_DISABLED)"),
            Cond::Version(VersionRange::build(false))
        );
        assert_eq!(
            eval("defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030E0000"),
            Cond::Version(VersionRange::build(true).intersect(&VersionRange::at_least(py(3, 14))))
        );
    }

    #[test]
    fn version_macros_from_another_file() {
        let mut macros = VersionMacros::new();
        collect_version_macros(
            "#if PY_MAJOR_VERSION >= 3\n#define PY3K\n#define MOD_INIT(n) PyInit_##n\n#else\n#define PY2K\n#endif\n",
            &mut macros,
        );
        assert_eq!(macros.get("PY3K"), Some(&VersionRange::at_least(py(3, 0))));
        assert_eq!(macros.get("PY2K"), Some(&VersionRange::below(py(3, 0))));
        assert!(!macros.contains_key("MOD_INIT"));
        assert_eq!(
            evaluate("defined(PY3K)", &macros),
            Cond::Version(VersionRange::at_least(py(3, 0)))
        );
    }

    #[test]
    fn lines_containing_splits_as_lines_does() {
        for text in [
            "",
            "#",
            "a\n#b\nc",
            "#if X\r\n  y;\r\n#endif\r\n",
            "x # y # z\n\n##\n",
            "#define A 1\r",
            "no hash\nat all\n",
            "\n#\n\r\n#\r\r\n",
            "tail #",
            "é#ü\n#ß\r\n",
        ] {
            let expected: Vec<&str> = text.lines().filter(|l| l.contains('#')).collect();
            let got: Vec<&str> = lines_containing(text, b'#').collect();
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn macro_values_over_the_headers_values() {
        // The scan's headers: `USE_X` is 1 on every Python, `LEVEL` 0 before 3.12 and 2 after.
        let mut headers = rustc_hash::FxHashMap::default();
        headers.insert("USE_X".to_string(), vec![(VersionRange::ALL, 1)]);
        headers.insert(
            "LEVEL".to_string(),
            vec![
                (VersionRange::ALL, 0),
                (VersionRange::at_least(py(3, 12)), 2),
            ],
        );
        let macros = VersionMacros::new();
        let eval = |text: &str, values: &MacroValues| evaluate_with(text, &macros, values).0;
        let mut values = MacroValues::over(&headers);
        assert!(!values.is_empty());
        assert_eq!(eval("USE_X", &values), Cond::Version(VersionRange::ALL));
        assert_eq!(
            eval("LEVEL", &values),
            Cond::Version(VersionRange::at_least(py(3, 12)))
        );
        // The file's own definition comes after the header's, on its versions only.
        values.define("LEVEL", Some(VersionRange::at_least(py(3, 13))), Some(0));
        assert_eq!(
            eval("LEVEL", &values),
            Cond::Version(VersionRange::new(py(3, 12), py(3, 13)))
        );
        // `#undef` in the file hides the header's value; the table itself is untouched.
        values.forget("USE_X");
        assert_eq!(eval("USE_X", &values), Cond::Unknown);
        assert_eq!(headers["USE_X"], vec![(VersionRange::ALL, 1)]);
        assert_eq!(
            eval("USE_X", &MacroValues::over(&headers)),
            Cond::Version(VersionRange::ALL)
        );
        assert!(MacroValues::over(&rustc_hash::FxHashMap::default()).is_empty());
    }

    #[test]
    fn macro_values() {
        let mut values = MacroValues::default();
        let macros = VersionMacros::new();
        let eval = |text: &str, values: &MacroValues| evaluate_with(text, &macros, values).0;
        // `#if PY_VERSION_HEX >= 0x030B0000` / `#define X 1` / `#else` / `#define X 0`.
        values.define("X", Some(VersionRange::at_least(py(3, 11))), Some(1));
        values.define("X", Some(VersionRange::below(py(3, 11))), Some(0));
        assert_eq!(
            eval("X", &values),
            Cond::Version(VersionRange::at_least(py(3, 11)))
        );
        assert_eq!(
            eval("!X", &values),
            Cond::Version(VersionRange::below(py(3, 11)))
        );
        assert_eq!(
            eval("defined(X)", &values),
            Cond::Version(VersionRange::ALL)
        );
        // A default, then a comparison on it.
        values.define("LEVEL", Some(VersionRange::ALL), Some(2));
        assert_eq!(
            eval("LEVEL >= 3", &values),
            Cond::Version(VersionRange::EMPTY)
        );
        assert_eq!(
            eval("LEVEL == 2", &values),
            Cond::Version(VersionRange::ALL)
        );
        // Redefined on part of the versions: the later definition wins there.
        values.define("LEVEL", Some(VersionRange::at_least(py(3, 13))), Some(0));
        assert_eq!(
            eval("LEVEL", &values),
            Cond::Version(VersionRange::below(py(3, 13)))
        );
        // Undefined, not a number, or defined on some versions only: unknown.
        values.forget("X");
        assert_eq!(eval("X", &values), Cond::Unknown);
        values.define("EXPR", Some(VersionRange::ALL), None);
        assert_eq!(eval("EXPR", &values), Cond::Unknown);
        values.define("SOME", Some(VersionRange::at_least(py(3, 12))), Some(0));
        assert_eq!(eval("SOME", &values), Cond::Unknown);
        // Nonzero on two separate ranges is no single range: taken as "may compile".
        values.define("GAP", Some(VersionRange::ALL), Some(1));
        values.define("GAP", Some(VersionRange::new(py(3, 9), py(3, 11))), Some(0));
        assert_eq!(eval("GAP", &values), Cond::Version(VersionRange::ALL));
        // Exactness: a feature test folded into a version test bounds it only.
        assert!(!evaluate_with("HAVE_X && PY_VERSION_HEX >= 0x030B0000", &macros, &values).1);
        assert!(evaluate_with("PY_VERSION_HEX >= 0x030B0000", &macros, &values).1);
        // Hostile numbers and operators end as unknown.
        for text in [
            "1/0",
            "99999999999999999999999",
            "1 % 0",
            "X X",
            "(((",
            "0x",
        ] {
            assert_eq!(eval(text, &values), Cond::Unknown, "{text}");
        }
        assert_eq!(integer_body(" (0x10) "), Some(16));
        assert_eq!(integer_body("1L"), Some(1));
        assert_eq!(integer_body("FOO + 1"), None);
        assert_eq!(integer_body(""), None);
    }

    #[test]
    fn values_of_a_header() {
        let header = "#ifndef CONF_H\n#define CONF_H 1\n#ifndef WITH_X\n#define WITH_X 0\n#endif\n\
                      #if PY_VERSION_HEX >= 0x030B0000\n#define HEAP 1\n#else\n#define HEAP 0\n#endif\n\
                      #ifdef _WIN32\n#define WIN 1\n#endif\n#define EXPR (WITH_X + 1)\n#endif\n";
        let values: HashMap<String, Option<Pieces>> = header_values(header).into_iter().collect();
        assert!(
            !values.contains_key("CONF_H"),
            "an include guard is no value"
        );
        assert_eq!(values["WITH_X"], Some(vec![(VersionRange::ALL, 0)]));
        assert_eq!(
            values["HEAP"],
            Some(vec![
                (VersionRange::at_least(py(3, 11)), 1),
                (VersionRange::below(py(3, 11)), 0)
            ])
        );
        assert_eq!(values["WIN"], None);
        assert_eq!(values["EXPR"], None);
        // Broken headers end.
        for text in [
            "#endif\n#else\n#define A 1\n",
            "#ifndef G\n#define G\nint x;\n",
            "#if 1/0\n",
        ] {
            header_values(text);
        }
    }

    #[test]
    fn version_macros() {
        let mut macros = VersionMacros::new();
        macros.insert("IS_PY3K".into(), VersionRange::at_least(py(3, 0)));
        assert_eq!(
            evaluate("defined(IS_PY3K)", &macros),
            Cond::Version(VersionRange::at_least(py(3, 0)))
        );
        assert_eq!(
            evaluate("!IS_PY3K", &macros),
            Cond::Version(VersionRange::below(py(3, 0)))
        );
    }
}
