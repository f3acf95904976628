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
        write!(f, "{}{}", self.finding.message, self.finding.qualifiers())
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
        if self.finding.related.is_empty() {
            return Some(Box::new(&self.finding.help));
        }
        // The finding's other places (declarations, folded writes), after the fix.
        let mut text = self.finding.help.clone();
        for r in &self.finding.related {
            text.push_str(&format!(
                "\nalso: {}:{}: {}",
                r.path.display(),
                r.location.line,
                r.message
            ));
        }
        Some(Box::new(text))
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

/// How the report is laid out on the reader's screen.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub color: bool,
    /// Columns to wrap prose at: the terminal's width, or `--width`, or 100 into a pipe.
    pub width: usize,
}

/// Below this, wrapping would leave one word per line; long words overflow instead.
const MIN_WIDTH: usize = 40;

/// `text` wrapped to the layout's width; lines after the first start with `indent`.
fn wrapped(text: &str, first: &str, indent: &str, width: usize) -> String {
    let options = textwrap::Options::new(width.max(MIN_WIDTH))
        .initial_indent(first)
        .subsequent_indent(indent)
        .break_words(false)
        // Only at spaces: a path or `m_size = -1` must not be split at a `/` or a `-`.
        .word_separator(textwrap::WordSeparator::AsciiSpace)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    let mut out = textwrap::fill(text, options);
    out.push('\n');
    out
}

/// `texts`: the scanned files' text, read once per file for every consumer (suppressions,
/// baselines, SARIF and this report).
pub fn render(analysis: &Analysis, texts: &mut Texts, layout: Layout) -> String {
    let theme = if layout.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let width = layout.width.max(MIN_WIDTH);
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_width(width);
    let mut out = String::new();
    out.push_str(&findings_text(analysis, texts, &handler));
    out.push_str(&tail(analysis, width));
    out
}

/// The findings, one diagnostic each.
fn findings_text(
    analysis: &Analysis,
    texts: &mut Texts,
    handler: &GraphicalReportHandler,
) -> String {
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
    out
}

/// Everything after the findings: unreadable and skipped files, the module lines, the
/// summary. Also what `--statistics` prints after its table.
pub fn tail(analysis: &Analysis, width: usize) -> String {
    let mut out = String::new();
    for e in &analysis.errors {
        let line = format!("error: {}: {}", e.path.display(), e.message);
        out.push_str(&wrapped(&line, "", "  ", width));
    }
    for n in &analysis.build_notes {
        let line = format!("note: {}: {}", n.path.display(), n.message);
        out.push_str(&wrapped(&line, "", "  ", width));
    }
    for s in &analysis.skipped {
        let line = format!("skipped: {}: {}", s.path.display(), s.message);
        out.push_str(&wrapped(&line, "", "  ", width));
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
            let line = format!(
                "{}{import} ({}:{}): {} init, m_size = {}, multiple_interpreters = {}, gil = {}, {} static / {} heap types, {} from {}",
                m.name,
                m.path.display(),
                m.line,
                m.init,
                m_size,
                slot("multiple_interpreters"),
                slot("gil"),
                m.static_types,
                m.heap_types,
                super::plural(m.files.len(), "file"),
                m.files_from
            );
            out.push_str(&wrapped(&line, "  ", "      ", width));
            if let Some(v) = &m.verdict {
                let default = if v.multiple_interpreters_is_default {
                    " (default)"
                } else {
                    ""
                };
                let mut line = format!(
                    "declares {}{default}; supports {}",
                    v.declared.as_str(),
                    v.supported.as_str()
                );
                for (level, blockers) in &v.blockers {
                    line.push_str(&format!(
                        "; {} blocked by {}",
                        level.as_str(),
                        super::plural(blockers.len(), "finding")
                    ));
                }
                out.push_str(&wrapped(&line, "    ", "      ", width));
                if let Some(line) = suppressed_line(&v.suppressed, &v.gil_axis.suppressed) {
                    out.push_str(&wrapped(&line, "    ", "      ", width));
                }
                let gil = &v.gil_axis;
                let source = match gil.declared_by {
                    crate::rules::GilSource::Slot => "",
                    crate::rules::GilSource::SetGil => " (PyUnstable_Module_SetGIL)",
                    crate::rules::GilSource::Default => " (default)",
                };
                let mut line = format!(
                    "gil: declares {}{source}; supports {}",
                    gil.declared.as_str(),
                    gil.supported.as_str()
                );
                if !gil.blockers.is_empty() {
                    line.push_str(&format!(
                        "; not-used blocked by {}",
                        super::plural(gil.blockers.len(), "finding")
                    ));
                }
                out.push_str(&wrapped(&line, "    ", "      ", width));
            }
        }
    }
    out.push_str(&wrapped(summary_line(analysis).trim_end(), "", "  ", width));
    if let Some(files) = parse_error_files(analysis) {
        out.push_str(&wrapped(&files, "", "  ", width));
    }
    out
}

/// The blockers the project suppressed, so a verdict that rests on suppressions says so.
fn suppressed_line(
    isolation: &[crate::rules::SuppressedBlocker],
    gil: &[crate::rules::SuppressedBlocker],
) -> Option<String> {
    let mut all: Vec<&crate::rules::SuppressedBlocker> = isolation.iter().collect();
    // A free-threading finding is listed once, on whichever axis names it first.
    for g in gil {
        let same = |s: &&crate::rules::SuppressedBlocker| {
            s.finding.rule == g.finding.rule
                && s.finding.path == g.finding.path
                && s.finding.line == g.finding.line
                && s.finding.symbol == g.finding.symbol
        };
        if !all.iter().any(same) {
            all.push(g);
        }
    }
    if all.is_empty() {
        return None;
    }
    let shown: Vec<String> = all
        .iter()
        .take(3)
        .map(|s| {
            format!(
                "`{}` ({}, line {}, by {})",
                s.finding.symbol.as_deref().unwrap_or("?"),
                s.finding.name,
                s.finding.line,
                s.by
            )
        })
        .collect();
    let mut line = format!("not counted, suppressed: {}", shown.join(", "));
    if all.len() > 3 {
        line.push_str(&format!(" and {} more", all.len() - 3));
    }
    Some(line)
}

/// How many files with parse errors the summary names before "and N more".
const PARSE_ERROR_FILES_SHOWN: usize = 5;

/// `parse errors in: a.c (3, first at line 12), ...`, so "2 with parse errors" can be acted
/// on.
fn parse_error_files(analysis: &Analysis) -> Option<String> {
    if analysis.parse_errors.is_empty() {
        return None;
    }
    let mut files: Vec<_> = analysis.parse_errors.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut line = String::from("parse errors in: ");
    let shown: Vec<String> = files
        .iter()
        .take(PARSE_ERROR_FILES_SHOWN)
        .map(|p| format!("{} (line {})", p.path.display(), p.first_line))
        .collect();
    line.push_str(&shown.join(", "));
    if files.len() > PARSE_ERROR_FILES_SHOWN {
        line.push_str(&format!(
            " and {} more (--format json lists them all)",
            files.len() - PARSE_ERROR_FILES_SHOWN
        ));
    }
    Some(line)
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
    let hidden = |not_selected: bool| -> usize {
        analysis
            .hidden
            .iter()
            .filter(|h| (h.reason == crate::analysis::HiddenCode::NOT_SELECTED) == not_selected)
            .map(|h| h.findings)
            .sum()
    };
    if hidden(false) > 0 {
        line.push_str(&format!(
            ", {} in vendored or generated code not shown: --include-vendored",
            plural(hidden(false), "finding")
        ));
    }
    if hidden(true) > 0 {
        line.push_str(&format!(
            ", {} of rules not selected not shown (the verdicts count them)",
            plural(hidden(true), "finding")
        ));
    }
    line.push_str(")\n");
    line
}
