//! `kiln clean`: remove what builds produced, so the next build starts over (restoring from
//! the cache unless `--all` emptied it too).

use kiln_config::Config;
use kiln_engine::{Layout, ProjectLock, State, remove_output};

use crate::exit;
use crate::out::{errln, outln};

pub fn run(config: &Config, all: bool) -> u8 {
    let layout = Layout::new(&config.root);
    match layout.exists() {
        Ok(true) => {}
        Ok(false) => {
            outln!("nothing to clean");
            return exit::SUCCESS;
        }
        // A `.kiln` that is a link: removing the state "in" it would remove someone else's.
        Err(e) => {
            errln!("error: cannot clean: {e}");
            return exit::FAILED;
        }
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
            if remove_output(&config.root, &out.path) {
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
