//! The command line, declared once: help text and parsing come from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kiln: build, watch and supervise a multi-component project from one kiln.toml.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR (kiln.toml is searched from there upwards).
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
    /// Use this configuration file instead of searching for kiln.toml.
    #[arg(long, value_name = "PATH", global = true)]
    pub file: Option<PathBuf>,
    /// Deep-merge [profile.NAME] over the configuration.
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,
    /// Write events as JSON lines on stdout; human output goes to stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Container engine for image targets and container services (overrides
    /// settings.engine; auto prefers podman, then docker).
    #[arg(long, value_name = "ENGINE", global = true)]
    pub engine: Option<EngineArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EngineArg {
    Auto,
    Podman,
    Docker,
}

impl EngineArg {
    pub fn choice(self) -> kiln_config::EngineChoice {
        match self {
            EngineArg::Auto => kiln_config::EngineChoice::Auto,
            EngineArg::Podman => kiln_config::EngineChoice::Podman,
            EngineArg::Docker => kiln_config::EngineChoice::Docker,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets (all, or the named ones and what they need).
    Build(BuildArgs),
    /// Build, then watch files and keep targets up to date until Ctrl-C.
    Up(UpArgs),
    /// Why a target would run now, or why it ran last time.
    Explain {
        /// The target to explain.
        target: String,
    },
    /// Output kept in .kiln/logs: a target's last run, a service's replicas (across
    /// restarts), or with no name every service and target, interleaved by time.
    Logs(LogsArgs),
    /// Targets and services of the running `kiln up`.
    Status {
        /// One line per service replica, as `kiln ps` prints them.
        #[arg(long)]
        services: bool,
    },
    /// One line per service replica of the running `kiln up`: phase, restarts, uptime,
    /// process or container, ports, last probe.
    Ps,
    /// Wait until targets are built and services ready in the running `kiln up`.
    Wait {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
        /// Give up after this long (for example 30s).
        #[arg(long, value_name = "DURATION", value_parser = parse_debounce)]
        timeout: Option<std::time::Duration>,
    },
    /// Rebuild a target (with its dependents) or restart a service, in the running `kiln up`.
    /// For a name that is both, a running service is restarted: `--target` rebuilds the
    /// target instead.
    Trigger {
        name: String,
        /// NAME is a target: rebuild it (and its dependents), even if a service has that name too.
        #[arg(long, conflicts_with = "service")]
        target: bool,
        /// NAME is a service: restart its replicas.
        #[arg(long)]
        service: bool,
    },
    /// Stop the running `kiln up` gracefully, and wait until it has.
    Down {
        /// Give up waiting after this long (default 2m; `kiln up` goes on stopping).
        #[arg(long, value_name = "DURATION", value_parser = parse_debounce)]
        timeout: Option<std::time::Duration>,
    },
    /// Print the URL that opens the running `kiln up`'s dashboard in a browser (it holds the
    /// session's token: the page keeps it in a cookie).
    Dashboard,
    /// Print the target graph.
    Graph(GraphArgs),
    /// Inspect or trim the content-addressed cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Remove declared outputs, logs and state (and with --all, the cache too).
    Clean(CleanArgs),
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The target or service whose output to show (default: all of them, each line
    /// prefixed with its name).
    pub name: Option<String>,
    /// Keep printing output as it is written (until the running `kiln up` ends, or Ctrl-C
    /// when none runs).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each replica and target.
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<usize>,
    /// Start each line with the time it was printed (a target's lines: when its run wrote its log).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only this replica of the service.
    #[arg(long, value_name = "N")]
    pub replica: Option<u32>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Targets to build; their dependencies are built first. Default: all targets.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Commands to run at once (default: settings.jobs, else the number of CPUs).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep building everything that does not depend on a failed target.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Print what would run and why, and run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Show every output line, including the stored output of targets restored from the cache.
    #[arg(short, long)]
    pub verbose: bool,
    /// Live progress on a terminal, or plain lines (auto: live when stderr is a terminal and CI is unset).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Write a Chrome trace of the run (open it in Perfetto or chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// POST every event as a CloudEvent to this http:// URL (wins over $K_SINK and settings.events_sink).
    #[arg(long, value_name = "URL")]
    pub events_sink: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Targets to keep up to date, with what they need. Default: all targets.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// Commands to run at once (default: settings.jobs, else the number of CPUs).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep building everything that does not depend on a failed target.
    #[arg(short, long)]
    pub keep_going: bool,
    /// Only watch, and report which targets each change affects; build nothing.
    #[arg(long)]
    pub no_build: bool,
    /// Quiet time after the last file event before building (default: settings.debounce).
    #[arg(long, value_name = "DURATION", value_parser = parse_debounce)]
    pub debounce: Option<std::time::Duration>,
    /// Show every output line.
    #[arg(short, long)]
    pub verbose: bool,
    /// A live table of targets and services on a terminal, or plain lines.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Port of the control API on 127.0.0.1 (default: a free one; see .kiln/api.json).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,
    /// POST every event as a CloudEvent to this http:// URL (wins over $K_SINK and settings.events_sink).
    #[arg(long, value_name = "URL")]
    pub events_sink: Option<String>,
}

fn parse_debounce(text: &str) -> Result<std::time::Duration, String> {
    kiln_config::parse_duration(text)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Live,
    Plain,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Entries, blobs and bytes in .kiln/cache.
    Stats,
    /// Remove the least recently used entries until the cache fits in SIZE.
    Prune {
        /// For example 500M, 2G or 100K.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: u64,
    },
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Also empty the cache.
    #[arg(long)]
    pub all: bool,
}

/// Parses sizes like `500M`, `2G`, `100K`, `1.5GB` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix("IB").or_else(|| t.strip_suffix('B')).unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        Some('T') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("`{text}` is not a size (use e.g. 500M, 2G, 100K)"))?;
    if n < 0.0 {
        return Err(format!("`{text}` is negative"));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
