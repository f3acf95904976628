//! Every integration test, in one binary: each file below was its own test crate, and each
//! linked the whole of isolint again (about 25 s of a fresh `cargo test` on two cores).
//! `cargo test --test it cli::` runs one file's tests.

mod cache;
mod ci_gate;
mod cli;
mod fixtures;
mod formats;
mod linking;
mod lsp;
mod messages;
mod modules;
mod plan;
mod registry;
mod robustness;
mod verify;
