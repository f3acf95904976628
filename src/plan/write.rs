//! `fix --apply`: every file of a run is written, or none is.
//!
//! Each new text goes to a temporary file in its own folder first (same file system, the
//! original's permissions); only when all of them are written are they renamed over the
//! originals. Before anything is written, each file is read again and compared with the text
//! the edits were computed from: a file changed since the scan (an editor saved it, another
//! tool ran) gets no stale edit. A read-only file stops the run before any write.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Writes every `(path, old, new)`; on any error before the renames, writes nothing.
pub fn write_all(files: &[(PathBuf, String, String)]) -> Result<Vec<PathBuf>, ApplyError> {
    let error = |path: &Path, message: String| ApplyError {
        path: path.to_path_buf(),
        message,
    };
    for (path, old, _) in files {
        let now =
            std::fs::read(path).map_err(|e| error(path, crate::discover::describe_io_error(&e)))?;
        if now != old.as_bytes() {
            return Err(error(
                path,
                "changed since it was scanned; run `isolint fix` again".into(),
            ));
        }
        let metadata = std::fs::metadata(path)
            .map_err(|e| error(path, crate::discover::describe_io_error(&e)))?;
        if metadata.permissions().readonly() {
            return Err(error(path, "is read-only; nothing was written".into()));
        }
    }
    let mut staged = Vec::with_capacity(files.len());
    for (path, _, new) in files {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".isolint-")
            .suffix(".tmp")
            .tempfile_in(folder)
            .map_err(|e| error(path, format!("cannot write beside it: {e}")))?;
        temp.write_all(new.as_bytes())
            .and_then(|()| temp.as_file().sync_all())
            .map_err(|e| error(path, format!("cannot write: {e}")))?;
        if let Ok(metadata) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(temp.path(), metadata.permissions());
        }
        // Dropping `staged` on an error above deletes every temporary file written so far.
        staged.push((temp, path.clone()));
    }
    let mut written = Vec::with_capacity(staged.len());
    for (temp, path) in staged {
        temp.persist(&path).map_err(|e| {
            error(
                &path,
                format!(
                    "cannot replace it ({}); written before it: {}",
                    e.error,
                    if written.is_empty() {
                        "none".to_string()
                    } else {
                        written
                            .iter()
                            .map(|p: &PathBuf| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Most of the file's line breaks are CR LF: then every line a fix inserts gets CR LF too
/// (`stage0::apply`), so the diff touches only what it means to.
pub fn uses_crlf(text: &str) -> bool {
    let crlf = memchr::memmem::find_iter(text.as_bytes(), b"\r\n").count();
    let lf = memchr::memchr_iter(b'\n', text.as_bytes()).count();
    crlf > 0 && crlf * 2 >= lf
}

/// Every LF not already after a CR becomes CR LF.
pub fn to_crlf(inserted: &str) -> String {
    let mut out = String::with_capacity(inserted.len() + inserted.len() / 16);
    let mut previous = '\0';
    for c in inserted.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.c");
        let b = dir.path().join("b.c");
        std::fs::write(&a, "old a\n").unwrap();
        std::fs::write(&b, "old b\n").unwrap();
        let files = vec![
            (a.clone(), "old a\n".to_string(), "new a\n".to_string()),
            (b.clone(), "stale b\n".to_string(), "new b\n".to_string()),
        ];
        let err = write_all(&files).unwrap_err();
        assert_eq!(err.path, b);
        assert!(err.message.contains("changed since"), "{err}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temporary file is left behind");

        let files = vec![
            (a.clone(), "old a\n".to_string(), "new a\n".to_string()),
            (b.clone(), "old b\n".to_string(), "new b\n".to_string()),
        ];
        assert_eq!(write_all(&files).unwrap(), [a.clone(), b.clone()]);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new a\n");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new b\n");
    }

    #[test]
    fn a_read_only_file_stops_the_run_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.c");
        let b = dir.path().join("b.c");
        std::fs::write(&a, "a\n").unwrap();
        std::fs::write(&b, "b\n").unwrap();
        let mut readonly = std::fs::metadata(&b).unwrap().permissions();
        readonly.set_readonly(true);
        std::fs::set_permissions(&b, readonly).unwrap();
        let files = vec![
            (a.clone(), "a\n".to_string(), "A\n".to_string()),
            (b.clone(), "b\n".to_string(), "B\n".to_string()),
        ];
        let err = write_all(&files).unwrap_err();
        assert!(err.message.contains("read-only"), "{err}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "a\n");
    }

    #[test]
    fn inserted_lines_follow_the_files_line_endings() {
        assert!(uses_crlf("a\r\nb\r\n"));
        assert!(!uses_crlf("a\nb\n"));
        assert!(!uses_crlf("a\r\nb\nc\nd\n"));
        assert_eq!(to_crlf("x\ny\n"), "x\r\ny\r\n");
        assert_eq!(to_crlf("x\r\ny"), "x\r\ny");
    }
}
