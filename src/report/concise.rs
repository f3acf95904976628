//! `--format concise`: one line per finding, `path:line:col: severity[rule] message`, for
//! grep and for editor problem matchers.

use crate::analysis::Analysis;

pub fn render(analysis: &Analysis) -> String {
    let mut out = String::new();
    for f in &analysis.findings {
        // The message is one line today; keep it so if a rule ever writes two.
        let message = f.message.replace('\n', " ");
        out.push_str(&format!(
            "{}:{}:{}: {}[{}] {}{} ({})\n",
            f.path.display(),
            f.location.line,
            f.location.column,
            f.severity.as_str(),
            f.rule,
            message,
            f.qualifiers(),
            f.name
        ));
    }
    out
}
