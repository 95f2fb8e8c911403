//! The summary at the end of a run, built from the event stream alone: counts, wall time,
//! the critical path, the slowest targets, the cache hit rate and the time the cache saved.

use std::collections::HashMap;
use std::time::Duration;

use kiln_config::format_duration;
use kiln_engine::{Event, TargetStatus};

#[derive(Debug, Clone)]
struct Entry {
    deps: Vec<String>,
    status: Option<TargetStatus>,
    duration_ms: u64,
    saved_ms: u64,
}

/// What a run did, per target, as far as its events tell.
#[derive(Debug, Default)]
pub struct RunReport {
    entries: HashMap<String, Entry>,
    /// Targets in the order they finished (deps always before dependents).
    finished: Vec<String>,
}

impl RunReport {
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::TargetQueued { target, deps, .. } => {
                self.entries
                    .insert(target.clone(), Entry { deps: deps.clone(), status: None, duration_ms: 0, saved_ms: 0 });
            }
            Event::TargetFinished { target, status, duration_ms, saved_ms, .. } => {
                let entry = self.entries.entry(target.clone()).or_insert_with(|| Entry {
                    deps: Vec::new(),
                    status: None,
                    duration_ms: 0,
                    saved_ms: 0,
                });
                entry.status = Some(*status);
                entry.duration_ms = *duration_ms;
                entry.saved_ms = saved_ms.unwrap_or(0);
                self.finished.push(target.clone());
            }
            _ => {}
        }
    }

    /// The chain of dependent targets with the largest total duration, and that total.
    pub fn critical_path(&self) -> (Vec<(String, u64)>, u64) {
        let mut best: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
        for name in &self.finished {
            let entry = &self.entries[name];
            if entry.status == Some(TargetStatus::Skipped) {
                continue;
            }
            let (before, via) = entry
                .deps
                .iter()
                .filter_map(|d| best.get(d.as_str()).map(|(t, _)| (*t, Some(d.as_str()))))
                .max_by_key(|(t, _)| *t)
                .unwrap_or((0, None));
            // Durations of cached targets come from records on disk: saturate, never overflow.
            best.insert(name, (before.saturating_add(entry.duration_ms), via));
        }
        let Some((&end, &(total, _))) = best.iter().max_by_key(|(name, (t, _))| (*t, std::cmp::Reverse(**name))) else {
            return (Vec::new(), 0);
        };
        let mut path = Vec::new();
        let mut cur = Some(end);
        while let Some(name) = cur {
            path.push((name.to_string(), self.entries[name].duration_ms));
            cur = best[name].1;
        }
        path.reverse();
        (path, total)
    }

    /// The targets whose command ran longest, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, u64)> {
        let mut ran: Vec<(String, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.status, Some(TargetStatus::Built | TargetStatus::Failed)))
            .map(|(name, e)| (name.clone(), e.duration_ms))
            .collect();
        ran.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ran.truncate(n);
        ran
    }

    fn count(&self, status: TargetStatus) -> usize {
        self.entries.values().filter(|e| e.status == Some(status)).count()
    }

    /// Summary lines to print above the closing count line; empty when nothing ran.
    pub fn render(&self) -> Vec<String> {
        let built = self.count(TargetStatus::Built);
        let cached = self.count(TargetStatus::Cached);
        let fresh = self.count(TargetStatus::Fresh);
        let failed = self.count(TargetStatus::Failed);
        let mut lines = Vec::new();
        let ms = |v: u64| format_duration(Duration::from_millis(v));
        if built + failed > 0 {
            let (path, total) = self.critical_path();
            let chain: Vec<String> = path.iter().map(|(n, d)| format!("{n} {}", ms(*d))).collect();
            lines.push(format!("critical path {}: {}", ms(total), chain.join(" → ")));
            let slow: Vec<String> = self.slowest(5).iter().map(|(n, d)| format!("{n} {}", ms(*d))).collect();
            lines.push(format!("slowest: {}", slow.join(", ")));
        }
        let considered = built + cached + fresh;
        let hits = cached + fresh;
        if let Some(rate) = (hits * 100).checked_div(considered) {
            let saved = self.entries.values().fold(0u64, |sum, e| sum.saturating_add(e.saved_ms));
            lines.push(format!(
                "cache: {hits} of {considered} targets needed no command ({rate}%): {cached} restored, {fresh} fresh; restoring saved {}",
                ms(saved)
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(t: &str, deps: &[&str]) -> Event {
        Event::TargetQueued {
            target: t.into(),
            deps: deps.iter().map(|d| (*d).to_string()).collect(),
            estimate_ms: None,
        }
    }

    fn finished(t: &str, status: TargetStatus, ms: u64, saved: Option<u64>) -> Event {
        Event::TargetFinished {
            target: t.into(),
            status,
            duration_ms: ms,
            key: None,
            reason: String::new(),
            log: None,
            saved_ms: saved,
            cache: None,
        }
    }

    fn report() -> RunReport {
        let mut r = RunReport::default();
        for e in [
            queued("core", &[]),
            queued("a", &["core"]),
            queued("b", &["core"]),
            queued("app", &["a", "b"]),
            queued("docs", &[]),
            finished("core", TargetStatus::Built, 100, None),
            finished("docs", TargetStatus::Cached, 1, Some(900)),
            finished("b", TargetStatus::Built, 300, None),
            finished("a", TargetStatus::Fresh, 0, None),
            finished("app", TargetStatus::Built, 50, None),
        ] {
            r.on_event(&e);
        }
        r
    }

    #[test]
    fn critical_path_follows_the_heaviest_chain() {
        let (path, total) = report().critical_path();
        assert_eq!(path, vec![("core".to_string(), 100), ("b".to_string(), 300), ("app".to_string(), 50)]);
        assert_eq!(total, 450);
    }

    #[test]
    fn renders_slowest_and_cache_lines() {
        assert_eq!(
            report().render(),
            vec![
                "critical path 450ms: core 100ms → b 300ms → app 50ms".to_string(),
                "slowest: b 300ms, core 100ms, app 50ms".to_string(),
                "cache: 2 of 5 targets needed no command (40%): 1 restored, 1 fresh; restoring saved 900ms".to_string(),
            ]
        );
    }

    /// Regression: the time saved comes from cache records on disk; two damaged ones whose
    /// durations add up past u64::MAX panicked the summary ("attempt to add with overflow").
    #[test]
    fn durations_from_damaged_records_do_not_overflow() {
        let mut r = RunReport::default();
        for e in [
            queued("a", &[]),
            queued("b", &["a"]),
            queued("c", &["b"]),
            finished("a", TargetStatus::Cached, u64::MAX, Some(u64::MAX)),
            finished("b", TargetStatus::Cached, u64::MAX, Some(u64::MAX)),
            finished("c", TargetStatus::Built, u64::MAX, None),
        ] {
            r.on_event(&e);
        }
        assert_eq!(r.critical_path().1, u64::MAX);
        assert!(
            r.render()[2].ends_with(&format!("restoring saved {}", format_duration(Duration::from_millis(u64::MAX))))
        );
    }
}
