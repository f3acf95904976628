//! Prints a C file as the parser sees it after isolint's pre-pass (same length, macros and
//! `#if` alternatives resolved), for reading a parse error:
//! `cargo run --example dump_prepass -- file.c [header.h other.c ...] > prepassed.c`.
//! The `#define`s of the file and of the other files named are learned (a scan learns those
//! of every file it reads); only the first file is printed. The line and column of every
//! `ERROR` and `MISSING` node go to standard error.
use std::io::Write;

fn read(path: &str) -> Vec<u8> {
    match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = paths.first() else {
        eprintln!("usage: dump_prepass FILE.c [FILE_WITH_DEFINES ...]");
        std::process::exit(2);
    };
    let bytes = read(path);
    let mut definitions = isolint::parse::macros::definitions_in(&bytes);
    for other in &paths[1..] {
        definitions.extend(isolint::parse::macros::definitions_in(&read(other)));
    }
    let macros = isolint::parse::macros::ProjectMacros::new(definitions);
    match isolint::parse::parse_with(&bytes, &macros) {
        Ok(parsed) => {
            let _ = std::io::stdout().write_all(&parsed.text);
            let mut cursor = parsed.tree.walk();
            let mut stack = vec![parsed.tree.root_node()];
            while let Some(node) = stack.pop() {
                if node.is_error() || node.is_missing() {
                    let at = node.start_position();
                    let what = if node.is_missing() {
                        "MISSING"
                    } else {
                        "ERROR"
                    };
                    eprintln!("{path}:{}:{}: {what}", at.row + 1, at.column + 1);
                    continue;
                }
                if node.has_error() {
                    stack.extend(
                        node.children(&mut cursor)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev(),
                    );
                }
            }
        }
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    }
}
