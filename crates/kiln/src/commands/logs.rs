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

use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, Write};
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
    /// The current part, open where reading stopped (history, then following).
    file: Option<File>,
    decoder: LogDecoder,
    /// The time a plain log's lines carry: when it was last written.
    written: Option<String>,
}

/// The kept history of a source as it is read, piece by piece: its previous part, then its
/// current one, the first bytes past `log_limit` left out.
struct History {
    previous: Option<File>,
    /// Bytes still to leave out before the kept tail starts.
    skip: u64,
    /// Something was left out: the kept tail starts at the next line, after a cut marker.
    cut: Option<u64>,
    buf: Box<[u8]>,
}

/// A source's lines waiting to be merged.
enum Feed {
    Lines(VecDeque<LogLine>),
    History(History, VecDeque<LogLine>),
}

fn id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Source {
    fn target(layout: &Layout, name: &str) -> Source {
        Source::new(name.to_string(), layout.log(name), true)
    }

    fn replica(layout: &Layout, service: &str, replica: u32) -> Source {
        Source::new(format!("{service}[{replica}]"), layout.service_log(service, replica), false)
    }

    fn new(label: String, path: PathBuf, plain: bool) -> Source {
        Source { label, path, plain, file: None, decoder: Source::decoder(plain), written: None }
    }

    fn decoder(plain: bool) -> LogDecoder {
        if plain { LogDecoder::plain() } else { LogDecoder::new() }
    }

    fn held(&self) -> Option<(u64, u64)> {
        self.file.as_ref().and_then(|f| f.metadata().ok()).map(|m| id(&m))
    }

    /// Opens the kept history: the current part stays open (where following goes on), the
    /// previous one is read first. What is past `limit` bytes from the end is left out.
    fn open_history(&mut self, limit: u64) -> std::io::Result<History> {
        self.file = open_log(&self.path)?;
        let held = self.held();
        let previous = open_log(&kiln_engine::log_previous_part(&self.path))?
            // Rotated between the two opens: the part held is the previous one now.
            .filter(|f| f.metadata().ok().map(|m| id(&m)) != held);
        let size = |f: &Option<File>| f.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        let total = size(&previous) + size(&self.file);
        let skip = total.saturating_sub(limit);
        if self.plain {
            let modified = std::fs::symlink_metadata(&self.path).and_then(|m| m.modified()).ok();
            self.written = modified.map(kiln_engine::record_time);
        }
        Ok(History { previous, skip, cut: (skip > 0).then_some(limit), buf: vec![0; 64 * 1024].into_boxed_slice() })
    }

    /// The next lines of the history into `out`; false once it is all read.
    fn read_history(&mut self, h: &mut History, out: &mut Vec<LogLine>) -> bool {
        let n = loop {
            let part = match h.previous.as_mut() {
                Some(f) => f,
                None => match self.file.as_mut() {
                    Some(f) => f,
                    None => return false,
                },
            };
            match part.read(&mut h.buf) {
                Ok(0) | Err(_) if h.previous.is_some() => h.previous = None,
                Ok(0) | Err(_) => return false,
                Ok(n) => break n,
            }
        };
        let mut bytes = &h.buf[..n];
        if h.skip > 0 {
            let leave = usize::try_from(h.skip).unwrap_or(usize::MAX).min(bytes.len());
            h.skip -= leave as u64;
            bytes = &bytes[leave..];
        }
        if h.skip == 0
            && let Some(limit) = h.cut
        {
            // The kept tail starts at a line.
            match bytes.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    bytes = &bytes[at + 1..];
                    h.cut = None;
                    let marker = kiln_engine::log_cut_marker(None, limit);
                    let text = marker.trim_end().as_bytes().to_vec();
                    out.push(LogLine { time: None, origin: LogOrigin::Raw, bytes: text, ended: true });
                }
                None => bytes = &[],
            }
        }
        let from = out.len();
        self.decoder.feed(bytes, out);
        self.stamp(&mut out[from..], self.written.clone());
        true
    }

    /// What was written since the last look: the rest of the open file and, if the log
    /// was rotated, the new current part; if it was replaced (a target's new run), the new
    /// file from its start.
    fn poll(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        let mut bytes = Vec::new();
        if let Some(f) = self.file.as_mut() {
            let _ = f.read_to_end(&mut bytes);
        }
        let now = std::fs::symlink_metadata(&self.path).ok().filter(std::fs::Metadata::is_file);
        let held = self.held();
        if let Some(meta) = now
            && held != Some(id(&meta))
        {
            // What was written to the old file until it changed hands.
            if let Some(f) = self.file.as_mut() {
                let _ = f.read_to_end(&mut bytes);
            }
            let previous = kiln_engine::log_previous_part(&self.path);
            let rotated = std::fs::symlink_metadata(&previous).ok().map(|m| id(&m)) == held;
            let new = open_log(&self.path).ok().flatten();
            match (held, rotated) {
                // Rotated: the same stream goes on in the new current part.
                (Some(_), true) | (None, _) => {}
                // A target's run ended and its two parts were joined into one file: what it
                // holds was read already.
                (Some(_), false) if self.plain && new.as_ref().is_some_and(|n| self.joined(n)) => {
                    self.file = new;
                    if let Some(f) = self.file.as_mut() {
                        let _ = f.seek(std::io::SeekFrom::End(0));
                    }
                    self.feed(&bytes, &mut lines);
                    return lines;
                }
                // A target's new run: the old one's unfinished last line ends here.
                (Some(_), false) if self.plain => {
                    self.feed(&bytes, &mut lines);
                    bytes.clear();
                    self.decoder.finish(&mut lines);
                    self.decoder = Source::decoder(true);
                }
                // A service log rotated twice since the last look: the middle part first.
                (Some(_), false) => {
                    if let Ok(Some(mut middle)) = open_log(&previous) {
                        let _ = middle.read_to_end(&mut bytes);
                    }
                }
            }
            self.file = new;
            if let Some(f) = self.file.as_mut() {
                let _ = f.read_to_end(&mut bytes);
            }
        }
        self.feed(&bytes, &mut lines);
        lines
    }

    fn feed(&mut self, bytes: &[u8], lines: &mut Vec<LogLine>) {
        let from = lines.len();
        self.decoder.feed(bytes, lines);
        self.stamp(&mut lines[from..], Some(kiln_engine::record_time(SystemTime::now())));
    }

    /// Whether `new` is the held file's content with the tail of its previous part before it
    /// (what a target's log becomes when its run ends).
    fn joined(&mut self, new: &File) -> bool {
        use std::os::unix::fs::FileExt;
        let (Some(old), Ok(meta)) = (self.file.as_ref(), new.metadata()) else { return false };
        let Ok(old_len) = old.metadata().map(|m| m.len()) else { return false };
        if meta.len() < old_len || old_len > 64 << 20 {
            return false;
        }
        let mut a = vec![0; usize::try_from(old_len).unwrap_or(0)];
        let mut b = a.clone();
        old.read_exact_at(&mut a, 0).is_ok() && new.read_exact_at(&mut b, meta.len() - old_len).is_ok() && a == b
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
        self.stamp(&mut lines, Some(kiln_engine::record_time(SystemTime::now())));
        lines
    }
}

/// The next line of a source's feed, reading more of its history as needed; at the end of
/// the history (when not following) an unfinished last line is a line too.
fn next_line(source: &mut Source, feed: &mut Feed, follow: bool) -> Option<LogLine> {
    loop {
        match feed {
            Feed::Lines(q) => return q.pop_front(),
            Feed::History(h, q) => {
                if let Some(line) = q.pop_front() {
                    return Some(line);
                }
                let mut got = Vec::new();
                if !source.read_history(h, &mut got) {
                    if !follow {
                        source.decoder.finish(&mut got);
                        let time = source.written.clone();
                        source.stamp(&mut got, time);
                    }
                    *feed = Feed::Lines(got.into());
                } else {
                    q.extend(got);
                }
            }
        }
    }
}

/// Opens a log without following a symbolic link at its path; `None` when there is none.
fn open_log(path: &Path) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match File::options().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(std::io::Error::other("it is a symbolic link, which kiln does not follow"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(Some(file))
}

/// Every (service, replica) that has a log in `.kiln/logs/services` (replicas past today's
/// count may have run before a scale-down: what they printed is kept), in order.
fn logs_on_disk(layout: &Layout) -> Vec<(String, u32)> {
    let mut found: Vec<(String, u32)> = std::fs::read_dir(layout.logs().join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let (s, n) = name.strip_suffix(".log")?.rsplit_once('.')?;
            Some((s.to_string(), n.parse().ok()?))
        })
        .collect();
    found.sort_unstable();
    found
}

/// The replicas of `service` that have a log, in order.
fn replicas_on_disk(layout: &Layout, service: &str) -> Vec<u32> {
    logs_on_disk(layout).into_iter().filter(|(s, _)| s == service).map(|(_, r)| r).collect()
}

/// The services to show: those of kiln.toml, and with a stand-in configuration (kiln.toml
/// has errors) every service that has a log.
fn services_on_disk(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = logs_on_disk(layout).into_iter().map(|(s, _)| s).collect();
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
    // A planted link in place of `.kiln/logs` or `.kiln/logs/services` is never read through.
    for dir in [layout.logs(), layout.logs().join("services")] {
        if let Err(e) = kiln_engine::check_kiln_dir(&layout.kiln, &dir) {
            errln!("error: cannot read the logs in {}: {e}", dir.display());
            return exit::FAILED;
        }
    }
    // Whether a `kiln up` runs now: a follower ends with it.
    let session = args.follow.then(|| running_session(&layout)).flatten();
    let mut sources = selection.discover(&[]);
    let mut printer = Printer::new(selection.prefixed || sources.len() > 1, args.timestamps, json, &sources);
    let limit = config.settings.log_limit;
    let mut unreadable = false;
    let mut feeds: Vec<Feed> = sources
        .iter_mut()
        .map(|s| match s.open_history(limit) {
            Ok(history) => Feed::History(history, VecDeque::new()),
            Err(e) => {
                errln!("kiln: cannot read {}: {e}", s.path.display());
                unreadable = true;
                Feed::Lines(VecDeque::new())
            }
        })
        .collect();
    if let Some(n) = args.tail {
        // The last N lines of each, read through once (at most N held).
        for (s, feed) in sources.iter_mut().zip(feeds.iter_mut()) {
            let mut last = VecDeque::with_capacity(n.min(4096));
            while let Some(line) = next_line(s, feed, args.follow) {
                if n > 0 {
                    if last.len() == n {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
            }
            *feed = Feed::Lines(last);
        }
    }
    let printed = printer.merged(&mut sources, &mut feeds, args.follow);
    if !args.follow {
        if !printed && !json && !unreadable && args.tail != Some(0) {
            match &args.name {
                Some(name) if selection.targets.is_empty() => match args.replica {
                    Some(r) if r >= config.services.get(name).map_or(u32::MAX, |s| s.replicas) => errln!(
                        "kiln: service `{name}` has no replica {r} (replicas = {}), and no log of one is kept",
                        config.services[name].replicas
                    ),
                    r => errln!(
                        "kiln: no output recorded for service `{name}`{}: it has not run yet, or printed nothing",
                        r.map(|r| format!(" replica {r}")).unwrap_or_default()
                    ),
                },
                Some(name) => {
                    errln!("kiln: no output recorded for `{name}`: it has not run yet, or its last run printed nothing")
                }
                None => errln!("kiln: no output recorded yet in {}", layout.logs().display()),
            }
        }
        printer.flush();
        return if unreadable { exit::FAILED } else { exit::SUCCESS };
    }
    printer.flush();
    loop {
        // Ended once it lets go of its lock (a process not waited for yet still has a pid).
        let ended = session.is_some_and(|pid| running_session(&selection.layout) != Some(pid));
        let fresh = selection.discover(&sources);
        if !fresh.is_empty() {
            printer.widen(&fresh);
            // New since the history was shown: all of it is new (the next poll reads each
            // from its start).
            sources.extend(fresh);
            // A second replica after a scale-up: from now on lines say whose they are.
            printer.prefixed |= sources.len() > 1;
        }
        let mut batch: Vec<Feed> = sources.iter_mut().map(|s| Feed::Lines(s.poll().into())).collect();
        printer.merged(&mut sources, &mut batch, true);
        if ended {
            let mut rest: Vec<Feed> = sources.iter_mut().map(|s| Feed::Lines(s.finish().into())).collect();
            printer.merged(&mut sources, &mut rest, true);
            printer.flush();
            return exit::SUCCESS;
        }
        printer.flush();
        std::thread::sleep(POLL);
    }
}

/// One line of [`tail`]: a target's (`replica` none: its build output) or a service
/// replica's.
pub struct TailLine {
    pub replica: Option<u32>,
    pub line: LogLine,
}

impl TailLine {
    /// As `GET /api/logs/NAME` shows it: `source` is `build` or `runtime`; `stream` is
    /// `stdout`, `stderr`, `kiln` (what kiln wrote: an attempt's start and end, a cut), or
    /// `output` for a target's, whose log keeps both streams as one.
    pub fn to_json(&self) -> serde_json::Value {
        let stream = match (self.replica, self.line.origin) {
            (_, LogOrigin::Stdout) => "stdout",
            (_, LogOrigin::Stderr) => "stderr",
            (None, LogOrigin::Raw) => "output",
            (_, LogOrigin::Kiln | LogOrigin::Raw) => "kiln",
        };
        serde_json::json!({
            "ts": self.line.time,
            "source": if self.replica.is_some() { "runtime" } else { "build" },
            "replica": self.replica,
            "stream": stream,
            "text": String::from_utf8_lossy(&self.line.bytes),
        })
    }
}

/// The last `n` lines kept on disk of target `target`'s last run and of every replica of
/// `service` that has a log (each read within `limit` bytes, as `kiln logs` does), merged
/// by time (a source's own order kept). Holds at most `n` lines of each source at once.
pub fn tail(
    layout: &Layout,
    limit: u64,
    target: Option<&str>,
    service: Option<&str>,
    n: usize,
) -> std::io::Result<Vec<TailLine>> {
    for dir in [layout.logs(), layout.logs().join("services")] {
        kiln_engine::check_kiln_dir(&layout.kiln, &dir).map_err(std::io::Error::other)?;
    }
    let selection = Selection {
        layout: layout.clone(),
        services: service.map(str::to_string).into_iter().collect(),
        replica: None,
        targets: target.map(str::to_string).into_iter().collect(),
        prefixed: false,
    };
    let mut all: Vec<(String, usize, usize, TailLine)> = Vec::new();
    for (i, mut source) in selection.discover(&[]).into_iter().enumerate() {
        let replica = source.label.strip_suffix(']').and_then(|l| l.rsplit_once('[')).and_then(|(_, r)| r.parse().ok());
        let mut feed = Feed::History(source.open_history(limit)?, VecDeque::new());
        let mut last = VecDeque::with_capacity(n.min(4096));
        while let Some(line) = next_line(&mut source, &mut feed, false) {
            if n > 0 {
                if last.len() == n {
                    last.pop_front();
                }
                last.push_back(line);
            }
        }
        all.extend(
            last.into_iter()
                .enumerate()
                .map(|(k, line)| (line.time.clone().unwrap_or_default(), i, k, TailLine { replica, line })),
        );
    }
    all.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    let skip = all.len().saturating_sub(n);
    Ok(all.into_iter().skip(skip).map(|(_, _, _, line)| line).collect())
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

    /// Each source's lines, interleaved by time (a source's own order kept), read as they
    /// are merged. Returns whether any line was printed.
    fn merged(&mut self, sources: &mut [Source], feeds: &mut [Feed], follow: bool) -> bool {
        // A min-heap of each source's next line, by (time, source).
        let mut heap = BinaryHeap::new();
        for (i, (s, feed)) in sources.iter_mut().zip(feeds.iter_mut()).enumerate() {
            if let Some(line) = next_line(s, feed, follow) {
                heap.push(std::cmp::Reverse(Next(line.time.clone().unwrap_or_default(), i, line)));
            }
        }
        let mut any = false;
        while let Some(std::cmp::Reverse(Next(_, i, line))) = heap.pop() {
            any = true;
            let label = sources[i].label.clone();
            self.line(i, &label, &line);
            if let Some(next) = next_line(&mut sources[i], &mut feeds[i], follow) {
                heap.push(std::cmp::Reverse(Next(next.time.clone().unwrap_or_default(), i, next)));
            }
        }
        any
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| String::from_utf8_lossy(&l.bytes).into_owned()).collect()
    }

    #[test]
    fn a_followed_target_log_is_read_on_across_rotation_once_when_joined_and_anew_for_a_new_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gen.log");
        let previous = kiln_engine::log_previous_part(&path);
        std::fs::write(&path, "one\ntw").expect("write");
        let mut s = Source::new("gen".into(), path.clone(), true);
        let mut h = s.open_history(1 << 20).expect("opens");
        let mut lines = Vec::new();
        while s.read_history(&mut h, &mut lines) {}
        assert_eq!(text(&lines), ["one"]);
        // Rotated mid-line: the line goes on in the new part.
        std::fs::rename(&path, &previous).expect("rotate");
        std::fs::write(&path, "o\nthree\n").expect("write");
        assert_eq!(text(&s.poll()), ["two", "three"]);
        // The run ends: the two parts are joined into a new file; nothing is new.
        std::fs::write(dir.path().join("tmp"), "[kiln: cut]\nw\no\nthree\n").expect("write");
        std::fs::rename(dir.path().join("tmp"), &path).expect("join");
        std::fs::remove_file(&previous).expect("rm");
        assert!(s.poll().is_empty(), "the joined file is read as already shown");
        // A new run replaces the log: all of it is new.
        std::fs::remove_file(&path).expect("rm");
        std::fs::write(&path, "again\n").expect("write");
        assert_eq!(text(&s.poll()), ["again"]);
    }

    #[test]
    fn a_service_log_rotated_twice_between_looks_is_read_through_its_middle_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.0.log");
        let previous = kiln_engine::log_previous_part(&path);
        let rec = |n: u32| format!("2026-12-01T10:00:00.{n:06}Z o line {n}\n");
        std::fs::write(&path, rec(1)).expect("write");
        let mut s = Source::new("web[0]".into(), path.clone(), false);
        let mut h = s.open_history(1 << 20).expect("opens");
        let mut lines = Vec::new();
        while s.read_history(&mut h, &mut lines) {}
        assert_eq!(text(&lines), ["line 1"]);
        // Written on, rotated, written, rotated again (the held part is gone), written.
        std::fs::OpenOptions::new().append(true).open(&path).expect("open").write_all(rec(2).as_bytes()).expect("w");
        std::fs::rename(&path, &previous).expect("rotate");
        std::fs::write(&path, rec(3)).expect("write");
        std::fs::rename(&path, &previous).expect("rotate again");
        std::fs::write(&path, rec(4)).expect("write");
        assert_eq!(text(&s.poll()), ["line 2", "line 3", "line 4"]);
    }
}
