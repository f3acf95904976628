//! The human reporter: miette diagnostics with the source line, a label on the symbol and a
//! `help:`, then a summary.

use super::{count, plural};
use crate::analysis::Analysis;
use crate::finding::{Finding, Severity};
use crate::suppress::Texts;
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

struct FindingDiagnostic<'a> {
    finding: &'a Finding,
    source: NamedSource<String>,
}

impl fmt::Debug for FindingDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.finding.message)
    }
}

impl fmt::Display for FindingDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.finding.message)?;
        if !self.finding.python.is_all() {
            write!(f, " [Python {}]", self.finding.python)?;
        }
        if self.finding.uncertain {
            write!(f, " (near a parse error: uncertain)")?;
        }
        Ok(())
    }
}

impl std::error::Error for FindingDiagnostic<'_> {}

impl Diagnostic for FindingDiagnostic<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!(
            "{}[{}]",
            self.finding.rule, self.finding.name
        )))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.finding.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Info => miette::Severity::Advice,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.finding.help))
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let loc = &self.finding.location;
        let len = loc.end_byte.saturating_sub(loc.start_byte);
        let label = self
            .finding
            .symbol
            .clone()
            .unwrap_or_else(|| self.finding.name.to_string());
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(label),
            loc.start_byte,
            len,
        ))))
    }
}

/// `texts`: the scanned files' text, read once per file for every consumer (suppressions,
/// baselines, SARIF and this report).
pub fn render(analysis: &Analysis, texts: &mut Texts, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let mut out = String::new();
    for finding in &analysis.findings {
        let text = texts.get(&finding.path).unwrap_or("").to_string();
        let loc = &finding.location;
        let diagnostic = if loc.end_byte <= text.len()
            && text.is_char_boundary(loc.start_byte)
            && text.is_char_boundary(loc.end_byte)
        {
            FindingDiagnostic {
                finding,
                source: NamedSource::new(finding.path.display().to_string(), text),
            }
        } else {
            // The file changed since the scan: show the finding without its source.
            FindingDiagnostic {
                finding,
                source: NamedSource::new(finding.path.display().to_string(), String::new()),
            }
        };
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&format!(
                "{}:{}:{}: {}\n",
                finding.path.display(),
                loc.line,
                loc.column,
                finding.message
            ));
        }
        out.push('\n');
    }
    for e in &analysis.errors {
        out.push_str(&format!("error: {}: {}\n", e.path.display(), e.message));
    }
    for n in &analysis.build_notes {
        out.push_str(&format!("note: {}: {}\n", n.path.display(), n.message));
    }
    for s in &analysis.skipped {
        out.push_str(&format!("skipped: {}: {}\n", s.path.display(), s.message));
    }
    if !analysis.modules.is_empty() {
        out.push_str("\nmodules:\n");
        for m in &analysis.modules {
            let m_size = m.m_size.as_deref().unwrap_or("?");
            let slot = |k: &str| {
                m.slots
                    .get(k)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "-".to_string())
            };
            let import = match &m.import_name {
                Some(dotted) if *dotted != m.name => format!(" `{dotted}`"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {}{import} ({}:{}): {} init, m_size = {}, multiple_interpreters = {}, gil = {}, {} static / {} heap types, {} file(s) from {}\n",
                m.name,
                m.path.display(),
                m.line,
                m.init,
                m_size,
                slot("multiple_interpreters"),
                slot("gil"),
                m.static_types,
                m.heap_types,
                m.files.len(),
                m.files_from
            ));
            if let Some(v) = &m.verdict {
                let default = if v.multiple_interpreters_is_default {
                    " (default)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "    declares {}{default}; supports {}",
                    v.declared.as_str(),
                    v.supported.as_str()
                ));
                for (level, blockers) in &v.blockers {
                    out.push_str(&format!(
                        "; {} blocked by {} finding(s)",
                        level.as_str(),
                        blockers.len()
                    ));
                }
                out.push('\n');
            }
        }
    }
    out.push_str(&summary_line(analysis));
    out
}

pub fn summary_line(analysis: &Analysis) -> String {
    let c = count(&analysis.findings);
    let mut line = format!(
        "{}, {}",
        plural(c.errors, "error"),
        plural(c.warnings, "warning"),
    );
    if c.infos > 0 {
        line.push_str(&format!(", {}", plural(c.infos, "info")));
    }
    line.push_str(&format!(
        " in {} ({} scanned, {} with parse errors",
        plural(analysis.modules.len(), "module"),
        plural(analysis.files_scanned, "file"),
        analysis.parse_errors.len()
    ));
    if !analysis.skipped.is_empty() {
        line.push_str(&format!(", {} C++ skipped", analysis.skipped.len()));
    }
    if !analysis.errors.is_empty() {
        line.push_str(&format!(", {} unreadable", analysis.errors.len()));
    }
    let hidden: usize = analysis.hidden.iter().map(|h| h.findings).sum();
    if hidden > 0 {
        line.push_str(&format!(
            ", {} in vendored or generated code not shown: --include-vendored",
            plural(hidden, "finding")
        ));
    }
    line.push_str(")\n");
    line
}
