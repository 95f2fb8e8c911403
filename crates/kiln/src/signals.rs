//! SIGINT and SIGTERM become a cancel request that the engine sees; a second one exits at
//! once (children still die with kiln through their parent-death signal).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::out::errln;

/// Returns a receiver that turns true on the first SIGINT or SIGTERM.
pub fn cancel_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            count += 1;
            if count == 1 {
                errln!("kiln: interrupted, stopping running commands… (press Ctrl-C again to exit now)");
                let _ = tx.send(true);
            } else {
                std::process::exit(i32::from(crate::exit::INTERRUPTED));
            }
        }
    });
    rx
}
