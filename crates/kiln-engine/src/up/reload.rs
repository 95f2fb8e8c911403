//! An edit of kiln.toml while `kiln up` runs: parse it again and work out what changes.
//!
//! [`read_config`] does the reading (errors become `config.invalid`, and the previous
//! configuration keeps running); [`ReloadPlan::between`] is the pure decision of what the new
//! configuration changes: which targets to build (added, redefined, or all after an `[env]`
//! change, with their dependents), which services to stop (removed), restart (redefined),
//! or scale (only `replicas` changed: the replicas beyond the new count stop, the others keep
//! serving). Added services are simply started, as after any round.

use std::collections::{BTreeMap, BTreeSet};

use kiln_config::{Config, LoadError, Service};

use crate::event::{Event, EventBus, NoticeLevel};
use crate::graph::target_graph::TargetId;
use crate::up::selection::Selection;
use crate::up::up_options::UpOptions;

/// What a new configuration changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Targets to build (with their dependents), within the new selection.
    pub build: BTreeSet<TargetId>,
    /// Services no longer selected: stop them.
    pub stop: BTreeSet<String>,
    /// Services redefined (anything but `replicas`): stop them, start them anew.
    pub restart: BTreeSet<String>,
    /// Services whose only change is `replicas`: (old, new).
    pub scale: BTreeMap<String, (u32, u32)>,
}

/// Two definitions of a service that differ at most in `replicas` and in what it follows
/// live (`sync`, `watch`: taken up by the new selection without a restart).
fn same_but_replicas(a: &Service, b: &Service) -> bool {
    Service { replicas: b.replicas, sync: b.sync.clone(), watch: b.watch.clone(), ..a.clone() } == *b
}

impl ReloadPlan {
    pub fn between(old: &Selection, new: &Selection) -> ReloadPlan {
        let (old_t, new_t) = (&old.config.targets, &new.config.targets);
        let env_changed = old.config.env != new.config.env;
        let to_build: Vec<TargetId> = new
            .targets
            .iter()
            .copied()
            .filter(|&id| {
                let name = new.graph.name(id);
                env_changed || old_t.get(name) != new_t.get(name)
            })
            .collect();
        let mut plan = ReloadPlan { build: new.with_dependents(to_build), ..ReloadPlan::default() };
        for name in &old.services {
            let before = &old.config.services[name];
            match new.config.services.get(name).filter(|_| new.services.contains(name)) {
                None => {
                    plan.stop.insert(name.clone());
                }
                Some(now) if now == before => {}
                Some(now) if same_but_replicas(before, now) && !env_changed => {
                    if now.replicas != before.replicas {
                        plan.scale.insert(name.clone(), (before.replicas, now.replicas));
                    }
                }
                Some(_) => {
                    plan.restart.insert(name.clone());
                }
            }
        }
        if env_changed {
            // `[env]` reaches every service's environment.
            plan.restart.extend(new.services.intersection(&old.services).cloned());
        }
        plan
    }
}

/// Reads and checks the configuration file again; `None` (after publishing why) keeps the
/// current one.
pub fn read_config(current: &Selection, options: &UpOptions, bus: &EventBus) -> Option<Selection> {
    let bytes = match std::fs::read(&options.config_file) {
        Ok(t) => t,
        Err(e) => {
            bus.publish(Event::ConfigInvalid {
                message: format!("cannot read {}: {e}", options.display_path.display()),
            });
            return None;
        }
    };
    let parsed =
        kiln_config::parse_bytes(&bytes, &options.display_path, &current.config.root, options.profile.as_deref());
    let config: Config = match parsed {
        Ok(mut c) => {
            if let Some(engine) = options.engine {
                c.settings.engine = engine;
            }
            c
        }
        Err(LoadError::Invalid(d)) => {
            bus.publish(Event::ConfigInvalid { message: d.render(false) });
            return None;
        }
        Err(e) => {
            bus.publish(Event::ConfigInvalid { message: e.to_string() });
            return None;
        }
    };
    let names: Vec<String> = options
        .names
        .iter()
        .filter(|n| config.targets.contains_key(*n) || config.services.contains_key(*n))
        .cloned()
        .collect();
    for gone in options.names.iter().filter(|n| !names.contains(n)) {
        bus.publish(Event::Notice {
            level: NoticeLevel::Warning,
            message: format!("`{gone}` is no longer in {}; it is not watched any more", options.display_path.display()),
        });
    }
    match Selection::new(config, &names) {
        Ok(s) => Some(s),
        Err(e) => {
            bus.publish(Event::ConfigInvalid { message: e.to_string() });
            None
        }
    }
}

/// The `config.reloaded` event of a change from `old` to `new`.
pub fn reloaded_event(old: &Config, new: &Config, files: &[String]) -> Event {
    fn diff<T: PartialEq>(old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> [Vec<String>; 3] {
        [
            new.keys().filter(|k| !old.contains_key(*k)).cloned().collect(),
            old.keys().filter(|k| !new.contains_key(*k)).cloned().collect(),
            new.iter().filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| k.clone()).collect(),
        ]
    }
    let [added, removed, changed] = diff(&old.targets, &new.targets);
    let [services_added, services_removed, services_changed] = diff(&old.services, &new.services);
    Event::ConfigReloaded {
        added,
        removed,
        changed,
        services_added,
        services_removed,
        services_changed,
        files: files.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[target.core]
cmd = "true"
[target.app]
cmd = "true"
deps = ["core"]
[target.docs]
cmd = "true"
[service.web]
cmd = "sleep 100"
deps = ["app"]
replicas = 3
[service.worker]
cmd = "sleep 100"
"#;

    fn sel(toml: &str) -> Selection {
        let config = kiln_config::parse_str(toml, std::path::Path::new("kiln.toml"), &std::env::temp_dir(), None)
            .expect("valid");
        Selection::new(config, &[]).expect("selects")
    }

    fn names(s: &Selection, ids: &BTreeSet<TargetId>) -> Vec<String> {
        s.names(ids.iter().copied())
    }

    #[test]
    fn only_replicas_changed_is_a_scale() {
        let (old, new) = (sel(BASE), sel(&BASE.replace("replicas = 3", "replicas = 2")));
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(plan.scale.get("web"), Some(&(3, 2)));
        assert!(plan.restart.is_empty() && plan.stop.is_empty() && plan.build.is_empty());
    }

    #[test]
    fn a_redefined_service_restarts_and_a_removed_one_stops() {
        let old = sel(BASE);
        let new = sel(&BASE
            .replace("cmd = \"sleep 100\"\ndeps", "cmd = \"sleep 200\"\ndeps")
            .replace("[service.worker]\ncmd = \"sleep 100\"\n", "[service.cron]\ncmd = \"sleep 5\"\n"));
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(plan.restart, BTreeSet::from(["web".to_string()]));
        assert_eq!(plan.stop, BTreeSet::from(["worker".to_string()]));
        assert!(!plan.restart.contains("cron") && !plan.stop.contains("cron"), "a new service just starts");
    }

    #[test]
    fn a_changed_network_restarts_the_service() {
        let base = "[service.redis]\nimage = \"localhost/redis:1\"\nreplicas = 2\n";
        let (old, new) = (sel(base), sel(&format!("{base}network = \"host\"\n")));
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(plan.restart, BTreeSet::from(["redis".to_string()]), "how the container runs changed");
        assert!(plan.scale.is_empty());
    }

    #[test]
    fn a_changed_target_builds_with_its_dependents_and_env_builds_everything() {
        let old = sel(BASE);
        let new = sel(&BASE.replacen("cmd = \"true\"", "cmd = \"echo core\"", 1));
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(names(&new, &plan.build), vec!["app", "core"]);
        let with_env = sel(&format!("[env]\nA = \"1\"\n{BASE}"));
        let plan = ReloadPlan::between(&old, &with_env);
        assert_eq!(names(&with_env, &plan.build), vec!["app", "core", "docs"]);
        assert_eq!(plan.restart, BTreeSet::from(["web".to_string(), "worker".to_string()]));
    }
}
