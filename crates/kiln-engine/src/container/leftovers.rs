//! What a kiln of this project killed before it could stop them left behind: its
//! containers (by label), then its project network. Above both `engine` (containers) and
//! `network` (the project network) in the layers.

use std::path::Path;

use crate::container::engine::{Engine, project_id};
use crate::container::network::{network_label, network_name, project_networks, remove_networks};

/// What an earlier kiln of this project left behind, as [`remove_leftovers`] removed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub containers: Vec<String>,
    /// Its project network (removed after the containers that were on it).
    pub networks: Vec<String>,
    /// Why a leftover network is still there, with what to run by hand.
    pub network_error: Option<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.network_error.is_none()
    }
}

/// Removes the containers labelled as this project's, running or not, then the project
/// network (labelled the same): what a kiln killed before it could stop them left behind.
/// Containers and networks of other projects carry another label, and networks kiln did
/// not create (`network = NAME`) none: they are never touched. A network that cannot be
/// removed is reported in [`Leftovers::network_error`], not as a failure.
pub fn remove_leftovers(engine: &Engine, root: &Path) -> Result<Leftovers, String> {
    let project = project_id(root);
    let containers = engine.project_containers(&project)?;
    engine.remove(&containers)?;
    let mut left = Leftovers { containers, ..Leftovers::default() };
    // The network named after this root, found by its name (a listing reads every network's
    // file, and fails while another is being written), then any other this project labelled.
    let own = network_name(root);
    let mut networks: Vec<String> =
        network_label(engine, &own).filter(|l| *l == project).map(|_| own).into_iter().collect();
    match project_networks(engine, &project) {
        Ok(names) => {
            for name in names {
                if !networks.contains(&name) {
                    networks.push(name);
                }
            }
        }
        Err(why) if networks.is_empty() => {
            left.network_error = Some(format!("cannot list this project's networks: {why}"));
        }
        Err(_) => {}
    }
    for name in networks {
        let mut removed = remove_networks(engine, std::slice::from_ref(&name));
        // A client the killed kiln left may have made a container of this project since the
        // first removal: those go too, then the network is tried once more.
        if removed.is_err()
            && let Ok(late) = engine.project_containers(&project)
            && !late.is_empty()
            && engine.remove(&late).is_ok()
        {
            left.containers.extend(late);
            removed = remove_networks(engine, std::slice::from_ref(&name));
        }
        match removed {
            Ok(()) => left.networks.push(name),
            Err(why) => {
                left.network_error = Some(format!(
                    "cannot remove the network {name} an earlier kiln of this project left: {why}; remove it by hand \
                     with `{} network rm {name}` once no container uses it",
                    engine.name()
                ));
            }
        }
    }
    Ok(left)
}

/// What kiln says after removing leftovers.
pub fn leftovers_message(left: &Leftovers) -> String {
    let names = &left.containers;
    let networks = match left.networks.as_slice() {
        [] => String::new(),
        [one] => format!("the network {one}"),
        many => format!("the networks {}", many.join(", ")),
    };
    if names.is_empty() {
        return format!("removed {networks} an earlier kiln of this project left (it did not stop cleanly)");
    }
    let what = if names.len() == 1 { "container" } else { "containers" };
    let and = if networks.is_empty() { String::new() } else { format!("; and {networks}") };
    format!(
        "removed {} {what} an earlier kiln of this project left running (it did not stop cleanly): {}{and}",
        names.len(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_kiln_says_after_removing_leftovers() {
        let mut left = Leftovers { containers: vec!["c0".into(), "c1".into()], ..Leftovers::default() };
        assert_eq!(
            leftovers_message(&left),
            "removed 2 containers an earlier kiln of this project left running (it did not stop cleanly): c0, c1"
        );
        left.networks.push("kiln-app-1".into());
        assert!(
            leftovers_message(&left).ends_with(": c0, c1; and the network kiln-app-1"),
            "{}",
            leftovers_message(&left)
        );
        left.containers.clear();
        assert_eq!(
            leftovers_message(&left),
            "removed the network kiln-app-1 an earlier kiln of this project left (it did not stop cleanly)"
        );
    }
}
