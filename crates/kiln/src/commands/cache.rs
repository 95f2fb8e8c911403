//! `kiln cache stats` and `kiln cache prune`.

use kiln_config::Config;
use kiln_engine::{Cache, Layout, ProjectLock};

use crate::cli::CacheCommand;
use crate::exit;
use crate::out::{errln, outln};

pub fn run(config: &Config, command: &CacheCommand, json: bool) -> u8 {
    let layout = Layout::new(&config.root);
    let cache = Cache::new(config.root.clone(), layout.cache());
    match command {
        CacheCommand::Stats => {
            let stats = cache.stats();
            if json {
                outln!("{}", serde_json::to_string(&stats).expect("stats serialize"));
            } else {
                outln!(
                    "{} entries, {} blobs, {} in {}",
                    stats.entries,
                    stats.blobs,
                    human_bytes(stats.bytes),
                    layout.cache().display()
                );
            }
        }
        CacheCommand::Prune { max_size } => {
            if let Err(e) = layout.ensure() {
                errln!("error: cannot prepare {}: {e}", layout.kiln.display());
                return exit::FAILED;
            }
            let _lock = match ProjectLock::acquire(&layout.lock(), wait_notice) {
                Ok(l) => l,
                Err(e) => {
                    errln!("error: cannot lock {}: {e}", layout.lock().display());
                    return exit::FAILED;
                }
            };
            let report = match cache.prune(*max_size) {
                Ok(report) => report,
                Err(e) => {
                    errln!("error: {e}");
                    return exit::FAILED;
                }
            };
            if json {
                outln!("{}", serde_json::to_string(&report).expect("report serializes"));
            } else {
                outln!(
                    "removed {} and {} ({}); {} kept",
                    plural(report.removed_entries, "entry", "entries"),
                    plural(report.removed_blobs, "blob", "blobs"),
                    human_bytes(report.freed_bytes),
                    human_bytes(report.kept_bytes)
                );
            }
        }
    }
    exit::SUCCESS
}

pub fn wait_notice(pid: Option<u32>) {
    match pid {
        Some(pid) => {
            errln!("kiln: waiting for another kiln (pid {pid}) to finish in this project…")
        }
        None => errln!("kiln: waiting for another kiln to finish in this project…"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
