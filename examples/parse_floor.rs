//! The floors `bench/run.py` measures `isolint check` against: the same files, found by the same
//! walk, handled with the same rayon parallelism and the same schedule (largest first), doing
//! less work per file.
//!
//! ```text
//! cargo run --release --example parse_floor -- MODE PATH...
//! ```
//!
//! Modes, each one stage more of the pipeline than the one before:
//! - `read`: read and decode each file (size limit, NUL check, UTF-8), nothing else;
//! - `parse`: read, then parse the file as it is with tree-sitter-c (the raw parse floor);
//! - `prepass`: read, then isolint's macro pre-pass and parse (`isolint::parse::parse`);
//! - `facts`: read, pre-pass, parse and fact extraction, without linking or rules.
//!
//! `list` prints the files the walk finds, one a line (the bench copies them for its synthetic
//! corpora).
//!
//! The difference between `facts` and a full `check` is the model and the rules; between
//! `prepass` and `parse` it is the pre-pass and the error accounting. It prints one line of
//! `key=value` pairs on standard output for the bench script to read.

use isolint::discover::{discover, DiscoverOptions};
use isolint::source::{read_source, DEFAULT_MAX_FILE_SIZE};
use rayon::prelude::*;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tree_sitter::Parser;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Read,
    Parse,
    Prepass,
    Facts,
}

thread_local! {
    // One parser per rayon worker, as isolint does: creating a parser per file would add a cost
    // the floor must not have.
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Per-file tally; `nodes` keeps the parse observable so that it cannot be optimised away.
#[derive(Default, Clone, Copy)]
struct Tally {
    files: usize,
    bytes: usize,
    lines: usize,
    nodes: usize,
    failed: usize,
}

impl std::ops::Add for Tally {
    type Output = Tally;
    fn add(self, o: Tally) -> Tally {
        Tally {
            files: self.files + o.files,
            bytes: self.bytes + o.bytes,
            lines: self.lines + o.lines,
            nodes: self.nodes + o.nodes,
            failed: self.failed + o.failed,
        }
    }
}

fn raw_parse(text: &[u8]) -> usize {
    PARSER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let parser = slot.get_or_insert_with(|| {
            let mut p = Parser::new();
            p.set_language(&tree_sitter_c::LANGUAGE.into())
                .expect("tree-sitter-c loads");
            p
        });
        // The tree is dropped here, as isolint drops its trees once facts are out.
        parser
            .parse(text, None)
            .map_or(0, |t| t.root_node().child_count() as usize)
    })
}

fn one(mode: Mode, path: &Path, kind: isolint::discover::SourceKind) -> Tally {
    let Ok(source) = read_source(path, DEFAULT_MAX_FILE_SIZE) else {
        return Tally {
            failed: 1,
            ..Tally::default()
        };
    };
    let text = source.text.as_bytes();
    let mut tally = Tally {
        files: 1,
        bytes: text.len(),
        lines: text.iter().filter(|&&b| b == b'\n').count(),
        ..Tally::default()
    };
    tally.nodes = match mode {
        Mode::Read => 0,
        Mode::Parse => raw_parse(text),
        Mode::Prepass => {
            isolint::parse::parse(text).map_or(0, |p| p.tree.root_node().child_count() as usize)
        }
        Mode::Facts => match isolint::parse::parse(text) {
            Ok(parsed) => {
                let facts = isolint::facts::extract(
                    &parsed,
                    text,
                    path,
                    kind,
                    source.first_invalid_utf8,
                    &isolint::parse::macros::ProjectMacros::default(),
                );
                std::hint::black_box(&facts);
                1
            }
            Err(_) => 0,
        },
    };
    tally
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    let list = first.as_deref() == Some("list");
    let mode = match first.as_deref() {
        Some("list") => Mode::Read,
        Some("read") => Mode::Read,
        Some("parse") => Mode::Parse,
        Some("prepass") => Mode::Prepass,
        Some("facts") => Mode::Facts,
        _ => {
            eprintln!("usage: parse_floor read|parse|prepass|facts|list PATH...");
            std::process::exit(2);
        }
    };
    let roots: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if list {
        for (path, _) in discover(&roots, &DiscoverOptions::default()).sources {
            println!("{}", path.display());
        }
        return;
    }
    let start = Instant::now();
    let found = discover(&roots, &DiscoverOptions::default());
    // The same schedule as `isolint check`: largest files first, each to the next free worker.
    let mut jobs: Vec<(u64, &PathBuf, isolint::discover::SourceKind)> = found
        .sources
        .iter()
        .map(|(path, kind)| (std::fs::metadata(path).map_or(0, |m| m.len()), path, *kind))
        .collect();
    jobs.sort_by_key(|(size, _, _)| std::cmp::Reverse(*size));
    let total = jobs
        .into_iter()
        .par_bridge()
        .map(|(_, path, kind)| one(mode, path, kind))
        .reduce(Tally::default, |a, b| a + b);
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "files={} bytes={} lines={} nodes={} unreadable={} threads={} seconds={elapsed:.4}",
        total.files,
        total.bytes,
        total.lines,
        total.nodes,
        total.failed,
        rayon::current_num_threads(),
    );
}
