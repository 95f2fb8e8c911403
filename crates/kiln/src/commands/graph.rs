//! `kiln graph`: the target graph as Graphviz dot, Mermaid or JSON.

use kiln_config::Config;

use crate::cli::GraphFormat;

pub fn render(config: &Config, format: GraphFormat) -> String {
    let targets = config.targets.values();
    match format {
        GraphFormat::Dot => {
            let mut out = String::from("digraph kiln {\n  rankdir=LR;\n");
            for t in targets.clone() {
                let shape = if t.is_image() { "box3d" } else { "box" };
                out.push_str(&format!("  \"{}\" [shape={shape}];\n", t.name));
            }
            for t in targets {
                for d in &t.deps {
                    out.push_str(&format!("  \"{}\" -> \"{}\";\n", d, t.name));
                }
            }
            out.push_str("}\n");
            out
        }
        GraphFormat::Mermaid => {
            let mut out = String::from("graph LR\n");
            for t in targets.clone() {
                out.push_str(&format!("  {}[\"{}\"]\n", mermaid_id(&t.name), t.name));
            }
            for t in targets {
                for d in &t.deps {
                    out.push_str(&format!("  {} --> {}\n", mermaid_id(d), mermaid_id(&t.name)));
                }
            }
            out
        }
        GraphFormat::Json => {
            let nodes: Vec<serde_json::Value> =
                targets.map(|t| serde_json::json!({ "name": t.name, "kind": t.kind_name(), "deps": t.deps })).collect();
            let mut text =
                serde_json::to_string_pretty(&serde_json::json!({ "targets": nodes })).expect("json values serialize");
            text.push('\n');
            text
        }
    }
}

/// Mermaid ids cannot hold `-` or `.`; names are shown as labels instead.
fn mermaid_id(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}
