//! The whole pipeline on arbitrary bytes, as an editor's unsaved buffer: read checks → pre-pass →
//! tree-sitter → facts → model → rules → both reporters. Any panic is a bug; the JSON must
//! always parse back.
#![no_main]

use isolint::report::{human, json};
use isolint::{analyze, AnalyzeOptions};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let path = PathBuf::from("fuzz/_mod.c");
    let options = AnalyzeOptions {
        stdin: Some((path.clone(), data.to_vec())),
        ..AnalyzeOptions::default()
    };
    let analysis = analyze(&options);
    let text = json::render(&analysis);
    if let Err(err) = serde_json::from_str::<serde_json::Value>(&text) {
        panic!("invalid JSON ({err}):\n{text}");
    }
    // The human reporter underlines spans in the source text: out-of-range offsets panic there.
    let source = String::from_utf8_lossy(data).into_owned();
    let mut sources = human::Sources::new(vec![(path, source)]);
    let _ = human::render(&analysis, &mut sources, false);
});
