//! The baseline: the findings a legacy code base already has, recorded so that CI fails only
//! on new ones.
//!
//! An entry is keyed by (rule, path, enclosing function, symbol) and a fingerprint of the
//! finding's source line with its whitespace normalised — never by line number, so adding
//! lines above a baselined global does not break the build, while editing the line itself
//! does (it is new code to look at). Equal keys are counted, not collapsed: two identical
//! findings need two entries.

use crate::config::relative_slash;
use crate::finding::Finding;
use crate::suppress::Texts;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const BASELINE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub rule: String,
    pub name: String,
    /// Relative to the folder of the baseline file, with `/` separators.
    pub path: String,
    pub function: Option<String>,
    pub symbol: Option<String>,
    pub fingerprint: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    entries: Vec<Entry>,
}

/// 64-bit FNV-1a: stable across Rust releases and platforms, unlike `DefaultHasher`, which
/// matters for a file that is committed.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The finding's source line with runs of whitespace collapsed: re-indenting is not a change.
pub fn line_fingerprint(f: &Finding, texts: &mut Texts) -> String {
    let line = texts.line(&f.path, f.location.line).unwrap_or_default();
    let normal = line.split_whitespace().collect::<Vec<_>>().join(" ");
    format!("{:016x}", fnv1a(normal.as_bytes()))
}

pub fn entry(f: &Finding, base: &Path, texts: &mut Texts) -> Entry {
    Entry {
        rule: f.rule.to_string(),
        name: f.name.to_string(),
        path: relative_slash(&f.path, base),
        function: f.function.clone(),
        symbol: f.symbol.clone(),
        fingerprint: line_fingerprint(f, texts),
    }
}

pub fn load(path: &Path) -> Result<Vec<Entry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read the baseline: {e}", path.display()))?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: not an isolint baseline: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    if file.version != BASELINE_VERSION {
        return Err(format!(
            "{}: baseline version {} is not supported (expected {BASELINE_VERSION})",
            path.display(),
            file.version
        ));
    }
    Ok(file.entries)
}

pub fn save(path: &Path, mut entries: Vec<Entry>) -> Result<(), String> {
    entries.sort();
    let file = File {
        version: BASELINE_VERSION,
        entries,
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

/// Folder that baseline paths are relative to.
pub fn base_dir(baseline: &Path) -> std::path::PathBuf {
    crate::config::absolute(baseline)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Matches findings against the baseline entries, across several analyses (one per config
/// file), counting each entry once.
pub struct Matcher {
    entries: Vec<Entry>,
    remaining: HashMap<Entry, usize>,
    /// Findings the baseline accounted for.
    pub known: usize,
}

impl Matcher {
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut remaining: HashMap<Entry, usize> = HashMap::new();
        for e in &entries {
            *remaining.entry(e.clone()).or_default() += 1;
        }
        Self {
            entries,
            remaining,
            known: 0,
        }
    }

    /// Removes the findings the baseline knows of; the rest are new.
    pub fn filter(&mut self, findings: &mut Vec<Finding>, base: &Path, texts: &mut Texts) {
        findings.retain(|f| {
            let key = entry(f, base, texts);
            match self.remaining.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    self.known += 1;
                    false
                }
                _ => true,
            }
        });
    }

    /// Entries that matched no finding: fixed code, which `--prune-baseline` drops.
    pub fn fixed(&self) -> Vec<Entry> {
        let mut left = self.remaining.clone();
        let mut out = Vec::new();
        for e in &self.entries {
            if let Some(n) = left.get_mut(e) {
                if *n > 0 {
                    *n -= 1;
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// The entries still matched by some finding: the pruned baseline.
    pub fn kept(&self) -> Vec<Entry> {
        let mut fixed = Matcher::new(self.fixed()).remaining;
        let mut out = Vec::new();
        for e in &self.entries {
            match fixed.get_mut(e) {
                Some(n) if *n > 0 => *n -= 1,
                _ => out.push(e.clone()),
            }
        }
        out
    }
}
