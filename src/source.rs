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

#[derive(Debug)]
pub enum SourceError {
    Unreadable(String),
    Binary(usize),
    /// A binary file named like a source archive (`pkg-1.0.tar.gz`, a wheel).
    Archive,
    TooLarge {
        size: u64,
        limit: u64,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Unreadable(why) => write!(f, "cannot read: {why}"),
            SourceError::Binary(at) => {
                write!(f, "binary file (NUL byte at offset {at}), not C source")
            }
            SourceError::Archive => write!(
                f,
                "an archive, not C source: unpack it (`tar xf`, `unzip`) and scan the folder"
            ),
            SourceError::TooLarge { size, limit } => {
                write!(
                    f,
                    "file is {size} bytes, over the {limit}-byte limit; skipped"
                )
            }
        }
    }
}

impl std::error::Error for SourceError {}

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
    decode_source(bytes, max_size).map_err(|e| match e {
        SourceError::Binary(_) if is_archive_name(path) => SourceError::Archive,
        e => e,
    })
}

/// An sdist or a wheel: a newcomer's first try is often the file `pip download` gave them.
fn is_archive_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    [".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".whl"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

pub fn decode_source(bytes: Vec<u8>, max_size: u64) -> Result<SourceText, SourceError> {
    if bytes.len() as u64 > max_size {
        return Err(SourceError::TooLarge {
            size: bytes.len() as u64,
            limit: max_size,
        });
    }
    if let Some(pos) = memchr::memchr(0, &bytes) {
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

/// The offset just after each line break: LF, CR LF (counted once) and a lone CR.
pub fn line_break_ends(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    // memchr finds the candidates: every file's line index is built from this, byte by byte
    // it was a visible share of a scan.
    memchr::memchr2_iter(b'\n', b'\r', text).filter_map(|i| match text[i] {
        b'\n' => Some(i + 1),
        _ if text.get(i + 1) != Some(&b'\n') => Some(i + 1),
        _ => None,
    })
}

/// The lines of a text without their line endings (LF, CR LF or a lone CR).
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> + '_ {
    let mut start = 0;
    let mut ends = line_break_ends(text.as_bytes()).chain(std::iter::once(usize::MAX));
    std::iter::from_fn(move || {
        if start > text.len() {
            return None;
        }
        let end = ends.next()?;
        if end == usize::MAX {
            let line = &text[start..];
            start = text.len() + 1;
            return Some(line);
        }
        let line = text[start..end].trim_end_matches(['\r', '\n']);
        start = end;
        Some(line)
    })
}

/// Maps byte offsets to 1-based line and column.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    /// Line breaks are LF, CR LF (one break) and a lone CR, as a C compiler reads them.
    pub fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(line_break_ends(text.as_bytes()));
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
    fn an_archive_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        // A gzip header: binary, and named like an sdist.
        let header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00";
        let sdist = dir.path().join("pkg-1.0.tar.gz");
        std::fs::write(&sdist, header).unwrap();
        let err = read_source(&sdist, 100).unwrap_err();
        assert!(matches!(err, SourceError::Archive), "{err}");
        assert!(err.to_string().contains("unpack it"), "{err}");
        let other = dir.path().join("blob.c");
        std::fs::write(&other, header).unwrap();
        assert!(matches!(
            read_source(&other, 100),
            Err(SourceError::Binary(_))
        ));
    }

    #[test]
    fn crlf_and_lone_cr_are_line_breaks() {
        let index = LineIndex::new("a\r\nb\rc\nd");
        assert_eq!(index.position(3), (2, 1));
        assert_eq!(index.position(5), (3, 1));
        assert_eq!(index.position(7), (4, 1));
        assert_eq!(index.line_count(), 4);
        let lines: Vec<&str> = split_lines("a\r\nb\rc\nd").collect();
        assert_eq!(lines, ["a", "b", "c", "d"]);
        let lines: Vec<&str> = split_lines("a\n").collect();
        assert_eq!(lines, ["a", ""]);
    }

    #[test]
    fn positions_are_one_based() {
        let index = LineIndex::new("ab\ncd\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(4), (2, 2));
    }
}
