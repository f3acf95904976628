//! What a long-lived caller (the editor's server) keeps of a workspace in memory between
//! scans, so that a re-check after an edit does not read, hash and decode every file again.
//!
//! For every file the last scan saw: the file's size and modification time when its text was
//! read from disk, the hash of that text, what the pre-scan learnt from it (macros, line scans,
//! whether it may hold a suppression), its facts key, its [`Overview`] and its facts, encoded.
//! Beside them the project's macro table and the last linking, each with what it was built
//! from. A scan handed a `Resident` ([`super::analyze_resident`]) takes each unchanged file
//! from here instead of from its text or the facts cache, parses only texts it has not seen,
//! rebuilds the macro table only when some file's macros changed and links again only when
//! some file's link facts changed. Everything is checked against the same keys the facts cache
//! uses (text hash, facts key), so a file is never taken from here for another text or parse.

use super::Overview;
use crate::cache::stamps::Stamp;
use crate::cache::LineScans;
use crate::model::ModuleGroup;
use crate::parse::macros::{MacroDefinition, ProjectMacros};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One file as the last scan saw it.
pub(super) struct ResidentFile {
    /// The file's stamp when its text was read from disk; `None` for an editor's buffer or a
    /// text read too soon after a write.
    pub stamp: Option<Stamp>,
    pub bytes: u64,
    pub content: u128,
    pub suppressions: bool,
    pub macros: Vec<MacroDefinition>,
    pub lines: Option<LineScans>,
    /// The hash of `macros` and `lines`: equal for every file ⇒ the same macro table.
    pub macro_hash: Option<u64>,
    pub facts_key: u64,
    pub overview: Overview,
    /// The hash of the overview's link facts: equal for every file ⇒ the same linking.
    pub link_hash: Option<u64>,
    pub facts: Arc<[u8]>,
}

/// The linking of the files (`model::group_links`, `not_compiled_files`), with what it read.
pub(super) struct Linked {
    pub signature: u128,
    pub groups: Vec<ModuleGroup>,
    pub not_compiled: HashSet<usize>,
}

/// The facts of the files the last check modelled, decoded, by path, with the text hash and
/// facts key they belong to.
pub(super) type Decoded = HashMap<PathBuf, ((u128, u64), crate::facts::FileFacts)>;

/// See the module's documentation.
#[derive(Default)]
pub struct Resident {
    pub(super) files: HashMap<PathBuf, ResidentFile>,
    /// The decoded facts of the files the last check modelled (the units holding the edited
    /// file, which the next edit most often models again): neither decoded nor freed again.
    pub(super) decoded: Decoded,
    /// The project's macro table and the hash of the files' macros it was built from.
    pub(super) macros: Option<(u128, Arc<ProjectMacros>)>,
    pub(super) linked: Option<Linked>,
}

impl Resident {
    /// The entry of a file on disk whose stamp is unchanged since its text was read.
    pub(super) fn unchanged(&self, path: &Path) -> Option<&ResidentFile> {
        self.files
            .get(path)
            .filter(|f| f.stamp.is_some_and(|s| s.holds(path)))
    }

    /// The entry of a file, if it holds the text with this hash.
    pub(super) fn with_content(&self, path: &Path, content: u128) -> Option<&ResidentFile> {
        self.files.get(path).filter(|f| f.content == content)
    }

    /// The files the memory holds.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The hash of a value's encoding: of what the pre-scan learnt from a file (`(macros, lines)`,
/// which the macro table is built from) or of its link facts (which linking reads). `None`
/// (equal to nothing) if it cannot be encoded.
pub(super) fn encoded_hash(value: &impl serde::Serialize) -> Option<u64> {
    let bytes = postcard::to_stdvec(value).ok()?;
    Some(xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// The hash of a list of per-file hashes with their paths, and of `extra`: `None` when one of
/// the files has none.
pub(super) fn signature<'a>(
    extra: &[u8],
    files: impl Iterator<Item = (&'a Path, Option<u64>)>,
) -> Option<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(extra.len() as u64).to_le_bytes());
    h.update(extra);
    for (path, hash) in files {
        let path = path.as_os_str().as_encoded_bytes();
        h.update(&(path.len() as u64).to_le_bytes());
        h.update(path);
        h.update(&hash?.to_le_bytes());
    }
    Some(h.digest128())
}
