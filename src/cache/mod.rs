//! The facts cache: a re-run on an unchanged tree (pre-commit, CI, an editor's save) reads each
//! file's facts back instead of parsing it again.
//!
//! One file per project and isolint version, `.isolint_cache/<version>/facts.bin`, holding for
//! every scanned path the hash of its text, the attribute macros it defines, and its facts with
//! the key they were extracted under. An entry is used only when its text hash and its facts key
//! (isolint's version, the cache format, the file's kind and the scan-wide attribute macros that
//! shaped its parse) both match, so a stale entry is re-extracted, never trusted. The whole file
//! carries a checksum: a corrupted or truncated cache is dropped as a whole and rebuilt.
//!
//! Beside each file's facts the entry keeps what linking needs of them (the caller's encoded
//! overview: `LinkFacts`, structs, counts), so that a scan links its files without decoding
//! their facts, and decodes only the facts of the modules it models.
//!
//! After the facts come two results: each module's (findings and what its verdict reads,
//! [`units`]), keyed by its files' facts and every scan-wide input its analysis reads; and the
//! whole scan's (the run memo, [`memo`]), used when every input and option is unchanged.

mod memo;
pub mod stamps;
pub mod units;

pub use memo::Outcome;
pub use units::{UnitCache, UnitResult};

use crate::facts::FileFacts;
use crate::parse::macros::MacroDefinition;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, Xxh3};

/// The cache folder's name, beside the config file or in the current folder.
pub const CACHE_DIR: &str = ".isolint_cache";

/// Where a project keeps its cache unless told otherwise: `.isolint_cache` in the folder of
/// its config file, else in `fallback` (the current folder for `check`, `plan` and `fix`, the
/// workspace root for the editor's server).
pub fn default_dir(
    config: Option<&Path>,
    fallback: impl FnOnce() -> Option<PathBuf>,
) -> Option<PathBuf> {
    let project = config
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(fallback)?;
    Some(project.join(CACHE_DIR))
}
const FILE_NAME: &str = "facts.bin";
/// The entries written since `facts.bin`, for that file (its checksum): a re-run after an
/// edit writes the few entries it made, not the whole cache again.
const DELTA_NAME: &str = "facts-delta.bin";
/// Bumped whenever the layout of [`CacheFile`] or of the facts changes without a version bump.
const FORMAT: &[u8; 8] = b"ISOLC\x00\x00\x06";
/// Format, build fingerprint, checksum.
const HEADER_LEN: usize = FORMAT.len() + 8 + 16;

/// This build's facts fingerprint (see build.rs): a cache written by another build of the same
/// version is dropped whole.
fn build_fingerprint() -> u64 {
    u64::from_str_radix(env!("ISOLINT_FACTS_FINGERPRINT"), 16).unwrap_or(0)
}

/// What a scan did with the cache, for `--statistics`-like reporting and for the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Files whose facts came from the cache.
    pub hits: usize,
    /// Files parsed because the cache had no usable entry.
    pub misses: usize,
    /// The cache file existed but was corrupted, truncated or of another format: it was ignored.
    pub discarded: bool,
    /// The whole result came from the run memo: same files, texts and options as last time.
    pub whole_run: bool,
    /// Why the cache could not be written, if it could not; the scan itself is unaffected.
    pub write_error: Option<String>,
    /// Files whose facts were decoded from the cache to model a module (a file held by
    /// modules whose results all came from the module cache is linked from its overview
    /// alone, never decoded).
    pub decoded: usize,
    /// Modules (and the unit of files no module holds) whose findings and verdict inputs came
    /// from the module cache.
    pub units_reused: usize,
    /// Modules (and that unit) modelled and checked in this scan.
    pub units_checked: usize,
    /// Files answered for by the caller's memory of the tree (`analysis::Resident`: the
    /// editor's server), neither read nor looked up in this cache.
    pub resident: usize,
    /// Files on disk whose stamp held (`cache::stamps`): not read at all.
    pub unread: usize,
}

/// What the pre-scan's line scans of a file's text found (`parse::condition::header_values`
/// and `off_by_default_hints`): a function of the text and of whether it is a header alone,
/// kept so that a re-run does not scan every line of every file again.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LineScans {
    pub header: bool,
    pub values: Vec<(String, Option<crate::parse::condition::Pieces>)>,
    pub off_hints: Vec<String>,
}

struct Entry {
    content: u128,
    macros: Vec<MacroDefinition>,
    lines: Option<LineScans>,
    facts_key: u64,
    /// The facts, serialized on their own: only the entries a scan uses are decoded, by the
    /// worker that needs them, and an entry kept as it was is written back without re-encoding.
    facts: Blob,
    /// What a scan checking module by module keeps of the file in memory, encoded by the
    /// caller: linking reads this instead of the facts.
    overview: Blob,
}

/// Bytes of an entry: made by this scan, or where they lie in the cache file as read (not
/// copied out of it: opening CPython's 26 MB cache copied every entry's facts once more).
enum Blob {
    Owned(Vec<u8>),
    Loaded(std::ops::Range<usize>),
}

impl Blob {
    /// The bytes, `loaded` being the cache file as read.
    fn in_file<'a>(&'a self, loaded: &'a [u8]) -> &'a [u8] {
        match self {
            Blob::Owned(bytes) => bytes,
            Blob::Loaded(range) => &loaded[range.clone()],
        }
    }

    fn len(&self) -> usize {
        match self {
            Blob::Owned(b) => b.len(),
            Blob::Loaded(r) => r.len(),
        }
    }
}

/// An entry as the cache file holds it, read in place.
#[derive(Deserialize)]
struct EntryIn<'a> {
    content: u128,
    macros: Vec<MacroDefinition>,
    lines: Option<LineScans>,
    facts_key: u64,
    facts: &'a [u8],
    overview: &'a [u8],
}

/// An entry as it is written: the same layout as [`EntryIn`].
#[derive(Serialize)]
struct EntryOut<'a> {
    content: u128,
    macros: &'a [MacroDefinition],
    lines: &'a Option<LineScans>,
    facts_key: u64,
    #[serde(serialize_with = "bytes_out")]
    facts: &'a [u8],
    #[serde(serialize_with = "bytes_out")]
    overview: &'a [u8],
}

fn bytes_out<S: serde::Serializer>(bytes: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// A `Vec<u8>` read and written as one byte string: the same bytes in postcard as the
/// sequence of `u8` serde would make of it, but decoded with one copy instead of one visit per
/// byte (that visit was most of the cost of opening a cache of CPython's 26 MB of facts).
pub(crate) mod byte_buf {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

#[derive(Deserialize)]
struct CacheFileIn<'a> {
    #[serde(borrow)]
    entries: Vec<(PathBuf, EntryIn<'a>)>,
}

#[derive(Serialize)]
struct CacheFileOut<'a> {
    entries: Vec<(&'a PathBuf, EntryOut<'a>)>,
}

/// The cache file's bytes: mapped (no copy: a re-run after an edit reads the index and a few
/// files' facts, and the pages come from the page cache as they are read), or read into
/// memory where the file cannot be mapped.
enum Loaded {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl Loaded {
    fn of(file: &Path) -> std::io::Result<Self> {
        let opened = std::fs::File::open(file)?;
        // SAFETY: isolint never writes a cache file in place: a new one is written beside it
        // and renamed over it (`write_atomically`), which leaves the mapped file's bytes as
        // they are. Only another program writing into the file itself could change them.
        match unsafe { memmap2::Mmap::map(&opened) } {
            Ok(map) => Ok(Loaded::Mapped(map)),
            Err(_) => std::fs::read(file).map(Loaded::Read),
        }
    }
}

impl std::ops::Deref for Loaded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Loaded::Mapped(map) => map,
            Loaded::Read(bytes) => bytes,
        }
    }
}

/// The cache of one scan: the entries loaded at the start, what the scan used and found.
pub struct FactsCache {
    dir: PathBuf,
    file: PathBuf,
    old: FxHashMap<PathBuf, Entry>,
    /// The cache file as read: old entries' bytes lie in it.
    loaded: Loaded,
    /// The checksum of the cache file as read, which a delta must name.
    base: Option<u128>,
    /// Old entries that came from the delta file.
    from_delta: rustc_hash::FxHashSet<PathBuf>,
    used: Mutex<Vec<PathBuf>>,
    fresh: Mutex<Vec<(PathBuf, Entry)>>,
    discarded: bool,
    decoded: std::sync::atomic::AtomicUsize,
}

/// The hash of a file's text as it is scanned (invalid UTF-8 already replaced), with the offset
/// of the first replaced byte, which the facts record.
pub fn content_hash(text: &str, first_invalid_utf8: Option<usize>) -> u128 {
    let offset = first_invalid_utf8.map_or(u128::MAX, |o| o as u128);
    xxh3_128(text.as_bytes()) ^ offset.rotate_left(64)
}

/// The key of facts extracted from a file of this kind with these scan-wide macros (their
/// fingerprint).
pub fn facts_key(kind: crate::facts::SourceKindFact, project_macros: u64) -> u64 {
    let mut h = Xxh3::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(env!("ISOLINT_FACTS_FINGERPRINT").as_bytes());
    h.update(FORMAT);
    h.update(format!("{kind:?}").as_bytes());
    h.update(&project_macros.to_le_bytes());
    h.digest()
}

impl FactsCache {
    /// The cache under `dir` (the `.isolint_cache` folder itself). A missing, unreadable or
    /// corrupted cache file gives an empty cache.
    pub fn open(dir: &Path) -> Self {
        let file = version_dir(dir).join(FILE_NAME);
        let (old, discarded, loaded) = match Loaded::of(&file) {
            Ok(bytes) => {
                let base = bytes.as_ptr() as usize;
                let at = |slice: &[u8]| {
                    let start = slice.as_ptr() as usize - base;
                    Blob::Loaded(start..start + slice.len())
                };
                let old = checked_payload(&bytes)
                    .and_then(|p| postcard::from_bytes::<CacheFileIn>(p).ok())
                    .map(|c| {
                        c.entries
                            .into_iter()
                            .map(|(path, e)| {
                                let entry = Entry {
                                    content: e.content,
                                    macros: e.macros,
                                    lines: e.lines,
                                    facts_key: e.facts_key,
                                    facts: at(e.facts),
                                    overview: at(e.overview),
                                };
                                (path, entry)
                            })
                            .collect::<FxHashMap<_, _>>()
                    });
                match old {
                    Some(old) => (old, false, bytes),
                    None => (FxHashMap::default(), true, Loaded::Read(Vec::new())),
                }
            }
            Err(_) => (FxHashMap::default(), false, Loaded::Read(Vec::new())),
        };
        let mut old = old;
        let base = (loaded.len() >= HEADER_LEN)
            .then(|| loaded[FORMAT.len() + 8..HEADER_LEN].try_into().ok())
            .flatten()
            .map(u128::from_le_bytes);
        let mut from_delta = rustc_hash::FxHashSet::default();
        let delta = base.and_then(|base| {
            let bytes = std::fs::read(version_dir(dir).join(DELTA_NAME)).ok()?;
            let (of, entries): (u128, Vec<(PathBuf, EntryIn)>) =
                postcard::from_bytes(checked_payload(&bytes)?).ok()?;
            // A delta of another base (rewritten since) is stale as a whole.
            (of == base).then(|| {
                entries
                    .into_iter()
                    .map(|(path, e)| {
                        let entry = Entry {
                            content: e.content,
                            macros: e.macros,
                            lines: e.lines,
                            facts_key: e.facts_key,
                            facts: Blob::Owned(e.facts.to_vec()),
                            overview: Blob::Owned(e.overview.to_vec()),
                        };
                        (path, entry)
                    })
                    .collect::<Vec<_>>()
            })
        });
        for (path, entry) in delta.into_iter().flatten() {
            from_delta.insert(path.clone());
            old.insert(path, entry);
        }
        Self {
            dir: version_dir(dir),
            file,
            old,
            loaded,
            base,
            from_delta,
            used: Mutex::new(Vec::new()),
            fresh: Mutex::new(Vec::new()),
            discarded,
            decoded: Default::default(),
        }
    }

    /// Files whose facts came from the cache so far.
    pub fn hits(&self) -> usize {
        self.used.lock().map_or(0, |u| u.len())
    }

    /// Files whose facts were extracted and stored so far.
    pub fn misses(&self) -> usize {
        self.fresh.lock().map_or(0, |f| f.len())
    }

    /// The cache file existed but could not be used.
    pub fn discarded(&self) -> bool {
        self.discarded
    }

    /// The macros a file defines, if the cache holds the file with this text.
    pub fn macros(&self, path: &Path, content: u128) -> Option<Vec<MacroDefinition>> {
        self.old
            .get(path)
            .filter(|e| e.content == content)
            .map(|e| e.macros.clone())
    }

    /// What the pre-scan's line scans found in the file, if the cache holds the file with this
    /// text and they were made for a file of this kind (`header`).
    pub fn line_scans(&self, path: &Path, content: u128, header: bool) -> Option<LineScans> {
        self.old
            .get(path)
            .filter(|e| e.content == content)
            .and_then(|e| e.lines.as_ref())
            .filter(|l| l.header == header)
            .cloned()
    }

    /// The file's facts, if the cache holds them for this text under this key.
    pub fn facts(&self, path: &Path, content: u128, key: u64) -> Option<FileFacts> {
        let entry = self
            .old
            .get(path)
            .filter(|e| e.content == content && e.facts_key == key)?;
        let facts: FileFacts = postcard::from_bytes(self.bytes(&entry.facts)).ok()?;
        if facts.path != path {
            return None;
        }
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.mark_used(path);
        Some(facts)
    }

    /// The file's overview (what [`FactsCache::store`] was given beside its facts), if the
    /// cache holds this text's facts under this key. Its facts stay encoded until
    /// [`FactsCache::facts_again`] asks for them.
    pub fn overview(&self, path: &Path, content: u128, key: u64) -> Option<&[u8]> {
        let entry = self
            .old
            .get(path)
            .filter(|e| e.content == content && e.facts_key == key && e.overview.len() > 0)?;
        self.mark_used(path);
        Some(self.bytes(&entry.overview))
    }

    fn bytes<'a>(&'a self, blob: &'a Blob) -> &'a [u8] {
        blob.in_file(&self.loaded)
    }

    fn mark_used(&self, path: &Path) {
        if let Ok(mut used) = self.used.lock() {
            used.push(path.to_path_buf());
        }
    }

    /// The facts of a file [`FactsCache::facts`] or [`FactsCache::overview`] answered for,
    /// decoded (again: a scan that checks module by module drops them in between).
    pub fn facts_again(&self, path: &Path) -> Option<FileFacts> {
        let facts: FileFacts = postcard::from_bytes(self.bytes(&self.old.get(path)?.facts)).ok()?;
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (facts.path == path).then_some(facts)
    }

    /// The encoded facts of a file [`FactsCache::facts`] or [`FactsCache::overview`] answered
    /// for.
    pub fn facts_bytes(&self, path: &Path) -> Option<&[u8]> {
        Some(self.bytes(&self.old.get(path)?.facts))
    }

    /// Facts decoded from the cache so far.
    pub fn decoded(&self) -> usize {
        self.decoded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The size of the facts the cache holds for this path, serialized.
    pub fn facts_len(&self, path: &Path) -> usize {
        self.old.get(path).map_or(0, |e| e.facts.len())
    }

    /// Records the facts a scan extracted from a file.
    pub fn store(
        &self,
        path: &Path,
        content: u128,
        (macros, lines): (Vec<MacroDefinition>, Option<LineScans>),
        key: u64,
        facts: &FileFacts,
        overview: Vec<u8>,
    ) {
        let Ok(bytes) = postcard::to_stdvec(facts) else {
            return;
        };
        let entry = Entry {
            content,
            macros,
            lines,
            facts_key: key,
            facts: Blob::Owned(bytes),
            overview: Blob::Owned(overview),
        };
        if let Ok(mut fresh) = self.fresh.lock() {
            fresh.push((path.to_path_buf(), entry));
        }
    }

    /// The result of the last scan with identity `scan` (its roots and options), if that scan
    /// saw exactly the inputs hashed into `inputs`, from the cache under `dir` (the
    /// `.isolint_cache` folder). It reads the memo alone, not the facts: an unchanged tree is
    /// answered without opening the facts cache.
    pub fn recall(dir: &Path, scan: u64, inputs: u128) -> Option<Outcome> {
        let bytes = std::fs::read(memo_file(&version_dir(dir), scan)).ok()?;
        let (key, record): (u128, memo::Record) =
            postcard::from_bytes(checked_payload(&bytes)?).ok()?;
        if key != inputs {
            return None;
        }
        record.outcome()
    }

    /// Keeps a scan's result for the next scan with the same identity and inputs.
    pub fn memorize(&self, scan: u64, inputs: u128, outcome: &Outcome) -> Result<(), String> {
        let payload =
            postcard::to_stdvec(&(inputs, memo::Record::of(outcome))).map_err(|e| e.to_string())?;
        write_atomically(&memo_file(&self.dir, scan), &payload)
    }

    /// Writes the cache back: this scan's entries, plus the old entries of files this scan did
    /// not visit that still exist (another config group, a narrower scan). Written to a
    /// temporary file and renamed, so a concurrent reader sees the old cache or the new one.
    /// Nothing is written when every file came from the cache.
    pub fn save(self) -> Result<(), String> {
        let fresh = self.fresh.into_inner().unwrap_or_default();
        if fresh.is_empty() && !self.discarded {
            return Ok(());
        }
        let delta_file = self.dir.join(DELTA_NAME);
        let fresh_paths: rustc_hash::FxHashSet<PathBuf> =
            fresh.iter().map(|(p, _)| p.clone()).collect();
        let mut old = self.old;
        // A few entries changed: they go to the delta (with the delta's other entries), and the
        // large file stays as it is. Past an eighth of the cache, the whole cache is rewritten.
        let delta_len = fresh_paths.union(&self.from_delta).count();
        if let (false, Some(base)) = (self.discarded, self.base) {
            if delta_len <= (old.len() / 8).max(64) {
                let mut entries: Vec<(PathBuf, Entry)> = fresh;
                for path in &self.from_delta {
                    if !fresh_paths.contains(path) {
                        if let Some(entry) = old.remove(path) {
                            entries.push((path.clone(), entry));
                        }
                    }
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                entries.dedup_by(|b, a| a.0 == b.0);
                let payload = postcard::to_stdvec(&(base, encode(&entries, &self.loaded).entries))
                    .map_err(|e| e.to_string())?;
                return write_atomically(&delta_file, &payload);
            }
        }
        let used = self.used.into_inner().unwrap_or_default();
        let mut entries: Vec<(PathBuf, Entry)> = Vec::with_capacity(old.len() + fresh.len());
        // Fresh entries first: the stable sort and the dedup below keep them over old ones.
        entries.extend(fresh);
        for path in &used {
            if let Some(entry) = old.remove(path) {
                entries.push((path.clone(), entry));
            }
        }
        let visited: rustc_hash::FxHashSet<&PathBuf> = used.iter().chain(&fresh_paths).collect();
        entries.extend(
            old.into_iter()
                .filter(|(path, _)| !visited.contains(path) && path.exists()),
        );
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|b, a| a.0 == b.0);
        let payload =
            postcard::to_stdvec(&encode(&entries, &self.loaded)).map_err(|e| e.to_string())?;
        write_atomically(&self.file, &payload)?;
        // The delta belonged to the file just replaced.
        let _ = std::fs::remove_file(delta_file);
        Ok(())
    }
}

/// Entries as the cache file holds them, `loaded` being the cache file as read.
fn encode<'a>(entries: &'a [(PathBuf, Entry)], loaded: &'a [u8]) -> CacheFileOut<'a> {
    CacheFileOut {
        entries: entries
            .iter()
            .map(|(path, e)| {
                let entry = EntryOut {
                    content: e.content,
                    macros: &e.macros,
                    lines: &e.lines,
                    facts_key: e.facts_key,
                    facts: e.facts.in_file(loaded),
                    overview: e.overview.in_file(loaded),
                };
                (path, entry)
            })
            .collect(),
    }
}

/// This version's folder in the cache folder `dir`.
pub(crate) fn version_dir(dir: &Path) -> PathBuf {
    dir.join(env!("CARGO_PKG_VERSION"))
}

/// The memo file of the scan with identity `scan`, in a version's folder.
fn memo_file(version_dir: &Path, scan: u64) -> PathBuf {
    version_dir.join(format!("run-{scan:016x}.bin"))
}

/// The payload of a cache file whose format, build and checksum are right.
pub(crate) fn checked_payload(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..FORMAT.len()] != FORMAT {
        return None;
    }
    let build = u64::from_le_bytes(bytes[FORMAT.len()..FORMAT.len() + 8].try_into().ok()?);
    if build != build_fingerprint() {
        return None;
    }
    let checksum = u128::from_le_bytes(bytes[FORMAT.len() + 8..HEADER_LEN].try_into().ok()?);
    let payload = &bytes[HEADER_LEN..];
    (xxh3_128(payload) == checksum).then_some(payload)
}

pub(crate) fn write_atomically(file: &Path, payload: &[u8]) -> Result<(), String> {
    let version_dir = file.parent().ok_or("no cache folder")?;
    let root = version_dir.parent().ok_or("no cache folder")?;
    let describe = |e: std::io::Error| format!("{}: {e}", root.display());
    std::fs::create_dir_all(version_dir).map_err(describe)?;
    // Like ruff's cache: never committed, never backed up.
    let ignore = root.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# Created by isolint.\n*\n").map_err(describe)?;
    }
    let tag = root.join("CACHEDIR.TAG");
    if !tag.exists() {
        std::fs::write(
            &tag,
            "Signature: 8a477f597d28d172789f06886806bc55\n# isolint's cache: see https://bford.info/cachedir/\n",
        )
        .map_err(describe)?;
    }
    let unique =
        xxh3_64(format!("{:?}{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes());
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = version_dir.join(format!("{name}.{unique:016x}.tmp"));
    let result = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(FORMAT)?;
        out.write_all(&build_fingerprint().to_le_bytes())?;
        out.write_all(&xxh3_128(payload).to_le_bytes())?;
        out.write_all(payload)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(describe)
}
