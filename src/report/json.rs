//! `--format json`: one versioned document, documented in docs/json-format.md.

use crate::analysis::Analysis;
use serde_json::{json, Value};

/// 2: `findings[].python` became a range object (it was a display string).
pub const FORMAT_VERSION: u32 = 2;

pub fn to_value(analysis: &Analysis) -> Value {
    let mut value = frame(analysis);
    value["findings"] = json!(analysis.findings);
    value
}

/// The document with an empty `findings` list.
fn frame(analysis: &Analysis) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "tool": {"name": "isolint", "version": env!("CARGO_PKG_VERSION")},
        "files_scanned": analysis.files_scanned,
        "skipped": analysis.skipped,
        "errors": analysis.errors,
        "parse_errors": analysis.parse_errors,
        "hidden": analysis.hidden,
        "build_notes": analysis.build_notes,
        "modules": analysis.modules.iter().map(|m| json!({
            "name": m.name,
            "import_name": m.import_name,
            "path": m.path,
            "line": m.line,
            "init": m.init,
            "m_size": m.m_size,
            "slots": m.slots,
            "files": m.files,
            "files_from": m.files_from,
            "static_types": m.static_types,
            "heap_types": m.heap_types,
            "verdict": m.verdict.as_ref().map(verdict_json),
        })).collect::<Vec<_>>(),
        "findings": [],
    })
}

/// The document, pretty-printed: the text of `to_value`, without holding every finding as a
/// `Value` at once (a large scan's findings took several times their text).
pub fn render(analysis: &Analysis) -> String {
    let mut text = match render_findings(analysis) {
        Ok(text) => text,
        Err(e) => format!("{{\"error\": \"{e}\"}}"),
    };
    text.push('\n');
    text
}

fn render_findings(analysis: &Analysis) -> Result<String, serde_json::Error> {
    let frame = serde_json::to_string_pretty(&frame(analysis))?;
    // The top-level key, at the top level's indent.
    const EMPTY: &str = "\n  \"findings\": [],\n";
    let at = match frame.find(EMPTY) {
        _ if analysis.findings.is_empty() => return Ok(frame),
        Some(at) => at,
        None => return serde_json::to_string_pretty(&to_value(analysis)),
    };
    let mut text = String::with_capacity(frame.len() + analysis.findings.len() * 1024);
    text.push_str(&frame[..at]);
    text.push_str("\n  \"findings\": [");
    for (i, finding) in analysis.findings.iter().enumerate() {
        text.push_str(if i == 0 { "\n" } else { ",\n" });
        // Each element as `to_string_pretty` prints it, two levels in: a string's newlines are
        // escaped, so every line break is the printer's.
        let element = serde_json::to_string_pretty(&serde_json::to_value(finding)?)?;
        for (j, line) in element.split('\n').enumerate() {
            if j > 0 {
                text.push('\n');
            }
            text.push_str("    ");
            text.push_str(line);
        }
    }
    text.push_str("\n  ],\n");
    text.push_str(&frame[at + EMPTY.len()..]);
    Ok(text)
}

fn verdict_json(v: &crate::rules::Verdict) -> Value {
    json!({
        "declared": {
            "multiple_interpreters": v.multiple_interpreters,
            "multiple_interpreters_default": v.multiple_interpreters_is_default,
            "level": v.declared,
            "gil": v.gil,
            "gil_default": v.gil_is_default,
        },
        "supported": v.supported,
        "gil_not_used": v.gil_not_used_possible,
        "blockers": v.blockers.iter().map(|(level, list)| json!({"level": level, "findings": list})).collect::<Vec<_>>(),
        "suppressed": v.suppressed,
        "gil": gil_json(&v.gil_axis),
    })
}

/// The verdict's free-threading axis; the SARIF reporter carries the same object.
pub fn gil_json(g: &crate::rules::GilVerdict) -> Value {
    json!({
        "declared": g.declared,
        "declared_by": g.declared_by,
        "supported": g.supported,
        "blockers": g.blockers,
        "suppressed": g.suppressed,
    })
}
