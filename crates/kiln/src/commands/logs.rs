//! `kiln logs TARGET`: the output of the target's last run (for a target restored from the
//! cache, the output stored with the cache entry).

use crate::out::errln;
use kiln_config::Config;
use kiln_engine::Layout;

use crate::exit;

pub fn run(config: &Config, target: &str) -> u8 {
    if !config.targets.contains_key(target) {
        let hint = kiln_config::did_you_mean(target, config.targets.keys().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        errln!("error: unknown target `{target}`{hint}");
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
