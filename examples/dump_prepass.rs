//! Prints a C file as the parser sees it after isolint's pre-pass (same length, macros and
//! `#if` alternatives resolved), for reading a parse error:
//! `cargo run --example dump_prepass -- file.c > prepassed.c`. Only the file's own `#define`s
//! are learned, not the whole scan's.
use std::io::Write;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: dump_prepass FILE.c");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let macros =
        isolint::parse::macros::ProjectMacros::new(isolint::parse::macros::definitions_in(&bytes));
    match isolint::parse::parse_with(&bytes, &macros) {
        Ok(parsed) => {
            let _ = std::io::stdout().write_all(&parsed.text);
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
