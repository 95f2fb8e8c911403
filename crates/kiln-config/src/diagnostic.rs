//! A user's mistake in kiln.toml, with the span it points at, rendered like a compiler error.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

/// One error in a configuration file: message, span, label under the caret, optional hint.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub source: Arc<str>,
    pub span: Range<usize>,
    pub message: String,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    /// Line and column (both 1-based, column in characters) where the span starts.
    pub fn line_col(&self) -> (usize, usize) {
        let start = self.span.start.min(self.source.len());
        let before = &self.source[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    /// Renders the error: message, `--> file:line:col`, the source line, a caret, the hint.
    pub fn render(&self, color: bool) -> String {
        let path = self.path.display().to_string();
        let span = clamp_span(&self.source, self.span.clone());
        let mut group: Group<'_> = Level::ERROR.primary_title(self.message.as_str()).element(
            Snippet::source(&*self.source)
                .path(path.as_str())
                .annotation(AnnotationKind::Primary.span(span).label(self.label.as_str())),
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
    /// Renders every error, separated by blank lines, followed by a count when several.
    pub fn render(&self, color: bool) -> String {
        let mut out: Vec<String> = self.0.iter().map(|d| d.render(color)).collect();
        if self.0.len() > 1 {
            out.push(format!("error: kiln.toml has {} errors", self.0.len()));
        }
        out.join("\n\n")
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
