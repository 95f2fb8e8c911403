//! The text of a configuration file with a table of where each line starts, so that a byte
//! offset becomes a line and column by binary search instead of a scan from the top: a file
//! with thousands of mistakes renders in time proportional to the mistakes, not to their
//! number times the file's length.

use std::ops::Range;

/// A configuration file's text and the byte offset of each line's first character.
#[derive(Debug)]
pub struct SourceText {
    text: String,
    /// `line_starts[i]` is where line `i + 1` starts; the first entry is 0.
    line_starts: Vec<usize>,
}

impl SourceText {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        SourceText { text, line_starts }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 0-based index of the line holding byte `offset` (offsets past the end count as
    /// the last line).
    fn line_index(&self, offset: usize) -> usize {
        // The last line start at or before `offset`; the first entry is 0, so there is one.
        self.line_starts.partition_point(|&start| start <= offset).saturating_sub(1)
    }

    /// Line and column (both 1-based, the column in characters) of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_index(offset);
        let start = self.line_starts[line];
        (line + 1, self.text[start..offset].chars().count() + 1)
    }

    /// The byte range of the whole lines that `span` touches (with the last one's newline),
    /// and the 1-based number of the first of them.
    pub fn lines_of(&self, span: &Range<usize>) -> (Range<usize>, usize) {
        let first = self.line_index(span.start);
        let last = self.line_index(span.end.max(span.start).saturating_sub(usize::from(span.end > span.start)));
        let last = last.max(first);
        let start = self.line_starts[first];
        let end = self.line_starts.get(last + 1).copied().unwrap_or(self.text.len());
        (start..end, first + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let s = SourceText::new("ab\ncdé\n\nx");
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(2), (1, 3), "the newline itself is on its line");
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(7), (2, 4), "columns count characters, not bytes");
        assert_eq!(s.line_col(8), (3, 1));
        assert_eq!(s.line_col(9), (4, 1));
        assert_eq!(s.line_col(99), (4, 2), "past the end is the end");
        assert_eq!(s.line_col(6), (2, 3), "inside a character: its start");
    }

    #[test]
    fn lines_of_a_span() {
        let s = SourceText::new("ab\ncd\nef\n");
        assert_eq!(s.lines_of(&(3..4)), (3..6, 2));
        assert_eq!(s.lines_of(&(3..6)), (3..6, 2), "a span ending with the newline stays on its line");
        assert_eq!(s.lines_of(&(1..7)), (0..9, 1));
        assert_eq!(s.lines_of(&(9..9)), (9..9, 4), "the empty last line");
    }
}
