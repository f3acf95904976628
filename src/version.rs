//! Python version ranges, as selected by `#if PY_VERSION_HEX ...` branches.
//!
//! A range is half-open over `(major, minor)` pairs encoded as `major * 256 + minor`, which
//! matches the top 16 bits of `PY_VERSION_HEX`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `major * 256 + minor`.
pub type PyVersion = u16;

/// Saturates at `UNBOUNDED`: `#if PY_MAJOR_VERSION > 255` in a fuzzed or broken file must not
/// overflow.
pub const fn py(major: u16, minor: u16) -> PyVersion {
    major.saturating_mul(256).saturating_add(minor)
}

/// Highest version any range reasons about; `hi == UNBOUNDED` means "and later".
pub const UNBOUNDED: PyVersion = u16::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionRange {
    /// Inclusive.
    pub lo: PyVersion,
    /// Exclusive; `UNBOUNDED` for open-ended.
    pub hi: PyVersion,
    /// `Some(true)` for code only free-threaded builds compile (`#ifdef Py_GIL_DISABLED`),
    /// `Some(false)` for code only the default build compiles, `None` for both.
    #[serde(default)]
    pub free_threaded: Option<bool>,
}

/// A Python to scan for: `3.12`, or `3.13t` for the free-threaded build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub version: PyVersion,
    pub free_threaded: bool,
}

impl Target {
    pub fn new(version: PyVersion) -> Self {
        Self {
            version,
            free_threaded: false,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            format_version(self.version),
            if self.free_threaded { "t" } else { "" }
        )
    }
}

/// Parses "3.12", "3" or "3.13t" (the free-threaded build, which exists from 3.13 on).
pub fn parse_target(text: &str) -> Option<Target> {
    let text = text.trim();
    let (version, free_threaded) = match text.strip_suffix('t') {
        Some(v) => (v, true),
        None => (text, false),
    };
    let version = parse_version(version)?;
    if free_threaded && version < py(3, 13) {
        return None;
    }
    Some(Target {
        version,
        free_threaded,
    })
}

impl Default for VersionRange {
    fn default() -> Self {
        Self::ALL
    }
}

impl VersionRange {
    pub const ALL: VersionRange = VersionRange {
        lo: 0,
        hi: UNBOUNDED,
        free_threaded: None,
    };
    pub const EMPTY: VersionRange = VersionRange {
        lo: 0,
        hi: 0,
        free_threaded: None,
    };

    pub fn new(lo: PyVersion, hi: PyVersion) -> Self {
        Self {
            lo,
            hi,
            free_threaded: None,
        }
    }
    pub fn at_least(v: PyVersion) -> Self {
        Self::new(v, UNBOUNDED)
    }
    pub fn below(v: PyVersion) -> Self {
        Self::new(0, v)
    }
    /// Every version, on one build only.
    pub fn build(free_threaded: bool) -> Self {
        Self {
            free_threaded: Some(free_threaded),
            ..Self::ALL
        }
    }
    /// Compiled by this Python build.
    pub fn compiled_by(&self, target: Target) -> bool {
        self.contains(target.version)
            && self
                .free_threaded
                .is_none_or(|ft| ft == target.free_threaded)
    }
    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }
    pub fn is_empty(&self) -> bool {
        self.lo >= self.hi
    }
    pub fn intersect(&self, other: &Self) -> Self {
        let free_threaded = match (self.free_threaded, other.free_threaded) {
            (Some(a), Some(b)) if a != b => return Self::EMPTY,
            (a, b) => a.or(b),
        };
        let r = Self {
            lo: self.lo.max(other.lo),
            hi: self.hi.min(other.hi),
            free_threaded,
        };
        if r.is_empty() {
            Self::EMPTY
        } else {
            r
        }
    }
    /// Smallest single range that covers both (C conditions can describe unions that a single
    /// range cannot; the hull errs towards "this code may compile", which keeps findings).
    pub fn hull(&self, other: &Self) -> Self {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        Self {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
            free_threaded: if self.free_threaded == other.free_threaded {
                self.free_threaded
            } else {
                None
            },
        }
    }
    /// Complement, when it is a single range; otherwise everything.
    pub fn complement(&self) -> Self {
        if let Some(ft) = self.free_threaded {
            // `!defined(Py_GIL_DISABLED)`: the other build, when no version bound is mixed in.
            return if self.lo == 0 && self.hi == UNBOUNDED {
                Self::build(!ft)
            } else {
                Self::ALL
            };
        }
        if self.is_empty() {
            Self::ALL
        } else if self.lo == 0 && self.hi == UNBOUNDED {
            Self::EMPTY
        } else if self.lo == 0 {
            Self::at_least(self.hi)
        } else if self.hi == UNBOUNDED {
            Self::below(self.lo)
        } else {
            Self::ALL
        }
    }
    pub fn contains(&self, v: PyVersion) -> bool {
        self.lo <= v && v < self.hi
    }
    pub fn overlaps(&self, other: &Self) -> bool {
        !self.intersect(other).is_empty()
    }
    /// True when no Python 3 compiles this code.
    pub fn python2_only(&self) -> bool {
        self.hi <= py(3, 0)
    }
}

pub fn format_version(v: PyVersion) -> String {
    format!("{}.{}", v / 256, v % 256)
}

/// Parses "3.12" or "3".
pub fn parse_version(text: &str) -> Option<PyVersion> {
    let mut parts = text.trim().split('.');
    let major: u16 = parts.next()?.parse().ok()?;
    let minor: u16 = match parts.next() {
        Some(m) => m.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() || major > 255 || minor > 255 {
        return None;
    }
    Some(py(major, minor))
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lo, self.hi) {
            _ if self.is_empty() => write!(f, "no Python version"),
            (0, UNBOUNDED) => write!(f, "all Python versions"),
            (lo, UNBOUNDED) => write!(f, ">={}", format_version(lo)),
            (0, hi) => write!(f, "<{}", format_version(hi)),
            (lo, hi) => write!(f, ">={},<{}", format_version(lo), format_version(hi)),
        }?;
        match self.free_threaded {
            _ if self.is_empty() => Ok(()),
            Some(true) => write!(f, ", free-threaded build"),
            Some(false) => write!(f, ", default build"),
            None => Ok(()),
        }
    }
}

/// For `#[serde(serialize_with)]`: a range as data, `{"min": "3.8", "max": "3.12",
/// "free_threaded": null}`. `min` is the first version that compiles the code and `max` the
/// first that does not (both `null` when unbounded), so `>=3.8,<3.12` reads as written.
/// `free_threaded` is `true` or `false` for code only one build compiles, `null` for both.
pub fn serialize_range<S: serde::Serializer>(
    range: &VersionRange,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let (min, max) = range_bounds(range);
    let mut out = s.serialize_struct("PythonRange", 3)?;
    out.serialize_field("min", &min)?;
    out.serialize_field("max", &max)?;
    out.serialize_field("free_threaded", &range.free_threaded)?;
    out.end()
}

/// A range's `min` and `max` as [`serialize_range`] writes them.
pub fn range_bounds(range: &VersionRange) -> (Option<String>, Option<String>) {
    let bound = |v: PyVersion, open: PyVersion| (v != open).then(|| format_version(v));
    if range.is_empty() {
        // Nothing compiles it; `min == max` says so without a special value.
        let only = Some(format_version(range.lo));
        (only.clone(), only)
    } else {
        (bound(range.lo, 0), bound(range.hi, UNBOUNDED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_and_intersection() {
        let new = VersionRange::at_least(py(3, 12));
        assert_eq!(new.complement(), VersionRange::below(py(3, 12)));
        assert!(new.intersect(&VersionRange::below(py(3, 9))).is_empty());
        assert_eq!(new.to_string(), ">=3.12");
        assert!(VersionRange::below(py(3, 0)).python2_only());
        assert_eq!(parse_version("3.13"), Some(py(3, 13)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn ranges_serialize_as_data() {
        #[derive(Serialize)]
        struct Wrap(#[serde(serialize_with = "serialize_range")] VersionRange);
        let json = |r| serde_json::to_string(&Wrap(r)).unwrap();
        assert_eq!(
            json(VersionRange::ALL),
            r#"{"min":null,"max":null,"free_threaded":null}"#
        );
        assert_eq!(
            json(VersionRange::new(py(3, 8), py(3, 12))),
            r#"{"min":"3.8","max":"3.12","free_threaded":null}"#
        );
        assert_eq!(
            json(VersionRange::below(py(3, 12))),
            r#"{"min":null,"max":"3.12","free_threaded":null}"#
        );
        assert_eq!(
            json(VersionRange::build(true)),
            r#"{"min":null,"max":null,"free_threaded":true}"#
        );
    }

    #[test]
    fn free_threaded_builds() {
        let ft = VersionRange::build(true);
        assert_eq!(ft.complement(), VersionRange::build(false));
        assert!(ft.intersect(&VersionRange::build(false)).is_empty());
        let ft313 = ft.intersect(&VersionRange::at_least(py(3, 13)));
        assert_eq!(ft313.free_threaded, Some(true));
        assert!(ft313.compiled_by(parse_target("3.13t").unwrap()));
        assert!(!ft313.compiled_by(parse_target("3.13").unwrap()));
        assert_eq!(
            parse_target("3.12t"),
            None,
            "no 3.12 build is free-threaded"
        );
        assert!(VersionRange::ALL.compiled_by(parse_target("3.14t").unwrap()));
        assert_eq!(ft.hull(&VersionRange::build(false)), VersionRange::ALL);
        assert_eq!(parse_target("3.14t").unwrap().to_string(), "3.14t");
        assert_eq!(parse_target("t"), None);
    }
}
