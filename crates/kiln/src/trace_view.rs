//! `--trace FILE`: the run in Chrome's trace event format, which Perfetto and
//! chrome://tracing open. One track per job slot (`job N`: command attempts) and per worker
//! thread (`worker N`: evaluating, hashing, cache lookups, restores, storing outputs), each
//! target's work as spans, and a counter of running jobs.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_engine::Event;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Span {
    target: String,
    name: String,
    track: String,
    start_us: u64,
    duration_us: u64,
}

#[derive(Default)]
pub struct TraceView {
    spans: Vec<Span>,
}

impl TraceView {
    pub fn on_event(&mut self, event: &Event) {
        if let Event::TargetSpan { target, span, track, start_us, duration_us } = event {
            self.spans.push(Span {
                target: target.clone(),
                name: span.clone(),
                track: track.clone(),
                start_us: *start_us,
                duration_us: *duration_us,
            });
        }
    }

    /// The trace as a JSON document.
    pub fn document(&self) -> Value {
        // Job slots first, in slot order, then workers.
        let mut tracks: Vec<&str> = self.spans.iter().map(|s| s.track.as_str()).collect();
        tracks.sort_by_key(|t| (!t.starts_with("job"), t.split(' ').nth(1).and_then(|n| n.parse::<u64>().ok()), *t));
        tracks.dedup();
        let tid: BTreeMap<&str, usize> = tracks.iter().enumerate().map(|(i, t)| (*t, i + 1)).collect();

        let mut events = vec![json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "kiln build"}})];
        for (track, id) in &tid {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": id, "args": {"name": track}}));
            events
                .push(json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": id, "args": {"sort_index": id}}));
        }
        for s in &self.spans {
            events.push(json!({
                "name": format!("{} {}", s.name, s.target),
                "cat": s.name,
                "ph": "X",
                "ts": s.start_us,
                "dur": s.duration_us,
                "pid": 1,
                "tid": tid[s.track.as_str()],
                "args": {"target": s.target},
            }));
        }
        // Running jobs: +1 where a command attempt starts, -1 where it ends.
        let mut changes: Vec<(u64, i64)> = Vec::new();
        for s in self.spans.iter().filter(|s| s.name == "run") {
            changes.push((s.start_us, 1));
            changes.push((s.start_us + s.duration_us, -1));
        }
        changes.sort_by_key(|(ts, delta)| (*ts, *delta));
        let mut running = 0i64;
        for (ts, delta) in changes {
            running += delta;
            events.push(json!({"name": "running jobs", "ph": "C", "ts": ts, "pid": 1, "args": {"running": running}}));
        }
        json!({"traceEvents": events, "displayTimeUnit": "ms"})
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string(&self.document()).expect("trace documents serialize");
        std::fs::write(path, text)
    }
}
