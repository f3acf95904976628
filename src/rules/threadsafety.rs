//! The C API thread-safety table (`data/threadsafety.toml`), embedded: the free-threading
//! call rules look each callee up here rather than in a list written in code.

use rustc_hash::FxHashMap as HashMap;
use serde::Deserialize;
use std::sync::LazyLock;

/// What a call does that a free-threaded build makes unsafe; which rule reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hazard {
    /// Returns a borrowed reference into a container another thread may change.
    Borrowed,
    /// Writes an item with no synchronisation: only for a container just created.
    FillNew,
    /// Reads the item array of a `PySequence_Fast` result (the list itself for a list).
    FastItem,
    /// Iterates a container with no lock of its own.
    Iteration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiEntry {
    /// The `threadsafety.dat` level (`atomic`, `shared`, `distinct`, `compatible`,
    /// `incompatible`), when CPython documents one.
    pub level: Option<String>,
    /// `howto` for entries taken from the free-threading HOWTO.
    pub source: Option<String>,
    pub hazard: Option<Hazard>,
    pub replacement: Option<String>,
    /// The CPython that added `replacement`.
    pub since: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    cpython: String,
    api: HashMap<String, ApiEntry>,
}

const TABLE_TEXT: &str = include_str!("../../data/threadsafety.toml");

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    // The file ships inside the binary and a test parses it: a broken table is a build
    // that never passes its tests, not an input error.
    toml::from_str(TABLE_TEXT).expect("data/threadsafety.toml parses")
});

/// The entry for one C API function or macro.
pub fn lookup(name: &str) -> Option<&'static ApiEntry> {
    TABLE.api.get(name)
}

/// The CPython sources the table was taken from.
pub fn source() -> &'static str {
    &TABLE.cpython
}

/// `name` is the replacement of some hazardous API (`PyList_GetItemRef`, ...): a function
/// of that name is a compatibility definition of it.
pub fn is_replacement(name: &str) -> bool {
    static REPLACEMENTS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        TABLE
            .api
            .values()
            .filter_map(|e| e.replacement.as_deref())
            .collect()
    });
    REPLACEMENTS.contains(&name)
}

/// Every callee with this hazard.
pub fn with_hazard(hazard: Hazard) -> impl Iterator<Item = (&'static str, &'static ApiEntry)> {
    TABLE
        .api
        .iter()
        .filter(move |(_, e)| e.hazard == Some(hazard))
        .map(|(n, e)| (n.as_str(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_names_the_borrowed_reference_apis() {
        assert!(source().contains("03225d05e677"));
        let borrowed = lookup("PyList_GetItem").unwrap();
        assert_eq!(borrowed.hazard, Some(Hazard::Borrowed));
        assert_eq!(borrowed.replacement.as_deref(), Some("PyList_GetItemRef"));
        assert_eq!(
            lookup("PyList_GetItemRef").unwrap().level.as_deref(),
            Some("atomic")
        );
        assert_eq!(
            lookup("PyDict_Next").unwrap().hazard,
            Some(Hazard::Iteration)
        );
        // Tuples are immutable: their borrowed lookups are no hazard.
        assert_eq!(lookup("PyTuple_GET_ITEM").unwrap().hazard, None);
        for (name, e) in with_hazard(Hazard::Borrowed) {
            assert!(e.replacement.is_some() && e.since.is_some(), "{name}");
        }
        let levels = ["atomic", "shared", "distinct", "compatible", "incompatible"];
        for (name, e) in &TABLE.api {
            assert!(
                e.level.as_deref().is_none_or(|l| levels.contains(&l)),
                "{name}: {:?}",
                e.level
            );
            assert!(
                e.level.is_some() || e.source.as_deref() == Some("howto"),
                "{name}"
            );
        }
    }
}
