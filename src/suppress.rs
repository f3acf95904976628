//! Inline suppressions in C comments:
//!
//! ```c
//! static PyObject *cache;  /* isolint: ignore[global-pyobject] filled once, read-only after */
//! // isolint: ignore-next-line[ISO003] the type is immortal and never mutated
//! // isolint: ignore-file[could-be-const] generated tables
//! ```
//!
//! A suppression must give a reason: one without is itself a finding (`invalid-suppression`),
//! so that a CI gate cannot be silenced by a bare comment. A suppression that no longer
//! matches any finding is reported (`unused-suppression`), so stale ones do not pile up and
//! hide a regression later.

use crate::finding::{Finding, Location};
use crate::rules::{declare_rule, Ctx, RuleInfo};
use crate::version::VersionRange;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn no_check(_: &mut Ctx) {}

declare_rule! {
    /// ## What it does
    /// Checks `isolint: ignore[...]`, `ignore-next-line[...]` and `ignore-file[...]` comments.
    ///
    /// ## Why is this bad?
    /// A suppression silences a finding about process-global state. Without the rules it names
    /// and a reason, a reviewer cannot tell what was accepted and why. The comment still
    /// suppresses what it names, so this finding takes the place of the one it hid.
    ///
    /// ## Example
    /// ```c
    /// static PyObject *cache; /* isolint: ignore[global-pyobject] */
    /// ```
    ///
    /// ## Use instead
    /// ```c
    /// static PyObject *cache; /* isolint: ignore[global-pyobject] immortal interned string */
    /// ```
    pub static INVALID_SUPPRESSION = {
        id: "ISO900",
        name: "invalid-suppression",
        severity: Warning,
        min_python: "any",
        summary: "an `isolint:` comment that names no rule, an unknown rule, or gives no reason",
        blocks: Nothing,
        check: no_check,
    };
}

declare_rule! {
    /// ## What it does
    /// Reports a rule named in an `isolint:` suppression comment when no finding of that rule
    /// was suppressed by it. Rules that did not run (`select`, `ignore`) are not reported.
    ///
    /// ## Why is this bad?
    /// The code it excused was fixed or moved. A stale suppression would silently hide a new
    /// finding that later lands on that line.
    ///
    /// ## Example
    /// ```c
    /// static const char *name = "x"; /* isolint: ignore[global-pyobject] legacy cache */
    /// ```
    ///
    /// ## Use instead
    /// Delete the comment, or the rule from it.
    pub static UNUSED_SUPPRESSION = {
        id: "ISO901",
        name: "unused-suppression",
        severity: Warning,
        min_python: "any",
        summary: "an `isolint: ignore` comment that no longer suppresses anything",
        blocks: Nothing,
        check: no_check,
    };
}

/// The rules about suppressions themselves; they run after the analysis, not in it.
pub static META_RULES: &[&RuleInfo] = &[&INVALID_SUPPRESSION, &UNUSED_SUPPRESSION];

/// Source text by path, read once: the analysis keeps facts, not text.
#[derive(Default)]
pub struct Texts {
    map: HashMap<PathBuf, Option<String>>,
}

impl Texts {
    /// `overrides`: buffers that are not on disk (standard input, an editor's buffer).
    pub fn new(overrides: impl IntoIterator<Item = (PathBuf, String)>) -> Self {
        Self {
            map: overrides.into_iter().map(|(p, t)| (p, Some(t))).collect(),
        }
    }

    pub fn get(&mut self, path: &Path) -> Option<&str> {
        self.map
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                std::fs::read(path)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            })
            .as_deref()
    }

    /// The text of `path` if it contains one of `needles` (ASCII). A file read here for the first
    /// time and containing none is neither converted nor kept: most files of a scan have no
    /// suppression comment, and keeping every text doubled the memory of the sources.
    pub fn get_if_any(&mut self, path: &Path, needles: &[&str]) -> Option<&str> {
        if !self.map.contains_key(path) {
            let bytes = std::fs::read(path).ok();
            // The needles are ASCII: the lossy conversion cannot make or break a match.
            let found = bytes.as_ref().is_some_and(|b| {
                needles
                    .iter()
                    .any(|n| memchr::memmem::find(b, n.as_bytes()).is_some())
            });
            if !found {
                return None;
            }
            let text = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
            self.map.insert(path.to_path_buf(), text);
        }
        let text = self.map.get(path)?.as_deref()?;
        needles.iter().any(|n| text.contains(n)).then_some(text)
    }

    /// The text of 1-based line `line`, without its line ending.
    pub fn line(&mut self, path: &Path, line: usize) -> Option<String> {
        let text = self.get(path)?;
        crate::source::split_lines(text)
            .nth(line.checked_sub(1)?)
            .map(str::to_string)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Findings on the comment's own line.
    Line,
    /// Findings on the line after the comment.
    NextLine,
    File,
}

#[derive(Debug, Clone)]
pub struct Suppression {
    pub scope: Scope,
    /// The line the comment starts on.
    pub line: usize,
    pub location: Location,
    /// Each named rule, with whether it suppressed something.
    pub rules: Vec<(&'static RuleInfo, bool)>,
    /// Another tool's marker (numpy's `// noqa: borrowed-ref ...`): honoured, but never
    /// reported as unused, since it also serves that tool.
    pub foreign: bool,
}

/// A comment that looks like a suppression but is malformed.
#[derive(Debug, Clone)]
pub struct Invalid {
    pub location: Location,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub suppressions: Vec<Suppression>,
    pub invalid: Vec<Invalid>,
}

fn location(text: &str, start: usize, end: usize) -> Location {
    let pos = |offset: usize| {
        // A CR at the end of `before` may be the first half of a CR LF: look one byte on.
        let through = &text.as_bytes()[..(offset + 1).min(text.len())];
        let breaks: Vec<usize> = crate::source::line_break_ends(through)
            .filter(|&end| end <= offset)
            .collect();
        let line_start = breaks.last().copied().unwrap_or(0);
        (breaks.len() + 1, offset - line_start + 1)
    };
    let (line, column) = pos(start);
    let (end_line, end_column) = pos(end);
    Location {
        line,
        column,
        end_line,
        end_column,
        start_byte: start,
        end_byte: end,
    }
}

/// The comments of a C file, as (start, end, body) byte ranges. String and character literals
/// are skipped so that `"// isolint:"` inside a string is not a comment.
fn comments(text: &str) -> Vec<(usize, usize, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' && b[i] != b'\r' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find(['\n', '\r']).map_or(b.len(), |p| i + p);
                out.push((i, end, &text[i + 2..end]));
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let body_end = text[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p);
                let end = (body_end + 2).min(b.len());
                out.push((i, end, &text[i + 2..body_end]));
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// Finds the suppression comments of one file. `find` resolves a rule id or name.
pub fn parse(text: &str, find: impl Fn(&str) -> Option<&'static RuleInfo>) -> Parsed {
    let mut parsed = Parsed::default();
    for (start, end, body) in comments(text) {
        // Doc-comment styles (`/** isolint: ...`, `/// isolint: ...`) count too.
        let body = body.trim_start_matches(['*', '/', '!']).trim();
        if body.starts_with(NUMPY_BORROWED_REF_MARKER) {
            let rules: Vec<(&'static RuleInfo, bool)> =
                ["borrowed-reference", "unlocked-container-iteration"]
                    .iter()
                    .filter_map(|name| find(name))
                    .map(|r| (r, false))
                    .collect();
            let loc = location(text, start, end);
            parsed.suppressions.push(Suppression {
                scope: Scope::Line,
                line: loc.line,
                location: loc,
                rules,
                foreign: true,
            });
            continue;
        }
        let Some(rest) = body.strip_prefix("isolint:") else {
            continue;
        };
        let loc = location(text, start, end);
        let mut invalid = |message: String| {
            parsed.invalid.push(Invalid {
                location: loc,
                message,
            })
        };
        let rest = rest.trim_start();
        let directive_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        let (directive, rest) = rest.split_at(directive_len);
        let scope = match directive {
            "ignore" => Scope::Line,
            "ignore-next-line" => Scope::NextLine,
            "ignore-file" => Scope::File,
            other => {
                invalid(format!(
                    "unknown suppression `isolint: {other}`: use `ignore[...]`, `ignore-next-line[...]` or `ignore-file[...]`"
                ));
                continue;
            }
        };
        let Some(list) = rest.strip_prefix('[') else {
            invalid(format!(
                "`isolint: {directive}` names no rule: write `isolint: {directive}[rule] reason`"
            ));
            continue;
        };
        let Some(close) = list.find(']') else {
            invalid(format!("`isolint: {directive}[` is missing its `]`"));
            continue;
        };
        let mut rules = Vec::new();
        let mut unknown = Vec::new();
        for key in list[..close]
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            match find(key) {
                Some(rule)
                    if !rules
                        .iter()
                        .any(|(r, _): &(&RuleInfo, bool)| r.id == rule.id) =>
                {
                    rules.push((rule, false))
                }
                Some(_) => {}
                None => unknown.push(key.to_string()),
            }
        }
        if !unknown.is_empty() {
            invalid(format!(
                "`isolint: {directive}` names unknown rule{} `{}` (see `isolint rules`)",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join("`, `")
            ));
        }
        if rules.is_empty() && unknown.is_empty() {
            invalid(format!("`isolint: {directive}[]` names no rule"));
            continue;
        }
        let reason = list[close + 1..].trim().trim_end_matches('*').trim();
        if reason.is_empty() && !rules.is_empty() {
            let names: Vec<&str> = rules.iter().map(|(r, _)| r.name).collect();
            invalid(format!(
                "suppression of `{}` gives no reason: say why after the `]`",
                names.join("`, `")
            ));
        }
        if !rules.is_empty() {
            parsed.suppressions.push(Suppression {
                scope,
                line: loc.line,
                location: loc,
                rules,
                foreign: false,
            });
        }
    }
    parsed
}

/// numpy's gate (`tools/ci/check_c_api_usage.py`) skips lines with
/// `// noqa: borrowed-ref OK` or `// noqa: borrowed-ref - manual fix needed`; isolint reads
/// both as suppressions of its borrowed-reference rules.
const NUMPY_BORROWED_REF_MARKER: &str = "noqa: borrowed-ref";

fn covers(s: &Suppression, f: &Finding) -> bool {
    let (first, last) = (f.location.line, f.location.end_line.max(f.location.line));
    match s.scope {
        Scope::File => true,
        Scope::Line => (first..=last).contains(&s.line),
        Scope::NextLine => (first..=last).contains(&(s.line + 1)),
    }
}

fn meta_finding(
    rule: &'static RuleInfo,
    path: &Path,
    location: Location,
    message: String,
) -> Finding {
    Finding {
        rule: rule.id,
        name: rule.name,
        severity: rule.severity,
        path: path.to_path_buf(),
        location,
        symbol: None,
        function: None,
        module: None,
        message,
        help: match rule.id {
            "ISO900" => "write `isolint: ignore[rule-id-or-name] reason`, with a reason".into(),
            _ => "remove the rule from the comment, or the whole comment".into(),
        },
        python: VersionRange::ALL,
        uncertain: false,
        related: Vec::new(),
    }
}

/// The inline suppressions of a scan's files, read before the verdict: a finding a comment
/// suppresses does not block its module's level. `apply` later removes the same findings (and
/// reports the comments that suppressed nothing); this only answers "is it covered".
#[derive(Debug, Default)]
pub struct InlineIndex {
    by_file: HashMap<PathBuf, Vec<Suppression>>,
}

impl InlineIndex {
    /// Reads the comments of `files`; `texts` holds buffers not on disk (standard input).
    pub fn read(files: &[PathBuf], texts: &mut Texts) -> Self {
        let mut by_file = HashMap::new();
        for path in files {
            let Some(text) = texts.get(path) else {
                continue;
            };
            if !may_suppress(text) {
                continue;
            }
            let parsed = parse(text, crate::config::find_any_rule);
            if !parsed.suppressions.is_empty() {
                by_file.insert(path.clone(), parsed.suppressions);
            }
        }
        Self { by_file }
    }

    pub fn covers(&self, f: &Finding) -> bool {
        self.by_file.get(&f.path).is_some_and(|list| {
            list.iter()
                .any(|s| covers(s, f) && s.rules.iter().any(|(r, _)| r.id == f.rule))
        })
    }
}

/// The text may hold a suppression comment (an `isolint:` one or numpy's marker). Every file
/// of every scan is searched, so with `memchr`'s vectorised search: `str::contains` took 3 %
/// of a re-run after an edit in CPython's core.
pub fn may_suppress(text: &str) -> bool {
    use memchr::memmem;
    memmem::find(text.as_bytes(), b"isolint:").is_some()
        || memmem::find(text.as_bytes(), NUMPY_BORROWED_REF_MARKER.as_bytes()).is_some()
}

/// Suppressions from outside the source (the config's `per-file-ignores`, the baseline), as
/// the caller of `analyze` knows them. `key` identifies them for the run memo: a scan with
/// other suppressions has other verdicts.
/// Answers why a finding is suppressed (`config`, `baseline`), or `None`.
pub type WhySuppressed = dyn Fn(&Finding) -> Option<&'static str> + Send + Sync;

#[derive(Clone)]
pub struct External {
    pub why: std::sync::Arc<WhySuppressed>,
    pub key: String,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "External({})", self.key)
    }
}

/// Removes the findings that a suppression comment covers, and returns the findings about the
/// comments themselves: malformed ones, and rules named that suppressed nothing although they
/// ran (`ran`). `files`: every file the analysis read.
pub fn apply(
    findings: &mut Vec<Finding>,
    files: &[PathBuf],
    texts: &mut Texts,
    ran: &[&'static RuleInfo],
) -> Vec<Finding> {
    let mut meta = Vec::new();
    let mut by_file: HashMap<&Path, Parsed> = HashMap::new();
    for path in files {
        let Some(text) = texts.get_if_any(path, &["isolint:", NUMPY_BORROWED_REF_MARKER]) else {
            continue;
        };
        let parsed = parse(text, crate::config::find_any_rule);
        by_file.insert(path.as_path(), parsed);
    }
    if by_file.is_empty() {
        return meta;
    }
    findings.retain(|f| {
        let Some(parsed) = by_file.get_mut(f.path.as_path()) else {
            return true;
        };
        let mut kept = true;
        for s in parsed.suppressions.iter_mut() {
            if !covers(s, f) {
                continue;
            }
            for (rule, used) in s.rules.iter_mut() {
                if rule.id == f.rule {
                    *used = true;
                    kept = false;
                }
            }
        }
        kept
    });
    let mut paths: Vec<&&Path> = by_file.keys().collect();
    paths.sort();
    for path in paths {
        let parsed = &by_file[*path];
        for inv in &parsed.invalid {
            meta.push(meta_finding(
                &INVALID_SUPPRESSION,
                path,
                inv.location,
                inv.message.clone(),
            ));
        }
        for s in parsed.suppressions.iter().filter(|s| !s.foreign) {
            for (rule, used) in &s.rules {
                if *used || !ran.iter().any(|r| r.id == rule.id) {
                    continue;
                }
                let what = match s.scope {
                    Scope::Line => "on this line",
                    Scope::NextLine => "on the next line",
                    Scope::File => "in this file",
                };
                meta.push(meta_finding(
                    &UNUSED_SUPPRESSION,
                    path,
                    s.location,
                    format!(
                        "unused suppression: no `{}` ({}) finding {what}",
                        rule.name, rule.id
                    ),
                ));
            }
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_skip_strings() {
        let text = "char *s = \"// isolint: ignore[x]\"; /* a */ // b\n";
        let bodies: Vec<&str> = comments(text).into_iter().map(|c| c.2).collect();
        assert_eq!(bodies, vec![" a ", " b"]);
    }

    #[test]
    fn parse_forms() {
        let text = "int a; /* isolint: ignore[ISO003, could-be-const] why */\n\
                    // isolint: ignore-next-line[ISO006]\n\
                    // isolint: ignore-file[nope] because\n\
                    // isolint: skip[ISO003] x\n";
        let p = parse(text, crate::config::find_any_rule);
        assert_eq!(p.suppressions.len(), 2);
        assert_eq!(p.suppressions[0].scope, Scope::Line);
        assert_eq!(p.suppressions[0].rules.len(), 2);
        assert_eq!(p.suppressions[1].scope, Scope::NextLine);
        assert_eq!(p.suppressions[1].line, 2);
        let messages: Vec<&str> = p.invalid.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("gives no reason"));
        assert!(messages[1].contains("unknown rule `nope`"));
        assert!(messages[2].contains("unknown suppression"));
    }
}
