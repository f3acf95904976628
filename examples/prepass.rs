//! Prints a C file after the same-length pre-pass, with its own macros as the project's (a
//! debugging aid: what tree-sitter is given).
fn main() {
    let path = std::env::args().nth(1).expect("usage: prepass FILE");
    let bytes = std::fs::read(path).expect("readable file");
    let prepared = isolint::parse::prepass::prepare(&bytes);
    print!("{}", String::from_utf8_lossy(&prepared.text));
}
