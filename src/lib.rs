//! isolint: finds process-global state in CPython C extension modules.
//!
//! The pipeline, one folder or file per stage:
//! discover → parse → facts → model → rules → findings → report.

pub mod analysis;
pub mod cache;
pub mod discover;
pub mod facts;
pub mod finding;
pub mod model;
pub mod origin;
pub mod parse;
pub mod report;
pub mod rules;
pub mod source;
pub mod version;

pub use analysis::{analyze, Analysis, AnalyzeOptions};
pub mod baseline;
pub mod buildfiles;
pub mod config;
pub mod plan;
pub mod server;
pub mod suppress;
pub mod verify;
