//! Reading one source file into bytes the parser can take, with the checks that keep bad input
//! from reaching it.

use crate::discover::describe_io_error;
use std::path::Path;

pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Debug)]
pub struct SourceText {
    /// Same length as the file; bytes that are not UTF-8 are replaced one-for-one with `?`,
    /// so every offset still points at the same place in the file.
    pub text: String,
    /// Offset of the first byte that was not UTF-8, if any.
    pub first_invalid_utf8: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read: {0}")]
    Unreadable(String),
    #[error("binary file (NUL byte at offset {0}), not C source")]
    Binary(usize),
    #[error("file is {size} bytes, over the {limit}-byte limit; skipped")]
    TooLarge { size: u64, limit: u64 },
}

pub fn read_source(path: &Path, max_size: u64) -> Result<SourceText, SourceError> {
    let meta =
        std::fs::metadata(path).map_err(|e| SourceError::Unreadable(describe_io_error(&e)))?;
    if meta.len() > max_size {
        return Err(SourceError::TooLarge {
            size: meta.len(),
            limit: max_size,
        });
    }
    let bytes = std::fs::read(path).map_err(|e| SourceError::Unreadable(describe_io_error(&e)))?;
    decode_source(bytes, max_size)
}

pub fn decode_source(bytes: Vec<u8>, max_size: u64) -> Result<SourceText, SourceError> {
    if bytes.len() as u64 > max_size {
        return Err(SourceError::TooLarge {
            size: bytes.len() as u64,
            limit: max_size,
        });
    }
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return Err(SourceError::Binary(pos));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceText {
            text,
            first_invalid_utf8: None,
        }),
        Err(err) => {
            let first = err.utf8_error().valid_up_to();
            let mut bytes = err.into_bytes();
            replace_invalid_utf8(&mut bytes);
            let text = String::from_utf8(bytes).unwrap_or_default();
            Ok(SourceText {
                text,
                first_invalid_utf8: Some(first),
            })
        }
    }
}

fn replace_invalid_utf8(bytes: &mut [u8]) {
    let mut start = 0;
    while start < bytes.len() {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(_) => break,
            Err(err) => {
                let bad = start + err.valid_up_to();
                let len = err.error_len().unwrap_or(bytes.len() - bad);
                for b in &mut bytes[bad..bad + len] {
                    *b = b'?';
                }
                start = bad + len;
            }
        }
    }
}

/// Maps byte offsets to 1-based line and column.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { line_starts }
    }
    /// 1-based (line, column).
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        (line, offset - self.line_starts[line - 1] + 1)
    }
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_keeps_offsets() {
        let src = decode_source(b"int a;\xff\xfe int b;".to_vec(), 100).unwrap();
        assert_eq!(src.text, "int a;?? int b;");
        assert_eq!(src.first_invalid_utf8, Some(6));
    }

    #[test]
    fn binary_is_refused() {
        assert!(matches!(
            decode_source(b"ab\0c".to_vec(), 100),
            Err(SourceError::Binary(2))
        ));
    }

    #[test]
    fn positions_are_one_based() {
        let index = LineIndex::new("ab\ncd\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (2, 2));
    }
}
