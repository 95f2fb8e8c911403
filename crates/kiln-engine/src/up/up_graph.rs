//! The graph a running `kiln up` keeps up to date, as `GET /api/graph` shows it: its
//! selected targets with their deps, and its services with the image target they run, the
//! targets they need and the services they start after. Made by the dispatcher from its
//! current selection on request, so it follows every reload.

use serde::Serialize;

use crate::up::selection::Selection;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpGraph {
    pub targets: Vec<GraphTarget>,
    pub services: Vec<GraphService>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphTarget {
    pub name: String,
    /// `cmd` or `image`.
    pub kind: &'static str,
    pub deps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphService {
    pub name: String,
    /// `process` or `container`.
    pub kind: &'static str,
    /// The image target a container service runs (`None` for a process, or an image
    /// reference that no target builds).
    pub target: Option<String>,
    pub deps: Vec<String>,
    pub after: Vec<String>,
}

impl UpGraph {
    /// The graph of `sel`, in name order.
    pub fn of(sel: &Selection) -> UpGraph {
        let mut targets: Vec<GraphTarget> = sel
            .targets
            .iter()
            .map(|&id| {
                let name = sel.graph.name(id).to_string();
                let kind = sel.config.targets.get(&name).map_or("cmd", kiln_config::Target::kind_name);
                let deps = sel.graph.deps(id).iter().map(|&d| sel.graph.name(d).to_string()).collect();
                GraphTarget { name, kind, deps }
            })
            .collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        let services = sel
            .services
            .iter()
            .filter_map(|name| sel.config.services.get(name))
            .map(|s| {
                let (kind, target) = match &s.kind {
                    kiln_config::ServiceKind::Cmd(_) => ("process", None),
                    kiln_config::ServiceKind::Image(image) => {
                        ("container", sel.graph.id(image).is_some().then(|| image.clone()))
                    }
                };
                GraphService { name: s.name.clone(), kind, target, deps: s.deps.clone(), after: s.after.clone() }
            })
            .collect();
        UpGraph { targets, services }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(toml: &str, names: &[&str]) -> Selection {
        let config = kiln_config::parse_str(toml, std::path::Path::new("kiln.toml"), &std::env::temp_dir(), None)
            .expect("valid");
        Selection::new(config, &names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("selection")
    }

    #[test]
    fn targets_and_services_with_their_edges() {
        let toml = r#"
[target.gen]
cmd = "true"
[target.app]
cmd = "true"
deps = ["gen"]
[target.img]
image = { name = "img", context = "." }
deps = ["app"]
[target.other]
cmd = "true"
[service.db]
image = "docker.io/library/postgres:16"
[service.web]
image = "img"
after = ["db"]
[service.tool]
cmd = "sleep 1"
deps = ["gen"]
"#;
        let graph = UpGraph::of(&sel(toml, &["web", "tool", "db"]));
        let t: Vec<(&str, &str, Vec<&str>)> = graph
            .targets
            .iter()
            .map(|t| (t.name.as_str(), t.kind, t.deps.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(t, vec![("app", "cmd", vec!["gen"]), ("gen", "cmd", vec![]), ("img", "image", vec!["app"])]);
        let web = graph.services.iter().find(|s| s.name == "web").expect("web");
        assert_eq!(
            (web.kind, web.target.as_deref(), &web.after[..]),
            ("container", Some("img"), &["db".to_string()][..])
        );
        let db = graph.services.iter().find(|s| s.name == "db").expect("db");
        assert_eq!((db.kind, db.target.as_deref()), ("container", None), "a reference, not a target");
        let tool = graph.services.iter().find(|s| s.name == "tool").expect("tool");
        assert_eq!((tool.kind, &tool.deps[..]), ("process", &["gen".to_string()][..]));
        assert!(!graph.targets.iter().any(|t| t.name == "other"), "not selected");
    }
}
