//! `analyze`: the whole pipeline from paths to sorted findings.

use crate::buildfiles::{read_build, BuildInfo, BuildNote, BuildOptions};
use crate::cache::{
    content_hash, facts_key, CacheStats, FactsCache, LineScans, Outcome, UnitCache, UnitResult,
};
use crate::discover::{discover, DiscoverOptions, SourceKind};
use crate::facts::cpp::ForeignCall;
use crate::facts::{extract, FileFacts};
use crate::finding::{sort_findings, Finding};
use crate::model::{LinkFacts, ModuleSummary, Project};
use crate::parse::macros::{definitions_in, MacroDefinition, ProjectMacros};
use crate::rules::{run_rules, RuleInfo, VerdictInputs, RULES};
use crate::source::{decode_source, read_source, SourceError, SourceText, DEFAULT_MAX_FILE_SIZE};
use crate::version::Target;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

mod resident;
use crate::cache::stamps::{Stamp, Stamped, Stamps};
pub use resident::Resident;
use resident::ResidentFile;

#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub paths: Vec<PathBuf>,
    pub discover: DiscoverOptions,
    pub max_file_size: u64,
    /// Python versions the code is built for; findings in code no target compiles are dropped.
    /// Empty: every Python 3.
    pub targets: Vec<Target>,
    /// Rules to run; `None`: all.
    pub rules: Option<Vec<&'static RuleInfo>>,
    /// Source given directly (an editor's unsaved buffer), with the path findings carry.
    pub stdin: Option<(PathBuf, Vec<u8>)>,
    /// Report findings in vendored libraries and generated files too.
    pub include_vendored: bool,
    /// The `.isolint_cache` folder to read facts from and write them to; `None`: no cache.
    /// With a cache, a scan of an unchanged tree is answered whole from it, and
    /// `Analysis::project` is then empty: callers that need the model leave this `None`.
    pub cache_dir: Option<PathBuf>,
    /// Where to read the build's file lists from (`--compile-commands`).
    pub build: BuildOptions,
    /// Suppressions from outside the source (config, baseline): the findings they cover still
    /// come back, for the caller to remove, but they do not block a module's level. Inline
    /// comments are read here, from the sources.
    pub suppress: Option<crate::suppress::External>,
    /// Keep the whole model in `Analysis::project` (what `plan` reads). Otherwise modules are
    /// modelled and checked a few at a time, each file's facts read back from a spill file when
    /// its first module's turn comes and dropped after its last: memory follows the largest
    /// modules, not the tree. The findings are the same either way.
    pub model: bool,
    /// More unsaved buffers besides `stdin` (an editor's open files), each replacing the text
    /// of the file at its path, or added to the scan when discovery did not find it.
    pub overrides: Vec<(PathBuf, Vec<u8>)>,
    /// Check only the modules holding one of these files (and the files of no module of its
    /// package, when one of them is such a file): every file is still read, linked and shares
    /// its macros, so each of those modules gets exactly the findings and summary of a full
    /// scan; the other modules get none. A partial result, never memorized or recalled. Only a scan checking
    /// module by module (`model: false`) narrows; `None`: every module.
    pub focus: Option<Vec<PathBuf>>,
    /// The process ends soon after this scan (the command line's last scan, with a cache):
    /// the facts its last round decoded are left for the exit to free, not freed one
    /// allocation at a time (a tenth of the CPU of a re-run after an edit in CPython's core).
    /// Never for a caller that goes on (the editor's server, `plan`, the tests).
    pub exits_after: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            discover: DiscoverOptions::default(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            targets: Vec::new(),
            rules: None,
            stdin: None,
            include_vendored: false,
            cache_dir: None,
            build: BuildOptions::default(),
            suppress: None,
            model: false,
            overrides: Vec::new(),
            focus: None,
            exits_after: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParseErrorSummary {
    pub path: PathBuf,
    pub count: usize,
    pub first_line: usize,
}

#[derive(Debug)]
pub struct Analysis {
    pub files_scanned: usize,
    pub skipped: Vec<FileError>,
    pub errors: Vec<FileError>,
    pub parse_errors: Vec<ParseErrorSummary>,
    pub modules: Vec<ModuleSummary>,
    pub findings: Vec<Finding>,
    /// Vendored folders and generated files whose findings are not reported (see
    /// `AnalyzeOptions::include_vendored`).
    pub hidden: Vec<HiddenCode>,
    /// Every file scanned.
    pub files: Vec<PathBuf>,
    /// The model, when `AnalyzeOptions::model` asked for it. Empty otherwise, and when the
    /// result came whole from the cache's run memo, which only a scan with
    /// `AnalyzeOptions::cache_dir` set can do.
    pub project: Project,
    /// What the scan did with the facts cache, when it used one.
    pub cache: Option<CacheStats>,
    /// Build files that could not be read, and extensions whose sources are computed (their
    /// modules' files are then found by includes).
    pub build_notes: Vec<BuildNote>,
    /// Files whose text the scan saw hold no suppression comment (neither `isolint:` nor
    /// numpy's borrowed-reference marker): applying suppressions need not read them again.
    pub without_suppressions: std::collections::HashSet<PathBuf>,
}

impl Analysis {
    /// Nothing could be scanned at all (every path was missing or unreadable).
    pub fn nothing_scanned(&self) -> bool {
        self.files_scanned == 0 && !self.errors.is_empty()
    }
}

enum FileOutcome {
    /// A scan that keeps the whole model keeps every file's facts.
    Facts(Box<FileFacts>),
    /// A scan checking module by module keeps this; the facts wait in the spill or the cache.
    Kept(Box<Kept>),
    Error(FileError),
}

/// What a scan checking module by module keeps of a file in memory, all that linking reads:
/// taken from its facts after the parse, or from the facts cache, which keeps it beside them.
#[derive(Clone, Serialize, Deserialize)]
struct Overview {
    link: LinkFacts,
    /// Every struct of the scan is known to every module's rules (`Layouts`).
    structs: Vec<crate::facts::StructDef>,
    /// What another module's capsule import may be judged by (`FileFacts::fixed_capsules`).
    fixed_capsules: Vec<String>,
    generated: bool,
    parse_errors: usize,
    first_error_line: Option<usize>,
    first_invalid_utf8: Option<usize>,
}

impl Overview {
    fn of(facts: &FileFacts) -> Self {
        Self {
            link: LinkFacts::of(facts),
            structs: facts.structs.clone(),
            fixed_capsules: crate::model::fixed_capsules(facts),
            generated: facts.generated,
            parse_errors: facts.parse_errors.count(),
            first_error_line: facts.first_error_line,
            first_invalid_utf8: facts.first_invalid_utf8,
        }
    }
}

struct Kept {
    overview: Overview,
    /// Where its facts are.
    at: FactsAt,
    /// The size of its facts, serialized.
    size: usize,
    /// The hash of its text and its facts key, when a cache or a [`Resident`] memory is in
    /// use: what its facts are a function of, for the module cache's keys and the memory.
    identity: Option<(u128, u64)>,
}

/// Where a scan checking module by module finds a file's facts when a module needs them.
enum FactsAt {
    /// At this offset and length in the spill.
    Spill(u64, usize),
    /// In the facts cache, which answered for the file.
    Cache,
    /// Encoded, in the caller's [`Resident`] memory.
    Resident(Arc<[u8]>),
}

impl Kept {
    fn path(&self) -> &Path {
        &self.overview.link.path
    }
}

/// Facts written once, after their file's parse, and read back when a module needs them: an
/// unnamed temporary file, or memory when no temporary file can be had.
struct Spill {
    backing: std::sync::Mutex<SpillBacking>,
}

enum SpillBacking {
    File(std::fs::File, u64),
    Memory(Vec<u8>),
}

impl Spill {
    fn new() -> Self {
        let backing = match tempfile::tempfile() {
            Ok(file) => SpillBacking::File(file, 0),
            Err(_) => SpillBacking::Memory(Vec::new()),
        };
        Self {
            backing: std::sync::Mutex::new(backing),
        }
    }

    fn put(&self, facts: &FileFacts) -> (u64, usize) {
        use std::io::{Read, Seek, SeekFrom, Write};
        let bytes = postcard::to_stdvec(facts).expect("facts serialize");
        let mut backing = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        if let SpillBacking::File(file, end) = &mut *backing {
            let at = *end;
            if file.write_all(&bytes).is_ok() {
                *end += bytes.len() as u64;
                return (at, bytes.len());
            }
            // The file takes no more (a full disk): what it holds moves to memory.
            let mut old = Vec::with_capacity(at as usize);
            let read = file
                .seek(SeekFrom::Start(0))
                .and_then(|_| file.take(at).read_to_end(&mut old));
            if read.is_err() || old.len() as u64 != at {
                old.resize(at as usize, 0);
            }
            *backing = SpillBacking::Memory(old);
        }
        let SpillBacking::Memory(buffer) = &mut *backing else {
            unreachable!("the spill is in memory here")
        };
        let at = buffer.len() as u64;
        buffer.extend_from_slice(&bytes);
        (at, bytes.len())
    }

    fn get(&self, at: (u64, usize)) -> FileFacts {
        postcard::from_bytes(&self.bytes(at)).expect("spilled facts decode")
    }

    /// The encoded facts at this offset and length.
    fn bytes(&self, (at, len): (u64, usize)) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        {
            let mut backing = self.backing.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *backing {
                SpillBacking::File(file, _) => {
                    use std::io::{Read, Seek, SeekFrom};
                    file.seek(SeekFrom::Start(at))
                        .and_then(|_| file.read_exact(&mut bytes))
                        .expect("the spill file reads back");
                    // Appends continue at the end.
                    let _ = file.seek(SeekFrom::End(0));
                }
                SpillBacking::Memory(buffer) => {
                    bytes.copy_from_slice(&buffer[at as usize..at as usize + len]);
                }
            }
        }
        bytes
    }
}

type Job = (PathBuf, SourceKind, Option<Vec<u8>>);

/// What the first, cheap pass learns about a file from its text alone.
#[derive(Default)]
struct PreScan {
    bytes: u64,
    /// The hash of the text, when a cache is in use.
    content: Option<u128>,
    macros: Vec<MacroDefinition>,
    /// A header's macro values (`parse::condition::header_values`) and the names the file
    /// switches off (`parse::condition::off_by_default_hints`), as the facts cache keeps them;
    /// `None` when the scan did not need them.
    lines: Option<LineScans>,
    /// The text may hold a suppression comment; `None`: not read ahead, so unknown.
    suppressions: Option<bool>,
    /// The text read here, kept for the scan so that it does not read and decode the file a
    /// second time (within [`HELD_TEXT_BUDGET`]).
    source: Option<SourceText>,
    /// With a [`Resident`] memory or [`Stamps`]: the file's stamp when its text was read
    /// from disk.
    stamp: Option<Stamp>,
    /// Taken from [`Stamps`]: the file was not read.
    unread: bool,
    /// With a [`Resident`] memory: it holds this text of the file (`content`), and what the
    /// pre-scan would learn from it (`macros` and `lines` stay empty unless the macro table is
    /// built again).
    resident: bool,
}

/// At most this much text (bytes) is kept from the pre-scan to the scan; beyond it, files are
/// read again. The texts are held in the pre-scan's order, not the scan's (largest first), so
/// most of them are still held while the largest files are parsed, which is the scan's peak:
/// on a large tree the budget adds to the peak almost whole (16 copies of the corpus: 155 MB
/// with 32 MB, 140 MB with 8). A larger tree reads the rest again from the page cache (the
/// 21 corpus packages hold 14 MB of `.c` and `.h` files, CPython's four folders 25 MB).
const HELD_TEXT_BUDGET: usize = 8 << 20;

fn load(path: &Path, bytes: &Option<Vec<u8>>, max: u64) -> Result<SourceText, SourceError> {
    match bytes {
        Some(bytes) => decode_source(bytes.clone(), max),
        None => read_source(path, max),
    }
}

/// Reads each file once before the scan: its size (the largest files are scheduled first),
/// whether it may hold a suppression comment, and, with a cache (`hashing`), the hash of its
/// text, which is all the run memo needs. Without a cache it also learns what the other files'
/// parse needs from it ([`learn`]); with one, that waits for [`learn_with_cache`], after the run
/// memo could not answer.
///
/// With a `resident` memory, a file on disk whose stamp is unchanged is not read at all: the
/// memory answers for it.
fn prescan(
    jobs: &[Job],
    max: u64,
    hashing: bool,
    resident: Option<&Resident>,
    stamps: Option<&Stamps>,
) -> Vec<PreScan> {
    let want_macros = jobs.len() >= 2;
    let held = std::sync::atomic::AtomicUsize::new(0);
    jobs.par_iter()
        .map(|(path, kind, bytes)| {
            // A file on disk whose stamp holds (in the memory, or in the cache's stamps): its
            // text gave this last time.
            let known = |bytes, content, suppressions, stamp| PreScan {
                bytes,
                content: Some(content),
                suppressions: Some(suppressions),
                stamp,
                ..PreScan::default()
            };
            if let (Some(memory), None) = (resident, bytes) {
                if let Some(f) = memory.unchanged(path) {
                    return PreScan {
                        resident: true,
                        ..known(f.bytes, f.content, f.suppressions, f.stamp)
                    };
                }
            }
            if let (Some(stamps), None) = (stamps, bytes) {
                if let Some(f) = stamps.unchanged(path) {
                    return PreScan {
                        unread: true,
                        ..known(f.bytes, f.content, f.suppressions, Some(f.stamp))
                    };
                }
            }
            if !want_macros && !hashing {
                let size = match bytes {
                    Some(b) => b.len() as u64,
                    None => std::fs::metadata(path).map_or(0, |m| m.len()),
                };
                return PreScan {
                    bytes: size,
                    ..PreScan::default()
                };
            }
            // Taken before the read: a write after it changes the stamp.
            let stamp = (resident.is_some() || stamps.is_some())
                .then_some(())
                .filter(|_| bytes.is_none())
                .and_then(|_| Stamp::of(path));
            let Ok(source) = load(path, bytes, max) else {
                return PreScan::default();
            };
            let content = hashing.then(|| content_hash(&source.text, source.first_invalid_utf8));
            let mut pre = PreScan {
                content,
                suppressions: Some(crate::suppress::may_suppress(&source.text)),
                stamp,
                resident: resident
                    .zip(content)
                    .is_some_and(|(memory, c)| memory.with_content(path, c).is_some()),
                ..PreScan::default()
            };
            if !hashing {
                learn(&mut pre, path, &source.text, *kind, want_macros, None);
            }
            let bytes = source.text.len();
            let keep = held.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes
                <= HELD_TEXT_BUDGET;
            pre.bytes = bytes as u64;
            pre.source = keep.then_some(source);
            pre
        })
        .collect()
}

/// What every other file's parse needs from this one: the macros it defines (from the cache
/// when it holds this text, not tokenized again), and, when the scan has several files
/// (`want_macros`), a header's macro values and the names the file switches off.
fn learn(
    pre: &mut PreScan,
    path: &Path,
    text: &str,
    kind: SourceKind,
    want_macros: bool,
    cache: Option<&FactsCache>,
) {
    let cached = match (cache, pre.content) {
        (Some(c), Some(h)) => c.macros(path, h),
        _ => None,
    };
    pre.macros = cached.unwrap_or_else(|| definitions_in(text.as_bytes()));
    if want_macros {
        let header = kind == SourceKind::Header;
        let cached = match (cache, pre.content) {
            (Some(c), Some(h)) => c.line_scans(path, h, header),
            _ => None,
        };
        let lines = cached.unwrap_or_else(|| LineScans {
            header,
            values: if header {
                crate::parse::condition::header_values(text)
            } else {
                Vec::new()
            },
            off_hints: crate::parse::condition::off_by_default_hints(text, header),
        });
        pre.lines = Some(lines);
    }
}

/// The facts cache of a scan, opened when first needed: at once by a scan without a
/// [`Resident`] memory, only for a file the memory cannot answer for by one with it.
struct DiskCache {
    dir: Option<PathBuf>,
    opened: OnceLock<FactsCache>,
}

impl DiskCache {
    fn new(dir: Option<&Path>) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
            opened: OnceLock::new(),
        }
    }

    /// The cache, opened now if it was not; `None` without a cache folder.
    fn get(&self) -> Option<&FactsCache> {
        let dir = self.dir.as_deref()?;
        Some(self.opened.get_or_init(|| FactsCache::open(dir)))
    }

    /// The cache, if it was opened.
    fn if_open(&self) -> Option<&FactsCache> {
        self.opened.get()
    }

    fn into_inner(self) -> Option<FactsCache> {
        self.opened.into_inner()
    }
}

/// [`learn`] for every file a cached scan's pre-scan read, once the run memo could not answer:
/// from the text the pre-scan kept, or read again. A file the [`Resident`] memory holds is
/// left out (the memory knows what it would learn); an editor's buffer the memory does not hold
/// is new text, learnt without the facts cache.
fn learn_with_cache(
    jobs: &[Job],
    pre: &mut [PreScan],
    held: &[Option<SourceText>],
    max: u64,
    disk: &DiskCache,
    resident: bool,
) {
    let want_macros = jobs.len() >= 2;
    jobs.par_iter()
        .zip(pre.par_iter_mut())
        .zip(held.par_iter())
        .for_each(|(((path, kind, bytes), pre), held)| {
            if pre.content.is_none() || pre.resident {
                // Not read ahead (unreadable): the scan reports it. Or known to the memory.
                return;
            }
            let cache = if resident && bytes.is_some() {
                disk.if_open()
            } else {
                disk.get()
            };
            match held {
                Some(source) => learn(pre, path, &source.text, *kind, want_macros, cache),
                // A file not read ahead (past the held budget, or answered by its stamp): the
                // cache holds what its text gives, unless the text is new to it.
                None if cache.is_some_and(|c| learn_cached(pre, path, *kind, want_macros, c)) => {}
                None => {
                    if let Ok(source) = load(path, bytes, max) {
                        // The cache's macros belong to the text the pre-scan hashed.
                        let same = pre.content
                            == Some(content_hash(&source.text, source.first_invalid_utf8));
                        let cache = cache.filter(|_| same);
                        learn(pre, path, &source.text, *kind, want_macros, cache);
                    }
                }
            }
        });
}

/// [`learn`] from the facts cache alone, when it holds both the macros and the line scans of
/// the text the pre-scan hashed; `false` (nothing learnt) otherwise.
fn learn_cached(
    pre: &mut PreScan,
    path: &Path,
    kind: SourceKind,
    want_macros: bool,
    cache: &FactsCache,
) -> bool {
    let Some(content) = pre.content else {
        return false;
    };
    let Some(macros) = cache.macros(path, content) else {
        return false;
    };
    let lines = match want_macros {
        true => match cache.line_scans(path, content, kind == SourceKind::Header) {
            Some(lines) => Some(lines),
            None => return false,
        },
        false => None,
    };
    pre.macros = macros;
    pre.lines = lines;
    true
}

struct ScanContext<'a> {
    max: u64,
    shared_macros: &'a ProjectMacros,
    disk: &'a DiskCache,
    resident: Option<&'a Resident>,
    build: &'a BuildInfo,
    /// The macros every compile command shares: what a header not compiled on its own sees.
    common_defines: Vec<(String, bool)>,
}

impl ScanContext<'_> {
    /// The cache key of this scan's facts for a file of `kind` compiled with `defines`: the
    /// project's macros and the build's shape the parse.
    fn facts_key(&self, kind: SourceKind, defines: &[(String, bool)]) -> u64 {
        let mut fingerprint = xxhash_rust::xxh3::Xxh3::new();
        fingerprint.update(&self.shared_macros.fingerprint().to_le_bytes());
        for (name, defined) in defines {
            fingerprint.update(if *defined { b"-D" } else { b"-U" });
            fingerprint.update(name.as_bytes());
            fingerprint.update(b"\0");
        }
        facts_key(kind.into(), fingerprint.digest())
    }
}

/// Scans one file: its facts from the cache or from its parse. With a spill (a scan checking
/// module by module), only the file's [`Overview`] stays in memory: the facts of a parsed file
/// go to the spill, and a cached file's are not even decoded.
fn scan_one(
    job: Job,
    pre: &PreScan,
    held: Option<SourceText>,
    cx: &ScanContext,
    spill: Option<&Spill>,
) -> FileOutcome {
    let (path, kind, bytes) = job;
    let defines = cx.build.defines_for(&path, &cx.common_defines);
    if let (Some(memory), Some(content), true) = (cx.resident, pre.content, pre.resident) {
        let key = cx.facts_key(kind, &defines);
        if let Some(file) = memory
            .with_content(&path, content)
            .filter(|f| f.facts_key == key)
        {
            return FileOutcome::Kept(Box::new(Kept {
                overview: file.overview.clone(),
                at: FactsAt::Resident(file.facts.clone()),
                size: file.facts.len(),
                identity: Some((content, key)),
            }));
        }
    }
    // With a memory, an editor's buffer it does not hold is new text: the facts cache is not
    // opened for it.
    let cache = if cx.resident.is_some() && bytes.is_some() {
        cx.disk.if_open()
    } else {
        cx.disk.get()
    };
    if let (Some(cache), Some(content)) = (cache, pre.content) {
        let key = cx.facts_key(kind, &defines);
        if spill.is_some() {
            let overview = cache
                .overview(&path, content, key)
                .and_then(|bytes| postcard::from_bytes::<Overview>(bytes).ok())
                .filter(|o| o.link.path == path);
            if let Some(overview) = overview {
                return FileOutcome::Kept(Box::new(Kept {
                    overview,
                    at: FactsAt::Cache,
                    size: cache.facts_len(&path),
                    identity: Some((content, key)),
                }));
            }
        } else if let Some(facts) = cache.facts(&path, content, key) {
            return FileOutcome::Facts(Box::new(facts));
        }
    }
    let loaded = match held {
        Some(source) => Ok(source),
        None => load(&path, &bytes, cx.max),
    };
    let source = match loaded {
        Ok(s) => s,
        Err(err) => {
            return FileOutcome::Error(FileError {
                path,
                message: err.to_string(),
            });
        }
    };
    match crate::parse::parse_with_defines(source.text.as_bytes(), cx.shared_macros, &defines) {
        // The tree is dropped at the end of this arm: only the facts outlive the file.
        Ok(parsed) => {
            let mut facts = extract(
                &parsed,
                source.text.as_bytes(),
                &path,
                kind,
                source.first_invalid_utf8,
                cx.shared_macros,
            );
            facts.generated = crate::origin::is_generated(&source.text);
            let overview = (spill.is_some() || cache.is_some()).then(|| Overview::of(&facts));
            let mut identity = None;
            let content = (cx.resident.is_some() || cache.is_some())
                .then(|| content_hash(&source.text, source.first_invalid_utf8));
            if let (Some(content), true) = (content, cx.resident.is_some()) {
                identity = Some((content, cx.facts_key(kind, &defines)));
            }
            if let (Some(cache), Some(content)) = (cache, content) {
                // The pre-scan's macros belong to the text it read; re-derive them if the file
                // changed in between.
                let learned = if pre.content == Some(content) {
                    learnt(pre, &path, cx.resident)
                } else {
                    (definitions_in(source.text.as_bytes()), None)
                };
                let key = cx.facts_key(kind, &defines);
                let encoded = overview
                    .as_ref()
                    .and_then(|o| postcard::to_stdvec(o).ok())
                    .unwrap_or_default();
                cache.store(&path, content, learned, key, &facts, encoded);
                identity = Some((content, key));
            }
            match (spill, overview) {
                (Some(spill), Some(overview)) => {
                    let at = spill.put(&facts);
                    FileOutcome::Kept(Box::new(Kept {
                        overview,
                        at: FactsAt::Spill(at.0, at.1),
                        size: at.1,
                        identity,
                    }))
                }
                _ => FileOutcome::Facts(Box::new(facts)),
            }
        }
        Err(err) => FileOutcome::Error(FileError {
            path,
            message: err.to_string(),
        }),
    }
}

pub fn analyze(options: &AnalyzeOptions) -> Analysis {
    analyze_in(options, None)
}

/// [`analyze`] for a caller that analyses the same tree again and again (the editor's server):
/// `resident` keeps what the scan learnt of every file between calls, so that the next call
/// reads, parses and decodes only what changed (see [`Resident`]). The result is the one
/// [`analyze`] gives. A scan that keeps the model (`AnalyzeOptions::model`) does not use it.
pub fn analyze_resident(options: &AnalyzeOptions, resident: &mut Resident) -> Analysis {
    if options.model {
        return analyze_in(options, None);
    }
    analyze_in(options, Some(resident))
}

fn analyze_in(options: &AnalyzeOptions, mut resident: Option<&mut Resident>) -> Analysis {
    let mut found = discover(&options.paths, &options.discover);
    let mut jobs: Vec<Job> = found.sources.drain(..).map(|(p, k)| (p, k, None)).collect();
    if let Some((path, bytes)) = &options.stdin {
        let kind = crate::discover::classify(path).unwrap_or(SourceKind::C);
        jobs.retain(|(p, _, _)| p != path);
        jobs.push((path.clone(), kind, Some(bytes.clone())));
    }
    for (path, bytes) in &options.overrides {
        match jobs.iter_mut().find(|(p, _, _)| p == path) {
            Some(job) => job.2 = Some(bytes.clone()),
            None => {
                if let Some(kind) = crate::discover::classify(path) {
                    jobs.push((path.clone(), kind, Some(bytes.clone())));
                }
            }
        }
    }
    let discover_errors: Vec<FileError> = found
        .errors
        .into_iter()
        .map(|(path, message)| FileError { path, message })
        .collect();
    // C++ files are read only for the containers they change (`facts::cpp`); their hashes
    // join the run memo's inputs, so an edited C++ file is never answered from the memo.
    let cpp: Vec<(Vec<ForeignCall>, u64)> = found
        .skipped_cpp
        .par_iter()
        .map(|path| crate::facts::cpp::read_calls(path))
        .collect();
    let cpp_inputs = cpp
        .iter()
        .fold(xxhash_rust::xxh3::Xxh3::new(), |mut hasher, (_, hash)| {
            hasher.update(&hash.to_le_bytes());
            hasher
        });
    let foreign_calls: Vec<ForeignCall> = cpp.into_iter().flat_map(|(calls, _)| calls).collect();
    let skipped: Vec<FileError> = found
        .skipped_cpp
        .into_iter()
        .map(|path| FileError {
            path,
            message: "C++ source: not scanned (read only for the containers it changes)"
                .to_string(),
        })
        .collect();
    let build = if options.stdin.is_some() && options.build.compile_commands.is_none() {
        // An editor's buffer: one file, no build.
        BuildInfo::default()
    } else {
        read_build(&options.paths, &options.build)
    };
    let cache_dir = options.cache_dir.as_deref();
    // A server's memory keeps its own stamps.
    let stamps = cache_dir.filter(|_| resident.is_none()).map(Stamps::open);
    let mut pre = prescan(
        &jobs,
        options.max_file_size,
        cache_dir.is_some() || resident.is_some(),
        resident.as_deref(),
        stamps.as_ref(),
    );
    let held: Vec<Option<SourceText>> = pre.iter_mut().map(|p| p.source.take()).collect();
    let unread = pre.iter().filter(|p| p.unread).count();
    let origins = vendored_dirs(&jobs, &options.paths);
    let packages = package_dirs(&jobs);
    // A focused run (the editor's re-check of some modules) never answers from the memo, nor
    // does one that keeps the model (`plan`, `fix`): the memo holds findings, not the model.
    let memo_key = cache_dir
        .filter(|_| options.focus.is_none() && !options.model)
        .and_then(|_| {
            let places = (&origins, &packages);
            memo_key(options, &jobs, &pre, places, &build, cpp_inputs.digest())
        });

    // A scan with a memory is there to fill it: the run memo holds findings, not the files.
    let recall = resident.is_none();
    if let (Some(dir), Some((scan, inputs)), true) = (cache_dir, memo_key, recall) {
        if let Some(outcome) = FactsCache::recall(dir, scan, inputs) {
            let paths = jobs.iter().map(|(path, _, _)| path);
            let stats = CacheStats {
                hits: jobs.len(),
                whole_run: true,
                write_error: save_stamps(stamps, paths, &pre).err(),
                unread,
                ..CacheStats::default()
            };
            let empty = Project::build(Vec::new());
            let mut analysis =
                Analysis::from_outcome(outcome, discover_errors, skipped, empty, Some(stats));
            analysis.build_notes = build.notes;
            analysis.without_suppressions =
                without_suppressions(jobs.iter().map(|(path, _, _)| path), &pre);
            return analysis;
        }
    }

    // The facts cache is opened only now: the run memo above needs none of it. With a memory,
    // only when a file on disk is new to it.
    let disk = DiskCache::new(cache_dir);
    if resident.is_none() {
        disk.get();
    }
    if disk.dir.is_some() || resident.is_some() {
        let memory = resident.is_some();
        learn_with_cache(&jobs, &mut pre, &held, options.max_file_size, &disk, memory);
    }
    let (shared_macros, macro_signature) = match resident.as_deref() {
        Some(memory) => resident_macros(&jobs, &mut pre, memory, &disk),
        // Without a cache, nothing reads a file's own macro lists once the project's table
        // holds them: they move into it instead of being copied, so memory keeps one table,
        // not one list per file beside it. A cache stores each file's lists with its facts.
        None => (Arc::new(project_macros(&mut pre, disk.dir.is_some())), None),
    };
    let cx = ScanContext {
        max: options.max_file_size,
        shared_macros: &shared_macros,
        disk: &disk,
        resident: resident.as_deref(),
        build: &build,
        common_defines: build.common_defines(),
    };
    // Largest files first, each taken by the next free worker: a big file started last would
    // leave the other workers idle at the end. Two of the largest at once would hold two of
    // the largest trees: a worker takes the largest file that fits beside those in parse.
    let jobs_paths: Vec<PathBuf> = jobs.iter().map(|(p, _, _)| p.clone()).collect();
    let mut order: Vec<(usize, (Job, Option<SourceText>))> =
        jobs.into_iter().zip(held).enumerate().collect();
    order.sort_by_key(|(i, _)| std::cmp::Reverse(pre[*i].bytes));
    let spill = (!options.model).then(Spill::new);
    let sizes: Vec<u64> = order.iter().map(|(i, _)| pre[*i].bytes).collect();
    let mut outcomes: Vec<(usize, FileOutcome)> =
        in_parse_budget(order, &sizes, |(i, (job, held))| {
            (i, scan_one(job, &pre[i], held, &cx, spill.as_ref()))
        });
    outcomes.sort_by_key(|(i, _)| *i);

    let mut errors: Vec<FileError> = Vec::new();
    let mut files = Vec::new();
    let mut kept = Vec::new();
    // With a memory: what it learns of the files it did not answer for, and each kept file's
    // link hash (see `Resident::linked`).
    let mut learnt: Vec<(PathBuf, ResidentFile)> = Vec::new();
    let mut restamped: Vec<(PathBuf, Stamp)> = Vec::new();
    let mut link_hashes: Vec<Option<u64>> = Vec::new();
    for (i, outcome) in outcomes {
        match outcome {
            FileOutcome::Facts(f) => files.push(*f),
            FileOutcome::Kept(k) => {
                if let Some(memory) = cx.resident {
                    let p = &pre[i];
                    match &k.at {
                        FactsAt::Resident(_) => {
                            let file = p.content.and_then(|c| memory.with_content(k.path(), c));
                            link_hashes.push(file.and_then(|f| f.link_hash));
                            if let (Some(file), Some(stamp)) = (file, p.stamp) {
                                if file.stamp != Some(stamp) {
                                    restamped.push((k.path().to_path_buf(), stamp));
                                }
                            }
                        }
                        at => {
                            let link_hash = resident::encoded_hash(&k.overview.link);
                            link_hashes.push(link_hash);
                            let found = (at, memory);
                            if let Some(file) = remember(&k, found, p, link_hash, &spill, &disk) {
                                learnt.push((k.path().to_path_buf(), file));
                            }
                        }
                    }
                }
                kept.push(*k)
            }
            FileOutcome::Error(e) => errors.push(e),
        }
    }
    // Each file's path, invalid UTF-8 offset, parse errors (count, first line), generated flag.
    type Meta<'a> = (&'a Path, Option<usize>, usize, Option<usize>, bool);
    let meta: Vec<Meta> = if options.model {
        files
            .iter()
            .map(|f| {
                let p: &Path = &f.path;
                (
                    p,
                    f.first_invalid_utf8,
                    f.parse_errors.count(),
                    f.first_error_line,
                    f.generated,
                )
            })
            .collect()
    } else {
        kept.iter()
            .map(|k| {
                let o = &k.overview;
                (
                    k.path(),
                    o.first_invalid_utf8,
                    o.parse_errors,
                    o.first_error_line,
                    o.generated,
                )
            })
            .collect()
    };
    for (path, invalid, _, _, _) in &meta {
        if let Some(offset) = invalid {
            errors.push(FileError {
                path: path.to_path_buf(),
                message: format!("not valid UTF-8 (first bad byte at offset {offset}); scanned with those bytes replaced"),
            });
        }
    }

    let files_scanned = meta.len();
    let parse_errors = meta
        .iter()
        .filter(|(_, _, count, _, _)| *count > 0)
        .map(|(path, _, count, first_line, _)| ParseErrorSummary {
            path: path.to_path_buf(),
            count: *count,
            first_line: first_line.unwrap_or(1),
        })
        .collect();
    let file_paths: Vec<PathBuf> = meta.iter().map(|m| m.0.to_path_buf()).collect();
    let generated: Vec<(PathBuf, bool)> = meta.iter().map(|m| (m.0.to_path_buf(), m.4)).collect();
    drop(meta);

    let rules: Vec<&'static RuleInfo> = options.rules.clone().unwrap_or_else(|| RULES.to_vec());
    // What the project suppresses decides its verdicts: a suppressed finding blocks no level.
    let mut texts = crate::suppress::Texts::new(
        options
            .stdin
            .iter()
            .chain(&options.overrides)
            .map(|(p, b)| (p.clone(), String::from_utf8_lossy(b).into_owned())),
    );
    // Only files the pre-scan saw a suppression in (or did not read) are read again.
    let pre_by_path: HashMap<&Path, Option<bool>> = jobs_paths
        .iter()
        .zip(&pre)
        .map(|(p, s)| (p.as_path(), s.suppressions))
        .collect();
    let with_comments: Vec<PathBuf> = file_paths
        .iter()
        .filter(|p| pre_by_path.get(p.as_path()).copied().flatten() != Some(false))
        .cloned()
        .collect();
    let inline = crate::suppress::InlineIndex::read(&with_comments, &mut texts);
    drop(texts);
    let external = options.suppress.as_ref();
    let suppressed = |f: &Finding| {
        if inline.covers(f) {
            Some("comment")
        } else {
            external.and_then(|e| (e.why)(f))
        }
    };
    // The module cache: one file per scan identity, beside the facts cache. Not for an edit's
    // re-check with a memory: its focused modules hold the edited text, which no cache holds.
    let focused_in_memory = resident.is_some() && options.focus.is_some();
    let unit_cache = cache_dir
        .filter(|_| !options.model && !focused_in_memory)
        .map(|dir| {
            UnitCache::open(
                dir,
                xxhash_rust::xxh3::xxh3_64(scan_identity(options).as_bytes()),
            )
        });
    let (mut units_reused, mut units_checked, mut decoded_in_memory) = (0, 0, 0);
    let parsed = kept
        .iter()
        .filter(|k| matches!(k.at, FactsAt::Spill(..)))
        .count();
    let from_memory = kept
        .iter()
        .filter(|k| matches!(k.at, FactsAt::Resident(_)))
        .count();
    let (project, mut findings, summaries) = if options.model {
        let numbers = package_numbers(files.iter().map(|f| f.path.as_path()), &packages);
        let mut project = Project::build_with(files, &build, &numbers);
        project.foreign_calls = foreign_calls;
        let findings = run_rules(&project, &rules, &options.targets, &suppressed);
        let summaries = summaries_of(&project, &project.modules);
        (project, findings, summaries)
    } else {
        let spill = spill.expect("a spill when no model is kept");
        let focus = options.focus.as_ref().map(|paths| {
            kept.iter()
                .map(|k| paths.iter().any(|p| p == k.path()))
                .collect::<Vec<bool>>()
        });
        let reuse = unit_cache.as_ref().map(|cache| UnitReuse {
            cache,
            options: {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(scan_identity(options).as_bytes());
                // What the build files say decides the modules' file lists and defines.
                h.update(format!("{build:?}").as_bytes());
                h.digest128()
            },
        });
        let numbers = package_numbers(kept.iter().map(|k| k.path()), &packages);
        let in_memory = resident.as_deref_mut().map(|memory| InMemory {
            linked: &mut memory.linked,
            link_hashes: link_hashes.as_slice(),
            decoded: &mut memory.decoded,
        });
        let by_module = check_by_module(
            (kept, &numbers, focus.as_deref()),
            (&spill, disk.if_open()),
            (reuse, in_memory, options.exits_after),
            &build,
            foreign_calls,
            &rules,
            &options.targets,
            &suppressed,
        );
        units_reused = by_module.reused;
        units_checked = by_module.checked;
        decoded_in_memory = by_module.decoded_in_memory;
        (
            Project::build(Vec::new()),
            by_module.findings,
            by_module.summaries,
        )
    };
    findings.retain(|f| applies_to_targets(f, &options.targets));
    sort_findings(&mut findings);
    let modules = with_verdicts(summaries, &findings, &suppressed);
    let hidden = hide_vendored(
        &mut findings,
        &generated,
        &origins,
        options.include_vendored,
    );
    // A global in a header included by two modules is one definition: report it once.
    findings.dedup_by(|b, a| {
        a.rule == b.rule
            && a.path == b.path
            && a.location.start_byte == b.location.start_byte
            && a.symbol == b.symbol
    });
    let outcome = Outcome {
        files_scanned,
        files: file_paths,
        errors,
        parse_errors,
        modules,
        findings,
        hidden,
    };
    if let Some(memory) = resident.as_deref_mut() {
        for (path, stamp) in restamped {
            if let Some(file) = memory.files.get_mut(&path) {
                file.stamp = Some(stamp);
            }
        }
        memory.files.extend(learnt);
        let scanned: std::collections::HashSet<&PathBuf> = jobs_paths.iter().collect();
        memory.files.retain(|path, _| scanned.contains(path));
        memory.macros = macro_signature.map(|signature| (signature, shared_macros.clone()));
    }
    let with_memory = resident.is_some();
    let stamps_saved = save_stamps(stamps, jobs_paths.iter(), &pre);
    let stats = match disk.into_inner() {
        Some(c) => {
            let mut stats = CacheStats {
                discarded: c.discarded(),
                hits: c.hits(),
                misses: c.misses(),
                decoded: c.decoded() + decoded_in_memory,
                resident: from_memory,
                units_reused,
                units_checked,
                unread,
                ..CacheStats::default()
            };
            let memo = match memo_key {
                Some((scan, inputs)) => c.memorize(scan, inputs, &outcome),
                None => Ok(()),
            };
            let units = unit_cache.map_or(Ok(()), |u| u.save(options.focus.is_some()));
            stats.write_error = c.save().and(memo).and(units).and(stamps_saved).err();
            Some(stats)
        }
        // The memory answered for every file on disk: the facts cache was not opened, nor is
        // it written (an editor's buffer parsed here is new text; a file saved from it is read
        // into the cache by the next scan that opens it).
        None => with_memory.then_some(CacheStats {
            misses: parsed,
            resident: from_memory,
            decoded: decoded_in_memory,
            units_reused,
            units_checked,
            ..CacheStats::default()
        }),
    };
    let mut analysis = Analysis::from_outcome(outcome, discover_errors, skipped, project, stats);
    analysis.build_notes = build.notes;
    analysis.without_suppressions = without_suppressions(jobs_paths.iter(), &pre);
    analysis
}

/// Keeps, for the next scan, the stamp of every file this one read or took from its stamp
/// (see [`Stamps`]); a file read too soon after a write has none and is read again.
fn save_stamps<'a>(
    stamps: Option<Stamps>,
    paths: impl Iterator<Item = &'a PathBuf>,
    pre: &[PreScan],
) -> Result<(), String> {
    let Some(stamps) = stamps else {
        return Ok(());
    };
    let entries = paths
        .zip(pre)
        .filter_map(|(path, p)| {
            let file = Stamped {
                stamp: p.stamp?,
                bytes: p.bytes,
                content: p.content?,
                suppressions: p.suppressions?,
            };
            Some((path.clone(), file))
        })
        .collect();
    stamps.save(entries)
}

/// The files whose text the pre-scan read (or the memory knew) and found no suppression
/// comment in.
fn without_suppressions<'a>(
    paths: impl Iterator<Item = &'a PathBuf>,
    pre: &[PreScan],
) -> std::collections::HashSet<PathBuf> {
    paths
        .zip(pre)
        .filter(|(_, p)| p.suppressions == Some(false))
        .map(|(path, _)| path.clone())
        .collect()
}

impl Analysis {
    fn from_outcome(
        outcome: Outcome,
        mut errors: Vec<FileError>,
        skipped: Vec<FileError>,
        project: Project,
        cache: Option<CacheStats>,
    ) -> Self {
        errors.extend(outcome.errors);
        errors.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
        Self {
            files_scanned: outcome.files_scanned,
            files: outcome.files,
            skipped,
            errors,
            parse_errors: outcome.parse_errors,
            modules: outcome.modules,
            findings: outcome.findings,
            hidden: outcome.hidden,
            project,
            cache,
            build_notes: Vec::new(),
            without_suppressions: Default::default(),
        }
    }
}

/// Each module's summary, with what its verdict reads of the module (not its globals or
/// types): read while the module's files are loaded, for [`with_verdicts`] once every finding
/// is in.
fn summaries_of(
    project: &Project,
    modules: &[crate::model::ExtensionModule],
) -> Vec<(ModuleSummary, VerdictInputs)> {
    modules
        .iter()
        .filter_map(|m| Some((ModuleSummary::of(project, m)?, VerdictInputs::of(m))))
        .collect()
}

/// Each module's summary and verdict; the verdict reads the module's own findings.
fn with_verdicts(
    summaries: Vec<(ModuleSummary, VerdictInputs)>,
    findings: &[Finding],
    suppressed: crate::rules::SuppressedBy,
) -> Vec<ModuleSummary> {
    let mut by_module: HashMap<&str, Vec<&Finding>> = HashMap::new();
    for f in findings {
        if let Some(m) = f.module.as_deref() {
            by_module.entry(m).or_default().push(f);
        }
    }
    summaries
        .into_iter()
        .map(|(mut summary, inputs)| {
            let files: std::collections::HashSet<&PathBuf> = summary.files.iter().collect();
            let own: Vec<Finding> = by_module
                .get(summary.name.as_str())
                .map(|list| {
                    list.iter()
                        .filter(|f| files.contains(&f.path))
                        .map(|f| (*f).clone())
                        .collect()
                })
                .unwrap_or_default();
            summary.verdict = Some(crate::rules::verdict_of(&inputs, &own, suppressed));
            summary
        })
        .collect()
}

/// Source bytes in parse at once beyond the largest file's: a file's tree and the pre-pass's
/// tables take tens of times its size, so the largest files of a scan are parsed one at a time,
/// each beside smaller ones.
const PARSE_BUDGET_EXTRA: u64 = 1 << 20;

/// Runs `work` on every job on every worker, `sizes[i]` being job `i`'s size (the jobs sorted
/// largest first): a free worker takes the largest job whose size fits, with the jobs in work,
/// within the largest size plus [`PARSE_BUDGET_EXTRA`], and waits when none fits.
fn in_parse_budget<J: Send, R: Send>(
    jobs: Vec<J>,
    sizes: &[u64],
    work: impl Fn(J) -> R + Sync,
) -> Vec<R> {
    use std::sync::{Condvar, Mutex};
    let budget = sizes.first().copied().unwrap_or(0) + PARSE_BUDGET_EXTRA;
    struct Queue<J> {
        jobs: Vec<Option<J>>,
        /// Index of the first job not taken yet.
        next: usize,
        in_work: u64,
    }
    let queue = Mutex::new(Queue {
        jobs: jobs.into_iter().map(Some).collect(),
        next: 0,
        in_work: 0,
    });
    let freed = Condvar::new();
    let results = Mutex::new(Vec::with_capacity(sizes.len()));
    let take = || -> Option<(J, u64)> {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while q.next < q.jobs.len() && q.jobs[q.next].is_none() {
                q.next += 1;
            }
            if q.next == q.jobs.len() {
                return None;
            }
            let room = budget.saturating_sub(q.in_work);
            let fits = if q.in_work == 0 {
                Some(q.next)
            } else {
                (q.next..q.jobs.len()).find(|&i| q.jobs[i].is_some() && sizes[i] <= room)
            };
            if let Some(i) = fits {
                q.in_work += sizes[i];
                let job = q.jobs[i].take().expect("a job not taken");
                return Some((job, sizes[i]));
            }
            q = freed.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    };
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads() {
            scope.spawn(|_| {
                while let Some((job, size)) = take() {
                    let result = work(job);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(result);
                    queue.lock().unwrap_or_else(|e| e.into_inner()).in_work -= size;
                    freed.notify_all();
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Read back this much of spilled facts (bytes) at most for one round of modules, unless one
/// module alone needs more: each round's modules are modelled and checked on every worker,
/// then the files no later module holds are dropped.
const ROUND_BUDGET: usize = 4 << 20;

/// The module cache of a scan and the hash of the scan's options, rules and build: the
/// scan-wide part of every module's key that does not come from the files.
struct UnitReuse<'a> {
    cache: &'a UnitCache,
    options: u128,
}

/// What [`check_by_module`] reads and keeps in a [`Resident`] memory: the last linking, each
/// file's link hash in scan order, and the decoded facts of the files the last check modelled.
struct InMemory<'a> {
    linked: &'a mut Option<resident::Linked>,
    link_hashes: &'a [Option<u64>],
    decoded: &'a mut resident::Decoded,
}

/// What [`check_by_module`] found, unit by unit in report order.
struct ByModule {
    findings: Vec<Finding>,
    summaries: Vec<(ModuleSummary, VerdictInputs)>,
    /// Units whose result came from the module cache.
    reused: usize,
    /// Units modelled and checked.
    checked: usize,
    /// Files whose facts were decoded from a [`Resident`] memory.
    decoded_in_memory: usize,
}

/// Links the files into modules, then models and checks them a round at a time, in the order
/// of [`Project::units`]: each file's facts are read back for its first module's round and
/// dropped after its last module's. The findings and summaries are those of
/// `Project::build_with` and `run_rules` over every file at once. With a module cache
/// (`reuse`), a unit whose key is cached is not modelled at all, and a file no modelled unit
/// holds is never read back.
#[allow(clippy::too_many_arguments)]
fn check_by_module(
    (kept, packages, focus): (Vec<Kept>, &[usize], Option<&[bool]>),
    (spill, cache): (&Spill, Option<&FactsCache>),
    (reuse, memory, exits_after): (Option<UnitReuse>, Option<InMemory>, bool),
    build: &BuildInfo,
    foreign_calls: Vec<ForeignCall>,
    rules: &[&'static RuleInfo],
    targets: &[Target],
    suppressed: crate::rules::SuppressedBy,
) -> ByModule {
    use crate::model::{
        build_group, build_unattached, group_links, not_compiled_files, owners, sort_groups,
        unattached_files,
    };
    let mut kept = kept;
    // With a memory, the last linking stands while every file's link facts are the same.
    let link_signature = memory.as_ref().and_then(|m| {
        resident::signature(
            format!("{build:?}").as_bytes(),
            kept.iter()
                .map(|k| k.path())
                .zip(m.link_hashes.iter().copied()),
        )
    });
    let remembered = memory
        .as_ref()
        .and_then(|m| m.linked.as_ref())
        .filter(|l| Some(l.signature) == link_signature)
        .map(|l| (l.groups.clone(), l.not_compiled.clone()));
    // Linking reads what the files include, define and want; after it only their paths and
    // kinds are needed, so the lists leave `kept` instead of being copied (the cache entries
    // were encoded when the files were read).
    let links: Vec<LinkFacts> = kept
        .iter_mut()
        .map(|k| {
            let shell = LinkFacts {
                path: k.overview.link.path.clone(),
                kind: k.overview.link.kind,
                includes: Vec::new(),
                uncompiled_includes: Vec::new(),
                init_macros: Vec::new(),
                inits: Vec::new(),
                provides: Vec::new(),
                wants: Vec::new(),
            };
            std::mem::replace(&mut k.overview.link, shell)
        })
        .collect();
    let (groups, not_compiled) = remembered.unwrap_or_else(|| {
        let mut groups = group_links(&links, build);
        sort_groups(&mut groups);
        (groups, not_compiled_files(&links))
    });
    drop(links);
    // With a memory, the facts decoded for a focused check's units are kept for the next
    // check, which most often models the same units again (an editor's next edit of the same
    // file). A check of every unit keeps none: that would hold the whole tree's facts decoded.
    let mut decoded = None;
    if let Some(m) = memory {
        if focus.is_some() {
            decoded = Some(m.decoded);
        } else {
            m.decoded.clear();
        }
        if let Some(signature) = link_signature {
            *m.linked = Some(resident::Linked {
                signature,
                groups: groups.clone(),
                not_compiled: not_compiled.clone(),
            });
        }
    }
    let mut still_decoded = resident::Decoded::default();
    let module_count = groups.len();
    let rest = unattached_files(kept.len(), &groups, &not_compiled, packages);
    let owners = owners(kept.len(), &groups, &rest);
    let layouts = crate::model::pytypes::Layouts::of_structs(
        kept.iter()
            .enumerate()
            .flat_map(|(fi, k)| k.overview.structs.iter().map(move |s| (fi, s))),
    );
    let placeholder = |k: &Kept| FileFacts {
        fixed_capsules: k.overview.fixed_capsules.clone(),
        ..FileFacts::placeholder(k.path().to_path_buf(), k.overview.link.kind)
    };
    // Every unit's key shares what the scan as a whole gives each module's analysis.
    let scan_wide = reuse
        .as_ref()
        .map(|r| scan_wide_key(r.options, &kept, &groups, &rest, &foreign_calls));
    let mut project = Project::unloaded(
        kept.iter().map(placeholder).collect(),
        owners,
        module_count,
        foreign_calls,
    );

    enum Unit {
        Module(usize, crate::model::ModuleGroup),
        /// One package's files of no module, with the unit's index.
        Rest(usize, Vec<usize>),
    }
    impl Unit {
        fn files(&self) -> &[usize] {
            match self {
                Unit::Module(_, g) => &g.files,
                Unit::Rest(_, files) => files,
            }
        }
    }
    let mut units: Vec<Unit> = groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| Unit::Module(i, g))
        .collect();
    units.extend(
        rest.into_iter()
            .enumerate()
            .map(|(k, files)| Unit::Rest(module_count + k, files)),
    );
    // `AnalyzeOptions::focus`: only the units holding a focused file.
    if let Some(focus) = focus {
        units.retain(|unit| unit.files().iter().any(|&f| focus[f]));
    }

    // The module cache answers what it can; the rest is modelled below.
    let content_of: HashMap<&Path, u128> = kept
        .iter()
        .filter_map(|k| Some((k.path(), k.identity?.0)))
        .collect();
    let mut results: Vec<Option<UnitResult>> = Vec::with_capacity(units.len());
    let mut keys: Vec<Option<u128>> = Vec::with_capacity(units.len());
    let mut todo: Vec<(usize, Unit)> = Vec::new();
    for (position, unit) in units.into_iter().enumerate() {
        let index = match &unit {
            Unit::Module(i, _) | Unit::Rest(i, _) => *i,
        };
        let key = scan_wide.and_then(|scan| unit_key(scan, index, unit.files(), &kept));
        let cached = reuse
            .as_ref()
            .zip(key)
            .and_then(|(r, key)| r.cache.get(key, |p| content_of.get(p).copied()));
        if cached.is_none() {
            todo.push((position, unit));
        }
        results.push(cached);
        keys.push(key);
    }
    let reused = results.iter().flatten().count();
    let checked = todo.len();
    // The units of files no module holds go first, before the other units' findings have
    // piled up: a package's loose code can be its largest unit (every vendored library it
    // does not build). Results keep their report positions, so the order of the rounds does
    // not show.
    todo.sort_by_key(|(_, u)| !matches!(u, Unit::Rest(..)));

    let mut holders = vec![0usize; kept.len()];
    for (_, unit) in &todo {
        for &f in unit.files() {
            holders[f] += 1;
        }
    }
    let mut loaded = vec![false; kept.len()];
    let mut decoded_in_memory = 0;
    let mut todo = todo.into_iter().peekable();
    while todo.peek().is_some() {
        let mut round: Vec<(usize, Unit)> = Vec::new();
        let mut bytes = 0;
        while let Some(unit) = todo.next_if(|_| round.is_empty() || bytes < ROUND_BUDGET) {
            bytes += unit.1.files().iter().map(|&f| kept[f].size).sum::<usize>();
            round.push(unit);
        }
        let mut need: Vec<usize> = round
            .iter()
            .flat_map(|(_, u)| u.files().iter().copied())
            .filter(|&f| !loaded[f])
            .collect();
        need.sort_unstable();
        need.dedup();
        // Facts the memory still holds decoded, for the same text and facts key.
        let mut ready: Vec<(usize, FileFacts)> = Vec::new();
        if let Some(decoded) = decoded.as_deref_mut() {
            need.retain(|&f| {
                let held = decoded.remove(kept[f].path());
                match held.filter(|(identity, _)| Some(*identity) == kept[f].identity) {
                    Some((_, facts)) => {
                        ready.push((f, facts));
                        false
                    }
                    None => true,
                }
            });
        }
        decoded_in_memory += need
            .iter()
            .filter(|&&f| matches!(kept[f].at, FactsAt::Resident(_)))
            .count();
        let facts: Vec<(usize, FileFacts)> = need
            .par_iter()
            .map(|&f| {
                let facts = match (&kept[f].at, cache) {
                    (FactsAt::Spill(at, len), _) => spill.get((*at, *len)),
                    (FactsAt::Cache, Some(cache)) => cache
                        .facts_again(kept[f].path())
                        .expect("the facts cache still holds what it answered"),
                    (FactsAt::Cache, None) => unreachable!("facts neither spilled nor cached"),
                    (FactsAt::Resident(bytes), _) => {
                        postcard::from_bytes(bytes).expect("facts kept in memory decode")
                    }
                };
                (f, facts)
            })
            .collect();
        for (f, mut facts) in facts.into_iter().chain(ready) {
            facts
                .fixed_capsules
                .clone_from(&kept[f].overview.fixed_capsules);
            project.files[f] = facts;
            loaded[f] = true;
        }
        let released: Vec<usize> = round
            .iter()
            .flat_map(|(_, u)| u.files().iter().copied())
            .collect();
        let done: Vec<(usize, UnitResult, Vec<usize>)> = round
            .into_par_iter()
            .map(|(position, unit)| {
                let files = unit.files().to_vec();
                let module = match unit {
                    Unit::Module(i, group) => build_group(&project.files, i, group),
                    Unit::Rest(i, files) => build_unattached(&project.files, i, files),
                };
                let findings = crate::rules::run_rules_on(
                    &project,
                    vec![&module],
                    &layouts,
                    rules,
                    targets,
                    suppressed,
                );
                let modules = summaries_of(&project, std::slice::from_ref(&module));
                let result = UnitResult {
                    findings,
                    modules,
                    foreign: Vec::new(),
                };
                (position, result, files)
            })
            .collect();
        for (position, mut result, files) in done {
            if let (Some(reuse), Some(key)) = (&reuse, keys[position]) {
                let own: Vec<&Path> = files.iter().map(|&f| kept[f].path()).collect();
                if let Some(foreign) = foreign_files(&result, &own, &content_of) {
                    result.foreign = foreign;
                    reuse.cache.put(key, &result);
                }
            }
            results[position] = Some(result);
        }
        let last_round = todo.peek().is_none();
        for f in released {
            holders[f] -= 1;
            if holders[f] == 0 {
                let facts = std::mem::replace(&mut project.files[f], placeholder(&kept[f]));
                if let (Some(_), Some(identity)) = (&decoded, kept[f].identity) {
                    still_decoded.insert(kept[f].path().to_path_buf(), (identity, facts));
                } else if exits_after && last_round {
                    // Freed by the exit, which is near (`AnalyzeOptions::exits_after`).
                    std::mem::forget(facts);
                }
            }
        }
    }
    if let Some(decoded) = decoded {
        *decoded = still_decoded;
    }
    let mut out = ByModule {
        findings: Vec::new(),
        summaries: Vec::new(),
        reused,
        checked,
        decoded_in_memory,
    };
    for result in results.into_iter().flatten() {
        out.findings.extend(result.findings);
        out.summaries.extend(result.modules);
    }
    out
}

/// The part of every unit's key that comes from the whole scan: the options, rules and build
/// (`options`), every file's path and kind in scan order (modules name files by index), the
/// capsules each file fixes (a module's rules read every file's), every struct layout (the
/// rules' `Layouts`, by file index; the lines and spans of structs and fields are left out:
/// no rule reads them through the layouts, and an edit that only moves a struct must not
/// invalidate every module), the module grouping, and the C++ files' calls.
fn scan_wide_key(
    options: u128,
    kept: &[Kept],
    groups: &[crate::model::ModuleGroup],
    rest: &[Vec<usize>],
    foreign_calls: &[ForeignCall],
) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&options.to_le_bytes());
    let text = |h: &mut xxhash_rust::xxh3::Xxh3, s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    h.update(&(kept.len() as u64).to_le_bytes());
    for (fi, k) in kept.iter().enumerate() {
        text(&mut h, &k.path().to_string_lossy());
        text(&mut h, &format!("{:?}", k.overview.link.kind));
        h.update(&(k.overview.fixed_capsules.len() as u64).to_le_bytes());
        for capsule in &k.overview.fixed_capsules {
            text(&mut h, capsule);
        }
        for s in &k.overview.structs {
            h.update(&(fi as u64).to_le_bytes());
            h.update(&(s.names.len() as u64).to_le_bytes());
            for name in &s.names {
                text(&mut h, name);
            }
            h.update(&(s.fields.len() as u64).to_le_bytes());
            for field in &s.fields {
                text(&mut h, &field.name);
                text(&mut h, &field.type_name);
                h.update(&(field.pointers as u64).to_le_bytes());
                h.update(&(field.array_dims as u64).to_le_bytes());
            }
        }
    }
    h.update(&(groups.len() as u64).to_le_bytes());
    for g in groups {
        text(&mut h, &g.name);
        text(&mut h, &format!("{:?}", g.init));
        text(&mut h, g.files_from.as_str());
        text(&mut h, g.import_name.as_deref().unwrap_or("\0"));
        h.update(&[u8::from(g.closed)]);
        h.update(&(g.files.len() as u64).to_le_bytes());
        for &f in &g.files {
            h.update(&(f as u64).to_le_bytes());
        }
    }
    h.update(&(rest.len() as u64).to_le_bytes());
    for unit in rest {
        h.update(&(unit.len() as u64).to_le_bytes());
        for &f in unit {
            h.update(&(f as u64).to_le_bytes());
        }
    }
    text(&mut h, &format!("{foreign_calls:?}"));
    h.digest128()
}

/// A unit's key: the scan-wide part, its place among the units and, for each of its files,
/// the hash of its text and its facts key (which covers the project's macros, the build's
/// defines, isolint's version and build). `None` when a file has no such identity.
fn unit_key(scan_wide: u128, index: usize, files: &[usize], kept: &[Kept]) -> Option<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&scan_wide.to_le_bytes());
    h.update(&(index as u64).to_le_bytes());
    h.update(&(files.len() as u64).to_le_bytes());
    for &f in files {
        let (content, facts_key) = kept[f].identity?;
        h.update(&(f as u64).to_le_bytes());
        h.update(&content.to_le_bytes());
        h.update(&facts_key.to_le_bytes());
    }
    Some(h.digest128())
}

/// The files outside the unit (`own`) that its result names (a finding's or related
/// location's path, a module's path or files), each with its text's hash: what else the
/// result was computed from, checked when it is reused. `None` when such a file has no hash.
fn foreign_files(
    result: &UnitResult,
    own: &[&Path],
    content_of: &HashMap<&Path, u128>,
) -> Option<Vec<(PathBuf, u128)>> {
    let mut named: Vec<&Path> = Vec::new();
    for f in &result.findings {
        named.push(&f.path);
        named.extend(f.related.iter().map(|r| r.path.as_path()));
    }
    for (m, _) in &result.modules {
        named.push(&m.path);
        named.extend(m.files.iter().map(|p| p.as_path()));
    }
    // Deduplicated first, then each looked up once: a unit of hundreds of files with
    // thousands of findings made `own.contains` a quarter-million path comparisons.
    named.sort_unstable();
    named.dedup();
    let own: std::collections::HashSet<&Path> = own.iter().copied().collect();
    named.retain(|p| !own.contains(p));
    named
        .into_iter()
        .map(|p| Some((p.to_path_buf(), *content_of.get(p)?)))
        .collect()
}

/// A folder each file lies in, by the file's path.
type FolderOf = HashMap<PathBuf, Option<PathBuf>>;

/// The vendored folder each file sits in, if any: part of what decides which findings are
/// reported, and read from the file system (license files), not from the file's text.
fn vendored_dirs(jobs: &[Job], roots: &[PathBuf]) -> FolderOf {
    let mut index = crate::origin::OriginIndex::default();
    jobs.iter()
        .map(|(path, _, _)| (path.clone(), index.vendored_dir(path, roots)))
        .collect()
}

/// The package folder each file lies in (`buildfiles::PackageRoots`), if any: the code no
/// module holds is checked package by package. Read from the file system, not the file's text.
fn package_dirs(jobs: &[Job]) -> FolderOf {
    let mut roots = crate::buildfiles::PackageRoots::default();
    jobs.iter()
        .map(|(path, _, _)| (path.clone(), roots.of(path)))
        .collect()
}

/// Each file's package as a number (files of one package share it, files of none share one).
fn package_numbers<'a>(paths: impl Iterator<Item = &'a Path>, packages: &FolderOf) -> Vec<usize> {
    let mut numbers: HashMap<Option<&Path>, usize> = HashMap::new();
    paths
        .map(|path| {
            let package = packages.get(path).and_then(|p| p.as_deref());
            let next = numbers.len();
            *numbers.entry(package).or_insert(next)
        })
        .collect()
}

/// The run memo's keys: the scan's identity (its roots and options) and a hash of every input
/// the result depends on. `None` when some file could not be read ahead.
fn memo_key(
    options: &AnalyzeOptions,
    jobs: &[Job],
    pre: &[PreScan],
    (origins, packages): (&FolderOf, &FolderOf),
    build: &BuildInfo,
    cpp_inputs: u64,
) -> Option<(u64, u128)> {
    let identity = scan_identity(options);
    let mut inputs = xxhash_rust::xxh3::Xxh3::new();
    inputs.update(identity.as_bytes());
    // What the build files say decides the modules' file lists.
    inputs.update(format!("{build:?}").as_bytes());
    inputs.update(&cpp_inputs.to_le_bytes());
    for ((path, kind, _), pre) in jobs.iter().zip(pre) {
        inputs.update(path.as_os_str().as_encoded_bytes());
        inputs.update(format!("{kind:?}").as_bytes());
        inputs.update(&pre.content?.to_le_bytes());
        let vendored = origins.get(path).cloned().flatten().unwrap_or_default();
        inputs.update(vendored.as_os_str().as_encoded_bytes());
        inputs.update(b"\0");
        // Which package's loose code the file is checked with.
        let package = packages.get(path).cloned().flatten().unwrap_or_default();
        inputs.update(package.as_os_str().as_encoded_bytes());
        inputs.update(b"\0");
    }
    Some((
        xxhash_rust::xxh3::xxh3_64(identity.as_bytes()),
        inputs.digest128(),
    ))
}

/// A scan's identity: its roots and options, and the build's fingerprint (a result is never
/// recalled by a build with other rules). It names the run memo and the module cache.
fn scan_identity(options: &AnalyzeOptions) -> String {
    let rules: Option<Vec<&str>> = options
        .rules
        .as_ref()
        .map(|r| r.iter().map(|r| r.id).collect());
    format!(
        "{} {:?} {:?} {:?} {} {} {:?} {} {}",
        env!("ISOLINT_BUILD_FINGERPRINT"),
        options.paths,
        options.targets,
        rules,
        options.include_vendored,
        options.max_file_size,
        options.discover,
        options
            .stdin
            .as_ref()
            .map_or(String::new(), |(p, _)| p.display().to_string()),
        options.suppress.as_ref().map_or("", |s| s.key.as_str()),
    )
}

/// What the pre-scan learnt of a file (its macros and line scans): for a file the memory
/// answered for, the memory's lists (the pre-scan leaves its own empty unless the macro table
/// is built again).
fn learnt(
    pre: &PreScan,
    path: &Path,
    memory: Option<&Resident>,
) -> (Vec<MacroDefinition>, Option<LineScans>) {
    let held = memory
        .zip(pre.content)
        .and_then(|(m, content)| m.with_content(path, content))
        .filter(|_| pre.resident);
    match held {
        Some(file) => (file.macros.clone(), file.lines.clone()),
        None => (pre.macros.clone(), pre.lines.clone()),
    }
}

/// What a [`Resident`] memory keeps of a file the scan read (`at`: where its facts are now),
/// with what the pre-scan learnt of it (`p`); `None` if the file changed between the pre-scan
/// and the scan, or its facts cannot be had.
fn remember(
    kept: &Kept,
    (at, memory): (&FactsAt, &Resident),
    p: &PreScan,
    link_hash: Option<u64>,
    spill: &Option<Spill>,
    disk: &DiskCache,
) -> Option<ResidentFile> {
    let (content, facts_key) = kept.identity?;
    if p.content != Some(content) {
        return None;
    }
    let (macros, lines) = learnt(p, kept.path(), Some(memory));
    let facts: Arc<[u8]> = match at {
        FactsAt::Spill(at, len) => spill.as_ref()?.bytes((*at, *len)).into(),
        FactsAt::Cache => disk.if_open()?.facts_bytes(kept.path())?.into(),
        FactsAt::Resident(bytes) => bytes.clone(),
    };
    Some(ResidentFile {
        stamp: p.stamp,
        bytes: p.bytes,
        content,
        suppressions: p.suppressions?,
        macro_hash: resident::encoded_hash(&(&macros, &lines)),
        macros,
        lines,
        facts_key,
        overview: kept.overview.clone(),
        link_hash,
        facts,
    })
}

/// The project's macro table for a scan with a memory, and the hash of what it is built from:
/// the memory's table when every file's macros and line scans are those it was built from,
/// else a new one (and then the facts cache is opened: the table is part of every file's facts
/// key, and the cache may hold the files' facts under the new one, after an edit undone).
fn resident_macros(
    jobs: &[Job],
    pre: &mut [PreScan],
    memory: &Resident,
    disk: &DiskCache,
) -> (Arc<ProjectMacros>, Option<u128>) {
    let want_macros = jobs.len() >= 2;
    let held = |path: &Path, p: &PreScan| memory.with_content(path, p.content?);
    let hashes: Vec<Option<u64>> = jobs
        .iter()
        .zip(pre.iter())
        .map(|((path, _, _), p)| match p.resident {
            true => held(path, p)?.macro_hash,
            false => resident::encoded_hash(&(&p.macros, &p.lines)),
        })
        .collect();
    let signature = resident::signature(
        &[u8::from(want_macros)],
        jobs.iter().map(|(path, _, _)| path.as_path()).zip(hashes),
    );
    if let (Some(new), Some((old, table))) = (signature, &memory.macros) {
        if new == *old {
            return (table.clone(), signature);
        }
    }
    for ((path, _, _), p) in jobs.iter().zip(pre.iter_mut()) {
        if let Some(file) = held(path, p).filter(|_| p.resident) {
            p.macros.clone_from(&file.macros);
            p.lines.clone_from(&file.lines);
        }
    }
    disk.get();
    (Arc::new(project_macros(pre, true)), signature)
}

/// The macros defined anywhere in the scan, with their roles (`#define HIDDEN
/// __attribute__(...)`, `#define BEGIN_SAVE {`...). The definitions usually sit in a header,
/// the uses in every `.c` file, and the parse of each file needs them. Built once per scan:
/// each file looks names up, nothing is merged per file. With `keep` the files' lists are
/// copied (the facts cache stores them per file); otherwise they are moved out of `pre`.
fn project_macros(pre: &mut [PreScan], keep: bool) -> ProjectMacros {
    if keep {
        return ProjectMacros::new(pre.iter().flat_map(|p| p.macros.iter().cloned()).collect())
            .with_values(
                pre.iter()
                    .flat_map(|p| p.lines.iter().flat_map(|l| l.values.iter().cloned())),
            )
            .with_off_by_default(
                pre.iter()
                    .flat_map(|p| p.lines.iter().flat_map(|l| l.off_hints.iter().cloned())),
            );
    }
    let macros: Vec<MacroDefinition> = pre
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.macros))
        .collect();
    let mut lines: Vec<LineScans> = pre.iter_mut().filter_map(|p| p.lines.take()).collect();
    let values: Vec<_> = lines
        .iter_mut()
        .flat_map(|l| std::mem::take(&mut l.values))
        .collect();
    ProjectMacros::new(macros)
        .with_values(values)
        .with_off_by_default(lines.into_iter().flat_map(|l| l.off_hints))
}

#[derive(Debug, Clone, Serialize)]
pub struct HiddenCode {
    /// The vendored folder, the generated file, or the file of findings not selected.
    pub path: PathBuf,
    /// `vendored`, `generated`, or `not-selected` (a rule `select` or `ignore` left out).
    pub reason: &'static str,
    pub findings: usize,
}

impl HiddenCode {
    /// The reason of findings of a rule that `select` or `ignore` left out.
    pub const NOT_SELECTED: &'static str = "not-selected";
}

/// Moves findings in vendored folders and generated files out of the report, counting them.
/// They still count in module verdicts: vendored state is the module's state.
fn hide_vendored(
    findings: &mut Vec<Finding>,
    files: &[(PathBuf, bool)],
    vendored: &HashMap<PathBuf, Option<PathBuf>>,
    include: bool,
) -> Vec<HiddenCode> {
    let mut origin_of: HashMap<PathBuf, Option<(PathBuf, &'static str)>> = HashMap::new();
    for (path, generated) in files {
        let origin = match vendored.get(path).cloned().flatten() {
            Some(dir) => Some((dir, "vendored")),
            None if *generated => Some((path.clone(), "generated")),
            None => None,
        };
        origin_of.insert(path.clone(), origin);
    }
    let mut hidden: std::collections::BTreeMap<(PathBuf, &'static str), usize> = Default::default();
    findings.retain(|f| match origin_of.get(&f.path).cloned().flatten() {
        Some(key) => {
            *hidden.entry(key).or_default() += 1;
            include
        }
        None => true,
    });
    hidden
        .into_iter()
        .map(|((path, reason), findings)| HiddenCode {
            path,
            reason,
            findings,
        })
        .collect()
}

fn applies_to_targets(finding: &Finding, targets: &[Target]) -> bool {
    if targets.is_empty() {
        // Isolation is a Python 3 matter: code only Python 2 compiles is never reported.
        !finding.python.python2_only() && !finding.python.is_empty()
    } else {
        targets.iter().any(|&t| finding.python.compiled_by(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with macro values and a role, a source switching a name off and defining
    /// another: what each file's pre-scan learns.
    fn learned() -> Vec<PreScan> {
        let files = [
            (
                "mod.h",
                SourceKind::Header,
                "#define HIDDEN __attribute__((visibility(\"hidden\")))\n#define LEVEL 3\n#undef WITH_X\n",
            ),
            (
                "mod.c",
                SourceKind::C,
                "/* #define USE_FAST */\n#define BEGIN {\n#define LEVEL 3\nstatic int x;\n",
            ),
        ];
        files
            .iter()
            .map(|(path, kind, text)| {
                let mut pre = PreScan::default();
                learn(&mut pre, Path::new(path), text, *kind, true, None);
                pre
            })
            .collect()
    }

    #[test]
    fn project_macros_moved_or_copied_are_the_same_table() {
        let mut copied = learned();
        let mut moved = learned();
        assert!(copied
            .iter()
            .all(|p| !p.macros.is_empty() && p.lines.is_some()));
        let kept = project_macros(&mut copied, true);
        let taken = project_macros(&mut moved, false);
        assert_eq!(kept.fingerprint(), taken.fingerprint());
        // The table holds what the files gave it: not the table of no files.
        assert_ne!(
            kept.fingerprint(),
            project_macros(&mut Vec::new(), false).fingerprint()
        );
        let values = |m: &ProjectMacros| {
            let mut v: Vec<String> = m
                .value_table()
                .iter()
                .map(|(n, p)| format!("{n} {p:?}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(values(&kept), values(&taken));
        assert!(values(&taken).iter().any(|v| v.starts_with("LEVEL ")));
        assert_eq!(kept.off_by_default(), taken.off_by_default());
        // Copied for a cache, the files keep their lists; moved, they are left empty.
        assert!(copied
            .iter()
            .all(|p| !p.macros.is_empty() && p.lines.is_some()));
        assert!(moved
            .iter()
            .all(|p| p.macros.is_empty() && p.lines.is_none()));
    }
}
