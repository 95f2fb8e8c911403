//! A replica's log on disk (`.kiln/logs/services/NAME.REPLICA.log`): every attempt's output
//! as records ([`crate::exec::log_records`]), with a line from kiln where each attempt
//! starts and ends, kept across restarts up to `settings.log_limit` by a [`TailLog`].
//!
//! One [`ReplicaLog`] per file at a time: during a podman handover the replaced container's
//! client still prints while the new one starts, and both must count what the file holds
//! (and rotate it) through the same [`TailLog`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use crate::event::Stream;
use crate::exec::log_records::{encode_note, encode_output, record_time};
use crate::exec::tail_log::TailLog;

pub struct ReplicaLog {
    log: Mutex<TailLog>,
    /// Whether a write failure was reported already (once per file is enough).
    told: AtomicBool,
}

impl ReplicaLog {
    /// The log at `path` (its directories under `kiln`, never reached through a planted
    /// link), shared with whoever writes it already.
    pub fn open(path: PathBuf, limit: u64, kiln: &Path) -> Arc<ReplicaLog> {
        type Open = BTreeMap<PathBuf, Weak<ReplicaLog>>;
        static OPEN: Mutex<Open> = Mutex::new(Open::new());
        let mut open = OPEN.lock().expect("log registry lock is never poisoned");
        open.retain(|_, log| log.strong_count() > 0);
        if let Some(log) = open.get(&path).and_then(Weak::upgrade) {
            return log;
        }
        let log = Arc::new(ReplicaLog {
            log: Mutex::new(TailLog::continue_at(path.clone(), limit).inside(kiln)),
            told: AtomicBool::new(false),
        });
        open.insert(path, Arc::downgrade(&log));
        log
    }

    /// What one read of a stream brought, as it was printed.
    pub fn output(&self, stream: Stream, raw: &[u8]) {
        // Timed under the lock: records are in the file in the order of their times, though
        // stdout and stderr are read on tasks of their own.
        let mut log = self.log.lock().expect("log lock is never poisoned");
        let mut records = Vec::new();
        encode_output(&mut records, &record_time(SystemTime::now()), stream, raw);
        log.write(&records);
    }

    /// A line from kiln (`[kiln: …]`).
    pub fn note(&self, text: &str) {
        let mut log = self.log.lock().expect("log lock is never poisoned");
        log.write(&encode_note(&record_time(SystemTime::now()), &format!("[kiln: {text}]")));
    }

    /// Why the log could not be written, the first time this is asked after it failed.
    pub fn failure_once(&self) -> Option<String> {
        let log = self.log.lock().expect("log lock is never poisoned");
        let why = log.failure()?.to_string();
        (!self.told.swap(true, Ordering::Relaxed)).then_some(why)
    }
}
