//! `--statistics`: how many findings each rule has, most first (as ruff's `--statistics`), in
//! place of the findings themselves.

use crate::analysis::Analysis;
use crate::finding::Severity;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    pub rule: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub count: usize,
}

/// One row per rule that has findings: most findings first, then by rule id.
pub fn counts(analysis: &Analysis) -> Vec<RuleCount> {
    let mut by_rule: BTreeMap<&'static str, RuleCount> = BTreeMap::new();
    for f in &analysis.findings {
        let row = by_rule.entry(f.rule).or_insert(RuleCount {
            rule: f.rule,
            name: f.name,
            severity: f.severity,
            count: 0,
        });
        row.count += 1;
        // A rule whose severity was changed for some files shows its highest.
        row.severity = row.severity.max(f.severity);
    }
    let mut rows: Vec<RuleCount> = by_rule.into_values().collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(b.rule)));
    rows
}

/// An aligned table: `count  id  name  severity`.
pub fn render_table(analysis: &Analysis) -> String {
    let rows = counts(analysis);
    let count_width = rows
        .iter()
        .map(|r| r.count.to_string().len())
        .max()
        .unwrap_or(1);
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:>count_width$}  {}  {:<name_width$}  {}\n",
            r.count,
            r.rule,
            r.name,
            r.severity.as_str()
        ));
    }
    out
}

pub fn render_json(analysis: &Analysis) -> String {
    let mut text = serde_json::to_string_pretty(&counts(analysis))
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
