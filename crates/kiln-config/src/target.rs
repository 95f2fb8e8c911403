//! A node of the build graph as declared in `[target.NAME]`.

use std::collections::BTreeMap;
use std::time::Duration;

/// One target: what to run, on which inputs, producing which outputs, after which deps.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
    /// Globs relative to the project root.
    pub inputs: Vec<String>,
    /// Files, directories or globs relative to the project root.
    pub outputs: Vec<String>,
    pub deps: Vec<String>,
    /// Its environment: `env_file`'s variables, then `env` over them. Part of its key.
    pub env: BTreeMap<String, String>,
    /// The dotenv file its environment was read from, relative to the project root.
    pub env_file: Option<String>,
    /// Working directory relative to the project root.
    pub dir: String,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub cache: bool,
}

/// What a target does.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// `sh -c CMD` in the target's directory.
    Cmd(String),
    /// A container image build.
    Image(ImageSpec),
}

/// `image = { name, context, file, stage, args }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSpec {
    pub name: String,
    pub context: String,
    pub file: Option<String>,
    pub stage: Option<String>,
    pub args: BTreeMap<String, String>,
}

impl Target {
    pub fn is_image(&self) -> bool {
        matches!(self.kind, TargetKind::Image(_))
    }

    /// `cmd` or `image`, as `kiln graph --json` and `GET /api/graph` name it.
    pub fn kind_name(&self) -> &'static str {
        if self.is_image() { "image" } else { "cmd" }
    }
}

/// A target as read, with the spans of its dependency names for later graph checks.
pub(crate) struct ReadTarget {
    pub target: Target,
    pub deps: Vec<crate::reader::Located>,
}

const TARGET_KEYS: &[&str] =
    &["cmd", "image", "inputs", "outputs", "deps", "env", "env_file", "dir", "timeout", "retries", "cache"];
const IMAGE_KEYS: &[&str] = &["name", "context", "file", "stage", "args"];

impl Target {
    /// Reads `[target.NAME]`; `None` when it has errors (already recorded in `r`).
    pub(crate) fn read(
        r: &mut crate::reader::Reader,
        name: &crate::reader::Located,
        node: &crate::reader::Node<'_>,
        names: &crate::validate::Names,
    ) -> Option<ReadTarget> {
        let section = format!("[target.{}]", name.text);
        let table = r.table(node, &section)?;
        r.check_keys(table, TARGET_KEYS, &section);
        let field = |key: &str| table.get(key);
        let what = |key: &str| format!("`{key}` of target `{}`", name.text);

        let cmd = field("cmd").and_then(|n| r.string(n, &what("cmd")));
        let image = field("image").and_then(|n| read_image(r, n, &name.text));
        let kind = match (field("cmd"), field("image")) {
            (Some(_), Some(image_node)) => {
                r.error(
                    image_node.span(),
                    format!("target `{}` has both `cmd` and `image`", name.text),
                    "second action here",
                    Some("a target either runs a command or builds an image: keep one".into()),
                );
                None
            }
            (None, None) => {
                r.error(
                    name.span.clone(),
                    format!("target `{}` has neither `cmd` nor `image`", name.text),
                    "nothing to do",
                    Some(
                        "add `cmd = \"...\"` to run a command, or `image = { name = \"...\" }` to build an image"
                            .into(),
                    ),
                );
                None
            }
            (Some(_), None) => cmd.map(TargetKind::Cmd),
            (None, Some(_)) => image.map(TargetKind::Image),
        };
        let inputs = read_paths(r, field("inputs"), &what("inputs"));
        let outputs = read_paths(r, field("outputs"), &what("outputs"));
        let deps = match field("deps") {
            Some(n) => r.string_list(n, &what("deps")),
            None => Some(Vec::new()),
        };
        if let Some(deps) = &deps {
            for dep in deps {
                names.check_target_ref(r, dep, "dependency");
            }
        }
        let (env, env_file) = r.env_with_file(field("env"), field("env_file"), what);
        let dir = field("dir").map_or(Some(".".to_string()), |n| {
            let dir = r.located(n, &what("dir"))?;
            crate::validate::check_relative(r, &dir, &what("dir")).then_some(dir.text)
        });
        let timeout = match field("timeout") {
            Some(n) => Some(Some(r.positive_duration(n, &what("timeout"))?)),
            None => Some(None),
        };
        let retries = field("retries").map_or(Some(0), |n| r.integer(n, &what("retries"), 0, 100));
        let cache = field("cache").map_or(Some(true), |n| r.bool(n, &what("cache")));

        let deps = deps?;
        Some(ReadTarget {
            target: Target {
                name: name.text.clone(),
                kind: kind?,
                inputs: inputs?,
                outputs: outputs?,
                deps: deps.iter().map(|d| d.text.clone()).collect(),
                env: env?,
                env_file: env_file?,
                dir: dir?,
                timeout: timeout?,
                retries: u32::try_from(retries?).ok()?,
                cache: cache?,
            },
            deps,
        })
    }
}

fn read_image(r: &mut crate::reader::Reader, node: &crate::reader::Node<'_>, target: &str) -> Option<ImageSpec> {
    let section = format!("`image` of target `{target}`");
    let table = r.table(node, &section)?;
    r.check_keys(table, IMAGE_KEYS, &section);
    let what = |key: &str| format!("`image.{key}` of target `{target}`");
    let name = match table.get("name") {
        Some(n) => r.string(n, &what("name")),
        None => {
            r.error(
                node.span(),
                format!("image of target `{target}` has no `name`"),
                "missing `name`",
                Some("add `name = \"localhost/NAME\"`".into()),
            );
            None
        }
    };
    let mut path = |key: &str| match table.get(key) {
        Some(n) => {
            let l = r.located(n, &what(key))?;
            crate::validate::check_relative(r, &l, &what(key)).then_some(Some(l.text))
        }
        None => Some(None),
    };
    let context = path("context");
    let file = path("file");
    let stage = table.get("stage").map_or(Some(None), |n| r.string(n, &what("stage")).map(Some));
    let args = table.get("args").map_or(Some(BTreeMap::new()), |n| r.string_map(n, &what("args")));
    Some(ImageSpec {
        name: name?,
        context: context?.unwrap_or_else(|| ".".into()),
        file: file?,
        stage: stage?,
        args: args?,
    })
}

/// Reads a list of globs relative to the root; each must compile and stay inside the root.
fn read_paths(
    r: &mut crate::reader::Reader,
    node: Option<&crate::reader::Node<'_>>,
    what: &str,
) -> Option<Vec<String>> {
    let Some(node) = node else {
        return Some(Vec::new());
    };
    let items = r.string_list(node, what)?;
    let mut ok = true;
    for item in &items {
        ok &= crate::validate::check_relative(r, item, what) && crate::validate::check_glob(r, item, what);
    }
    ok.then(|| items.into_iter().map(|l| l.text).collect())
}
