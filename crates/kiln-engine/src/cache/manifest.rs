//! A target's key inputs, written out: its definition, input files with their digests, and
//! its dependencies' output digests. The key is the digest of this manifest, and the
//! difference between two manifests is the reason a target runs again.

use std::collections::BTreeMap;

use kiln_config::{Target, TargetKind};
use serde::{Deserialize, Serialize};

use crate::cache::digest::{Digest, DigestBuilder};
use crate::fs::rel_path;

/// Everything that decides a target's outputs. Same manifest ⇒ same key ⇒ same outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The command, or the image spec, as one canonical string.
    pub action: String,
    pub dir: String,
    /// `[env]` merged with the target's `env`.
    pub env: BTreeMap<String, String>,
    pub outputs: Vec<String>,
    /// Input files (root-relative) and their content digests, sorted by path. Paths are
    /// escaped (see [`crate::fs::rel_path`]), so a name that is not UTF-8 round-trips
    /// through the JSON of a record; the key hashes the raw bytes.
    pub inputs: Vec<(String, Digest)>,
    /// Dependencies and the digests of their outputs, sorted by name.
    pub deps: Vec<(String, Digest)>,
}

/// Version of the key derivation; bump it to invalidate every cache entry.
const KEY_DOMAIN: &str = "kiln key v2";

impl Manifest {
    /// The definition half of a manifest; inputs and deps are filled in by the caller.
    pub fn for_target(target: &Target, global_env: &BTreeMap<String, String>) -> Manifest {
        let action = match &target.kind {
            TargetKind::Cmd(cmd) => format!("cmd {cmd}"),
            TargetKind::Image(spec) => format!(
                "image name={} context={} file={} stage={} args={:?}",
                spec.name,
                spec.context,
                spec.file.as_deref().unwrap_or(""),
                spec.stage.as_deref().unwrap_or(""),
                spec.args
            ),
        };
        let mut env = global_env.clone();
        env.extend(target.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Manifest {
            action,
            dir: target.dir.clone(),
            env,
            outputs: target.outputs.clone(),
            inputs: Vec::new(),
            deps: Vec::new(),
        }
    }

    /// The digest of the inputs' (path, content digest) list.
    pub fn inputs_digest(&self) -> Digest {
        let mut b = DigestBuilder::new("kiln inputs v1");
        for (p, d) in &self.inputs {
            b.bytes(&rel_path::raw(p)).digest(d);
        }
        b.finish()
    }

    pub fn key(&self) -> Digest {
        self.key_with(&self.inputs_digest())
    }

    /// The key, given the inputs' digest (known from a previous run when their metadata
    /// has not changed, so `inputs` need not be filled in).
    pub fn key_with(&self, inputs_digest: &Digest) -> Digest {
        let mut b = DigestBuilder::new(KEY_DOMAIN);
        b.str(&self.action).str(&self.dir);
        b.bytes(&(self.env.len() as u64).to_le_bytes());
        for (k, v) in &self.env {
            b.str(k).str(v);
        }
        b.bytes(&(self.outputs.len() as u64).to_le_bytes());
        for o in &self.outputs {
            b.str(o);
        }
        b.digest(inputs_digest);
        b.bytes(&(self.deps.len() as u64).to_le_bytes());
        for (n, d) in &self.deps {
            b.str(n).digest(d);
        }
        b.finish()
    }

    /// What differs from `old`, most important first.
    pub fn changes_since(&self, old: &Manifest) -> Vec<Change> {
        let mut out = Vec::new();
        if self.action != old.action {
            out.push(if self.action.starts_with("image ") { Change::Image } else { Change::Action });
        }
        if self.dir != old.dir {
            out.push(Change::Dir { old: old.dir.clone(), new: self.dir.clone() });
        }
        for (name, new) in diff_maps(&old.deps, &self.deps) {
            out.push(Change::Dep { name, changed: new });
        }
        for (path, change) in diff_maps(&old.inputs, &self.inputs) {
            out.push(Change::File { path: rel_path::display(&path).into_owned(), change });
        }
        let keys: std::collections::BTreeSet<&String> = old.env.keys().chain(self.env.keys()).collect();
        for k in keys {
            if old.env.get(k) != self.env.get(k) {
                out.push(Change::Env { name: k.clone() });
            }
        }
        if self.outputs != old.outputs {
            out.push(Change::Outputs);
        }
        out
    }
}

/// How one entry of a sorted (name, digest) list changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EntryChange {
    Added { new: Digest },
    Removed { old: Digest },
    Changed { old: Digest, new: Digest },
}

fn diff_maps(old: &[(String, Digest)], new: &[(String, Digest)]) -> Vec<(String, EntryChange)> {
    let old: BTreeMap<&String, &Digest> = old.iter().map(|(k, v)| (k, v)).collect();
    let new: BTreeMap<&String, &Digest> = new.iter().map(|(k, v)| (k, v)).collect();
    let mut out = Vec::new();
    for (k, o) in &old {
        match new.get(k) {
            None => out.push(((*k).clone(), EntryChange::Removed { old: **o })),
            Some(n) if n != o => out.push(((*k).clone(), EntryChange::Changed { old: **o, new: **n })),
            Some(_) => {}
        }
    }
    for (k, n) in &new {
        if !old.contains_key(k) {
            out.push(((*k).clone(), EntryChange::Added { new: **n }));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One reason a target's key changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "lowercase")]
pub enum Change {
    Action,
    /// The image spec (name, context, Containerfile, stage or build args) of an image target.
    Image,
    Dir {
        old: String,
        new: String,
    },
    Dep {
        name: String,
        changed: EntryChange,
    },
    File {
        /// For people: a name that is not UTF-8 is shown lossily (`bad\u{FFFD}.c`).
        path: String,
        change: EntryChange,
    },
    Env {
        name: String,
    },
    Outputs,
}

impl Change {
    pub fn describe(&self) -> String {
        match self {
            Change::Action => "command changed".into(),
            Change::Image => "image definition changed".into(),
            Change::Dir { old, new } => format!("dir changed from {old} to {new}"),
            Change::Dep { name, changed: EntryChange::Added { .. } } => format!("new dependency {name}"),
            Change::Dep { name, changed: EntryChange::Removed { .. } } => format!("dependency {name} removed"),
            Change::Dep { name, .. } => format!("dependency {name} changed"),
            Change::File { path, change: EntryChange::Added { .. } } => format!("{path} added"),
            Change::File { path, change: EntryChange::Removed { .. } } => format!("{path} removed"),
            Change::File { path, .. } => format!("{path} changed"),
            Change::Env { name } => format!("env {name} changed"),
            Change::Outputs => "declared outputs changed".into(),
        }
    }
}

/// One line for humans: the first changes, and how many more.
pub fn summarize(changes: &[Change]) -> String {
    const SHOWN: usize = 3;
    if changes.is_empty() {
        return "definition changed".into();
    }
    let mut text: Vec<String> = changes.iter().take(SHOWN).map(Change::describe).collect();
    if changes.len() > SHOWN {
        text.push(format!("and {} more", changes.len() - SHOWN));
    }
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            action: "cmd cc a.c".into(),
            dir: ".".into(),
            env: BTreeMap::from([("CFLAGS".to_string(), "-O2".to_string())]),
            outputs: vec!["out/a".into()],
            inputs: vec![("a.c".into(), Digest::of_bytes(b"1")), ("b.h".into(), Digest::of_bytes(b"2"))],
            deps: vec![("core".into(), Digest::of_bytes(b"core"))],
        }
    }

    #[test]
    fn key_is_stable_and_sensitive() {
        let m = manifest();
        assert_eq!(m.key(), manifest().key());
        let mut edited = manifest();
        edited.inputs[0].1 = Digest::of_bytes(b"other");
        assert_ne!(edited.key(), m.key());
        let mut env = manifest();
        env.env.insert("X".into(), "1".into());
        assert_ne!(env.key(), m.key());
    }

    #[test]
    fn names_that_are_not_utf8_count_by_their_bytes_and_show_lossily() {
        let escaped = |b: &[u8]| rel_path::escape(b).into_owned();
        let with = |name: &[u8]| {
            let mut m = manifest();
            m.inputs.push((escaped(name), Digest::of_bytes(b"x")));
            m
        };
        assert_ne!(with(b"bad\xff.c").key(), manifest().key(), "the file is part of the key");
        assert_ne!(with(b"bad\xff.c").key(), with(b"bad\xfe.c").key(), "by its bytes");
        assert_eq!(with(b"bad\xff.c").key(), with(b"bad\xff.c").key());
        // UTF-8 names hash as before: existing keys stay valid.
        let mut b = DigestBuilder::new("kiln inputs v1");
        b.str("a.c").digest(&Digest::of_bytes(b"1")).str("b.h").digest(&Digest::of_bytes(b"2"));
        assert_eq!(manifest().inputs_digest(), b.finish());
        // The escaped form survives the JSON of a record.
        let m = with(b"bad\xff.c");
        let back: Manifest = serde_json::from_slice(&serde_json::to_vec(&m).expect("json")).expect("parses");
        assert_eq!(back, m);
        let mut edited = with(b"bad\xff.c");
        edited.inputs[2].1 = Digest::of_bytes(b"y");
        assert_eq!(summarize(&edited.changes_since(&m)), "bad\u{FFFD}.c changed");
    }

    #[test]
    fn changes_name_files_deps_and_env() {
        let old = manifest();
        let mut new = manifest();
        new.inputs[1].1 = Digest::of_bytes(b"3");
        new.inputs.push(("c.c".into(), Digest::of_bytes(b"4")));
        new.deps[0].1 = Digest::of_bytes(b"core2");
        new.env.insert("CFLAGS".into(), "-O0".into());
        let changes = new.changes_since(&old);
        let text: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(text, vec!["dependency core changed", "b.h changed", "c.c added", "env CFLAGS changed"]);
        assert_eq!(summarize(&changes), "dependency core changed, b.h changed, c.c added, and 1 more");
    }
}
