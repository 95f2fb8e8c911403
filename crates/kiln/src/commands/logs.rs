//! `kiln logs NAME`: the output of a target's last run (for a target restored from the
//! cache, the output stored with the cache entry), or what a service's replicas printed
//! (their last `settings.log_limit` bytes each, across restarts).

use crate::out::errln;
use kiln_config::Config;
use kiln_engine::Layout;

use crate::exit;

pub fn run(config: &Config, target: &str) -> u8 {
    if config.services.contains_key(target) {
        return service_logs(config, target);
    }
    if !config.targets.contains_key(target) {
        let names = config.targets.keys().chain(config.services.keys());
        let hint = kiln_config::did_you_mean(target, names.map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        errln!("error: unknown target or service `{target}`{hint}");
        return exit::USAGE;
    }
    let path = Layout::new(&config.root).log(target);
    match std::fs::read(&path) {
        Ok(bytes) => {
            crate::out::stdout_bytes(&bytes);
            exit::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            errln!("kiln: no output recorded for `{target}`: it has not run yet, or its last run printed nothing");
            exit::SUCCESS
        }
        Err(e) => {
            errln!("error: cannot read {}: {e}", path.display());
            exit::FAILED
        }
    }
}

/// Every replica's kept output, one after another.
fn service_logs(config: &Config, service: &str) -> u8 {
    let layout = Layout::new(&config.root);
    let mut any = false;
    // Replicas past today's count may have run before a scale-down: show what is kept.
    for replica in 0.. {
        let path = layout.service_log(service, replica);
        let Some(bytes) = kiln_engine::read_log_tail(&path, config.settings.log_limit) else {
            if replica >= config.services[service].replicas {
                break;
            }
            continue;
        };
        any = true;
        crate::out::stdout_bytes(&bytes);
    }
    if !any {
        errln!("kiln: no output recorded for service `{service}`: it has not run yet, or printed nothing");
    }
    exit::SUCCESS
}
