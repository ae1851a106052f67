//! Physical lines and logical lines. Physical lines handle CRLF and a BOM; parser directives
//! (`escape`, `syntax`, `check`) are read at the top. A logical line is an instruction with its
//! continuation lines (escape character) joined — escape removed, comment, blank and empty
//! continuation lines inside dropped — plus a segment table that maps every offset in the
//! joined text back to the source, so every word keeps an exact span even when the instruction
//! spans many lines.
//!
//! Hand-written rather than nom: the rules are line-oriented state (directives, escape token,
//! heredoc bodies read after the instruction line) and must stay linear in the input size.

use crate::span::Span;

/// One physical line: `start..end` is its text without the newline (and without trailing
/// `\r`), `next` is where the following line starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phys {
    pub start: usize,
    pub end: usize,
    pub next: usize,
    /// 1-based line number.
    pub number: usize,
}

/// Iterates over physical lines of the source.
pub(crate) struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    number: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str, start: usize) -> Self {
        Cursor {
            src,
            pos: start,
            number: 0,
        }
    }

    /// Where the next line starts.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn next_line(&mut self) -> Option<Phys> {
        if self.pos >= self.src.len() {
            return None;
        }
        let bytes = self.src.as_bytes();
        let (end, next) = match memchr::memchr(b'\n', &bytes[self.pos..]) {
            Some(i) => (self.pos + i, self.pos + i + 1),
            None => (self.src.len(), self.src.len()),
        };
        let mut trimmed = end;
        while trimmed > self.pos && bytes[trimmed - 1] == b'\r' {
            trimmed -= 1;
        }
        let line = Phys {
            start: self.pos,
            end: trimmed,
            next,
            number: self.number + 1,
        };
        self.pos = next;
        self.number += 1;
        Some(line)
    }
}

/// An instruction's text with continuations joined, and the map back to source offsets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Logical<'a> {
    /// Borrowed from the source while the instruction is a single line.
    pub text: std::borrow::Cow<'a, str>,
    /// Source offset of the first piece.
    first: usize,
    /// `(offset in text, offset in source)` for each further piece, increasing.
    segments: Vec<(usize, usize)>,
}

impl<'a> Logical<'a> {
    pub fn new(piece: &'a str, source_offset: usize) -> Self {
        Logical {
            text: piece.into(),
            first: source_offset,
            segments: Vec::new(),
        }
    }

    pub fn push(&mut self, piece: &str, source_offset: usize) {
        self.segments.push((self.text.len(), source_offset));
        if let std::borrow::Cow::Borrowed(first) = self.text {
            // Room for a few more pieces like these without reallocating.
            let mut owned = String::with_capacity(2 * (first.len() + piece.len()));
            owned.push_str(first);
            self.text = owned.into();
        }
        self.text.to_mut().push_str(piece);
    }

    /// The source offset of a text offset.
    pub fn source(&self, offset: usize) -> usize {
        if self.segments.is_empty() {
            return self.first + offset;
        }
        let i = self.segments.partition_point(|(l, _)| *l <= offset);
        match i.checked_sub(1).and_then(|i| self.segments.get(i)) {
            Some((l, s)) => s + (offset - l),
            None => self.first + offset,
        }
    }

    /// The source span of the text range `a..b`.
    pub fn span(&self, a: usize, b: usize) -> Span {
        if b <= a {
            return Span::at(self.source(a));
        }
        Span::new(self.source(a), self.source(b - 1) + 1)
    }
}

/// If `line` ends with the escape token (optionally followed by spaces/tabs) that is not
/// itself escaped, return the text before it and `true`.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before, true);
    }
    (line, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_needs_an_unescaped_escape() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", false));
        assert_eq!(trim_continuation("\\  ", '\\'), ("", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", true));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", false));
    }

    #[test]
    fn logical_offsets_map_to_source() {
        let mut l = Logical::new("RUN a ", 10);
        l.push("b", 30);
        assert_eq!(l.source(0), 10);
        assert_eq!(l.source(6), 30);
        assert_eq!(l.span(4, 7), Span::new(14, 31));
    }
}
