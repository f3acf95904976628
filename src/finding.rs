//! A finding is plain data. Rules produce them; reporters only read them.

use crate::version::VersionRange;
use serde::Serialize;
use std::cmp::Ordering;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

/// A position in a source file. Lines and columns are 1-based; columns count bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    /// Byte offsets into the file, for renderers that show the source.
    #[serde(skip)]
    pub start_byte: usize,
    #[serde(skip)]
    pub end_byte: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `ISO003`.
    pub rule: &'static str,
    /// Kebab-case name, e.g. `static-type-object`.
    pub name: &'static str,
    pub severity: Severity,
    /// As given on the command line or found by the walk (relative when the input was).
    pub path: PathBuf,
    #[serde(flatten)]
    pub location: Location,
    /// The variable or function the finding is about.
    pub symbol: Option<String>,
    /// The enclosing function, `None` at file scope.
    pub function: Option<String>,
    /// The extension module the code belongs to, when known.
    pub module: Option<String>,
    pub message: String,
    pub help: String,
    /// The Python versions whose build compiles this code.
    #[serde(serialize_with = "crate::version::serialize_range")]
    pub python: VersionRange,
    /// The code overlaps a parse error, so the fact behind the finding may be wrong.
    pub uncertain: bool,
    /// Other places that belong to this finding: the other declarations of its variable
    /// (tentative definitions, `extern` in headers), writes folded into it. SARIF's
    /// `relatedLocations`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

/// A place related to a finding, with what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    pub path: PathBuf,
    #[serde(flatten)]
    pub location: Location,
    pub message: String,
}

impl Finding {
    /// What every format adds after the message: the Python versions that compile the code,
    /// when not all, and the parse-error caveat. One function, so no format drops one.
    pub fn qualifiers(&self) -> String {
        let mut out = String::new();
        if !self.python.is_all() {
            out.push_str(&format!(" [Python {}]", self.python));
        }
        if self.uncertain {
            out.push_str(" (near a parse error: uncertain)");
        }
        out
    }

    pub fn sort_key_cmp(&self, other: &Self) -> Ordering {
        (
            &self.path,
            self.location.line,
            self.location.column,
            self.rule,
            &self.symbol,
        )
            .cmp(&(
                &other.path,
                other.location.line,
                other.location.column,
                other.rule,
                &other.symbol,
            ))
    }
}

pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key_cmp(b));
}
