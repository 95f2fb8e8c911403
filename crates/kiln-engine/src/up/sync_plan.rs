//! Which changes a live update carries into running containers, and which fall back to a
//! rebuild of the image (pure).
//!
//! Each service's `sync` rules are compiled once ([`SyncRules`]). For a batch of changed
//! paths, [`plan`] decides per service:
//! - a path under a `sync`, `sync+restart` or `sync+exec` rule (the most specific rule,
//!   the one with the longest `path`, wins), included and not ignored, is copied into every
//!   running replica (or removed there, if it is gone);
//! - a path under a rule but ignored does nothing for that service; one its `include`
//!   leaves out is not covered by it (a less specific rule may cover it);
//! - an image target the batch affects is built again unless every path that affects it is
//!   carried by a live update for every service that runs it. Otherwise the first path that
//!   is not (no rule matched it, or a `rebuild` rule did) is named in an `update.fallback`
//!   event, and the image is rebuilt and the containers replaced as without sync rules.
//!
//! A path is synced even when its service's image rebuilds in the same batch: the running
//! replicas serve it at once, and the new containers get it from the image or, for a file
//! the image does not hold, from the copy every new container of the service is given.

use std::collections::{BTreeMap, BTreeSet};

use globset::{GlobBuilder, GlobMatcher};
use kiln_config::{SyncAction, SyncRule};

use crate::fs::path_pattern::is_under;

/// One service's compiled rules.
#[derive(Debug, Clone, Default)]
pub struct SyncRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    path: String,
    target: Option<String>,
    ignore: Vec<GlobMatcher>,
    include: Vec<GlobMatcher>,
    action: SyncAction,
}

/// What a changed path means for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Copied (or removed) at `container`, by the rule at `rule`.
    Sync { rule: usize, container: String },
    /// Under a rule, but ignored or not included: nothing happens.
    Skip,
    /// A `rebuild` rule matched it.
    Rebuild,
    /// No rule matched it.
    Unmatched,
}

fn compile(globs: &[String]) -> Vec<GlobMatcher> {
    // The configuration checked every glob: one that fails here cannot happen.
    globs
        .iter()
        .filter_map(|g| GlobBuilder::new(g).literal_separator(true).build().ok())
        .map(|g| g.compile_matcher())
        .collect()
}

impl SyncRules {
    pub fn new(rules: &[SyncRule]) -> SyncRules {
        let rules = rules
            .iter()
            .map(|r| Rule {
                path: r.path.clone(),
                target: r.target.clone(),
                ignore: compile(&r.ignore),
                include: compile(&r.include),
                action: r.action.clone(),
            })
            .collect();
        SyncRules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The paths (files or directories) the rules cover: they are watched even when no
    /// target reads them.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.path.as_str())
    }

    /// What the rule at `index` does.
    pub fn action(&self, index: usize) -> &SyncAction {
        &self.rules[index].action
    }

    /// The rule's `path` and `target` (empty for a `rebuild` rule).
    pub fn roots(&self, index: usize) -> (String, String) {
        let rule = &self.rules[index];
        (rule.path.clone(), rule.target.clone().unwrap_or_default())
    }

    /// Whether any rule covers `path`, or `path` is a directory on the way to one.
    pub fn covers(&self, path: &str, is_dir: bool) -> bool {
        self.rules.iter().any(|r| is_under(path, &r.path) || (is_dir && is_under(&r.path, path)))
    }

    /// What a change of `path` (relative to the project) does.
    pub fn fate(&self, path: &str) -> Fate {
        // Globs match the part below the rule's path; a rule naming a file matches its name.
        let rest = |rule: &Rule| match path.strip_prefix(rule.path.as_str()).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => rest.to_string(),
            None => path.rsplit('/').next().unwrap_or(path).to_string(),
        };
        // A rule whose `include` leaves a path out does not cover it: a less specific rule
        // may, else nothing does (and an image input rebuilds).
        let Some((index, rule)) = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| is_under(path, &r.path))
            .filter(|(_, r)| r.include.is_empty() || r.include.iter().any(|g| g.is_match(rest(r))))
            .max_by_key(|(_, r)| r.path.len())
        else {
            return Fate::Unmatched;
        };
        let Some(target) = &rule.target else { return Fate::Rebuild };
        if rule.ignore.iter().any(|g| g.is_match(rest(rule))) {
            return Fate::Skip;
        }
        let container = match path.strip_prefix(rule.path.as_str()).and_then(|r| r.strip_prefix('/')) {
            Some(rest) => format!("{}/{rest}", target.trim_end_matches('/')),
            None => target.clone(),
        };
        Fate::Sync { rule: index, container }
    }
}

/// A service as the planner sees it.
pub struct LiveService<'a> {
    pub name: &'a str,
    /// The image target it runs, if it runs one.
    pub image_target: Option<&'a str>,
    pub rules: &'a SyncRules,
    /// Whether it has replicas running to copy into.
    pub running: bool,
}

/// One service's share of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSync {
    /// Project-relative path → where it goes.
    pub paths: BTreeMap<String, SyncTo>,
    /// Restart the replicas after the copy (a `sync+restart` rule matched).
    pub restart: bool,
    /// Commands to run in each replica after the copy, in rule order, each once.
    pub exec: Vec<String>,
}

/// Where one changed path goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTo {
    /// Its path in the container.
    pub container: String,
    /// Its rule's `path` (project-relative) and `target`.
    pub roots: (String, String),
}

/// A rebuild a live update could not avoid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub service: String,
    pub target: String,
    pub path: String,
    pub reason: &'static str,
}

/// What a batch does to the services with sync rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LivePlan {
    pub syncs: BTreeMap<String, ServiceSync>,
    /// Image targets the batch affects only through synced (or ignored) paths: not built.
    pub spared: BTreeSet<String>,
    pub fallbacks: Vec<Fallback>,
}

/// What a changed path is to an image target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InImage {
    /// One of its own inputs: the rules decide.
    Input,
    /// Outside what its build sees (left out by `.containerignore`): no rebuild for it.
    Outside,
    /// An input of a target it builds on: that target builds, and the image after it.
    OfADep,
}

/// Decides a batch. `affected` is the targets the batch concerns with the paths that concern
/// each (its own inputs and its deps' changes); `has_dependent_targets` says whether another
/// selected target builds on an image target (its key then needs the new image); `in_image`
/// what a path is to an image target.
pub fn plan(
    paths: &BTreeSet<String>,
    affected: &BTreeMap<String, BTreeSet<String>>,
    services: &[LiveService<'_>],
    has_dependent_targets: impl Fn(&str) -> bool,
    in_image: impl Fn(&str, &str) -> InImage,
) -> LivePlan {
    let mut out = LivePlan::default();
    // Services with no replica running get their share too: nothing is copied, but the
    // paths join what their next containers are given.
    for s in services.iter().filter(|s| !s.rules.is_empty()) {
        let mut share = ServiceSync::default();
        for p in paths {
            if let Fate::Sync { rule, container } = s.rules.fate(p) {
                match s.rules.action(rule) {
                    SyncAction::SyncRestart => share.restart = true,
                    SyncAction::SyncExec(cmd) if !share.exec.contains(cmd) => share.exec.push(cmd.clone()),
                    _ => {}
                }
                let roots = s.rules.roots(rule);
                share.paths.insert(p.clone(), SyncTo { container, roots });
            }
        }
        if !share.paths.is_empty() {
            out.syncs.insert(s.name.to_string(), share);
        }
    }
    for (target, target_paths) in affected {
        let users: Vec<&LiveService<'_>> =
            services.iter().filter(|s| s.image_target == Some(target.as_str())).collect();
        if users.is_empty() {
            continue;
        }
        // A service without rules, or not running yet, needs the image itself.
        let mut first_blocker: Option<Fallback> = None;
        let mut carried = !has_dependent_targets(target);
        let own: BTreeSet<&String> = target_paths.iter().filter(|p| in_image(target, p) != InImage::Outside).collect();
        if let Some(p) = own.iter().find(|p| in_image(target, p) == InImage::OfADep)
            && let Some(s) = users.iter().find(|s| !s.rules.is_empty() && s.running)
        {
            carried = false;
            first_blocker = Some(Fallback {
                service: s.name.to_string(),
                target: target.clone(),
                path: (*p).clone(),
                reason: "a target the image builds on reads it",
            });
        }
        for s in &users {
            if s.rules.is_empty() || !s.running {
                carried = false;
                continue;
            }
            for p in &own {
                let reason = match s.rules.fate(p) {
                    Fate::Sync { .. } | Fate::Skip => continue,
                    Fate::Rebuild => "a `rebuild` rule matched",
                    Fate::Unmatched => "no sync rule matched",
                };
                carried = false;
                first_blocker.get_or_insert_with(|| Fallback {
                    service: s.name.to_string(),
                    target: target.clone(),
                    path: (*p).clone(),
                    reason,
                });
                break;
            }
        }
        if carried || own.is_empty() && users.iter().all(|s| !s.rules.is_empty() && s.running) {
            out.spared.insert(target.clone());
        } else if let Some(f) = first_blocker {
            out.fallbacks.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, target: Option<&str>, action: SyncAction) -> SyncRule {
        SyncRule {
            path: path.into(),
            target: target.map(str::to_string),
            ignore: vec!["**/__pycache__/**".into(), "*.swp".into()],
            include: Vec::new(),
            action,
        }
    }

    fn web_rules() -> SyncRules {
        SyncRules::new(&[
            rule("app", Some("/code"), SyncAction::Sync),
            rule("app/requirements.txt", None, SyncAction::Rebuild),
            rule("conf", Some("/etc/app/"), SyncAction::SyncExec("kill -HUP 1".into())),
            rule("bin/server", Some("/usr/local/bin/server"), SyncAction::SyncRestart),
        ])
    }

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_most_specific_rule_decides() {
        let r = web_rules();
        assert_eq!(r.fate("app/main.py"), Fate::Sync { rule: 0, container: "/code/main.py".into() });
        assert_eq!(r.fate("app/requirements.txt"), Fate::Rebuild);
        assert_eq!(r.fate("app/pkg/__pycache__/x.pyc"), Fate::Skip);
        assert_eq!(r.fate("app/.main.py.swp"), Fate::Skip, "`*.swp` matches below the rule's path");
        assert_eq!(r.fate("conf/a/b.toml"), Fate::Sync { rule: 2, container: "/etc/app/a/b.toml".into() });
        assert_eq!(r.fate("bin/server"), Fate::Sync { rule: 3, container: "/usr/local/bin/server".into() });
        assert_eq!(r.fate("application.py"), Fate::Unmatched, "a sibling with the same prefix is not under `app`");
        assert_eq!(r.fate("Containerfile"), Fate::Unmatched);
        assert_eq!(r.fate("app"), Fate::Sync { rule: 0, container: "/code".into() }, "the rule's directory itself");
    }

    #[test]
    fn include_narrows_a_rule() {
        let mut only_py = rule("app", Some("/code"), SyncAction::Sync);
        only_py.include = vec!["**/*.py".into()];
        let r = SyncRules::new(&[only_py]);
        assert!(matches!(r.fate("app/x/y.py"), Fate::Sync { .. }));
        assert_eq!(r.fate("app/x/y.txt"), Fate::Unmatched, "not covered: an image input it is rebuilds");
    }

    fn input(_: &str, _: &str) -> InImage {
        InImage::Input
    }

    fn web<'a>(rules: &'a SyncRules) -> LiveService<'a> {
        LiveService { name: "web", image_target: Some("web-image"), rules, running: true }
    }

    #[test]
    fn synced_paths_spare_the_image() {
        let rules = web_rules();
        let paths = set(&["app/main.py", "conf/site.toml", "app/__pycache__/m.pyc"]);
        let affected = BTreeMap::from([("web-image".to_string(), set(&["app/main.py", "app/__pycache__/m.pyc"]))]);
        let p = plan(&paths, &affected, &[web(&rules)], |_| false, input);
        assert_eq!(p.spared, set(&["web-image"]));
        assert!(p.fallbacks.is_empty());
        let share = &p.syncs["web"];
        assert_eq!(share.paths.keys().collect::<Vec<_>>(), ["app/main.py", "conf/site.toml"]);
        assert_eq!(share.exec, ["kill -HUP 1"]);
        assert!(!share.restart);
    }

    #[test]
    fn an_unmatched_or_rebuild_path_names_why() {
        let rules = web_rules();
        let paths = set(&["app/main.py", "Containerfile"]);
        let affected = BTreeMap::from([("web-image".to_string(), set(&["Containerfile", "app/main.py"]))]);
        let p = plan(&paths, &affected, &[web(&rules)], |_| false, input);
        assert!(p.spared.is_empty());
        assert_eq!(
            p.fallbacks,
            [Fallback {
                service: "web".into(),
                target: "web-image".into(),
                path: "Containerfile".into(),
                reason: "no sync rule matched"
            }]
        );
        assert!(p.syncs["web"].paths.contains_key("app/main.py"), "the running replicas still get the synced file");

        let affected = BTreeMap::from([("web-image".to_string(), set(&["app/requirements.txt"]))]);
        let p = plan(&set(&["app/requirements.txt"]), &affected, &[web(&rules)], |_| false, input);
        assert_eq!(p.fallbacks[0].reason, "a `rebuild` rule matched");
        assert!(p.syncs.is_empty());
    }

    #[test]
    fn every_user_of_the_image_must_be_carried() {
        let rules = web_rules();
        let none = SyncRules::default();
        let plain = LiveService { name: "worker", image_target: Some("web-image"), rules: &none, running: true };
        let paths = set(&["app/main.py"]);
        let affected = BTreeMap::from([("web-image".to_string(), paths.clone())]);
        let p = plan(&paths, &affected, &[web(&rules), plain], |_| false, input);
        assert!(p.spared.is_empty(), "worker has no rules: it needs the new image");
        let p = plan(&paths, &affected, &[web(&rules)], |t| t == "web-image", input);
        assert!(p.spared.is_empty(), "a target built on the image needs the new image");
        let stopped = LiveService { running: false, ..web(&rules) };
        let p = plan(&paths, &affected, &[stopped], |_| false, input);
        assert!(p.spared.is_empty(), "nothing runs to copy into: the image is built");
        assert!(p.syncs["web"].paths.contains_key("app/main.py"), "and its next containers are given the file");
    }

    #[test]
    fn what_the_image_does_not_see_rebuilds_nothing_and_a_deps_input_always_does() {
        let rules = web_rules();
        let paths = set(&["notes/todo.txt"]);
        let affected = BTreeMap::from([("web-image".to_string(), paths.clone())]);
        let outside = |_: &str, _: &str| InImage::Outside;
        let p = plan(&paths, &affected, &[web(&rules)], |_| false, outside);
        assert_eq!(p.spared, set(&["web-image"]), "left out by .containerignore");
        assert!(p.fallbacks.is_empty());
        let of_a_dep = |_: &str, _: &str| InImage::OfADep;
        let p = plan(&set(&["app/main.py"]), &affected, &[web(&rules)], |_| false, of_a_dep);
        assert!(p.spared.is_empty());
        assert_eq!(p.fallbacks[0].reason, "a target the image builds on reads it");
    }

    #[test]
    fn sync_restart_asks_for_a_restart() {
        let rules = web_rules();
        let p = plan(&set(&["bin/server"]), &BTreeMap::new(), &[web(&rules)], |_| false, input);
        assert!(p.syncs["web"].restart);
    }
}
