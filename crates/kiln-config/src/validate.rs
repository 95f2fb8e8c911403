//! Checks that span more than one value: references between targets and services, cycles,
//! paths that must stay inside the project root, globs that must compile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};
use std::sync::Arc;

use crate::reader::{Located, Reader, Suggestion};

/// The names declared in the file, so that references can be checked while reading.
pub(crate) struct Names {
    /// Target name → whether it builds an image.
    targets: BTreeMap<String, bool>,
    services: BTreeSet<String>,
    /// The same names as lists to search for "did you mean", shared by every hint.
    target_list: Arc<[String]>,
    service_list: Arc<[String]>,
}

impl Names {
    pub fn new(targets: BTreeMap<String, bool>, services: BTreeSet<String>) -> Self {
        let target_list = targets.keys().cloned().collect();
        let service_list = services.iter().cloned().collect();
        Names { targets, services, target_list, service_list }
    }

    pub fn check_target_ref(&self, r: &mut Reader, name: &Located, role: &str) {
        if self.targets.contains_key(&name.text) {
            return;
        }
        let otherwise = self
            .services
            .contains(&name.text)
            .then(|| format!("`{}` is a service; list services in `after`", name.text));
        r.error_suggesting(
            name.span.clone(),
            format!("unknown {role} `{}`", name.text),
            "no target has this name",
            Suggestion { word: name.text.clone(), candidates: self.target_list.clone(), otherwise },
        );
    }

    pub fn check_service_ref(&self, r: &mut Reader, name: &Located) {
        if self.services.contains(&name.text) {
            return;
        }
        let otherwise = self
            .targets
            .contains_key(&name.text)
            .then(|| format!("`{}` is a target; list targets in `deps`", name.text));
        r.error_suggesting(
            name.span.clone(),
            format!("unknown service `{}` in `after`", name.text),
            "no service has this name",
            Suggestion { word: name.text.clone(), candidates: self.service_list.clone(), otherwise },
        );
    }

    pub fn is_image_target(&self, name: &str) -> bool {
        self.targets.get(name) == Some(&true)
    }

    /// A service's `image` names either an image target or an external image reference; a
    /// `cmd` target there is a mistake, and so is a bare name close to an image target's
    /// (`bb-imag` for `bb-image`): taken as a reference, it fails only at run time, on the
    /// engine's short-name lookup. A reference with a `/` or `:` is used as written.
    pub fn check_image_ref(&self, r: &mut Reader, image: &Located) {
        if !self.targets.contains_key(&image.text) && !image.text.contains(['/', ':']) {
            let images = self.targets.iter().filter(|(_, is_image)| **is_image).map(|(name, _)| name.as_str());
            if let Some(close) = crate::did_you_mean(&image.text, images) {
                r.error(
                    image.span.clone(),
                    format!(
                        "`{}` is not an image target of {}; did you mean `{close}`?",
                        image.text,
                        crate::loader::file_name(&r.path)
                    ),
                    "no image target has this name",
                    Some(format!(
                        "to run an image that is not built here, name it in full with its registry or tag, e.g. \
                         `localhost/{}:latest` (a reference with `/` or `:` is used as written)",
                        image.text
                    )),
                );
                return;
            }
        }
        if self.targets.get(&image.text) == Some(&false) {
            r.error(
                image.span.clone(),
                format!("`{}` is not an image target", image.text),
                "this target runs a command, it builds no image",
                Some(format!(
                    "give target `{}` an `image = {{ ... }}` spec, or use `cmd` to run a process service",
                    image.text
                )),
            );
        }
    }
}

/// Rejects absolute paths and `..`: everything kiln reads or restores stays in the root.
pub(crate) fn check_relative(r: &mut Reader, path: &Located, what: &str) -> bool {
    let p = Path::new(&path.text);
    let escapes = p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir));
    if escapes {
        r.error(
            path.span.clone(),
            format!("path in {what} leaves the project root"),
            "absolute or `..` path",
            Some("paths are relative to the directory holding kiln.toml and stay inside it".into()),
        );
    }
    !escapes
}

pub(crate) fn check_glob(r: &mut Reader, pattern: &Located, what: &str) -> bool {
    match globset::GlobBuilder::new(&pattern.text).literal_separator(true).build() {
        Ok(_) => true,
        Err(e) => {
            r.error(
                pattern.span.clone(),
                format!("bad glob in {what}: {}", e.kind()),
                "invalid glob",
                Some("globs use `*`, `**`, `?`, `[abc]` and `{a,b}`".into()),
            );
            false
        }
    }
}

/// Finds one cycle in `edges` (node → its dependencies) and reports it at the edge that
/// closes it, naming the whole cycle: `a → b → c → a`.
pub(crate) fn check_cycles(r: &mut Reader, edges: &BTreeMap<String, Vec<Located>>, kind: &str) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = edges.keys().map(|k| (k.as_str(), Mark::New)).collect();
    for start in edges.keys() {
        if marks[start.as_str()] != Mark::New {
            continue;
        }
        // Iterative depth-first search; `stack` holds (node, index of next edge to follow).
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::OnStack);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let deps = edges.get(node).map_or(&[][..], Vec::as_slice);
            let Some(dep) = deps.get(*next) else {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            };
            *next += 1;
            match marks.get(dep.text.as_str()).copied() {
                Some(Mark::New) => {
                    marks.insert(dep.text.as_str(), Mark::OnStack);
                    stack.push((dep.text.as_str(), 0));
                }
                Some(Mark::OnStack) => {
                    let from = stack.iter().position(|(n, _)| *n == dep.text).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[from..].iter().map(|(n, _)| *n).collect();
                    cycle.push(dep.text.as_str());
                    r.error(
                        dep.span.clone(),
                        format!("{kind} cycle: {}", cycle.join(" → ")),
                        format!("`{node}` depends on `{}`, closing the cycle", dep.text),
                        Some("remove one of these dependencies to break the cycle".into()),
                    );
                    return;
                }
                Some(Mark::Done) | None => {}
            }
        }
    }
}

/// A `log` probe's pattern must compile, as the supervisor compiles it; the error says what
/// is wrong and points at it, with the pattern that matches the text literally as a hint.
pub(crate) fn check_regex(r: &mut Reader, pattern: &Located, what: &str) -> bool {
    let (why, at) = match regex_syntax::Parser::new().parse(&pattern.text) {
        Err(regex_syntax::Error::Parse(e)) => (e.kind().to_string(), Some(*e.span())),
        Err(regex_syntax::Error::Translate(e)) => (e.kind().to_string(), Some(*e.span())),
        Err(e) => (e.to_string(), None),
        Ok(_) => match regex::Regex::new(&pattern.text) {
            Ok(_) => return true,
            Err(e) => (e.to_string(), None),
        },
    };
    let span = match at {
        Some(at) => {
            // An empty span (at the end, say) still gets a caret: widen it by a character.
            let end = if at.end.offset > at.start.offset {
                at.end.offset
            } else {
                pattern.text[at.start.offset..]
                    .chars()
                    .next()
                    .map_or(at.start.offset, |c| at.start.offset + c.len_utf8())
            };
            r.inner_span(pattern, at.start.offset..end)
        }
        None => pattern.span.clone(),
    };
    let literal = regex::escape(&pattern.text);
    let hint = if literal.contains(['\'', '\n']) {
        format!("to match the text as written, escape it: `{literal}`")
    } else {
        format!("to match the text as written, escape it: `log = '{literal}'`")
    };
    r.error(span, format!("bad regex in {what}: {why}"), "invalid regex", Some(hint));
    false
}
