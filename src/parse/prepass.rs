//! The same-length pre-pass. tree-sitter sees macros unexpanded and `#if` branches side by side;
//! a few CPython idioms then corrupt the tree. This pass rewrites them into text of exactly the
//! same length, so every byte offset (and so every line and column) still points into the
//! original file. It also records which Python versions compile each `#if` branch.

use super::condition::{evaluate_with, integer_body, Cond, MacroValues, VersionMacros};
use super::lexer::{tokenize, Tok, TokKind};
use super::macros::{definitions_in, ProjectMacros, Role};
use crate::version::{py, VersionRange};

/// The newest Python the pre-pass prefers when it must keep a single `#if` branch.
const NEWEST: crate::version::PyVersion = py(3, 99);

#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub start: usize,
    pub end: usize,
    pub range: VersionRange,
    /// The branch is not the first of a condition that is not about versions (`#else` of
    /// `#ifdef HAVE_X`). Positional initializers skip such alternatives.
    pub alternative: bool,
}

#[derive(Debug, Default, Clone)]
pub struct ConditionalMap {
    regions: Vec<Region>,
}

impl ConditionalMap {
    pub fn range_at(&self, offset: usize) -> VersionRange {
        self.regions
            .iter()
            .take_while(|r| r.start <= offset)
            .filter(|r| offset < r.end)
            .fold(VersionRange::ALL, |acc, r| acc.intersect(&r.range))
    }
    pub fn is_alternative(&self, offset: usize) -> bool {
        self.regions
            .iter()
            .take_while(|r| r.start <= offset)
            .any(|r| offset < r.end && r.alternative)
    }
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }
}

/// A use of a project macro the pre-pass rewrote out of sight (`BEGIN_SAVE` → `{`): the facts
/// layer expands its body at this place.
#[derive(Debug, Clone)]
pub struct MacroUse {
    pub name: String,
    /// The arguments of a function-like use, as written.
    pub args: Option<Vec<String>>,
    pub start: usize,
    pub end: usize,
}

pub struct Prepared {
    pub macro_uses: Vec<MacroUse>,
    pub text: Vec<u8>,
    pub conditionals: ConditionalMap,
    pub function_bodies: FunctionBodies,
}

/// Byte ranges of function bodies as the lexer counts braces (`)` then `{` at file scope, to
/// the matching `}`), `#if` branches followed as the pre-pass follows them. Beside a parse
/// error, tree-sitter may lift a body's declarations to file scope; these ranges say they are
/// locals.
#[derive(Debug, Clone, Default)]
pub struct FunctionBodies {
    /// Sorted, disjoint.
    ranges: Vec<(usize, usize)>,
}

impl FunctionBodies {
    fn new(mut ranges: Vec<(usize, usize)>) -> Self {
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self { ranges: merged }
    }
    /// `offset` lies inside a function body (after its `{`).
    pub fn contains(&self, offset: usize) -> bool {
        let i = self.ranges.partition_point(|r| r.0 < offset);
        i > 0 && offset < self.ranges[i - 1].1
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Brace {
    Block,
    Init,
}

#[derive(Debug, Clone, Default)]
struct Context {
    braces: Vec<Brace>,
    parens: usize,
    /// Where the function body the lexer is in opened (a `{` at file scope after `)`).
    body_start: Option<usize>,
}

impl Context {
    fn inside_construct(&self) -> bool {
        self.parens > 0 || self.braces.last() == Some(&Brace::Init)
    }
}

struct Branch {
    directive: (usize, usize),
    /// Token index just after the directive.
    first_tok: usize,
    cond: Cond,
    range: VersionRange,
}

struct Block {
    branches: Vec<Branch>,
    /// `#ifdef __cplusplus` (`Some(true)`) or `#ifndef __cplusplus` (`Some(false)`): a C
    /// compiler takes the other branch, and `extern "C" {` would otherwise unbalance braces.
    cplusplus: Option<bool>,
    endif: (usize, usize),
    endif_tok: usize,
    in_construct: bool,
    context_at_if: Context,
}

struct OpenBlock {
    block: Block,
    context_at_if: Context,
    context_after_first: Option<Context>,
    /// Union of the conditions of the branches so far, for the next `#else`.
    taken: Cond,
    parent_range: VersionRange,
    /// The versions alone decide the current branch (and, for an `#else`, every branch
    /// before it): a `#define` inside gives its value on those versions.
    exact: bool,
    /// `#ifndef NAME` / `#if !defined(NAME)`: the default of `NAME` (its `#define` inside)
    /// or an include guard.
    guard: Option<String>,
    /// Still in the first branch, and it began with `#define` of the guarded name: an include
    /// guard, which decides nothing about what the header defines.
    guard_defined: bool,
    first_branch: bool,
}

/// `NAME` of `#ifndef NAME` or `#if !defined(NAME)`.
fn guarded_name(word: &str, rest: &str) -> Option<String> {
    let text: String = rest
        .split("/*")
        .next()
        .unwrap_or("")
        .split("//")
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let name = match word {
        "ifndef" => text.as_str(),
        "if" => text
            .strip_prefix("!defined(")
            .and_then(|t| t.strip_suffix(')'))
            .or_else(|| text.strip_prefix("!defined"))?,
        _ => return None,
    };
    let ident = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ident.then(|| name.to_string())
}

/// A `#define` of `name` here gives its value: every open branch is decided by the versions
/// alone, is the default branch of `name` itself, or is inside an include guard.
fn value_context_known(open: &[OpenBlock], name: &str) -> bool {
    open.iter().all(|ob| {
        ob.exact || (ob.first_branch && (ob.guard_defined || ob.guard.as_deref() == Some(name)))
    })
}

fn directive_word(text: &[u8]) -> (&str, &str) {
    let s = std::str::from_utf8(text).unwrap_or("");
    let rest = s.trim_start_matches('#').trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .unwrap_or(rest.len());
    (&rest[..end], &rest[end..])
}

pub fn prepare(src: &[u8]) -> Prepared {
    prepare_with(src, &ProjectMacros::default())
}

/// Line breaks as a C compiler reads them, in text of the same length. tree-sitter-c and the
/// lexer know only LF: a lone CR (old Mac files) becomes LF, and a backslash before CR LF
/// (a continued string literal or macro in a Windows file) becomes space, backslash, LF, so
/// that the continuation is one and the next line starts at the same column. A plain CR LF is
/// left alone: the CR is white space to both.
pub fn normalize_line_breaks(src: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !src.contains(&b'\r') {
        return std::borrow::Cow::Borrowed(src);
    }
    let mut out = src.to_vec();
    for i in 0..out.len() {
        if out[i] != b'\r' {
            continue;
        }
        if out.get(i + 1) != Some(&b'\n') {
            out[i] = b'\n';
        } else if i > 0 && out[i - 1] == b'\\' {
            out[i - 1] = b' ';
            out[i] = b'\\';
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`prepare`], reading uses of the project's macros by their roles ([`ProjectMacros`]): the
/// scan's, or this file's own when the scan has none (one file, an editor buffer).
pub fn prepare_with(src: &[u8], shared: &ProjectMacros) -> Prepared {
    prepare_with_defines(src, shared, &[])
}

/// [`prepare_with`], with the macros the build defines (`true`) or undefines (`false`) on the
/// compiler's command line: `#ifdef` / `defined()` of them selects every Python or none, so
/// the branch the build does not compile is left out like `#if 0`.
pub fn prepare_with_defines(
    src: &[u8],
    shared: &ProjectMacros,
    build_defines: &[(String, bool)],
) -> Prepared {
    let normalized = normalize_line_breaks(src);
    let src: &[u8] = &normalized;
    let local;
    let project = if shared.is_empty() {
        // A scan of one file has no pre-scan: the file's own definitions and switches, and the
        // scan's, so that it reads as it would among other files.
        let text = String::from_utf8_lossy(src);
        local = ProjectMacros::new(definitions_in(src)).with_off_by_default(
            shared
                .off_by_default()
                .iter()
                .cloned()
                .chain(super::condition::off_by_default_hints(&text, false)),
        );
        &local
    } else {
        shared
    };
    let toks = tokenize(src);
    let mut out = src.to_vec();
    // tree-sitter ends a `#define`'s value at a block comment, so a comment followed by a
    // `\` continuation (`Py_INCREF(str);  /* keep it */  \`) leaves the rest of the body to be
    // read as code: numpy's `_ADDDOC`, defined inside a function, then closed the function
    // early. Comments inside a directive become spaces; nothing reads them.
    for tok in toks.iter().filter(|t| t.kind == TokKind::Directive) {
        blank_directive_comments(src, &mut out, tok.start, tok.end);
    }
    let mut ctx = Context::default();
    let mut open: Vec<OpenBlock> = Vec::new();
    let mut blocks: Vec<Block> = Vec::new();
    let mut regions: Vec<Region> = Vec::new();
    let mut macros: VersionMacros = build_defines
        .iter()
        .map(|(name, defined)| {
            let range = if *defined {
                VersionRange::ALL
            } else {
                VersionRange::EMPTY
            };
            (name.clone(), range)
        })
        .collect();
    // A switch the scan turns off and never defines is undefined, as a compiler sees it,
    // unless the build defines it.
    for name in project.off_by_default() {
        macros.entry(name.clone()).or_insert(VersionRange::EMPTY);
    }
    let mut values = MacroValues::over(project.value_table());
    for (name, _) in build_defines {
        values.forget(name);
    }
    let mut prev_sig: Option<u8> = None;
    // `prev_sig` forgets across directives; a function head followed by `#if` before its `{`
    // does not.
    let mut prev_code: Option<u8> = None;
    let mut bodies: Vec<(usize, usize)> = Vec::new();
    let mut statement_macros: Vec<(usize, usize)> = Vec::new();
    let mut rewrites: Vec<(usize, usize, &'static [u8])> = Vec::new();
    let mut semicolons: Vec<usize> = Vec::new();
    let mut macro_uses: Vec<MacroUse> = Vec::new();
    // `= {` at file scope: initializers that may be numeric tables (see [`thin_numeric_table`]).
    let mut file_scope_initializers: Vec<usize> = Vec::new();
    // A statement macro's arguments, already read as part of it.
    let mut skip_through: Option<usize> = None;

    for (index, tok) in toks.iter().enumerate() {
        if skip_through.is_some_and(|last| index <= last) {
            continue;
        }
        match tok.kind {
            TokKind::Directive => {
                let (word, rest) = directive_word(&src[tok.start..tok.end]);
                let parent_range = open.last().map_or(VersionRange::ALL, current_range);
                match word {
                    "if" | "ifdef" | "ifndef" => {
                        let (cond, exact) = match word {
                            "if" => evaluate_with(rest, &macros, &values),
                            "ifdef" => evaluate_with(
                                &format!("defined({})", rest.trim()),
                                &macros,
                                &values,
                            ),
                            _ => evaluate_with(
                                &format!("!defined({})", rest.trim()),
                                &macros,
                                &values,
                            ),
                        };
                        let exact = exact && matches!(cond, Cond::Version(_));
                        let range = cond.range().intersect(&parent_range);
                        open.push(OpenBlock {
                            block: Block {
                                branches: vec![Branch {
                                    directive: (tok.start, tok.end),
                                    first_tok: index + 1,
                                    cond,
                                    range,
                                }],
                                cplusplus: cplusplus_test(word, rest),
                                endif: (tok.end, tok.end),
                                endif_tok: index,
                                in_construct: ctx.inside_construct(),
                                context_at_if: ctx.clone(),
                            },
                            context_at_if: ctx.clone(),
                            context_after_first: None,
                            taken: cond,
                            parent_range,
                            exact,
                            guard: guarded_name(word, rest),
                            guard_defined: false,
                            first_branch: true,
                        });
                    }
                    "elif" | "else" => {
                        if let Some(ob) = open.last_mut() {
                            if ob.context_after_first.is_none() {
                                ob.context_after_first = Some(ctx.clone());
                            }
                            ctx = ob.context_at_if.clone();
                            let not_taken = match ob.taken {
                                Cond::Version(r) => r.complement(),
                                Cond::Unknown => VersionRange::ALL,
                            };
                            let (cond, exact) = if word == "elif" {
                                let (cond, exact) = evaluate_with(rest, &macros, &values);
                                (cond, exact && matches!(cond, Cond::Version(_)))
                            } else {
                                (Cond::Unknown, true)
                            };
                            // The branch's versions are exact when the earlier branches'
                            // union and its complement are single ranges.
                            let before_exact = match ob.taken {
                                Cond::Version(r) => {
                                    r.free_threaded.is_none()
                                        && (r.is_empty()
                                            || r.lo == 0
                                            || r.hi == crate::version::UNBOUNDED)
                                }
                                Cond::Unknown => false,
                            };
                            let union_exact = match (ob.taken, cond) {
                                (Cond::Version(a), Cond::Version(b)) => {
                                    b.free_threaded.is_none()
                                        && (a.is_empty()
                                            || b.is_empty()
                                            || (a.lo <= b.hi && b.lo <= a.hi))
                                }
                                _ => word == "else",
                            };
                            ob.exact = ob.exact && exact && before_exact && union_exact;
                            ob.first_branch = false;
                            let own = cond.range().intersect(&not_taken);
                            ob.taken = match (ob.taken, cond) {
                                (Cond::Version(a), Cond::Version(b)) => Cond::Version(a.hull(&b)),
                                _ => Cond::Unknown,
                            };
                            let kind = if matches!(cond, Cond::Unknown) && own.is_all() {
                                Cond::Unknown
                            } else {
                                Cond::Version(own)
                            };
                            ob.block.branches.push(Branch {
                                directive: (tok.start, tok.end),
                                first_tok: index + 1,
                                cond: kind,
                                range: own.intersect(&ob.parent_range),
                            });
                        }
                    }
                    "endif" => {
                        if let Some(mut ob) = open.pop() {
                            if let Some(after_first) = ob.context_after_first.take() {
                                ctx = after_first;
                            }
                            ob.block.endif = (tok.start, tok.end);
                            ob.block.endif_tok = index;
                            close_regions(&ob.block, &mut regions);
                            blocks.push(ob.block);
                        }
                    }
                    "undef" => {
                        let name: String = rest
                            .trim_start()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        values.forget(&name);
                    }
                    "define" => {
                        let range = parent_range;
                        let text = rest.trim_start();
                        let name_len = text
                            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                            .unwrap_or(text.len());
                        let (name, after) = text.split_at(name_len);
                        if !name.is_empty() && !after.starts_with('(') {
                            if value_context_known(&open, name) {
                                values.define(name, Some(range), integer_body(after));
                            } else {
                                values.forget(name);
                            }
                            if let Some(ob) = open.last_mut() {
                                if ob.first_branch && ob.guard.as_deref() == Some(name) {
                                    ob.guard_defined = true;
                                }
                            }
                        }
                        if !range.is_all() {
                            let name: String = rest
                                .trim_start()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            let after = &rest.trim_start()[name.len()..];
                            if !name.is_empty() && !after.starts_with('(') {
                                macros.insert(name, range);
                            }
                        }
                    }
                    _ => {}
                }
            }
            TokKind::Punct(c) => {
                match c {
                    b'{' => {
                        let init = matches!(prev_sig, Some(b'=') | Some(b','))
                            || (prev_sig == Some(b'{') && ctx.braces.last() == Some(&Brace::Init));
                        let init = init && (prev_sig != Some(b',') || ctx.inside_construct());
                        if ctx.braces.is_empty() && ctx.parens == 0 && prev_code == Some(b')') {
                            ctx.body_start = Some(tok.start);
                        }
                        if ctx.braces.is_empty() && ctx.parens == 0 && prev_sig == Some(b'=') {
                            file_scope_initializers.push(index);
                        }
                        ctx.braces
                            .push(if init { Brace::Init } else { Brace::Block });
                    }
                    b'}' => {
                        ctx.braces.pop();
                        if ctx.braces.is_empty() {
                            if let Some(start) = ctx.body_start.take() {
                                bodies.push((start, tok.end));
                            }
                        }
                    }
                    b'(' => ctx.parens += 1,
                    b')' => ctx.parens = ctx.parens.saturating_sub(1),
                    b';' if ctx.parens > 0 && ctx.braces.last() != Some(&Brace::Init) => {
                        // `for (;;)` keeps its parentheses; anything else means we lost track.
                    }
                    _ => {}
                }
                prev_sig = Some(c);
                prev_code = Some(c);
            }
            TokKind::Ident => {
                let statement_start = ctx.parens == 0
                    && matches!(
                        prev_sig,
                        None | Some(b';') | Some(b'}') | Some(b'{') | Some(b':')
                    );
                if ctx.braces.is_empty()
                    && statement_start
                    && !matches!(prev_sig, Some(b'{') | Some(b':'))
                {
                    if let Some(end) = macro_statement_end(&toks, index, src, project) {
                        statement_macros.push((tok.start, end));
                    }
                } else if statement_start
                    && ctx.body_start.is_some()
                    && ctx.braces.last() == Some(&Brace::Block)
                {
                    if let Some((last, reads_as, blocks)) = statement_macro(
                        &toks,
                        index,
                        src,
                        project,
                        &mut rewrites,
                        &mut semicolons,
                        &mut macro_uses,
                    ) {
                        // The braces the rewrite makes count like written ones.
                        for _ in 0..blocks {
                            match reads_as {
                                b'{' => ctx.braces.push(Brace::Block),
                                _ => {
                                    ctx.braces.pop();
                                }
                            }
                        }
                        prev_sig = Some(reads_as);
                        prev_code = Some(reads_as);
                        skip_through = Some(last);
                        continue;
                    }
                }
                prev_sig = Some(b'a');
                prev_code = Some(b'a');
            }
            TokKind::Literal => {
                prev_sig = Some(b'a');
                prev_code = Some(b'a');
            }
        }
        if tok.kind == TokKind::Directive {
            prev_sig = None;
        }
    }
    if let Some(start) = ctx.body_start {
        bodies.push((start, src.len()));
    }
    // Unterminated `#if`s (half-written files): their branches run to the end.
    while let Some(mut ob) = open.pop() {
        ob.block.endif = (src.len(), src.len());
        ob.block.endif_tok = toks.len();
        close_regions(&ob.block, &mut regions);
        blocks.push(ob.block);
    }

    for block in &blocks {
        patch_block(block, &toks, src, &mut out);
    }
    patch_macros(&toks, src, &mut out, project);
    for (start, end) in statement_macros {
        blank(&mut out, start, end);
    }
    for (start, end, text) in rewrites {
        write_padded(&mut out, start, end, text);
    }
    for at in semicolons {
        out[at] = b';';
    }
    for open in file_scope_initializers {
        thin_numeric_table(&toks, open, src, &mut out);
    }

    regions.sort_by_key(|r| r.start);
    Prepared {
        macro_uses,
        text: out,
        conditionals: ConditionalMap { regions },
        function_bodies: FunctionBodies::new(bodies),
    }
}

/// Tables of at least this many numbers are thinned by [`thin_numeric_table`].
const THIN_TABLE_MIN: usize = 64;

/// A file-scope initializer of plain integers (`static RE_UINT8 table[] = {0, 1, ...}`, or rows
/// of them, two levels deep at most) is data the facts keep opaque
/// (`facts::NUMERIC_TABLE_MIN`): nothing reads its entries. Its tree is still the largest
/// part of a table-heavy file (_regex_unicode.c's 426,000 numbers take a 115 MB tree), so a
/// table of [`THIN_TABLE_MIN`] numbers or more keeps only its first entries, enough for the
/// facts to see the same opaque table, and the rest up to its closing brace becomes spaces
/// (newlines kept). Anything else inside (a comment, a directive, a name, a sign, a float, a
/// character, a missing comma, deeper rows) leaves the table as written.
fn thin_numeric_table(toks: &[Tok], open: usize, src: &[u8], out: &mut [u8]) {
    let keep = crate::facts::NUMERIC_TABLE_MIN;
    let mut depth = 0usize;
    let mut values = 0usize;
    // After `{` or `,`: an entry or `}` may come; after an entry: `,` or `}`.
    let mut after_entry = false;
    // Where the kept part ends: after the outer list's first entries that hold `keep` numbers.
    let mut kept_end: Option<usize> = None;
    for tok in &toks[open..] {
        match tok.kind {
            TokKind::Punct(b'{') if !after_entry => {
                depth += 1;
                if depth > 3 {
                    return;
                }
            }
            TokKind::Punct(b'}') => {
                depth -= 1;
                after_entry = true;
                if depth == 0 {
                    if let Some(start) = kept_end.filter(|_| values >= THIN_TABLE_MIN) {
                        let blanked = &src[start..tok.start];
                        let plain = blanked.iter().all(|&b| {
                            b.is_ascii_hexdigit()
                                || matches!(
                                    b,
                                    b'x' | b'X' | b'u' | b'U' | b'l' | b'L' | b',' | b'{' | b'}'
                                )
                                || b.is_ascii_whitespace()
                        });
                        if plain {
                            blank(out, start, tok.start);
                        }
                    }
                    return;
                }
            }
            TokKind::Punct(b',') if after_entry => {
                after_entry = false;
                if depth == 1 && values >= keep && kept_end.is_none() {
                    kept_end = Some(tok.end);
                }
            }
            TokKind::Literal if !after_entry && is_plain_integer(&src[tok.start..tok.end]) => {
                values += 1;
                after_entry = true;
            }
            _ => return,
        }
    }
}

/// `123`, `0x7F`, with `u`/`l` suffixes: what tree-sitter reads as one `number_literal`.
fn is_plain_integer(text: &[u8]) -> bool {
    let digits_end = text
        .iter()
        .rposition(|b| !matches!(b, b'u' | b'U' | b'l' | b'L'))
        .map_or(0, |i| i + 1);
    let (number, suffix) = text.split_at(digits_end);
    let digits = match number {
        [b'0', b'x' | b'X', hex @ ..] if !hex.is_empty() => hex.iter().all(u8::is_ascii_hexdigit),
        [_, ..] => number.iter().all(u8::is_ascii_digit),
        [] => false,
    };
    digits && suffix.len() <= 3
}

fn cplusplus_test(word: &str, rest: &str) -> Option<bool> {
    let cond: String = rest
        .split("/*")
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match (word, cond.as_str()) {
        ("ifdef", "__cplusplus") | ("if", "defined(__cplusplus)") | ("if", "__cplusplus") => {
            Some(true)
        }
        ("ifndef", "__cplusplus") | ("if", "!defined(__cplusplus)") => Some(false),
        _ => None,
    }
}

fn current_range(ob: &OpenBlock) -> VersionRange {
    ob.block
        .branches
        .last()
        .map_or(VersionRange::ALL, |b| b.range)
}

fn close_regions(block: &Block, regions: &mut Vec<Region>) {
    let first_is_unknown = matches!(block.branches[0].cond, Cond::Unknown);
    for (i, branch) in block.branches.iter().enumerate() {
        let end = block
            .branches
            .get(i + 1)
            .map_or(block.endif.0, |b| b.directive.0);
        regions.push(Region {
            start: branch.directive.1,
            end,
            range: branch.range,
            alternative: i > 0 && first_is_unknown,
        });
    }
}

fn blank(out: &mut [u8], start: usize, end: usize) {
    let end = end.min(out.len());
    for b in &mut out[start..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
}

/// Blanks every `/* ... */` that opens and closes inside `start..end` (newlines kept).
fn blank_directive_comments(src: &[u8], out: &mut [u8], start: usize, end: usize) {
    use super::lexer::{skip_block_comment, skip_quoted};
    let end = end.min(src.len());
    let mut at = start;
    while at < end {
        match src[at] {
            // A literal (`#define P "a/*b"`) holds no comment.
            quote @ (b'"' | b'\'') => at = skip_quoted(src, at, quote),
            b'/' if src.get(at + 1) == Some(&b'*') => {
                let close = skip_block_comment(src, at);
                if close > end {
                    return;
                }
                // Only a comment the line continues after (`/* ... */ \`) cuts the value
                // short.
                let rest = &src[close..end];
                let continued = rest
                    .iter()
                    .position(|b| !matches!(b, b' ' | b'\t'))
                    .is_some_and(|i| rest[i] == b'\\');
                if continued {
                    blank(out, at, close);
                }
                at = close;
            }
            _ => at += 1,
        }
    }
}

/// `{` minus `}` over the tokens of one branch.
fn brace_delta(toks: &[Tok]) -> i64 {
    toks.iter()
        .map(|t| match t.kind {
            TokKind::Punct(b'{') => 1,
            TokKind::Punct(b'}') => -1,
            _ => 0,
        })
        .sum()
}

fn next_significant(toks: &[Tok], from: usize) -> Option<&Tok> {
    toks[from.min(toks.len())..]
        .iter()
        .find(|t| t.kind != TokKind::Directive)
}

/// Decides how tree-sitter will see one `#if` block.
fn patch_block(block: &Block, toks: &[Tok], src: &[u8], out: &mut [u8]) {
    let follows_with_brace =
        next_significant(toks, block.endif_tok + 1).is_some_and(|t| t.kind == TokKind::Punct(b'{'));
    let at_file_scope = block.context_at_if.braces.is_empty() && block.context_at_if.parens == 0;
    let starts_with_else = toks
        .get(block.branches[0].first_tok)
        .is_some_and(|t| t.kind == TokKind::Ident && &src[t.start..t.end] == b"else");
    if let Some(cplusplus_first) = block.cplusplus {
        for branch in &block.branches {
            blank(out, branch.directive.0, branch.directive.1);
        }
        blank(out, block.endif.0, block.endif.1);
        for (i, branch) in block.branches.iter().enumerate() {
            let end = block
                .branches
                .get(i + 1)
                .map_or(block.endif.0, |b| b.directive.0);
            if (i == 0) == cplusplus_first {
                blank(out, branch.directive.1, end);
            }
        }
        return;
    }
    // Alternatives that each open (or close) a block, such as
    //     #if PY_MAJOR_VERSION < 3
    //     else if (!PyString_Check(s)) {
    //     #else
    //     else {
    //     #endif
    // cannot both stay: one `}` follows for the two `{`, and the rest of the file would be
    // read as inside the function. A compiler takes one of them; so does the parse.
    let unbalanced_alternatives = block.branches.len() > 1
        && block.branches.iter().enumerate().any(|(i, b)| {
            let end_tok = block
                .branches
                .get(i + 1)
                .map_or(block.endif_tok, |next| next.first_tok.saturating_sub(1));
            brace_delta(&toks[b.first_tok.min(end_tok)..end_tok]) != 0
        });
    let choose_one = block.branches.len() > 1
        && (block.in_construct || (at_file_scope && follows_with_brace) || unbalanced_alternatives);
    // `#if X` / `if (a) {...} else` / `#endif` / `{...}`: the `else` belongs to the block
    // after the `#endif`, so the directives go and the statement reads as a whole.
    let ends_with_else = block.branches.len() == 1
        && block.endif_tok > 0
        && toks
            .get(block.endif_tok - 1)
            .is_some_and(|t| t.kind == TokKind::Ident && &src[t.start..t.end] == b"else");
    let merge = !choose_one
        && (block.in_construct
            || starts_with_else
            || ends_with_else
            || (at_file_scope && follows_with_brace));
    if !choose_one && !merge {
        return;
    }
    for branch in &block.branches {
        blank(out, branch.directive.0, branch.directive.1);
    }
    blank(out, block.endif.0, block.endif.1);
    if choose_one {
        // Keep the branch a current Python compiles; otherwise the first one.
        let keep = block
            .branches
            .iter()
            .position(|b| matches!(b.cond, Cond::Version(_)) && b.range.contains(NEWEST))
            .or_else(|| {
                block
                    .branches
                    .iter()
                    .position(|b| matches!(b.cond, Cond::Unknown))
            })
            .unwrap_or(0);
        for (i, branch) in block.branches.iter().enumerate() {
            if i != keep {
                let end = block
                    .branches
                    .get(i + 1)
                    .map_or(block.endif.0, |b| b.directive.0);
                blank(out, branch.directive.1, end);
            }
        }
    }
}

/// A project macro standing as a whole statement in a function body. One that opens or closes
/// a block becomes `{` or `;}` (its body is recorded for the facts layer to expand); one
/// used without `;` before a statement on a later line gets the `;`, written in the next
/// line's indentation so that no column moves.
fn statement_macro(
    toks: &[Tok],
    index: usize,
    src: &[u8],
    project: &ProjectMacros,
    rewrites: &mut Vec<(usize, usize, &'static [u8])>,
    semicolons: &mut Vec<usize>,
    uses: &mut Vec<MacroUse>,
) -> Option<(usize, u8, usize)> {
    let tok = &toks[index];
    let name = std::str::from_utf8(ident(src, tok)).ok()?;
    let role = project.role(name)?;
    let function_like = project.definition(name).is_some_and(|d| d.params.is_some());
    let last = if function_like {
        if toks.get(index + 1).map(|t| t.kind) != Some(TokKind::Punct(b'(')) {
            return None;
        }
        // Statements may be arguments of a project macro: only parentheses count here.
        macro_call_end(toks, index + 1)?
    } else {
        index
    };
    let end = toks[last].end;
    match role {
        Role::Open(blocks) | Role::Close(blocks) => {
            let blocks = usize::from(blocks);
            // One `{` or `}` per block, and a `;` first to end a statement left open before a
            // close, when the use is long enough for them all.
            let text: &'static [u8] = match role {
                Role::Open(_) if blocks <= end - tok.start => &b"{{{"[..blocks],
                Role::Close(_) if blocks < end - tok.start => &b";}}}"[..blocks + 1],
                Role::Close(_) if blocks <= end - tok.start => &b"}}}"[..blocks],
                _ => return None,
            };
            rewrites.push((tok.start, end, text));
            uses.push(MacroUse {
                name: name.to_string(),
                args: function_like.then(|| call_arguments(toks, index + 1, last, src)),
                start: tok.start,
                end,
            });
            let reads_as = if matches!(role, Role::Open(_)) {
                b'{'
            } else {
                b'}'
            };
            Some((last, reads_as, blocks))
        }
        Role::Statement | Role::Code => {
            // `CHAIN_EXC(x = f(); if (!x) goto err;);` or `FAULT(name, , x = -1);`: statements
            // or an empty slot among the arguments are no C expression. The use is blanked,
            // and the facts layer expands the body with the arguments from the record.
            if function_like && arguments_are_not_expressions(toks, index + 1, last) {
                rewrites.push((tok.start, end, b""));
                uses.push(MacroUse {
                    name: name.to_string(),
                    args: Some(call_arguments(toks, index + 1, last, src)),
                    start: tok.start,
                    end,
                });
                return Some((last, b';', 0));
            }
            let next = toks.get(last + 1)?;
            let starts_statement = matches!(
                next.kind,
                TokKind::Ident | TokKind::Directive | TokKind::Punct(b'{') | TokKind::Punct(b'}')
            );
            let gap = &src[end..next.start];
            // On the same line only a macro whose body is a whole statement (`#define
            // ARG_MANDATORY if (...) goto missing;` in `ARG_MANDATORY ARG_bool(x);`): a use of
            // a code macro there may be part of an expression.
            let same_line_statement = role == Role::Statement && !function_like;
            if !starts_statement || !(gap.contains(&b'\n') || same_line_statement) {
                return None;
            }
            // The `;` goes in the indentation of the next statement's line (white space only
            // from the last line break on: outside any comment), or right after the use.
            let line_start = end + gap.iter().rposition(|&b| b == b'\n').unwrap_or(0) + 1;
            if line_start < next.start
                && src[line_start..next.start]
                    .iter()
                    .all(|b| *b == b' ' || *b == b'\t')
            {
                semicolons.push(line_start);
            } else if gap[0] == b' ' || gap[0] == b'\t' {
                semicolons.push(end);
            } else {
                // No room: the use is blanked, and its body is expanded from the record.
                rewrites.push((tok.start, end, b""));
                uses.push(MacroUse {
                    name: name.to_string(),
                    args: function_like.then(|| call_arguments(toks, index + 1, last, src)),
                    start: tok.start,
                    end,
                });
            }
            Some((last, b';', 0))
        }
        _ => None,
    }
}

/// Whether the arguments between `toks[open]` (`(`) and `toks[close]` (`)`) hold a `;` outside
/// any bracket (statements passed to a macro) or an empty slot (`f(a, , b)`, `f(a, )`).
fn arguments_are_not_expressions(toks: &[Tok], open: usize, close: usize) -> bool {
    let mut depth = 0usize;
    let mut slot_empty = true;
    let mut commas = 0;
    for t in &toks[open + 1..close] {
        match t.kind {
            TokKind::Punct(b'(') | TokKind::Punct(b'[') | TokKind::Punct(b'{') => depth += 1,
            TokKind::Punct(b')') | TokKind::Punct(b']') | TokKind::Punct(b'}') => {
                depth = depth.saturating_sub(1)
            }
            TokKind::Punct(b';') if depth == 0 => return true,
            TokKind::Punct(b',') if depth == 0 => {
                if slot_empty {
                    return true;
                }
                slot_empty = true;
                commas += 1;
                continue;
            }
            _ => {}
        }
        slot_empty = false;
    }
    commas > 0 && slot_empty
}

/// The arguments between `toks[open]` (`(`) and `toks[close]` (`)`), split at top-level commas.
fn call_arguments(toks: &[Tok], open: usize, close: usize, src: &[u8]) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = toks[open].end;
    for t in &toks[open + 1..close] {
        match t.kind {
            TokKind::Punct(b'(') | TokKind::Punct(b'[') | TokKind::Punct(b'{') => depth += 1,
            TokKind::Punct(b')') | TokKind::Punct(b']') | TokKind::Punct(b'}') => {
                depth = depth.saturating_sub(1)
            }
            TokKind::Punct(b',') if depth == 0 => {
                args.push(
                    String::from_utf8_lossy(&src[start..t.start])
                        .trim()
                        .to_string(),
                );
                start = t.end;
            }
            _ => {}
        }
    }
    let last = String::from_utf8_lossy(&src[start..toks[close].start])
        .trim()
        .to_string();
    if !last.is_empty() || !args.is_empty() {
        args.push(last);
    }
    args
}

/// A macro call standing alone at file scope with no `;`, e.g. `DEFINE_GETTER(value)` or
/// `OP(NONE, load_none)`, followed by a new declaration on a later line: tree-sitter would glue
/// it to the next function head. Returns the end of the call. A project macro that is a whole
/// statement or code (`DECLARE_TYPES` expanding to declarations) counts without parentheses.
fn macro_statement_end(
    toks: &[Tok],
    index: usize,
    src: &[u8],
    project: &ProjectMacros,
) -> Option<usize> {
    let name = ident(src, &toks[index]);
    let object_like_statement = std::str::from_utf8(name).ok().is_some_and(|n| {
        matches!(project.role(n), Some(Role::Statement) | Some(Role::Code))
            && project.definition(n).is_some_and(|d| d.params.is_none())
    });
    if object_like_statement {
        let next = toks.get(index + 1)?;
        let same_line = !src[toks[index].end..next.start].contains(&b'\n');
        return (!same_line && next.kind == TokKind::Ident).then_some(toks[index].end);
    }
    // Upper-case names only: a lower-case word here is a type or a function head.
    if name.iter().any(|c| c.is_ascii_lowercase()) || name.len() < 2 {
        return None;
    }
    if toks.get(index + 1)?.kind != TokKind::Punct(b'(') {
        return None;
    }
    let close = call_end(toks, index + 1)?;
    let next = toks.get(close + 1)?;
    let same_line = !src[toks[close].end..next.start].contains(&b'\n');
    let starts_declaration = next.kind == TokKind::Ident || next.kind == TokKind::Directive;
    (!same_line && starts_declaration).then_some(toks[close].end)
}

fn ident<'a>(src: &'a [u8], tok: &Tok) -> &'a [u8] {
    &src[tok.start..tok.end]
}

/// What `Py_BEGIN_CRITICAL_SECTION(obj)` becomes: `{` opens the block, and a call of
/// `CRITICAL_SECTION_MARKER` keeps the locked object for the facts (`{_isolint_critsec(obj);`).
/// Always shorter than the original (the marker is shorter than the macro's name). An
/// argument that spans lines or holds a comment would move a newline: then only `{`.
fn critical_section_text(args: &[u8]) -> Vec<u8> {
    if args.iter().any(|&b| matches!(b, b'\n' | b'\r' | b'/')) {
        return b"{".to_vec();
    }
    let mut text = Vec::with_capacity(args.len() + 24);
    text.push(b'{');
    text.extend_from_slice(super::CRITICAL_SECTION_MARKER.as_bytes());
    text.push(b'(');
    text.extend_from_slice(args);
    text.extend_from_slice(b");");
    text
}

fn write_padded(out: &mut [u8], start: usize, end: usize, text: &[u8]) {
    debug_assert!(text.len() <= end - start);
    out[start..start + text.len()].copy_from_slice(text);
    for b in &mut out[start + text.len()..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
}

/// Writes the `slot`-th argument between `toks[open]` and `toks[close]` as a name of the same
/// length (`T_____`) when it is a type that is not a plain name (`char *`, `unsigned int`), on
/// one line.
fn type_argument_as_name(
    toks: &[Tok],
    open: usize,
    close: usize,
    slot: usize,
    src: &[u8],
    out: &mut [u8],
) {
    let mut bounds = vec![toks[open].end];
    let mut depth = 0usize;
    for t in &toks[open + 1..close] {
        match t.kind {
            TokKind::Punct(b'(') | TokKind::Punct(b'[') => depth += 1,
            TokKind::Punct(b')') | TokKind::Punct(b']') => depth = depth.saturating_sub(1),
            TokKind::Punct(b',') if depth == 0 => {
                bounds.push(t.start);
                bounds.push(t.end);
            }
            _ => {}
        }
    }
    bounds.push(toks[close].start);
    let (Some(&start), Some(&end)) = (bounds.get(slot * 2), bounds.get(slot * 2 + 1)) else {
        return;
    };
    let text = &src[start..end];
    let is_name = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let first = text.iter().position(|b| !b.is_ascii_whitespace());
    let last = text.iter().rposition(|b| !b.is_ascii_whitespace());
    let (Some(first), Some(last)) = (first, last) else {
        return;
    };
    let arg = &text[first..=last];
    let plain_name = arg.iter().all(is_name) && !TYPE_KEYWORDS.contains(&arg);
    if plain_name || arg.contains(&b'\n') || !arg.iter().all(|b| is_name(b) || b" *\t".contains(b))
    {
        return;
    }
    let at = start + first;
    out[at] = b'T';
    for b in &mut out[at + 1..=start + last] {
        *b = b'_';
    }
}

const TYPE_KEYWORDS: &[&[u8]] = &[
    b"char",
    b"short",
    b"int",
    b"long",
    b"float",
    b"double",
    b"signed",
    b"unsigned",
    b"void",
    b"_Bool",
];

/// The `)` closing a project macro's argument list at `toks[open]`, which may hold statements
/// and braces (`CHAIN_EXC(x = f(); if (!x) goto err;)`). A directive or 512 tokens end the
/// search: past those it is no argument list the pre-pass should rewrite.
fn macro_call_end(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate().skip(open).take(512) {
        match tok.kind {
            TokKind::Punct(b'(') => depth += 1,
            TokKind::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            TokKind::Directive => return None,
            _ => {}
        }
    }
    None
}

/// End of a macro call's argument list starting at `toks[open]` (which must be `(`).
fn call_end(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate().skip(open) {
        match tok.kind {
            TokKind::Punct(b'(') => depth += 1,
            TokKind::Punct(b')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            TokKind::Punct(b';') | TokKind::Punct(b'{') | TokKind::Punct(b'}') => return None,
            _ => {}
        }
    }
    None
}

const ATTRIBUTE_MACROS: &[&[u8]] = &[
    b"_Py_HOT_FUNCTION",
    b"Py_NO_INLINE",
    b"Py_ALWAYS_INLINE",
    b"_Py_NO_RETURN",
    b"Py_NO_RETURN",
    b"Py_EXPORTED_SYMBOL",
    b"Py_LOCAL_SYMBOL",
    b"Py_IMPORTED_SYMBOL",
    b"_Py_NO_SANITIZE_ADDRESS",
    b"_Py_NO_SANITIZE_THREAD",
    b"_Py_NO_SANITIZE_MEMORY",
    b"Py_GCC_ATTRIBUTE",
    b"Py_DEPRECATED",
    b"Py_ALIGNED",
    b"_Py_COMP_DIAG_PUSH",
    b"_Py_COMP_DIAG_POP",
    b"_Py_COMP_DIAG_IGNORE_DEPR_DECLS",
];

/// Every identifier of a file is looked up: a hash set built once, not a scan of the list.
static ATTRIBUTE_MACRO_SET: std::sync::LazyLock<rustc_hash::FxHashSet<&'static [u8]>> =
    std::sync::LazyLock::new(|| ATTRIBUTE_MACROS.iter().copied().collect());

fn patch_macros(toks: &[Tok], src: &[u8], out: &mut [u8], project: &ProjectMacros) {
    let project_role = |name: &[u8]| project.role_of(name);
    for (i, tok) in toks.iter().enumerate() {
        if tok.kind != TokKind::Ident {
            continue;
        }
        let name = ident(src, tok);
        let next = toks.get(i + 1);
        let next_is_paren = next.is_some_and(|t| t.kind == TokKind::Punct(b'('));
        match name {
            b"Py_BEGIN_CRITICAL_SECTION"
            | b"Py_BEGIN_CRITICAL_SECTION2"
            | b"Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST"
                if next_is_paren =>
            {
                if let Some(close) = call_end(toks, i + 1) {
                    let args = &src[toks[i + 1].end..toks[close].start];
                    write_padded(
                        out,
                        tok.start,
                        toks[close].end,
                        &critical_section_text(args),
                    );
                }
            }
            // `Py_END_CRITICAL_SECTION();`: the empty argument list goes with the name.
            b"Py_END_CRITICAL_SECTION"
            | b"Py_END_CRITICAL_SECTION2"
            | b"Py_END_CRITICAL_SECTION_SEQUENCE_FAST"
                if next_is_paren =>
            {
                match call_end(toks, i + 1) {
                    Some(close) => write_padded(out, tok.start, toks[close].end, b";}"),
                    None => write_padded(out, tok.start, tok.end, b";}"),
                }
            }
            b"Py_END_CRITICAL_SECTION_SEQUENCE_FAST" => {
                write_padded(out, tok.start, tok.end, b";}")
            }
            b"Py_BEGIN_ALLOW_THREADS"
            | b"_Py_BEGIN_SUPPRESS_IPH"
            | b"Py_BEGIN_CRITICAL_SECTION_SEQUENCE_FAST" => {
                write_padded(out, tok.start, tok.end, b"{")
            }
            b"Py_END_ALLOW_THREADS"
            | b"_Py_END_SUPPRESS_IPH"
            | b"Py_TRASHCAN_END"
            | b"Py_END_CRITICAL_SECTION"
            | b"Py_END_CRITICAL_SECTION2" => write_padded(out, tok.start, tok.end, b";}"),
            b"Py_BLOCK_THREADS" | b"Py_UNBLOCK_THREADS" => {
                write_padded(out, tok.start, tok.end, b";")
            }
            // `PyMem_New(char *, n)`, `PyMem_Resize(p, PyObject *, n)`, `va_arg(ap, unsigned
            // char *)`: a type is no expression, and tree-sitter loses the statement. The type
            // becomes a name of the same length; nothing reads it.
            b"PyMem_New" | b"PyMem_NEW" | b"PyMem_Resize" | b"PyMem_RESIZE" | b"va_arg"
                if next_is_paren =>
            {
                let type_slot = usize::from(name != b"PyMem_New" && name != b"PyMem_NEW");
                if let Some(close) = call_end(toks, i + 1) {
                    type_argument_as_name(toks, i + 1, close, type_slot, src, out);
                }
            }
            b"Py_TRASHCAN_BEGIN" | b"Py_TRASHCAN_SAFE_BEGIN" if next_is_paren => {
                if let Some(close) = call_end(toks, i + 1) {
                    write_padded(out, tok.start, toks[close].end, b"{");
                }
            }
            b"Py_TRASHCAN_SAFE_END" if next_is_paren => {
                if let Some(close) = call_end(toks, i + 1) {
                    write_padded(out, tok.start, toks[close].end, b";}");
                }
            }
            b"PyObject_HEAD" | b"PyObject_VAR_HEAD" => {
                let semicolon_follows = next.is_some_and(|t| t.kind == TokKind::Punct(b';'));
                let text: &[u8] = match (name, semicolon_follows) {
                    (b"PyObject_HEAD", false) => b"PyObject ob_base;",
                    (b"PyObject_HEAD", true) => b"PyObject ob_base",
                    (_, false) => b"PyVarObject ob_base;",
                    (_, true) => b"PyVarObject ob_base",
                };
                let text = if text.len() <= tok.end - tok.start {
                    text
                } else if semicolon_follows {
                    &b"PyObject ob"[..]
                } else {
                    &b"PyObject ob;"[..]
                };
                write_padded(out, tok.start, tok.end, text);
            }
            b"PyObject_HEAD_INIT" | b"PyVarObject_HEAD_INIT" if next_is_paren => {
                if let Some(close) = call_end(toks, i + 1) {
                    let comma_follows = toks.get(close + 1).is_some_and(|t| {
                        matches!(t.kind, TokKind::Punct(b',') | TokKind::Punct(b'}'))
                    });
                    let text: &[u8] = if comma_follows { b"{0}" } else { b"{0}," };
                    write_padded(out, tok.start, toks[close].end, text);
                }
            }
            b"_Thread_local" | b"thread_local" | b"_Py_thread_local" | b"Py_THREAD_LOCAL" => {
                write_padded(out, tok.start, tok.end, b"__thread")
            }
            // `EXPORT_MACRO PyMODINIT_FUNC PyInit_x(void)`: PyMODINIT_FUNC already carries the
            // visibility, and an unknown word before it breaks the function head.
            _ if next.is_some_and(|t| {
                t.kind == TokKind::Ident && ident(src, t) == b"PyMODINIT_FUNC"
            }) && !matches!(name, b"static" | b"extern" | b"inline") =>
            {
                write_padded(out, tok.start, tok.end, b"");
            }
            _ if ATTRIBUTE_MACRO_SET.contains(name) => {
                let end = if next_is_paren {
                    call_end(toks, i + 1).map(|c| toks[c].end)
                } else {
                    Some(tok.end)
                };
                if let Some(end) = end {
                    write_padded(out, tok.start, end, b"");
                }
            }
            _ if name.ends_with(b"_METHODDEF") && name.len() > 11 => {
                // Argument Clinic entries carry their own comma inside the macro.
                let needs_comma = next
                    .is_some_and(|t| t.kind == TokKind::Ident || t.kind == TokKind::Punct(b'{'))
                    && toks.get(i.wrapping_sub(1)).is_some_and(|p| {
                        matches!(
                            p.kind,
                            TokKind::Punct(b'{')
                                | TokKind::Punct(b',')
                                | TokKind::Ident
                                | TokKind::Directive
                        )
                    });
                if needs_comma {
                    out[tok.end - 1] = b',';
                }
            }
            _ => match project_role(name) {
                Some(Role::Blank) | Some(Role::Storage(_)) => {
                    let function_like = std::str::from_utf8(name)
                        .ok()
                        .and_then(|n| project.definition(n))
                        .is_some_and(|d| d.params.is_some());
                    let end = if function_like {
                        next_is_paren
                            .then(|| call_end(toks, i + 1).map(|c| toks[c].end))
                            .flatten()
                    } else {
                        Some(tok.end)
                    };
                    let keyword: &[u8] = match project_role(name) {
                        Some(Role::Storage(word)) => word.as_bytes(),
                        _ => b"",
                    };
                    if let Some(end) = end {
                        // The storage class stays when it fits (`MEM_STATIC` → `static`).
                        let text = if keyword.len() <= end - tok.start {
                            keyword
                        } else {
                            b""
                        };
                        write_padded(out, tok.start, end, text);
                    }
                }
                Some(Role::PassThrough) if next_is_paren => {
                    if let Some(close) = call_end(toks, i + 1) {
                        blank(out, tok.start, toks[i + 1].end);
                        let mut depth = 0usize;
                        for t in &toks[i + 1..close] {
                            match t.kind {
                                TokKind::Punct(b'(') => depth += 1,
                                TokKind::Punct(b')') => depth -= 1,
                                TokKind::Punct(b',') if depth == 1 => out[t.start] = b' ',
                                _ => {}
                            }
                        }
                        out[toks[close].start] = b' ';
                    }
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(src: &str) -> String {
        let p = prepare(src.as_bytes());
        assert_eq!(p.text.len(), src.len());
        String::from_utf8(p.text).unwrap()
    }

    fn with_header(header: &str, src: &str) -> String {
        let shared = ProjectMacros::new(definitions_in(header.as_bytes()));
        let out = String::from_utf8(prepare_with(src.as_bytes(), &shared).text).unwrap();
        assert_eq!(out.len(), src.len());
        out
    }

    #[test]
    fn a_type_argument_of_pymem_new_becomes_a_name() {
        let src = "void f(void) {\n    unsigned char *c = va_arg(ap, unsigned char *);\n    char **k = PyMem_New(char *, n);\n    size_t *l = PyMem_New(size_t, n);\n    p = PyMem_Resize(p, unsigned int, m);\n}\n";
        assert_eq!(
            prep(src),
            "void f(void) {\n    unsigned char *c = va_arg(ap, T______________);\n    char **k = PyMem_New(T_____, n);\n    size_t *l = PyMem_New(size_t, n);\n    p = PyMem_Resize(p, T___________, m);\n}\n"
        );
        let parsed = crate::parse::parse(src.as_bytes()).unwrap();
        assert_eq!(parsed.errors.count(), 0);
    }

    #[test]
    fn attribute_macros_from_another_file() {
        let header =
            "#define HIDDEN __attribute__((visibility(\"hidden\")))\n#define RAISES\n#define N 3\n";
        let out = with_header(header, "HIDDEN PyObject *cb = NULL;");
        assert_eq!(out, "       PyObject *cb = NULL;");
    }

    #[test]
    fn block_storage_and_argument_macros_from_another_file() {
        let header = concat!(
            "#define PROJ_INTERNAL static\n",
            "#define BEGIN_SAVE_EXC { PyObject *t, *v, *tb; PyErr_Fetch(&t, &v, &tb);\n",
            "#define END_SAVE_EXC PyErr_Restore(t, v, tb); }\n",
            "#define PREAMBLE PyGILState_STATE st = PyGILState_Ensure();\n",
            "#define EXPORT(ret, name, args) ret name args\n",
        );
        let src = concat!(
            "PROJ_INTERNAL int f(void)\n{\n    BEGIN_SAVE_EXC\n    x = 1;\n    END_SAVE_EXC\n",
            "    PREAMBLE\n    y = 2;\n}\n",
            "EXPORT(PyMODINIT_FUNC, PyInit_m, (void))\n{\n}\n",
        );
        let out = with_header(header, src);
        assert!(out.starts_with("static        int f"), "{out}");
        assert!(out.contains("    {             \n"), "{out}");
        assert!(out.contains("    ;}          \n"), "{out}");
        assert!(out.contains("    PREAMBLE\n;   y = 2;"), "{out}");
        assert!(
            out.contains("       PyMODINIT_FUNC  PyInit_m  (void) \n"),
            "{out}"
        );
        let parsed = crate::parse::parse_with(
            src.as_bytes(),
            &ProjectMacros::new(definitions_in(header.as_bytes())),
        )
        .unwrap();
        assert_eq!(
            parsed.errors.count(),
            0,
            "{}",
            parsed.tree.root_node().to_sexp()
        );
        assert_eq!(parsed.macro_uses.len(), 2);
    }

    #[test]
    fn line_breaks_as_a_compiler_reads_them() {
        let src = b"#define A 1 \\\r\n  + 2\r\nchar *s = \"a\\\r\nb\";\rint x;\r";
        let out = normalize_line_breaks(src);
        assert_eq!(out.len(), src.len());
        assert_eq!(
            &out[..],
            b"#define A 1  \\\n  + 2\r\nchar *s = \"a \\\nb\";\nint x;\n"
        );
        let parsed = crate::parse::parse(src).unwrap();
        assert_eq!(
            parsed.errors.count(),
            0,
            "{}",
            parsed.tree.root_node().to_sexp()
        );
        assert!(matches!(
            normalize_line_breaks(b"int x;\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn table(values: usize, row: usize) -> String {
        let numbers: Vec<String> = (0..values).map(|i| format!("0x{i:02X}")).collect();
        let body: Vec<String> = numbers
            .chunks(row)
            .map(|r| {
                if row == 1 {
                    r[0].clone()
                } else {
                    format!("{{{}}}", r.join(", "))
                }
            })
            .collect();
        format!(
            "static RE_UINT8 t[] = {{\n    {},\n}};\nint after;\n",
            body.join(",\n    ")
        )
    }

    #[test]
    fn large_numeric_tables_keep_their_first_entries() {
        let src = table(300, 1);
        let out = prep(&src);
        let kept = &out[..out.find("0x1F,").unwrap() + 5];
        assert_eq!(kept, &src[..kept.len()], "the first 32 entries stay");
        assert!(!out.contains("0x20"), "{out}");
        assert!(out.trim_end().ends_with("};\nint after;"), "{out}");
        assert_eq!(out.matches('\n').count(), src.matches('\n').count());
        let parsed = crate::parse::parse(out.as_bytes()).unwrap();
        assert_eq!(parsed.errors.count(), 0);
        // Rows of numbers: whole rows are kept until 32 numbers are.
        let rows = prep(&table(300, 4));
        assert!(rows.contains("{0x1C, 0x1D, 0x1E, 0x1F},"), "{rows}");
        assert!(!rows.contains("0x20"), "{rows}");
    }

    #[test]
    fn other_tables_are_left_as_written() {
        for src in [
            table(60, 1),
            table(300, 1).replace("0x05", "-5"),
            table(300, 1).replace("0x05", "'a'"),
            table(300, 1).replace("0x05", "1.5"),
            table(300, 1).replace("0x05", "N"),
            table(300, 1).replace("0x05,", "0x05"),
            table(300, 1).replace("0x40", "/* PyFoo */ 0x40"),
            table(300, 1).replace("0x40,", "0x40,\n#if X\n1,\n#endif\n"),
            table(300, 1).replace("= {", "= {{{{"),
            format!("void f(void) {{\n{}}}\n", table(300, 1)),
        ] {
            // Each case's last entry: 60 values, or 300.
            let last = if src.contains("0x12B") {
                "0x12B"
            } else {
                "0x3B"
            };
            assert!(prep(&src).contains(last), "{src}");
        }
    }

    #[test]
    fn keeps_length_and_lines() {
        let src = "struct s {\n    PyObject_HEAD\n    int x;\n};\n";
        let out = prep(src);
        assert!(out.contains("PyObject ob;"), "{out}");
        assert_eq!(out.matches('\n').count(), src.matches('\n').count());
    }

    #[test]
    fn head_init_gets_comma() {
        let out =
            prep("static PyTypeObject T = {\n    PyVarObject_HEAD_INIT(NULL, 0)\n    \"m.T\",\n};");
        assert!(out.contains("{0},"), "{out}");
    }

    #[test]
    fn directive_in_initializer_is_blanked_and_version_recorded() {
        let src = "static PyModuleDef_Slot s[] = {\n{Py_mod_exec, e},\n#if PY_VERSION_HEX >= 0x030C0000\n{Py_mod_multiple_interpreters, X},\n#endif\n{0, NULL}};\n";
        let p = prepare(src.as_bytes());
        let out = String::from_utf8(p.text.clone()).unwrap();
        assert!(!out.contains("#if"), "{out}");
        let at = src.find("Py_mod_multiple").unwrap();
        assert_eq!(
            p.conditionals.range_at(at),
            VersionRange::at_least(py(3, 12))
        );
        assert_eq!(p.conditionals.range_at(0), VersionRange::ALL);
    }

    #[test]
    fn function_header_choice_keeps_python3() {
        let src = "#if PY_MAJOR_VERSION >= 3\nPyMODINIT_FUNC PyInit_m(void)\n#else\nPyMODINIT_FUNC initm(void)\n#endif\n{ return 0; }\n";
        let out = prep(src);
        assert!(out.contains("PyInit_m"));
        assert!(!out.contains("initm"), "{out}");
    }

    #[test]
    fn file_scope_conditionals_are_left_alone() {
        let src = "#if PY_MAJOR_VERSION < 3\nstatic PyObject *x;\n#endif\n";
        let p = prepare(src.as_bytes());
        assert_eq!(p.text, src.as_bytes());
        assert!(p
            .conditionals
            .range_at(src.find("static").unwrap())
            .python2_only());
    }
}
