//! A small C tokenizer used before parsing. It knows only what the pre-pass needs: identifiers,
//! punctuation, and where comments, literals and preprocessor lines are, so that it never
//! patches text inside them.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    Ident,
    Punct(u8),
    /// Numbers, strings and character literals: skipped by every consumer but kept so that
    /// "the next significant token" is right.
    Literal,
    /// A whole preprocessor line, continuation lines included.
    Directive,
}

#[derive(Debug, Clone, Copy)]
pub struct Tok {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

pub fn tokenize(src: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::with_capacity(src.len() / 6);
    let mut i = 0;
    let n = src.len();
    let mut at_line_start = true;
    while i < n {
        let c = src[i];
        match c {
            b'\n' => {
                at_line_start = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b' => {
                // Indentation comes in runs: one tight loop per run.
                i += 1;
                while i < n && matches!(src[i], b' ' | b'\t' | b'\r' | b'\x0c' | b'\x0b') {
                    i += 1;
                }
            }
            b'/' if src.get(i + 1) == Some(&b'*') => i = skip_block_comment(src, i),
            b'/' if src.get(i + 1) == Some(&b'/') => i = skip_line(src, i),
            b'#' if at_line_start => {
                let end = directive_end(src, i);
                toks.push(Tok {
                    kind: TokKind::Directive,
                    start: i,
                    end,
                });
                i = end;
            }
            b'"' | b'\'' => {
                let end = skip_quoted(src, i, c);
                toks.push(Tok {
                    kind: TokKind::Literal,
                    start: i,
                    end,
                });
                at_line_start = false;
                i = end;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                let start = i;
                i += src[i..]
                    .iter()
                    .position(|&b| !(b == b'_' || b.is_ascii_alphanumeric()))
                    .unwrap_or(n - i);
                // A string prefix such as L"..." or u8"..." belongs to the literal.
                if i < n && (src[i] == b'"' || src[i] == b'\'') && i - start <= 2 {
                    let end = skip_quoted(src, i, src[i]);
                    toks.push(Tok {
                        kind: TokKind::Literal,
                        start,
                        end,
                    });
                    i = end;
                } else {
                    toks.push(Tok {
                        kind: TokKind::Ident,
                        start,
                        end: i,
                    });
                }
                at_line_start = false;
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < n && (src[i] == b'_' || src[i] == b'.' || src[i].is_ascii_alphanumeric())
                {
                    i += 1;
                }
                toks.push(Tok {
                    kind: TokKind::Literal,
                    start,
                    end: i,
                });
                at_line_start = false;
            }
            b'\\' if src.get(i + 1) == Some(&b'\n') => i += 2,
            _ => {
                toks.push(Tok {
                    kind: TokKind::Punct(c),
                    start: i,
                    end: i + 1,
                });
                at_line_start = false;
                i += 1;
            }
        }
    }
    toks
}

// Comments are a large share of real C (a third of CPython's bytes): they are skipped with
// memchr, not byte by byte.
pub(crate) fn skip_block_comment(src: &[u8], start: usize) -> usize {
    // memchr for each `*`, not memmem: most comments are short, and a memmem searcher costs
    // more to set up than such a comment costs to scan.
    let mut i = start + 2;
    while let Some(at) = memchr::memchr(b'*', src.get(i..).unwrap_or_default()).map(|p| i + p) {
        if src.get(at + 1) == Some(&b'/') {
            return at + 2;
        }
        i = at + 1;
    }
    src.len()
}

fn skip_line(src: &[u8], start: usize) -> usize {
    memchr::memchr(b'\n', &src[start..]).map_or(src.len(), |at| start + at)
}

pub(crate) fn skip_quoted(src: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < src.len() {
        match src[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    src.len()
}

/// End of a preprocessor line: the newline that is not escaped and not inside a block comment.
fn directive_end(src: &[u8], start: usize) -> usize {
    let mut i = start;
    while i < src.len() {
        match src[i] {
            b'\\' if src.get(i + 1) == Some(&b'\n') => i += 2,
            b'\\' if src.get(i + 1) == Some(&b'\r') && src.get(i + 2) == Some(&b'\n') => i += 3,
            b'/' if src.get(i + 1) == Some(&b'*') => i = skip_block_comment(src, i),
            b'/' if src.get(i + 1) == Some(&b'/') => return skip_line(src, i),
            b'\n' => return i,
            _ => i += 1,
        }
    }
    src.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_and_strings() {
        let src = b"/* a { */ x \"{\" '}' // }\n#if X \\\n  Y\ny";
        let toks = tokenize(src);
        let kinds: Vec<_> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TokKind::Ident,
                TokKind::Literal,
                TokKind::Literal,
                TokKind::Directive,
                TokKind::Ident
            ]
        );
        assert_eq!(&src[toks[3].start..toks[3].end], b"#if X \\\n  Y");
    }
}
