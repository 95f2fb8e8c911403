//! `kiln clean`: remove what builds produced, so the next build starts over (restoring from
//! the cache unless `--all` emptied it too).

use std::path::Path;

use kiln_config::Config;
use kiln_engine::{Layout, ProjectLock, State};

use crate::exit;
use crate::out::{errln, outln};

pub fn run(config: &Config, all: bool) -> u8 {
    let layout = Layout::new(&config.root);
    if !layout.kiln.exists() {
        outln!("nothing to clean");
        return exit::SUCCESS;
    }
    let _lock = match ProjectLock::acquire(&layout.lock(), crate::commands::cache::wait_notice) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: cannot lock {}: {e}", layout.lock().display());
            return exit::FAILED;
        }
    };
    let state = State::load(&layout.state().join("targets.json"));
    let mut removed = 0;
    for record in state.targets.values() {
        for out in &record.outputs {
            if remove_inside(&config.root, &out.path) {
                removed += 1;
            }
        }
    }
    let mut dirs = vec![layout.state(), layout.logs()];
    if all {
        dirs.push(layout.cache());
    }
    for d in &dirs {
        if let Err(e) = std::fs::remove_dir_all(d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errln!("error: cannot remove {}: {e}", d.display());
            return exit::FAILED;
        }
    }
    let what = if all { "state, logs and cache" } else { "state and logs (the cache is kept; --all empties it)" };
    outln!("removed {removed} output files, {what}");
    exit::SUCCESS
}

/// Removes a recorded output (an escaped path, see `kiln_engine::rel_path`) if it is a plain
/// file inside the root.
fn remove_inside(root: &Path, rel: &str) -> bool {
    let on_disk = kiln_engine::rel_path::to_path(rel);
    let rel_path: &Path = &on_disk;
    if rel_path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return false;
    }
    let path = root.join(rel_path);
    path.symlink_metadata().is_ok_and(|m| m.is_file()) && std::fs::remove_file(path).is_ok()
}
