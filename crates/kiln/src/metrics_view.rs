//! What `GET /metrics` answers, in OpenMetrics text: counts derived from the one event
//! stream, like the status view. Names and counts only: no paths, no output, no reasons.
//!
//! Every label value is a target or service name of the configuration, or one of a fixed
//! few words (a build status, a cache result, a reconcile result, a restart reason), so the
//! number of series is bounded by the configuration. A target or service removed by a
//! reload has its series removed.
//!
//! How the counts are derived:
//! - `kiln_target_builds_total{target,status}` and `kiln_target_build_duration_seconds{target}`:
//!   each `target.finished` (the duration of every one that did work: built, cached or failed);
//! - `kiln_cache_requests_total{result}`: each `target.finished` whose `cache` says the cache
//!   was asked for its outputs: `hit` or `miss` (an up-to-date target, one with
//!   `cache = false`, a triggered one or a skipped one asks nothing);
//! - `kiln_watch_changes_total`: each `watch.changed` (one debounced batch of changes);
//! - `kiln_reconciles_total{service,result}`: each change of a replica's phase that ends an
//!   attempt to bring it to what is wanted: to `ready` or `completed` is `ok`, to `backoff`
//!   is `requeued` (it is tried again), to `failed` is `failed`;
//! - `kiln_service_restarts_total{service,reason}`: each `starting` of a replica that carries
//!   a `cause` (a restart, not a first start), labelled by it: `crash` (it exited and its
//!   restart policy restarted it), `liveness` (its liveness probe failed), `build` (a new
//!   build of what it runs), `trigger` (`kiln trigger`, the dashboard), `config` (its
//!   configuration changed), `watch` (a watched file changed), `sync` (a `sync+restart`);
//! - `kiln_service_ready_replicas{service}`: replicas whose last phase is `ready`;
//! - `kiln_update_duration_seconds`: each `update.completed`'s `latency_ms.total`;
//! - `kiln_events_dropped_total`: what the event bus dropped for any subscriber (the sum of
//!   every `stream.lagged`) plus the events the CloudEvents sink did not deliver (its queue
//!   full, given up, left at the end: events_sink.rs), read when scraped;
//! - `kiln_build_info{version}`: 1.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_engine::{CacheLookup, Event, EventBus, Phase, RestartCause, TargetStatus};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of the answer to `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Of the answer to a client that asks for Prometheus's older text format only
/// (`Accept: text/plain`, as `curl -H` or `promtool check metrics` input would).
pub const PROMETHEUS_TEXT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for the Prometheus text format rather than OpenMetrics:
/// it names `text/plain` and not `application/openmetrics-text`.
pub fn wants_prometheus_text(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("text/plain") && !a.contains("application/openmetrics-text")
    })
}

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// 5 ms to about 44 min, doubling: a container image or a large compile takes minutes.
fn build_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

pub struct MetricsView {
    registry: Registry,
    builds: Family<Labels, Counter>,
    build_duration: HistogramFamily,
    cache: Family<Labels, Counter>,
    watch_changes: Counter,
    reconciles: Family<Labels, Counter>,
    restarts: Family<Labels, Counter>,
    ready: Family<Labels, Gauge>,
    update_duration: Histogram,
    dropped: Counter,
    bus: Option<Arc<EventBus>>,
    /// Events the CloudEvents sink did not deliver (events_sink.rs), if there is one.
    sink_dropped: Option<Arc<AtomicU64>>,
    /// Each replica's last phase, by service.
    phases: BTreeMap<String, BTreeMap<u32, Phase>>,
    /// Targets and services a reload removed: their late events (a build that was running,
    /// the replicas' `stopped`) make no series again.
    removed_targets: BTreeSet<String>,
    removed_services: BTreeSet<String>,
}

impl MetricsView {
    /// `bus`: where `kiln_events_dropped_total` is read from, when scraped.
    pub fn new(bus: Option<Arc<EventBus>>) -> MetricsView {
        let mut registry = Registry::with_prefix("kiln");
        let builds = Family::<Labels, Counter>::default();
        registry.register("target_builds", "Targets finished, by target and status", builds.clone());
        let build_duration = HistogramFamily::new_with_constructor(build_buckets);
        registry.register_with_unit(
            "target_build_duration",
            "How long a target that did work (built, cached or failed) took",
            Unit::Seconds,
            build_duration.clone(),
        );
        let cache = Family::<Labels, Counter>::default();
        registry.register("cache_requests", "Cache lookups of targets, by result (hit, miss)", cache.clone());
        let watch_changes = Counter::default();
        registry.register(
            "watch_changes",
            "Debounced batches of file changes that affect targets",
            watch_changes.clone(),
        );
        let reconciles = Family::<Labels, Counter>::default();
        registry.register(
            "reconciles",
            "Attempts to bring a service replica to its wanted state, by result (ok, failed, requeued)",
            reconciles.clone(),
        );
        let restarts = Family::<Labels, Counter>::default();
        registry.register(
            "service_restarts",
            "Restarts of service replicas, by cause (crash, liveness, build, trigger, config, watch, sync)",
            restarts.clone(),
        );
        let ready = Family::<Labels, Gauge>::default();
        registry.register("service_ready_replicas", "Replicas of a service that are ready", ready.clone());
        // 10 ms to about 22 min, doubling.
        let update_duration = Histogram::new(exponential_buckets(0.01, 2.0, 18));
        registry.register_with_unit(
            "update_duration",
            "How long a save took to reach running code (update.completed latency total)",
            Unit::Seconds,
            update_duration.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Events dropped for subscribers that did not keep up, plus events the CloudEvents sink could not deliver",
            dropped.clone(),
        );
        // A gauge of 1 rather than an OpenMetrics `info`: Prometheus's own text parser (that
        // of `promtool check metrics`) knows no `info` type, and `*_build_info` gauges are
        // what scrapers expect.
        let build_info = Family::<Labels, Gauge>::default();
        build_info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())]).set(1);
        registry.register("build_info", "The running kiln, by version", build_info);
        MetricsView {
            registry,
            builds,
            build_duration,
            cache,
            watch_changes,
            reconciles,
            restarts,
            ready,
            update_duration,
            dropped,
            bus,
            sink_dropped: None,
            phases: BTreeMap::new(),
            removed_targets: BTreeSet::new(),
            removed_services: BTreeSet::new(),
        }
    }

    /// Adds the events the CloudEvents sink did not deliver to `kiln_events_dropped_total`.
    pub fn with_sink_drops(mut self, dropped: Arc<AtomicU64>) -> MetricsView {
        self.sink_dropped = Some(dropped);
        self
    }

    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::TargetFinished { target, .. } if self.removed_targets.contains(target) => {}
            Event::ServicePhase { service, .. } if self.removed_services.contains(service) => {}
            Event::TargetFinished { target, status, duration_ms, cache, .. } => {
                let labels = vec![("target", target.clone()), ("status", status.as_str().to_string())];
                self.builds.get_or_create(&labels).inc();
                if matches!(status, TargetStatus::Built | TargetStatus::Cached | TargetStatus::Failed) {
                    self.build_duration.get_or_create(&vec![("target", target.clone())]).observe(seconds(*duration_ms));
                }
                let result = match cache {
                    Some(CacheLookup::Hit) => Some("hit"),
                    Some(CacheLookup::Miss) => Some("miss"),
                    None => None,
                };
                if let Some(result) = result {
                    self.cache.get_or_create(&vec![("result", result.to_string())]).inc();
                }
            }
            Event::WatchChanged { .. } => {
                self.watch_changes.inc();
            }
            Event::ServicePhase { service, replica, phase, replicas, cause, .. } => {
                self.on_phase(service, *replica, *phase, *cause, *replicas);
            }
            Event::UpdateCompleted { latency_ms, .. } => self.update_duration.observe(seconds(latency_ms.total)),
            Event::ConfigReloaded { added, removed, services_added, services_removed, .. } => {
                for target in removed {
                    self.forget_target(target);
                    self.removed_targets.insert(target.clone());
                }
                for service in services_removed {
                    self.forget_service(service);
                    self.removed_services.insert(service.clone());
                }
                for target in added {
                    self.removed_targets.remove(target);
                }
                for service in services_added {
                    self.removed_services.remove(service);
                }
            }
            _ => {}
        }
    }

    fn on_phase(&mut self, service: &str, replica: u32, phase: Phase, cause: Option<RestartCause>, desired: u32) {
        let replicas = self.phases.entry(service.to_string()).or_default();
        let before = replicas.insert(replica, phase);
        // A replica beyond the desired count is forgotten once it has stopped.
        replicas.retain(|r, p| *r < desired || *p != Phase::Stopped);
        let ready = replicas.values().filter(|p| **p == Phase::Ready).count();
        self.ready.get_or_create(&vec![("service", service.to_string())]).set(ready as i64);
        if before == Some(phase) {
            return;
        }
        let result = match phase {
            Phase::Ready | Phase::Completed => Some("ok"),
            Phase::Backoff => Some("requeued"),
            Phase::Failed => Some("failed"),
            _ => None,
        };
        if let Some(result) = result {
            self.reconciles
                .get_or_create(&vec![("service", service.to_string()), ("result", result.to_string())])
                .inc();
        }
        if phase == Phase::Starting
            && let Some(cause) = cause
        {
            self.restarts
                .get_or_create(&vec![("service", service.to_string()), ("reason", cause.as_str().to_string())])
                .inc();
        }
    }

    fn forget_target(&mut self, target: &str) {
        for status in [
            TargetStatus::Built,
            TargetStatus::Cached,
            TargetStatus::Fresh,
            TargetStatus::Failed,
            TargetStatus::Skipped,
        ] {
            self.builds.remove(&vec![("target", target.to_string()), ("status", status.as_str().to_string())]);
        }
        self.build_duration.remove(&vec![("target", target.to_string())]);
    }

    fn forget_service(&mut self, service: &str) {
        self.phases.remove(service);
        let name = || ("service", service.to_string());
        self.ready.remove(&vec![name()]);
        for result in ["ok", "failed", "requeued"] {
            self.reconciles.remove(&vec![name(), ("result", result.to_string())]);
        }
        for cause in RestartCause::ALL {
            self.restarts.remove(&vec![name(), ("reason", cause.as_str().to_string())]);
        }
    }

    /// The metrics as OpenMetrics text (ending in `# EOF`), or with `prometheus_text` in
    /// Prometheus's text format 0.0.4.
    pub fn encode(&self, prometheus_text: bool) -> String {
        let bus = self.bus.as_ref().map_or(0, |bus| bus.dropped_total());
        let sink = self.sink_dropped.as_ref().map_or(0, |d| d.load(Ordering::Relaxed));
        let total = bus + sink;
        let counted = self.dropped.get();
        if total > counted {
            self.dropped.inc_by(total - counted);
        }
        let mut out = String::new();
        if prometheus_text {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        } else {
            encode(&mut out, &self.registry)
        }
        .expect("writing to a String cannot fail");
        out
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::Latency;

    fn finished(target: &str, status: TargetStatus, duration_ms: u64) -> Event {
        Event::TargetFinished {
            target: target.into(),
            status,
            duration_ms,
            key: Some("k".into()),
            reason: String::new(),
            log: None,
            saved_ms: None,
            cache: match status {
                TargetStatus::Cached => Some(CacheLookup::Hit),
                TargetStatus::Built => Some(CacheLookup::Miss),
                _ => None,
            },
        }
    }

    fn phase(replica: u32, phase: Phase, reason: &str) -> Event {
        Event::ServicePhase {
            service: "web".into(),
            replica,
            phase,
            reason: reason.into(),
            restarts: 0,
            next_try_ms: None,
            image: None,
            replicas: 2,
            cause: match phase {
                Phase::Starting if reason.contains("after it exited") => Some(RestartCause::Crash),
                Phase::Starting if reason.contains("new build") => Some(RestartCause::Build),
                _ => None,
            },
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_sequence_of_events_encodes_as_openmetrics() {
        let bus = Arc::new(EventBus::new());
        let mut view = MetricsView::new(Some(bus.clone()));
        view.on_event(&finished("app", TargetStatus::Built, 1500));
        view.on_event(&finished("app", TargetStatus::Cached, 20));
        view.on_event(&finished("lib", TargetStatus::Fresh, 0));
        view.on_event(&Event::WatchChanged { paths: vec!["src/a.c".into()], targets: vec!["app".into()] });
        for (replica, p, reason) in [
            (0, Phase::Pending, ""),
            (0, Phase::Starting, "started"),
            (1, Phase::Starting, "started"),
            (0, Phase::Ready, "ready"),
            (1, Phase::Ready, "ready"),
            (1, Phase::Ready, "ready"), // the same phase again is no reconcile
            (0, Phase::Backoff, "exited with code 1; restart 1 in 100ms"),
            (0, Phase::Starting, "restart 1 after it exited with code 1"),
            (1, Phase::Stopping, "restarting for a new build"),
            (1, Phase::Starting, "restarted for a new build"),
            (1, Phase::Ready, "ready"),
        ] {
            view.on_event(&phase(replica, p, reason));
        }
        let latency = Latency { total: 1420, ..Latency::default() };
        view.on_event(&Event::UpdateCompleted {
            cause: vec!["src/a.c".into()],
            targets: vec!["app".into()],
            services: vec!["web".into()],
            how: "rebuilt".into(),
            files: None,
            latency_ms: latency,
        });
        let text = view.encode(false);
        assert!(text.ends_with("# EOF\n"), "{text}");
        let got = lines(&text);
        for want in [
            r#"kiln_target_builds_total{target="app",status="built"} 1"#,
            r#"kiln_target_builds_total{target="app",status="cached"} 1"#,
            r#"kiln_target_builds_total{target="lib",status="fresh"} 1"#,
            r#"kiln_target_build_duration_seconds_count{target="app"} 2"#,
            r#"kiln_target_build_duration_seconds_sum{target="app"} 1.52"#,
            r#"kiln_cache_requests_total{result="hit"} 1"#,
            r#"kiln_cache_requests_total{result="miss"} 1"#,
            "kiln_watch_changes_total 1",
            r#"kiln_reconciles_total{service="web",result="ok"} 3"#,
            r#"kiln_reconciles_total{service="web",result="requeued"} 1"#,
            r#"kiln_service_restarts_total{service="web",reason="crash"} 1"#,
            r#"kiln_service_restarts_total{service="web",reason="build"} 1"#,
            r#"kiln_service_ready_replicas{service="web"} 1"#,
            "kiln_update_duration_seconds_sum 1.42",
            "kiln_update_duration_seconds_count 1",
            "kiln_events_dropped_total 0",
            &format!(r#"kiln_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION")),
        ] {
            assert!(got.contains(&want), "missing `{want}` in:\n{text}");
        }
        assert!(text.contains("# TYPE kiln_target_build_duration_seconds histogram"), "{text}");
        assert!(text.contains("# UNIT kiln_update_duration_seconds seconds"), "{text}");
        assert!(!got.iter().any(|l| l.contains(r#"status="fresh""#) && l.contains("duration")), "{text}");
        let plain = view.encode(true);
        assert!(plain.contains("# HELP kiln_watch_changes_total ") && !plain.contains("# EOF"), "{plain}");
        assert!(wants_prometheus_text(Some("text/plain")));
        assert!(!wants_prometheus_text(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
        assert!(!wants_prometheus_text(None) && !wants_prometheus_text(Some("*/*")));
    }

    #[test]
    fn a_removed_target_or_service_leaves_no_series() {
        let mut view = MetricsView::new(None);
        view.on_event(&finished("app", TargetStatus::Built, 10));
        view.on_event(&phase(0, Phase::Ready, "ready"));
        view.on_event(&Event::ConfigReloaded {
            added: vec![],
            removed: vec!["app".into()],
            changed: vec![],
            services_added: vec![],
            services_removed: vec!["web".into()],
            services_changed: vec![],
            files: vec![],
        });
        let text = view.encode(false);
        assert!(!text.contains(r#""app""#) && !text.contains(r#""web""#), "{text}");
        // The removed service's replicas stop after the reload, and a build of the removed
        // target that was running ends: neither brings a series back.
        view.on_event(&phase(0, Phase::Stopping, "removed from kiln.toml"));
        view.on_event(&phase(0, Phase::Stopped, "removed from kiln.toml"));
        view.on_event(&finished("app", TargetStatus::Built, 10));
        let text = view.encode(false);
        assert!(!text.contains(r#""app""#) && !text.contains(r#""web""#), "{text}");
        // Added again: counted again.
        view.on_event(&Event::ConfigReloaded {
            added: vec!["app".into()],
            removed: vec![],
            changed: vec![],
            services_added: vec!["web".into()],
            services_removed: vec![],
            services_changed: vec![],
            files: vec![],
        });
        view.on_event(&phase(0, Phase::Ready, "ready"));
        assert!(view.encode(false).contains(r#"kiln_service_ready_replicas{service="web"} 1"#));
    }
}
