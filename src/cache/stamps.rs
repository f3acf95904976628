//! File stamps: what the pre-scan learnt from each file's text (its hash, its size, whether
//! it may hold a suppression comment), under the stamp the file had when it was read. A
//! re-run takes a file whose stamp still holds from here instead of reading and hashing it:
//! after an edit, only the edited file is read. The editor's server keeps the same stamps in
//! memory (`analysis::resident`).

use super::{checked_payload, version_dir, write_atomically};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const FILE_NAME: &str = "stamps.bin";

/// A file's size and modification time, and on Unix its inode and status-change time (which
/// no tool sets back, as `cp -p` or `touch -r` set the modification time). A text read less
/// than [`RACY`] after its last modification gets no stamp (it is read again next time): a
/// second write within the file system's time granularity would leave the stamp unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    len: u64,
    modified: SystemTime,
    node: (u64, i64, i64),
}

#[cfg(unix)]
fn node_of(meta: &std::fs::Metadata) -> (u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.ino(), meta.ctime(), meta.ctime_nsec())
}

#[cfg(not(unix))]
fn node_of(_: &std::fs::Metadata) -> (u64, i64, i64) {
    (0, 0, 0)
}

const RACY: Duration = Duration::from_secs(2);

impl Stamp {
    /// The file's stamp now, if it can be trusted to change with its text.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta.modified().ok()?;
        let age = SystemTime::now().duration_since(modified).ok()?;
        (age >= RACY).then_some(Self {
            len: meta.len(),
            modified,
            node: node_of(&meta),
        })
    }

    /// Whether the file still has this stamp.
    pub fn holds(&self, path: &Path) -> bool {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| {
                let same = m.len() == self.len && node_of(&m) == self.node;
                Some(same && m.modified().ok()? == self.modified)
            })
            .unwrap_or(false)
    }
}

/// What the pre-scan learnt from a file's text, and the file's stamp when it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub stamp: Stamp,
    /// The text's length.
    pub bytes: u64,
    /// The text's hash (`content_hash`).
    pub content: u128,
    /// The text may hold a suppression comment.
    pub suppressions: bool,
}

/// The stamps of the files the last scan under a cache folder read.
pub struct Stamps {
    file: PathBuf,
    entries: FxHashMap<PathBuf, Stamped>,
}

impl Stamps {
    /// The stamps under `dir` (the `.isolint_cache` folder). A missing, unreadable or damaged
    /// file gives none: every file is read.
    pub fn open(dir: &Path) -> Self {
        let file = version_dir(dir).join(FILE_NAME);
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|bytes| {
                postcard::from_bytes::<Vec<(PathBuf, Stamped)>>(checked_payload(&bytes)?).ok()
            })
            .map(|entries| entries.into_iter().collect())
            .unwrap_or_default();
        Self { file, entries }
    }

    /// What the text of `path` gave, if the file still has the stamp it had when read.
    pub fn unchanged(&self, path: &Path) -> Option<&Stamped> {
        self.entries.get(path).filter(|s| s.stamp.holds(path))
    }

    /// Keeps exactly these entries (the files of this scan that have a stamp). Nothing is
    /// written when they are the entries already kept.
    pub fn save(self, entries: Vec<(PathBuf, Stamped)>) -> Result<(), String> {
        let same = entries.len() == self.entries.len()
            && entries
                .iter()
                .all(|(path, s)| self.entries.get(path) == Some(s));
        if same {
            return Ok(());
        }
        let payload = postcard::to_stdvec(&entries).map_err(|e| e.to_string())?;
        write_atomically(&self.file, &payload)
    }
}
