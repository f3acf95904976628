//! `--format json`: one versioned document, documented in docs/json-format.md.

use crate::analysis::Analysis;
use serde_json::{json, Value};

pub const FORMAT_VERSION: u32 = 1;

pub fn to_value(analysis: &Analysis) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "tool": {"name": "isolint", "version": env!("CARGO_PKG_VERSION")},
        "files_scanned": analysis.files_scanned,
        "skipped": analysis.skipped,
        "errors": analysis.errors,
        "parse_errors": analysis.parse_errors,
        "modules": analysis.modules.iter().map(|m| json!({
            "name": m.name,
            "path": m.path,
            "line": m.line,
            "init": m.init,
            "m_size": m.m_size,
            "slots": m.slots,
            "files": m.files,
            "static_types": m.static_types,
            "heap_types": m.heap_types,
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
