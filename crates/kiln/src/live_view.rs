//! Live progress on a terminal: finished targets scroll up as one line each, and below them
//! a region is redrawn in place: one line per running target (spinner, elapsed time, its
//! latest output line) and an overall bar (done/total, elapsed, ETA from the durations the
//! targets took last time).
//!
//! The region is redrawn on every burst of events and on a timer tick. Each redraw moves the
//! cursor up over the previous region, prints what scrolled, then the region, then clears
//! what is left below: no line is ever left half-drawn, and no line wraps (each is cut to
//! the terminal's width), except warnings: those are wrapped onto as many lines as they need
//! ([`lines_to_show`]), as the hint that ends them is what the reader must not miss.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use kiln_config::format_duration;
use kiln_engine::{Event, NoticeLevel};

use crate::human_lines::{HumanLines, Scroll};
use crate::view_out::ViewOut;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const BAR_WIDTH: usize = 24;

struct Running {
    since: Instant,
    last_line: String,
}

pub struct LiveView<W: Write> {
    /// Closed when the terminal goes away: nothing is drawn from then on.
    out: ViewOut<W>,
    lines: HumanLines,
    width: usize,
    started: Instant,
    /// Lines of the region currently on screen.
    drawn: usize,
    frame: usize,
    total: usize,
    done: usize,
    /// Running targets in the order they started.
    running: Vec<(String, Running)>,
    /// Recorded durations of targets not yet finished.
    estimates: HashMap<String, u64>,
    /// Job slots seen, to turn remaining work into remaining time.
    slots: usize,
    scroll: Scroll,
}

impl<W: Write> LiveView<W> {
    pub fn new(out: W, width: usize, verbose: bool) -> Self {
        LiveView {
            out: ViewOut::new(out),
            lines: HumanLines::new(verbose),
            width: width.max(20),
            started: Instant::now(),
            drawn: 0,
            frame: 0,
            total: 0,
            done: 0,
            running: Vec::new(),
            estimates: HashMap::new(),
            slots: 1,
            scroll: Scroll::default(),
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        self.scroll.extend(lines_to_show(event, self.lines.lines_for(event), self.width));
        match event {
            Event::TargetQueued { target, estimate_ms, .. } => {
                self.total += 1;
                if let Some(ms) = estimate_ms {
                    self.estimates.insert(target.clone(), *ms);
                }
            }
            Event::TargetStarted { target, slot, .. } => {
                self.slots = self.slots.max(slot + 1);
                self.running.retain(|(t, _)| t != target);
                self.running.push((target.clone(), Running { since: Instant::now(), last_line: String::new() }));
            }
            Event::TargetOutput { target, line, .. } => {
                if let Some((_, r)) = self.running.iter_mut().find(|(t, _)| t == target) {
                    r.last_line = line.trim().to_string();
                }
            }
            Event::TargetFinished { target, .. } => {
                self.done += 1;
                self.running.retain(|(t, _)| t != target);
                self.estimates.remove(target);
            }
            _ => {}
        }
    }

    /// Redraws: scrolled lines, then the region. Call after a burst of events or a tick.
    pub fn redraw(&mut self) {
        if self.out.is_closed() {
            self.scroll.clear();
            return;
        }
        self.frame = self.frame.wrapping_add(1);
        let region = self.region();
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A", self.drawn));
        }
        for line in self.scroll.take() {
            buf.push_str("\x1b[2K");
            buf.push_str(&fit(&line, self.width));
            buf.push('\n');
        }
        for line in &region {
            buf.push_str("\x1b[2K");
            buf.push_str(&fit(line, self.width));
            buf.push('\n');
        }
        buf.push_str("\x1b[J");
        self.drawn = region.len();
        self.out.write(buf.as_bytes());
        self.out.flush();
    }

    fn region(&self) -> Vec<String> {
        let now = Instant::now();
        let spin = SPINNER[self.frame % SPINNER.len()];
        let mut region: Vec<String> = self
            .running
            .iter()
            .map(|(target, r)| {
                let elapsed = format_duration(now - r.since);
                if r.last_line.is_empty() {
                    format!("  {spin} {target} {elapsed}")
                } else {
                    format!("  {spin} {target} {elapsed} │ {}", r.last_line)
                }
            })
            .collect();
        region.push(self.bar(now));
        region
    }

    fn bar(&self, now: Instant) -> String {
        let filled = (self.done * BAR_WIDTH).checked_div(self.total).unwrap_or(0);
        let bar: String = "█".repeat(filled) + &"░".repeat(BAR_WIDTH - filled);
        let elapsed = format_duration(now - self.started);
        let mut text = format!("  {bar} {}/{} · {elapsed}", self.done, self.total);
        if let Some(eta) = self.eta(now) {
            text.push_str(&format!(" · ETA {}", format_duration(eta)));
        }
        text
    }

    /// Remaining recorded work (minus what running targets have already done), spread
    /// over the job slots; unknown when no remaining target has a recorded duration.
    fn eta(&self, now: Instant) -> Option<Duration> {
        if self.estimates.is_empty() {
            return None;
        }
        let remaining: u64 = self.estimates.values().sum();
        let spent: u64 = self
            .running
            .iter()
            .filter(|(t, _)| self.estimates.contains_key(t))
            .map(|(_, r)| u64::try_from((now - r.since).as_millis()).unwrap_or(u64::MAX))
            .sum();
        let slots = u64::try_from(self.slots).unwrap_or(1).max(1);
        Some(Duration::from_millis(remaining.saturating_sub(spent) / slots))
    }

    /// Clears the region, leaving what scrolled (the summary and closing line last).
    pub fn finish(&mut self) {
        self.running.clear();
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A\x1b[J", self.drawn));
        }
        for line in self.scroll.take() {
            buf.push_str(&line);
            buf.push('\n');
        }
        self.drawn = 0;
        self.out.write(buf.as_bytes());
        self.out.flush();
    }
}

/// Cuts a line to `width` characters so that it never wraps.
pub fn fit(line: &str, width: usize) -> String {
    // A coloured line is left whole: cutting it could cut a colour code in half.
    if line.contains('\x1b') || line.chars().count() < width {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(2)).collect();
    cut.push('…');
    cut
}

/// The `lines` of `event` for a view `width` wide: those of a warning wrapped to the width
/// (so that [`fit`] leaves them whole), any other left for `fit` to cut.
pub fn lines_to_show(event: &Event, lines: Vec<String>, width: usize) -> Vec<String> {
    match event {
        Event::Notice { level: NoticeLevel::Warning, .. } => lines.iter().flat_map(|l| wrap(l, width)).collect(),
        _ => lines,
    }
}

/// `line` (and each line within it) cut at spaces into lines narrower than `width`; a line
/// goes on indented two more than it began; a word longer than a line is cut where it must.
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    let max = width.saturating_sub(1).max(10);
    let mut out = Vec::new();
    for segment in line.split('\n') {
        let rest = segment.trim_start_matches(' ');
        let mut indent = " ".repeat(segment.len() - rest.len());
        if indent.len() + 2 >= max / 2 {
            indent.clear();
        }
        let more = format!("{indent}  ");
        let mut current = indent.clone();
        let mut used = indent.len();
        let mut fresh = true;
        for word in rest.split(' ') {
            let mut word = word;
            let len = word.chars().count();
            // A word too long for any line starts where it is rather than on a line of its own.
            if !fresh && used + 1 + len > max && len <= max - more.len() {
                out.push(std::mem::replace(&mut current, more.clone()));
                used = more.len();
                fresh = true;
            }
            if !fresh {
                current.push(' ');
                used += 1;
            }
            loop {
                let room = max - used;
                let Some((cut, _)) = word.char_indices().nth(room) else { break };
                current.push_str(&word[..cut]);
                out.push(std::mem::replace(&mut current, more.clone()));
                used = more.len();
                word = &word[cut..];
            }
            current.push_str(word);
            used += word.chars().count();
            fresh = false;
        }
        out.push(current);
    }
    out
}

/// The width of the terminal on stderr, or 100 when it cannot be asked.
pub fn terminal_width() -> usize {
    terminal_size().0
}

/// Columns and rows of the terminal on stderr (100 × 30 when it cannot be asked).
pub fn terminal_size() -> (usize, usize) {
    let mut ws = nix::libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we pass, nothing else.
    let ok = unsafe { nix::libc::ioctl(2, nix::libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 { (usize::from(ws.ws_col), usize::from(ws.ws_row)) } else { (100, 30) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_running_targets_and_a_bar_then_clears_them() {
        let mut view = LiveView::new(Vec::new(), 60, false);
        for e in [
            Event::TargetQueued { target: "a".into(), deps: vec![], estimate_ms: Some(2000) },
            Event::TargetQueued { target: "b".into(), deps: vec![], estimate_ms: None },
            Event::TargetStarted { target: "a".into(), attempt: 1, slot: 0 },
            Event::TargetOutput {
                target: "a".into(),
                stream: kiln_engine::Stream::Stdout,
                line: "compiling x".into(),
                replayed: false,
            },
        ] {
            view.on_event(&e);
        }
        view.redraw();
        let text = String::from_utf8(view.out.get_ref().clone()).expect("utf-8");
        assert!(text.contains(" a 0ms │ compiling x\n"), "{text:?}");
        assert!(text.contains(" 0/2 · 0ms · ETA 1.99s") || text.contains(" 0/2 · 0ms · ETA 2.00s"), "{text:?}");
        view.on_event(&Event::TargetFinished {
            target: "a".into(),
            status: kiln_engine::TargetStatus::Built,
            duration_ms: 1200,
            key: None,
            reason: "no previous build".into(),
            log: None,
            saved_ms: None,
            cache: None,
        });
        view.out.get_mut().clear();
        view.redraw();
        let text = String::from_utf8(view.out.get_ref().clone()).expect("utf-8");
        assert!(text.starts_with("\r\x1b[2A\x1b[2K  built a 1.20s — no previous build\n"), "{text:?}");
        assert!(text.contains("1/2"), "{text:?}");
    }

    #[test]
    fn a_terminal_that_hung_up_is_written_to_once_and_never_panics() {
        let mut view = LiveView::new(crate::view_out::testing::Failing::hung_up(), 60, false);
        view.on_event(&Event::TargetQueued { target: "a".into(), deps: vec![], estimate_ms: None });
        view.on_event(&Event::TargetStarted { target: "a".into(), attempt: 1, slot: 0 });
        for _ in 0..3 {
            view.redraw();
        }
        view.finish();
        assert_eq!(view.out.get_ref().attempts, 1);
    }

    #[test]
    fn warnings_are_wrapped_whole_other_lines_cut() {
        let message = "events sink http://127.0.0.1:19000/: event abc-1 was not delivered: no answer\n  = check that a receiver runs at http://127.0.0.1:19000/events/with/a/very/long/path";
        let warning = Event::Notice { level: NoticeLevel::Warning, message: message.into() };
        let mut view = LiveView::new(Vec::new(), 30, false);
        view.on_event(&warning);
        view.on_event(&Event::Notice { level: NoticeLevel::Info, message: message.into() });
        view.redraw();
        let text = String::from_utf8(view.out.get_ref().clone()).expect("utf-8");
        let shown: Vec<&str> = text.split('\n').map(|l| l.trim_start_matches("\x1b[2K")).collect();
        for l in &shown {
            assert!(l.chars().count() < 30 || l.contains("\x1b[J"), "{l:?} fits in 30 columns: {text:?}");
        }
        let warned: String = shown.iter().take_while(|l| !l.starts_with("kiln:")).copied().collect();
        let squeezed = |t: &str| t.split_whitespace().collect::<String>();
        assert_eq!(squeezed(&warned), squeezed(&format!("warning: {message}")), "every word of the warning is shown");
        assert!(shown.iter().any(|l| l.starts_with("kiln: events sink") && l.ends_with('…')), "info is cut: {text:?}");
    }

    #[test]
    fn wrap_breaks_at_spaces_indents_what_goes_on_and_cuts_long_words() {
        assert_eq!(wrap("aaa bbb ccc ddd", 12), ["aaa bbb ccc", "  ddd"]);
        assert_eq!(wrap("  = aaa bbb ccc", 12), ["  = aaa bbb", "    ccc"]);
        assert_eq!(wrap("x http://abcdefghijklmnop", 12), ["x http://ab", "  cdefghijk", "  lmnop"]);
        assert_eq!(wrap("short\n  = hint", 40), ["short", "  = hint"]);
        assert_eq!(wrap("", 40), [""]);
    }

    #[test]
    fn long_lines_are_cut_to_the_width() {
        assert_eq!(fit("abcdefghij", 6), "abcd…");
        assert_eq!(fit("abc", 6), "abc");
    }
}
