//! `kiln explain TARGET`: the difference between what a target's key is made of now and
//! what it was made of at its last build, rendered for a human (or as JSON).

use std::time::Duration;

use kiln_config::{Config, format_duration};
use kiln_engine::{Change, EntryChange, ExplainError, Explanation, explain};

use crate::exit;
use crate::out::{errln, out, outln};

pub fn run(config: &Config, target: &str, json: bool) -> u8 {
    match explain(config, target) {
        Ok(e) if json => {
            outln!("{}", serde_json::to_string_pretty(&e).expect("explanations serialize"));
            exit::SUCCESS
        }
        Ok(e) => {
            out!("{}", render(&e));
            exit::SUCCESS
        }
        Err(e @ ExplainError::UnknownTarget { .. }) => {
            errln!("error: {e}");
            exit::USAGE
        }
        Err(e) => {
            errln!("error: cannot explain `{target}`: {e}");
            exit::FAILED
        }
    }
}

/// The explanation as text: a headline, the details, then the last build.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    if e.up_to_date() {
        line(format!("{} is up to date", e.target));
    } else {
        line(format!("{} would run: {}", e.target, e.reason()));
    }

    let files: Vec<&Change> = e.changes.iter().filter(|c| matches!(c, Change::File { .. })).collect();
    if !files.is_empty() {
        line("  inputs:".into());
        let width =
            files.iter().map(|c| if let Change::File { path, .. } = c { path.len() } else { 0 }).max().unwrap_or(0);
        for c in files {
            if let Change::File { path, change } = c {
                let (what, old, new) = entry(change);
                line(format!("    {what:<8} {path:<width$}  {old} → {new}"));
            }
        }
    }
    let envs: Vec<&String> =
        e.changes.iter().filter_map(|c| if let Change::Env { name } = c { Some(name) } else { None }).collect();
    if !envs.is_empty() {
        line("  env:".into());
        let show = |m: Option<&kiln_engine::Manifest>, k: &str| {
            m.and_then(|m| m.env.get(k)).map_or_else(|| "(unset)".to_string(), |v| format!("{v:?}"))
        };
        for name in envs {
            line(format!("    {name}  {} → {}", show(e.previous.as_ref(), name), show(Some(&e.current), name)));
        }
    }
    for c in &e.changes {
        match c {
            Change::Action | Change::Image => {
                line(if *c == Change::Image { "  image:" } else { "  command:" }.into());
                let strip =
                    |a: &str| a.strip_prefix("cmd ").or_else(|| a.strip_prefix("image ")).unwrap_or(a).to_string();
                if let Some(p) = &e.previous {
                    line(format!("    was  {}", strip(&p.action)));
                }
                line(format!("    now  {}", strip(&e.current.action)));
            }
            Change::Dir { old, new } => line(format!("  dir: {old} → {new}")),
            Change::Outputs => line(format!(
                "  declared outputs: {} → {}",
                e.previous.as_ref().map_or_else(String::new, |p| p.outputs.join(", ")),
                e.current.outputs.join(", ")
            )),
            _ => {}
        }
    }
    let deps: Vec<(&String, &EntryChange)> = e
        .changes
        .iter()
        .filter_map(|c| if let Change::Dep { name, changed } = c { Some((name, changed)) } else { None })
        .collect();
    if !deps.is_empty() {
        line("  dependency outputs:".into());
        for (name, change) in deps {
            let (what, old, new) = entry(change);
            line(format!("    {what:<8} {name}  {old} → {new}"));
        }
    }
    if !e.stale_deps.is_empty() {
        line(format!(
            "  out of date first: {} (they rebuild before it; `kiln explain {}` says why)",
            e.stale_deps.join(", "),
            e.stale_deps[0]
        ));
    }
    if !e.damaged_outputs.is_empty() {
        line(format!("  outputs missing or modified (restored from the cache): {}", e.damaged_outputs.join(", ")));
    }
    match &e.last {
        Some(last) => {
            line(format!(
                "last built {}, command took {}, key {}",
                last.finished_at,
                format_duration(Duration::from_millis(last.duration_ms)),
                last.key.short()
            ));
            if !last.reason.is_empty() {
                line(format!("  because: {}", last.reason));
            }
            if e.previous.is_none() && !e.up_to_date() {
                line("  (its manifest is no longer in the cache, so the difference cannot be itemised)".into());
            }
        }
        None => line("never built".into()),
    }
    out
}

fn entry(change: &EntryChange) -> (&'static str, String, String) {
    match change {
        EntryChange::Added { new } => ("added", "(none)".into(), new.short()),
        EntryChange::Removed { old } => ("removed", old.short(), "(none)".into()),
        EntryChange::Changed { old, new } => ("changed", old.short(), new.short()),
    }
}
