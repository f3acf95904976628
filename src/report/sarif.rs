//! `--format sarif`: SARIF 2.1.0, the format code-scanning services ingest. Rule metadata
//! comes from the rule docs; paths are URIs relative to the repository root
//! (`%SRCROOT%`), so results line up with the checkout whatever folder isolint ran in;
//! `partialFingerprints` use the baseline key, which survives lines moving.

use crate::analysis::Analysis;
use crate::baseline;
use crate::config::{absolute, relative_slash};
use crate::finding::{Finding, Severity};
use crate::rules::{docs_markdown_body, RuleInfo};
use crate::suppress::Texts;
use crate::version::VersionRange;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// The repository root: the nearest folder above the current one that holds `.git`, else the
/// current folder.
pub fn repository_root() -> PathBuf {
    let cwd = absolute(Path::new("."));
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// Percent-encodes what may not appear in a URI path; `/` stays.
fn encode_path(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dir_uri(dir: &Path) -> String {
    let mut s = encode_path(&dir.to_string_lossy().replace('\\', "/"));
    if !s.starts_with('/') {
        s.insert(0, '/');
    }
    if !s.ends_with('/') {
        s.push('/');
    }
    format!("file://{s}")
}

fn artifact(path: &Path, root: &Path) -> Value {
    let rel = relative_slash(path, root);
    if rel.starts_with('/') {
        json!({"uri": format!("file://{}", encode_path(&rel))})
    } else {
        json!({"uri": encode_path(&rel), "uriBaseId": "%SRCROOT%"})
    }
}

fn rule_descriptor(r: &RuleInfo) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": r.summary},
        "help": {"text": docs_markdown_body(r), "markdown": docs_markdown_body(r)},
        "defaultConfiguration": {"level": level(r.severity)},
        "properties": {"minimumPython": r.min_python, "tags": tags(r)},
    })
}

fn tags(r: &RuleInfo) -> Vec<&'static str> {
    let free_threading = r.blocks_gil
        || matches!(
            r.name,
            "set-gil-unguarded"
                | "single-phase-free-threaded"
                | "overclaimed-gil"
                | "missing-gil-slot"
        );
    if free_threading {
        vec!["free-threading", "pep703"]
    } else {
        vec!["isolation", "subinterpreters"]
    }
}

/// Each module's verdict on both axes, as run properties: SARIF has no place for facts about a
/// module that are not findings.
fn module_verdicts(analysis: &Analysis, root: &Path) -> Vec<Value> {
    analysis
        .modules
        .iter()
        .filter_map(|m| {
            let v = m.verdict.as_ref()?;
            Some(json!({
                "name": m.name,
                "artifactLocation": artifact(&m.path, root),
                "line": m.line,
                "isolation": {"declared": v.declared, "supported": v.supported, "suppressed": v.suppressed},
                "gil": super::json::gil_json(&v.gil_axis),
            }))
        })
        .collect()
}

/// Byte column (1-based) to code-point column, using the line's text when it is at hand.
fn char_column(texts: &mut Texts, f: &Finding, line: usize, byte_col: usize) -> usize {
    match texts.line(&f.path, line) {
        Some(text) if byte_col >= 1 => {
            let end = (byte_col - 1).min(text.len());
            let end = (0..=end)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text[..end].chars().count() + 1
        }
        _ => byte_col.max(1),
    }
}

pub fn to_value(
    analysis: &Analysis,
    rules: &[&'static RuleInfo],
    texts: &mut Texts,
    root: &Path,
) -> Value {
    let results: Vec<Value> = analysis
        .findings
        .iter()
        .map(|f| {
            let loc = f.location;
            let start_col = char_column(texts, f, loc.line, loc.column);
            let end_line = loc.end_line.max(loc.line);
            let mut end_col = char_column(texts, f, end_line, loc.end_column);
            if end_line == loc.line && end_col <= start_col {
                end_col = start_col + 1;
            }
            let key = baseline::entry(f, root, texts);
            let fp = baseline::fnv1a(
                format!(
                    "{}\0{}\0{}\0{}\0{}",
                    key.rule,
                    key.path,
                    key.function.as_deref().unwrap_or(""),
                    key.symbol.as_deref().unwrap_or(""),
                    key.fingerprint
                )
                .as_bytes(),
            );
            let mut result = json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": {"text": format!("{}{}\nhelp: {}", f.message, f.qualifiers(), f.help)},
                "locations": [{"physicalLocation": {
                    "artifactLocation": artifact(&f.path, root),
                    "region": {
                        "startLine": loc.line.max(1),
                        "startColumn": start_col,
                        "endLine": end_line.max(1),
                        "endColumn": end_col,
                    },
                }}],
                "partialFingerprints": {"isolint/v1": format!("{fp:016x}")},
                "properties": {
                    "name": f.name,
                    "symbol": f.symbol,
                    "function": f.function,
                    "module": f.module,
                    "python": python_range(f),
                    "uncertain": f.uncertain,
                },
            });
            if let Some(i) = rules.iter().position(|r| r.id == f.rule) {
                result["ruleIndex"] = json!(i);
            }
            if !f.related.is_empty() {
                let related: Vec<Value> = f
                    .related
                    .iter()
                    .enumerate()
                    .map(|(id, r)| {
                        json!({
                            "id": id,
                            "message": {"text": r.message},
                            "physicalLocation": {
                                "artifactLocation": artifact(&r.path, root),
                                "region": {
                                    "startLine": r.location.line.max(1),
                                    "startColumn": r.location.column.max(1),
                                },
                            },
                        })
                    })
                    .collect();
                result["relatedLocations"] = json!(related);
            }
            result
        })
        .collect();
    let notifications: Vec<Value> = analysis
        .errors
        .iter()
        .map(|e| (e, "error"))
        .chain(analysis.skipped.iter().map(|s| (s, "note")))
        .map(|(e, lvl)| {
            json!({
                "level": lvl,
                "message": {"text": e.message},
                "locations": [{"physicalLocation": {"artifactLocation": artifact(&e.path, root)}}],
            })
        })
        .collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "isolint",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|r| rule_descriptor(r)).collect::<Vec<_>>(),
            }},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": dir_uri(root)}},
            "columnKind": "unicodeCodePoints",
            "invocations": [{
                "executionSuccessful": !analysis.nothing_scanned(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
            "properties": {"modules": module_verdicts(analysis, root)},
        }],
    })
}

/// The same range object as the JSON format's `python`.
fn python_range(f: &Finding) -> Value {
    #[derive(serde::Serialize)]
    struct Range(#[serde(serialize_with = "crate::version::serialize_range")] VersionRange);
    serde_json::to_value(Range(f.python)).unwrap_or(Value::Null)
}

pub fn render(
    analysis: &Analysis,
    rules: &[&'static RuleInfo],
    texts: &mut Texts,
    root: &Path,
) -> String {
    let mut text = serde_json::to_string_pretty(&to_value(analysis, rules, texts, root))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
