//! Fingerprints the sources that decide what the facts of a file are (the parse, the pre-pass,
//! the extraction, the queries), so that the facts cache never serves facts extracted by a
//! different build of the same version; and every source of the build, so that the run memo
//! (a whole scan's result) is never served by a build whose model or rules differ.

use std::hash::{DefaultHasher, Hasher};
use std::path::Path;

fn hash_dir(dir: &Path, hasher: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            hash_dir(&path, hasher);
        } else if let Ok(bytes) = std::fs::read(&path) {
            hasher.write(path.to_string_lossy().as_bytes());
            hasher.write(&bytes);
        }
    }
}

fn fingerprint(paths: &[&str]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for dir in paths {
        println!("cargo:rerun-if-changed={dir}");
        let path = Path::new(dir);
        if path.is_dir() {
            hash_dir(path, &mut hasher);
        } else if let Ok(bytes) = std::fs::read(path) {
            hasher.write(&bytes);
        }
    }
    hasher.finish()
}

fn main() {
    let facts = fingerprint(&[
        "src/facts",
        "src/parse",
        "queries",
        "src/source.rs",
        "Cargo.lock",
    ]);
    println!("cargo:rustc-env=ISOLINT_FACTS_FINGERPRINT={facts:016x}");
    let build = fingerprint(&["src", "queries", "data", "Cargo.lock"]);
    println!("cargo:rustc-env=ISOLINT_BUILD_FINGERPRINT={build:016x}");
}
