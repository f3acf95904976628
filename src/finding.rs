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
        // Every Python 3 is every Python isolint speaks of: `#if PY_MAJOR_VERSION >= 3` code
        // needs no tag, and code only one build compiles is tagged with the build alone.
        let every_python3 = self.python.lo <= crate::version::py(3, 0)
            && self.python.hi == crate::version::VersionRange::ALL.hi;
        match (every_python3, self.python.free_threaded) {
            (true, None) => {}
            (true, Some(true)) => out.push_str(" [free-threaded build]"),
            (true, Some(false)) => out.push_str(" [default build]"),
            (false, _) => out.push_str(&format!(" [Python {}]", self.python)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::py;

    fn tag(python: VersionRange) -> String {
        Finding {
            rule: "ISO006",
            name: "mutable-global-state",
            severity: Severity::Warning,
            path: PathBuf::from("m.c"),
            location: Location::default(),
            symbol: None,
            function: None,
            module: None,
            message: String::new(),
            help: String::new(),
            python,
            uncertain: false,
            related: Vec::new(),
        }
        .qualifiers()
    }

    #[test]
    fn every_python3_needs_no_version_tag() {
        let from3 = VersionRange {
            lo: py(3, 0),
            ..VersionRange::ALL
        };
        assert_eq!(tag(VersionRange::ALL), "");
        assert_eq!(tag(from3), "");
        let free_threaded = VersionRange {
            free_threaded: Some(true),
            ..VersionRange::ALL
        };
        assert_eq!(tag(free_threaded), " [free-threaded build]");
        let before_312 = VersionRange {
            hi: py(3, 12),
            ..VersionRange::ALL
        };
        assert_eq!(tag(before_312), " [Python <3.12]");
    }
}
