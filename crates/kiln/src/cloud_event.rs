//! One kiln event as a structured-mode CloudEvents 1.0 JSON event (the body of a POST with
//! `Content-Type: application/cloudevents+json`):
//!
//! - `specversion` `1.0`;
//! - `id` `<session>-<seq>`: a random id of this `kiln up` or `kiln build` and the event's
//!   `seq`, unique within a `source` (a `stream.lagged` takes the `seq` of the last event it
//!   stands for, which is never sent itself);
//! - `source` `urn:kiln:<project>-<digest>`: the project as container and network names
//!   name it (the root's directory name and the digest of its path);
//! - `type` `dev.kiln.<event type>` (`dev.kiln.target.finished`);
//! - `time` the event's `ts`; `subject` the target or service it concerns, if any;
//! - `datacontenttype` `application/json`, `data` the event as `--json` prints it.

use kiln_engine::Envelope;
use serde_json::Value;

/// The prefix of every CloudEvents `type` kiln sends.
pub const TYPE_PREFIX: &str = "dev.kiln.";

/// An event ready to POST.
#[derive(Debug, Clone)]
pub struct CloudEvent {
    pub id: String,
    /// The CloudEvents `type`.
    pub kind: String,
    /// The JSON body.
    pub body: String,
}

impl CloudEvent {
    pub fn new(envelope: &Envelope, source: &str, session: &str) -> CloudEvent {
        let data = serde_json::to_value(envelope).unwrap_or(Value::Null);
        let event_type = data.get("type").and_then(Value::as_str).unwrap_or("unknown");
        let id = format!("{session}-{}", envelope.seq);
        let kind = format!("{TYPE_PREFIX}{event_type}");
        let subject = ["target", "service"].iter().find_map(|k| data.get(*k).and_then(Value::as_str));
        // Written by hand rather than through a map, so that the attributes come first in
        // the order of the specification and `data` keeps the field order of `--json`.
        let text = |s: &str| Value::from(s).to_string();
        let mut body = format!(
            r#"{{"specversion":"1.0","id":{},"source":{},"type":{},"time":{}"#,
            text(&id),
            text(source),
            text(&kind),
            text(&envelope.ts)
        );
        if let Some(subject) = subject {
            body.push_str(&format!(r#","subject":{}"#, text(subject)));
        }
        let data = serde_json::to_string(envelope).unwrap_or_else(|_| "null".into());
        body.push_str(&format!(r#","datacontenttype":"application/json","data":{data}}}"#));
        CloudEvent { id, kind, body }
    }
}

impl CloudEvent {
    /// Whether it carries an output line (`target.output`, `service.output`).
    pub fn is_output(&self) -> bool {
        self.kind.strip_prefix(TYPE_PREFIX).is_some_and(|t| t == "target.output" || t == "service.output")
    }
}

/// The `source` of a project's events.
pub fn source_of(root: &std::path::Path) -> String {
    format!("urn:kiln:{}", kiln_engine::project_ref(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_engine::{Event, TargetStatus};

    #[test]
    fn carries_the_event_as_data_with_the_required_attributes() {
        let envelope = Envelope {
            event: Event::TargetFinished {
                target: "core".into(),
                status: TargetStatus::Built,
                duration_ms: 12,
                key: Some("ab".into()),
                reason: "first build".into(),
                log: None,
                saved_ms: None,
                cache: None,
            },
            ts: "2026-12-01T23:00:00.123Z".into(),
            seq: 7,
        };
        let ce = CloudEvent::new(&envelope, "urn:kiln:app-0123abcd", "f00d");
        assert_eq!((ce.id.as_str(), ce.kind.as_str()), ("f00d-7", "dev.kiln.target.finished"));
        let v: Value = serde_json::from_str(&ce.body).expect("json");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["source"], "urn:kiln:app-0123abcd");
        assert_eq!(v["time"], "2026-12-01T23:00:00.123Z");
        assert_eq!(v["subject"], "core");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"], serde_json::to_value(&envelope).expect("json"));
        assert_eq!(v["data"]["type"], "target.finished");
        assert!(ce.body.starts_with(r#"{"specversion":"1.0","id":"f00d-7","source":"#), "{}", ce.body);
        assert!(ce.body.contains(r#""data":{"type":"target.finished","target":"core""#), "{}", ce.body);
    }

    #[test]
    fn an_event_about_no_target_has_no_subject() {
        let envelope = Envelope { event: Event::StreamLagged { dropped: 3 }, ts: "t".into(), seq: 9 };
        let v: Value = serde_json::from_str(&CloudEvent::new(&envelope, "urn:kiln:x", "s").body).expect("json");
        assert_eq!(v["type"], "dev.kiln.stream.lagged");
        assert!(v.get("subject").is_none());
    }
}
