//! `--format json`: one versioned document, documented in docs/json-format.md.

use crate::analysis::Analysis;
use serde_json::{json, Value};

/// 2: `findings[].python` became a range object (it was a display string).
pub const FORMAT_VERSION: u32 = 2;

pub fn to_value(analysis: &Analysis) -> Value {
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
        "findings": analysis.findings,
    })
}

pub fn render(analysis: &Analysis) -> String {
    let mut text = serde_json::to_string_pretty(&to_value(analysis))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
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
