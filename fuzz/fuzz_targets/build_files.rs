//! The build-file readers on arbitrary text: the first byte picks the file (setup.py,
//! compile_commands.json, meson.build, CMakeLists.txt, pyproject.toml), the rest is its text.
//! Any panic is a bug; nothing is ever run.
#![no_main]

use isolint::buildfiles::read_build_text;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const NAMES: &[&str] = &[
    "setup.py",
    "compile_commands.json",
    "meson.build",
    "CMakeLists.txt",
    "pyproject.toml",
];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let name = NAMES[kind as usize % NAMES.len()];
    let text = String::from_utf8_lossy(rest);
    // A folder that does not exist: globs and subdir() find nothing, as in a bare sdist.
    let _ = read_build_text(&Path::new("/nonexistent-fuzz-root").join(name), &text);
});
