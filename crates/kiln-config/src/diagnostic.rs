//! A user's mistake in kiln.toml, with the span it points at, rendered like a compiler error.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use crate::SourceText;

/// How many errors are rendered; the rest are counted. Nobody reads the 51st, and a
/// generated file with thousands of mistakes must not flood the terminal.
pub const MAX_SHOWN: usize = 50;

/// One error in a configuration file: message, span, label under the caret, optional hint.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// The whole file, shared by every diagnostic of it.
    pub source: Arc<SourceText>,
    pub span: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    /// Line and column (both 1-based, column in characters) where the span starts.
    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.start)
    }

    /// Renders the error: message, `--> file:line:col`, the source line, a caret, the hint.
    /// Only the lines the span touches are handed to the renderer, so the cost does not grow
    /// with the size of the file.
    pub fn render(&self, color: bool) -> String {
        let path = self.path.display().to_string();
        let text = self.source.text();
        let span = clamp_span(text, self.span.clone());
        let (window, first_line) = self.source.lines_of(&span);
        let local = span.start - window.start..span.end.min(window.end) - window.start;
        let mut group: Group<'_> = Level::ERROR.primary_title(self.message.as_str()).element(
            Snippet::source(&text[window])
                .line_start(first_line)
                .path(path.as_str())
                .annotation(AnnotationKind::Primary.span(local).label(self.label.as_str())),
        );
        if let Some(help) = &self.help {
            group = group.element(Level::HELP.message(help.as_str()));
        }
        let renderer = if color { Renderer::styled() } else { Renderer::plain() };
        renderer.render(&[group])
    }
}

/// Keeps a span inside the source and on character boundaries; an empty span at the end of
/// the file (an unterminated table, say) points at the last character instead.
fn clamp_span(source: &str, span: Range<usize>) -> Range<usize> {
    let mut start = span.start.min(source.len());
    let mut end = span.end.clamp(start, source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    while !source.is_char_boundary(end) {
        end += 1;
    }
    if start == end && start == source.len() && start > 0 {
        start = source[..start].char_indices().last().map_or(0, |(i, _)| i);
    }
    start..end
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
    }
}

/// All errors found in one configuration file, in source order.
#[derive(Debug, Clone)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders the first [`MAX_SHOWN`] errors, separated by blank lines, then how many more
    /// there are, then a count when several.
    pub fn render(&self, color: bool) -> String {
        let mut out: Vec<String> = self.0.iter().take(MAX_SHOWN).map(|d| d.render(color)).collect();
        if let Some(more) = self.more() {
            out.push(more);
        }
        if let [first, _, ..] = self.0.as_slice() {
            // Named as its `-->` lines name it: `--file` may point at any file.
            out.push(format!("error: {} has {} errors", first.path.display(), self.0.len()));
        }
        out.join("\n\n")
    }

    /// "and N more errors …" when not all are shown.
    fn more(&self) -> Option<String> {
        let hidden = self.0.len().checked_sub(MAX_SHOWN).filter(|&n| n > 0)?;
        let noun = if hidden == 1 { "error" } else { "errors" };
        Some(format!("and {hidden} more {noun} (fix the ones above and run again to see them)"))
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0.iter().take(MAX_SHOWN) {
            writeln!(f, "{d}")?;
        }
        match self.more() {
            Some(more) => writeln!(f, "{more}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Diagnostics {}
