//! Prints the tree-sitter tree of a C file after the pre-pass, then its parse-error accounting
//! on stderr (a debugging aid).
fn main() {
    let path = std::env::args().nth(1).expect("usage: sexp FILE");
    let bytes = std::fs::read(path).expect("readable file");
    let parsed = isolint::parse::parse(&bytes).expect("parse");
    println!("{}", parsed.tree.root_node().to_sexp());
    eprintln!(
        "{} bytes, {} ERROR, {} MISSING, {} unreadable bytes",
        bytes.len(),
        parsed.errors.error_nodes,
        parsed.errors.missing_nodes,
        parsed.errors.unreadable_bytes
    );
}
