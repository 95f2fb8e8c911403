//! `kiln logs [NAME]`: the output kiln keeps in `.kiln/logs`, with or without a running
//! `kiln up`.
//!
//! - A target: the output of its last run (for a target restored from the cache, the
//!   output stored with the cache entry), byte for byte.
//! - A service: what its replicas printed, across restarts (each attempt's start and end
//!   marked by a `[kiln: …]` line), the last `settings.log_limit` bytes of each replica.
//!   Replicas are interleaved by time, each line prefixed with `NAME[N] | ` when there are
//!   several.
//! - No name: every service's replicas and every target, interleaved by time, prefixed
//!   like `docker compose logs` does. A target's lines carry the time its log was written.
//!
//! `--tail N` keeps the last N lines of each source, `--timestamps` starts each line with
//! its time, `--replica N` picks one replica, `--follow` goes on printing what is written
//! (until the running `kiln up` ends, or Ctrl-C when none runs), picking up replicas and
//! target runs that start meanwhile. `--json` prints one object per line instead.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln_config::Config;
use kiln_engine::{Layout, LogDecoder, LogLine, LogOrigin, ProjectLock};

use crate::cli::LogsArgs;
use crate::commands::control::known;
use crate::exit;
use crate::out::errln;

/// How often `--follow` looks for what was written.
const POLL: Duration = Duration::from_millis(100);

/// Where lines come from: a target's log or a service replica's.
struct Source {
    /// `web[1]`, or a target's name.
    label: String,
    path: PathBuf,
    /// A target's log is plain output; a service's is records.
    plain: bool,
    /// While following: the current part, open where reading stopped.
    file: Option<File>,
    decoder: LogDecoder,
}

impl Source {
    fn target(layout: &Layout, name: &str) -> Source {
        Source::new(name.to_string(), layout.log(name), true)
    }

    fn replica(layout: &Layout, service: &str, replica: u32) -> Source {
        Source::new(format!("{service}[{replica}]"), layout.service_log(service, replica), false)
    }

    fn new(label: String, path: PathBuf, plain: bool) -> Source {
        let decoder = if plain { LogDecoder::plain() } else { LogDecoder::new() };
        Source { label, path, plain, file: None, decoder }
    }

    /// When a plain log was last written: the time its lines carry.
    fn written(&self) -> Option<String> {
        let modified = std::fs::symlink_metadata(&self.path).and_then(|m| m.modified()).ok()?;
        Some(kiln_engine::record_time(modified))
    }

    /// The lines kept now (the last `limit` bytes), leaving the file open after them.
    fn history(&mut self, limit: u64) -> Vec<LogLine> {
        let (bytes, file) = kiln_engine::read_log_to_follow(&self.path, limit);
        self.file = file;
        let mut lines = Vec::new();
        self.decoder.feed(&bytes, &mut lines);
        self.stamp(&mut lines, self.written());
        lines
    }

    /// What was written since the last look: the rest of the open file and, if the log
    /// was rotated or replaced (a new run of a target), the new file from its start.
    fn poll(&mut self) -> Vec<LogLine> {
        let mut bytes = Vec::new();
        if let Some(f) = self.file.as_mut() {
            let _ = f.read_to_end(&mut bytes);
        }
        let now = std::fs::symlink_metadata(&self.path).ok().filter(std::fs::Metadata::is_file);
        let held = self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| (m.dev(), m.ino()));
        if let Some(meta) = now
            && held != Some((meta.dev(), meta.ino()))
        {
            // The new file's lines are new; what the old one held is all read.
            self.decoder = if self.plain { LogDecoder::plain() } else { LogDecoder::new() };
            self.file = open_log(&self.path);
            if let Some(f) = self.file.as_mut() {
                let _ = f.read_to_end(&mut bytes);
            }
        }
        let mut lines = Vec::new();
        self.decoder.feed(&bytes, &mut lines);
        self.stamp(&mut lines, Some(kiln_engine::record_time(SystemTime::now())));
        lines
    }

    /// A plain log's lines have no time of their own.
    fn stamp(&self, lines: &mut [LogLine], time: Option<String>) {
        if self.plain {
            for line in lines.iter_mut() {
                line.time.clone_from(&time);
            }
        }
    }

    /// The end of the log: an unfinished last line is a line.
    fn finish(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        self.decoder.finish(&mut lines);
        let time = if self.file.is_some() { Some(kiln_engine::record_time(SystemTime::now())) } else { self.written() };
        self.stamp(&mut lines, time);
        lines
    }
}

fn open_log(path: &Path) -> Option<File> {
    // Never through a symbolic link planted at its path.
    use std::os::unix::fs::OpenOptionsExt;
    let file = File::options().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path).ok()?;
    file.metadata().ok().filter(std::fs::Metadata::is_file).map(|_| file)
}

/// The replicas of `service` that have a log, in order (replicas past today's count may
/// have run before a scale-down: what they printed is kept).
fn replicas_on_disk(layout: &Layout, service: &str) -> Vec<u32> {
    let dir = layout.logs().join("services");
    let mut found: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (s, n) = name.strip_suffix(".log")?.rsplit_once('.')?;
            (s == service).then(|| n.parse().ok()).flatten()
        })
        .collect();
    found.sort_unstable();
    found
}

/// The services to show: those of kiln.toml, and with a stand-in configuration (kiln.toml
/// has errors) every service that has a log.
fn services_on_disk(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(layout.logs().join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (s, n) = name.strip_suffix(".log")?.rsplit_once('.')?;
            n.parse::<u32>().is_ok().then(|| s.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What `kiln logs` shows: the sources now, and how to find ones that start later.
struct Selection {
    layout: Layout,
    /// Services whose replicas are shown (all replicas found, or the one asked for).
    services: Vec<String>,
    replica: Option<u32>,
    targets: Vec<String>,
    /// Whether lines carry their source's name (more than one source, or no name given).
    prefixed: bool,
}

impl Selection {
    /// The sources that exist now and are not in `known` yet.
    fn discover(&self, known: &[Source]) -> Vec<Source> {
        let have = |path: &Path| known.iter().any(|s| s.path == path);
        let mut found = Vec::new();
        for service in &self.services {
            let replicas = match self.replica {
                Some(r) => vec![r],
                None => replicas_on_disk(&self.layout, service),
            };
            for r in replicas {
                let s = Source::replica(&self.layout, service, r);
                if !have(&s.path) && (self.replica.is_some() || s.path.exists()) {
                    found.push(s);
                }
            }
        }
        for target in &self.targets {
            let s = Source::target(&self.layout, target);
            if !have(&s.path) && s.path.exists() {
                found.push(s);
            }
        }
        found
    }
}

pub fn run(config: &Config, args: &LogsArgs, stand_in: bool, json: bool) -> u8 {
    let layout = Layout::new(&config.root);
    let selection = match &args.name {
        Some(name) => {
            if let Err(code) = known(config, name, !stand_in) {
                return code;
            }
            let service = config.services.contains_key(name) || (stand_in && !config.targets.contains_key(name));
            if !service && args.replica.is_some() {
                errln!("error: `{name}` is a target: --replica picks a replica of a service");
                return exit::USAGE;
            }
            if !service && !args.follow && args.tail.is_none() && !args.timestamps && !json {
                return target_log(config, name);
            }
            Selection {
                layout: layout.clone(),
                services: if service { vec![name.clone()] } else { Vec::new() },
                replica: args.replica,
                targets: if service { Vec::new() } else { vec![name.clone()] },
                prefixed: false,
            }
        }
        None => {
            if args.replica.is_some() {
                errln!("error: --replica needs a service: `kiln logs SERVICE --replica N`");
                return exit::USAGE;
            }
            let mut services: Vec<String> = config.services.keys().cloned().collect();
            if stand_in {
                services.extend(services_on_disk(&layout));
                services.sort();
                services.dedup();
            }
            Selection {
                layout: layout.clone(),
                services,
                replica: None,
                targets: config.targets.keys().cloned().collect(),
                prefixed: true,
            }
        }
    };
    // Whether a `kiln up` runs now: a follower ends with it.
    let session = args.follow.then(|| running_session(&layout)).flatten();
    let mut sources = selection.discover(&[]);
    let prefixed = selection.prefixed || sources.len() > 1;
    let mut printer = Printer::new(prefixed, args.timestamps, json, &sources);
    let limit = config.settings.log_limit;
    let history: Vec<Vec<LogLine>> = sources
        .iter_mut()
        .map(|s| {
            let mut lines = s.history(limit);
            if !args.follow {
                lines.extend(s.finish());
            }
            if let Some(n) = args.tail {
                lines.drain(..lines.len().saturating_sub(n));
            }
            lines
        })
        .collect();
    let printed = history.iter().any(|l| !l.is_empty());
    printer.merged(&sources, history);
    if !args.follow {
        if !printed && !json {
            match &args.name {
                Some(name) if selection.targets.is_empty() => errln!(
                    "kiln: no output recorded for service `{name}`{}: it has not run yet, or printed nothing",
                    args.replica.map(|r| format!(" replica {r}")).unwrap_or_default()
                ),
                Some(name) => {
                    errln!("kiln: no output recorded for `{name}`: it has not run yet, or its last run printed nothing")
                }
                None => errln!("kiln: no output recorded yet in {}", layout.logs().display()),
            }
        }
        printer.flush();
        return exit::SUCCESS;
    }
    printer.flush();
    loop {
        // Ended once it lets go of its lock (a process not waited for yet still has a pid).
        let ended = session.is_some_and(|pid| running_session(&selection.layout) != Some(pid));
        let fresh = selection.discover(&sources);
        if !fresh.is_empty() {
            printer.widen(&fresh);
            sources.extend(fresh);
        }
        let batch: Vec<Vec<LogLine>> = sources.iter_mut().map(Source::poll).collect();
        printer.merged(&sources, batch);
        if ended {
            let rest: Vec<Vec<LogLine>> = sources.iter_mut().map(Source::finish).collect();
            printer.merged(&sources, rest);
            printer.flush();
            return exit::SUCCESS;
        }
        printer.flush();
        std::thread::sleep(POLL);
    }
}

/// A target's log as it is: its bytes, nothing added.
fn target_log(config: &Config, target: &str) -> u8 {
    let path = Layout::new(&config.root).log(target);
    // While the target runs its log may be in two parts: read as one, its last `log_limit`.
    match kiln_engine::read_log_tail(&path, config.settings.log_limit) {
        Some(bytes) => crate::out::stdout_bytes(&bytes),
        None => {
            errln!("kiln: no output recorded for `{target}`: it has not run yet, or its last run printed nothing");
        }
    }
    exit::SUCCESS
}

/// The pid of the `kiln up` running in the project, if one does.
fn running_session(layout: &Layout) -> Option<u32> {
    ProjectLock::held_by(&layout.up_lock())
}

/// Writes lines to stdout, buffered; a reader that went away ends kiln quietly.
struct Printer {
    out: std::io::BufWriter<std::io::Stdout>,
    prefixed: bool,
    timestamps: bool,
    json: bool,
    color: bool,
    width: usize,
}

/// Colours for the names in front of lines, in turn.
const COLORS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

impl Printer {
    fn new(prefixed: bool, timestamps: bool, json: bool, sources: &[Source]) -> Printer {
        use std::io::IsTerminal;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
        let mut p = Printer { out, prefixed, timestamps, json, color, width: 0 };
        p.widen(sources);
        p
    }

    fn widen(&mut self, sources: &[Source]) {
        self.width = sources.iter().map(|s| s.label.chars().count()).chain([self.width]).max().unwrap_or(0);
    }

    /// Each source's lines, interleaved by time (a source's own order kept).
    fn merged(&mut self, sources: &[Source], lines: Vec<Vec<LogLine>>) {
        // A min-heap of each source's next line, by (time, source).
        let mut queues: Vec<std::vec::IntoIter<LogLine>> = lines.into_iter().map(Vec::into_iter).collect();
        let mut heap = BinaryHeap::new();
        for (i, q) in queues.iter_mut().enumerate() {
            if let Some(line) = q.next() {
                heap.push(std::cmp::Reverse(Next(line.time.clone().unwrap_or_default(), i, line)));
            }
        }
        while let Some(std::cmp::Reverse(Next(_, i, line))) = heap.pop() {
            self.line(i, &sources[i].label, &line);
            if let Some(next) = queues[i].next() {
                heap.push(std::cmp::Reverse(Next(next.time.clone().unwrap_or_default(), i, next)));
            }
        }
    }

    fn line(&mut self, index: usize, label: &str, line: &LogLine) {
        let mut text = Vec::with_capacity(line.bytes.len() + 64);
        if self.json {
            let (name, replica) = match label.strip_suffix(']').and_then(|l| l.split_once('[')) {
                Some((name, r)) => (name, r.parse::<u32>().ok()),
                None => (label, None),
            };
            let stream = match line.origin {
                LogOrigin::Stdout => "stdout",
                LogOrigin::Stderr => "stderr",
                LogOrigin::Kiln | LogOrigin::Raw => "kiln",
            };
            let mut v = serde_json::json!({
                "name": name,
                "time": line.time,
                "stream": if replica.is_some() { stream } else { "output" },
                "line": String::from_utf8_lossy(&line.bytes),
            });
            if let Some(r) = replica {
                v["replica"] = r.into();
            }
            text.extend_from_slice(v.to_string().as_bytes());
            text.push(b'\n');
            return self.write(&text);
        }
        if self.prefixed {
            let pad = self.width.saturating_sub(label.chars().count());
            if self.color {
                let c = COLORS[index % COLORS.len()];
                text.extend_from_slice(format!("\x1b[{c}m{label}{:pad$} |\x1b[0m ", "").as_bytes());
            } else {
                text.extend_from_slice(format!("{label}{:pad$} | ", "").as_bytes());
            }
        }
        if self.timestamps
            && let Some(t) = &line.time
        {
            text.extend_from_slice(t.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(&line.bytes);
        // A last line without its newline gets one when others may follow it.
        if line.ended || self.prefixed {
            text.push(b'\n');
        }
        self.write(&text);
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Err(e) = self.out.write_all(bytes) {
            crate::out::stdout_failed(&e);
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            crate::out::stdout_failed(&e);
        }
    }
}

/// A line waiting in the merge, ordered by its time, then its source.
struct Next(String, usize, LogLine);

impl PartialEq for Next {
    fn eq(&self, other: &Self) -> bool {
        (&self.0, self.1) == (&other.0, other.1)
    }
}
impl Eq for Next {}
impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Next {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.0, self.1).cmp(&(&other.0, other.1))
    }
}
