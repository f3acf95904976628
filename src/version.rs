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
    };
    pub const EMPTY: VersionRange = VersionRange { lo: 0, hi: 0 };

    pub fn at_least(v: PyVersion) -> Self {
        Self {
            lo: v,
            hi: UNBOUNDED,
        }
    }
    pub fn below(v: PyVersion) -> Self {
        Self { lo: 0, hi: v }
    }
    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }
    pub fn is_empty(&self) -> bool {
        self.lo >= self.hi
    }
    pub fn intersect(&self, other: &Self) -> Self {
        let r = Self {
            lo: self.lo.max(other.lo),
            hi: self.hi.min(other.hi),
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
        }
    }
    /// Complement, when it is a single range; otherwise everything.
    pub fn complement(&self) -> Self {
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
    let bound = |v: PyVersion, open: PyVersion| (v != open).then(|| format_version(v));
    let mut out = s.serialize_struct("PythonRange", 3)?;
    if range.is_empty() {
        // Nothing compiles it; `min == max` says so without a special value.
        out.serialize_field("min", &Some(format_version(range.lo)))?;
        out.serialize_field("max", &Some(format_version(range.lo)))?;
    } else {
        out.serialize_field("min", &bound(range.lo, 0))?;
        out.serialize_field("max", &bound(range.hi, UNBOUNDED))?;
    }
    out.serialize_field("free_threaded", &None::<bool>)?;
    out.end()
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
            json(VersionRange {
                lo: py(3, 8),
                hi: py(3, 12)
            }),
            r#"{"min":"3.8","max":"3.12","free_threaded":null}"#
        );
        assert_eq!(
            json(VersionRange::below(py(3, 12))),
            r#"{"min":null,"max":"3.12","free_threaded":null}"#
        );
    }
}
