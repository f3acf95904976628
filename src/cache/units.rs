//! The module cache: each module's result (its findings, its summary and what its verdict
//! reads), so that a re-run after an edit models and checks only the modules whose inputs
//! changed.
//!
//! An entry is found by a key the caller computes from everything the module's analysis reads:
//! its files' texts and facts keys, and the scan-wide inputs (options, rules, the struct
//! layouts, the module grouping, the C++ containers...). Findings may point outside the
//! module's files (a related location); such a path is stored with the hash of the text it
//! was found in, and the entry answers only while every such text is unchanged.
//!
//! One file per scan identity (roots and options), `units-<scan>.bin`, beside the facts: a
//! full scan writes back exactly the entries it used or made, a partial one (an editor's
//! re-check of some modules) adds its entries to the others.

use super::memo::{finding, finding_record, module_record, module_summary};
use super::memo::{FindingRecord, ModuleRecord};
use super::{checked_payload, version_dir, write_atomically};
use crate::finding::Finding;
use crate::model::ModuleSummary;
use crate::rules::VerdictInputs;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One unit's result: a module, or the files no module holds.
#[derive(Debug, Clone)]
pub struct UnitResult {
    pub findings: Vec<Finding>,
    pub modules: Vec<(ModuleSummary, VerdictInputs)>,
    /// Files outside the unit the findings and summaries name, with the hash of their text
    /// when the result was computed.
    pub foreign: Vec<(PathBuf, u128)>,
}

#[derive(Serialize, Deserialize)]
struct UnitRecord {
    findings: Vec<FindingRecord>,
    modules: Vec<(ModuleRecord, VerdictRecord)>,
    foreign: Vec<(PathBuf, u128)>,
}

#[derive(Serialize, Deserialize)]
struct VerdictRecord {
    multiple_interpreters_slot: Option<String>,
    multi_phase: bool,
    gil_slot: Option<String>,
    set_gil: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct UnitsFile {
    entries: Vec<(u128, serde_bytes_vec::Bytes)>,
}

/// A `Vec<u8>` written as one byte string (see the facts cache's `byte_buf`).
mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub struct Bytes(pub Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            super::super::byte_buf::serialize(&self.0, serializer)
        }
    }

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            super::super::byte_buf::deserialize(deserializer).map(Bytes)
        }
    }
}

/// The module cache of one scan identity.
pub struct UnitCache {
    file: PathBuf,
    old: FxHashMap<u128, Vec<u8>>,
    used: Mutex<FxHashSet<u128>>,
    fresh: Mutex<Vec<(u128, Vec<u8>)>>,
}

impl UnitCache {
    /// The module cache of the scan with identity `scan` under `dir` (the `.isolint_cache`
    /// folder). A missing, unreadable or corrupted file gives an empty cache.
    pub fn open(dir: &Path, scan: u64) -> Self {
        let file = version_dir(dir).join(format!("units-{scan:016x}.bin"));
        let old = std::fs::read(&file)
            .ok()
            .and_then(|bytes| postcard::from_bytes::<UnitsFile>(checked_payload(&bytes)?).ok())
            .map(|f| f.entries.into_iter().map(|(k, b)| (k, b.0)).collect())
            .unwrap_or_default();
        Self {
            file,
            old,
            used: Mutex::new(FxHashSet::default()),
            fresh: Mutex::new(Vec::new()),
        }
    }

    /// The result stored under `key`, if any and if this build can read it; `content_of`
    /// gives the current hash of a scanned file's text (`None`: not in this scan), and an
    /// entry whose foreign files changed is not used.
    pub fn get(&self, key: u128, content_of: impl Fn(&Path) -> Option<u128>) -> Option<UnitResult> {
        let bytes = self.old.get(&key)?;
        let record: UnitRecord = postcard::from_bytes(bytes).ok()?;
        if record
            .foreign
            .iter()
            .any(|(path, hash)| content_of(path) != Some(*hash))
        {
            return None;
        }
        let result = UnitResult {
            findings: record
                .findings
                .into_iter()
                .map(finding)
                .collect::<Option<_>>()?,
            modules: record
                .modules
                .into_iter()
                .map(|(m, v)| {
                    Some((
                        module_summary(m)?,
                        VerdictInputs {
                            multiple_interpreters_slot: v.multiple_interpreters_slot,
                            multi_phase: v.multi_phase,
                            gil_slot: v.gil_slot,
                            set_gil: v.set_gil,
                        },
                    ))
                })
                .collect::<Option<_>>()?,
            foreign: record.foreign,
        };
        if let Ok(mut used) = self.used.lock() {
            used.insert(key);
        }
        Some(result)
    }

    /// Keeps a unit's result under `key`.
    pub fn put(&self, key: u128, result: &UnitResult) {
        let record = UnitRecord {
            findings: result.findings.iter().map(finding_record).collect(),
            modules: result
                .modules
                .iter()
                .map(|(m, v)| {
                    (
                        module_record(m),
                        VerdictRecord {
                            multiple_interpreters_slot: v.multiple_interpreters_slot.clone(),
                            multi_phase: v.multi_phase,
                            gil_slot: v.gil_slot.clone(),
                            set_gil: v.set_gil.clone(),
                        },
                    )
                })
                .collect(),
            foreign: result.foreign.clone(),
        };
        if let (Ok(bytes), Ok(mut fresh)) = (postcard::to_stdvec(&record), self.fresh.lock()) {
            fresh.push((key, bytes));
        }
    }

    /// Writes the cache back. A full scan (`partial` false) keeps exactly the entries it used
    /// or made, so entries of modules that no longer exist or whose inputs changed go; a
    /// partial scan adds its entries to the old ones. Nothing is written when nothing changed.
    pub fn save(self, partial: bool) -> Result<(), String> {
        let fresh = self.fresh.into_inner().unwrap_or_default();
        let used = self.used.into_inner().unwrap_or_default();
        let dropped = !partial && used.len() < self.old.len();
        if fresh.is_empty() && !dropped {
            return Ok(());
        }
        let mut entries: FxHashMap<u128, Vec<u8>> = self.old;
        if !partial {
            entries.retain(|key, _| used.contains(key));
        }
        entries.extend(fresh);
        let mut entries: Vec<(u128, serde_bytes_vec::Bytes)> = entries
            .into_iter()
            .map(|(k, b)| (k, serde_bytes_vec::Bytes(b)))
            .collect();
        entries.sort_by_key(|(k, _)| *k);
        let payload = postcard::to_stdvec(&UnitsFile { entries }).map_err(|e| e.to_string())?;
        write_atomically(&self.file, &payload)
    }
}
