//! `--format github`: GitHub Actions workflow commands, one annotation per finding, shown on
//! the pull request diff without any upload step.

use super::count;
use crate::analysis::Analysis;
use crate::finding::Severity;

/// Message text: `%`, CR and LF are the escapes the runner decodes.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Property values additionally escape `:` and `,`, which separate properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn render(analysis: &Analysis) -> String {
    let mut out = String::new();
    for f in &analysis.findings {
        let command = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let loc = f.location;
        out.push_str(&format!(
            "::{command} file={},line={},endLine={},col={},endColumn={},title={}::{}\n",
            escape_property(&f.path.to_string_lossy()),
            loc.line,
            loc.end_line.max(loc.line),
            loc.column,
            loc.end_column,
            escape_property(&format!("{} ({})", f.rule, f.name)),
            escape_data(&format!(
                "{}{}\nhelp: {}",
                f.message,
                f.qualifiers(),
                f.help
            )),
        ));
    }
    for e in &analysis.errors {
        out.push_str(&format!(
            "::warning file={},title=isolint::{}\n",
            escape_property(&e.path.to_string_lossy()),
            escape_data(&e.message)
        ));
    }
    let c = count(&analysis.findings);
    out.push_str(&format!(
        "isolint: {} errors, {} warnings, {} infos in {} files\n",
        c.errors, c.warnings, c.infos, analysis.files_scanned
    ));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(super::escape_data("a:b\r\n"), "a:b%0D%0A");
    }
}
