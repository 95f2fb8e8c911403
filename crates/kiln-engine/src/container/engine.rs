//! The container engine, driven through its CLI: `podman`, or `docker` (which may talk to
//! any Docker-compatible API through `DOCKER_HOST`, podman's included).
//!
//! What kiln asks of it: build an image with a tag derived from the target's key, say
//! which tags exist (so an unchanged key builds nothing), run a container in the
//! foreground (its output is the client's output, its exit the client's exit), stop and
//! remove it, and list the containers a project left behind by their labels.
//!
//! Container names are unique per project: `kiln-<directory>-<digest>-<service>-<replica>`,
//! the digest that of the canonical root (the `kiln.project` label's first 8 characters), so
//! two checkouts with the same directory name run side by side. A name held by a container
//! without this project's label is never taken over or removed: see [`NameHolder`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use kiln_config::{EngineChoice, ImageSpec};

use crate::cache::digest::{Digest, DigestBuilder};

/// Which CLI drives the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Podman,
    Docker,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Podman => "podman",
            EngineKind::Docker => "docker",
        }
    }
}

/// A container engine CLI found on PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    pub kind: EngineKind,
    pub program: PathBuf,
}

/// The label every container kiln starts carries: which project it belongs to.
pub const PROJECT_LABEL: &str = "kiln.project";
/// The label naming the service a container is a replica of.
pub const SERVICE_LABEL: &str = "kiln.service";

impl Engine {
    /// The engine `choice` asks for: `auto` prefers podman, then docker. The error says
    /// what to install.
    pub fn find(choice: EngineChoice) -> Result<Engine, String> {
        let wanted: &[EngineKind] = match choice {
            EngineChoice::Auto => &[EngineKind::Podman, EngineKind::Docker],
            EngineChoice::Podman => &[EngineKind::Podman],
            EngineChoice::Docker => &[EngineKind::Docker],
        };
        for &kind in wanted {
            if let Some(program) = find_on_path(kind.name()) {
                return Ok(Engine { kind, program });
            }
        }
        Err(match choice {
            EngineChoice::Auto => "no container engine found: image targets and container services need podman or \
                                   docker on PATH; install one (Debian: `apt-get install podman`)"
                .to_string(),
            EngineChoice::Podman => "the container engine `podman` (settings.engine / --engine) is not on PATH; \
                                     install it (Debian: `apt-get install podman`) or choose --engine docker"
                .to_string(),
            EngineChoice::Docker => "the container engine `docker` (settings.engine / --engine) is not on PATH; \
                                     install the docker CLI or choose --engine podman"
                .to_string(),
        })
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// The engine's CLI with `args`, output captured. It dies with the thread that waits
    /// for it, so with kiln: a stop still waiting out its timeout when a second signal ends
    /// kiln does not outlive it (the project's containers are removed by label instead).
    pub fn command<I, S>(&self, args: I) -> std::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(&self.program);
        c.args(args).stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        c
    }

    /// Runs the CLI to completion: its stdout, or what it said on failure.
    pub fn query(&self, args: &[&str]) -> Result<String, String> {
        let out = self.command(args).output().map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let said = String::from_utf8_lossy(&out.stderr);
        Err(format!("`{} {}` failed: {}", self.name(), args.join(" "), said.trim()))
    }

    /// The shell command that builds `spec` as `tag`, run in the project root, writing the
    /// image ID to `iidfile`.
    pub fn build_command(&self, spec: &ImageSpec, tag: &str, root: &Path, iidfile: &Path) -> String {
        let mut args = vec![self.program.display().to_string(), "build".into()];
        args.extend(["--iidfile".into(), iidfile.display().to_string()]);
        args.extend(["-f".into(), containerfile(spec, root)]);
        if let Some(stage) = &spec.stage {
            args.extend(["--target".into(), stage.clone()]);
        }
        for (k, v) in &spec.args {
            args.extend(["--build-arg".into(), format!("{k}={v}")]);
        }
        args.extend(["-t".into(), tag.to_string(), spec.context.clone()]);
        shell_join(&args)
    }

    /// The ID of one image, if the engine has it.
    pub fn image_id(&self, reference: &str) -> Result<String, String> {
        let out = self.query(&["image", "inspect", "--format", "{{.Id}}", reference])?;
        Ok(out.trim().trim_start_matches("sha256:").to_string())
    }

    /// Names of the containers (running or not) labelled as this project's.
    pub fn project_containers(&self, project: &str) -> Result<Vec<String>, String> {
        let filter = format!("label={PROJECT_LABEL}={project}");
        let out = self.query(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"])?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
    }

    /// Force-removes containers by name, killing them at once: podman would otherwise
    /// first wait each one's stop timeout (`docker rm -f` kills at once already).
    pub fn remove(&self, names: &[String]) -> Result<(), String> {
        if names.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm", "-f"];
        if self.kind == EngineKind::Podman {
            args.extend(["-t", "0"]);
        }
        args.extend(names.iter().map(String::as_str));
        self.query(&args).map(|_| ())
    }
}

/// The Containerfile of an image: `file`, or `Containerfile` / `Dockerfile` in the context.
pub fn containerfile(spec: &ImageSpec, root: &Path) -> String {
    if let Some(file) = &spec.file {
        return file.clone();
    }
    let join = |name: &str| if spec.context == "." { name.to_string() } else { format!("{}/{name}", spec.context) };
    let container = join("Containerfile");
    if root.join(&container).exists() { container } else { join("Dockerfile") }
}

/// `NAME:kiln-<first 12 hex of the key>`.
pub fn image_tag(spec: &ImageSpec, key: &Digest) -> String {
    format!("{}:kiln-{}", spec.name, &key.hex()[..12])
}

/// The root as the file system resolves it (symlinks, `..`), so that every spelling of one
/// project's root names the same project; the path as given if it cannot be resolved.
fn canonical(root: &Path) -> std::borrow::Cow<'_, Path> {
    std::fs::canonicalize(root).map_or(std::borrow::Cow::Borrowed(root), std::borrow::Cow::Owned)
}

/// The project a container belongs to, as its `kiln.project` label: a digest of the
/// canonical root's path (its bytes), so two checkouts with the same directory name never
/// touch each other's containers.
pub fn project_id(root: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let root = canonical(root);
    let mut b = DigestBuilder::new("kiln project v1");
    b.bytes(root.as_os_str().as_bytes());
    b.finish().hex()[..16].to_string()
}

/// The directory name of the (canonical) root, made fit for a container name.
pub fn project_name(root: &Path) -> String {
    let root = canonical(root);
    let base = root.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let clean: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string();
    if clean.is_empty() { "project".into() } else { clean }
}

/// `<project>-<digest>`: the project as people and other programs name it (the directory name
/// and the first 8 characters of [`project_id`]), in container and network names and in the
/// `source` of the CloudEvents kiln posts (`urn:kiln:<project>-<digest>`).
pub fn project_ref(root: &Path) -> String {
    format!("{}-{}", project_name(root), &project_id(root)[..8])
}

/// `kiln-<project>-<digest>-<service>-<replica>`: the directory name for people, the first
/// 8 characters of the project's label ([`project_id`]) so that two checkouts with the same
/// directory name (`/tmp/a/app`, `/tmp/b/app`) never share a name.
pub fn container_name(root: &Path, service: &str, replica: u32) -> String {
    format!("kiln-{}-{service}-{replica}", project_ref(root))
}

/// Who holds a container name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameHolder {
    /// No container has it.
    Nobody,
    /// A container of this project (a leftover, or the one just started).
    Project,
    /// A container kiln did not start for this project: it is not ours to replace or remove.
    Foreign,
}

impl NameHolder {
    /// The engine's arguments that ask for the `kiln.project` label of the container `name`.
    pub fn query(name: &str) -> Vec<String> {
        let format = format!("{{{{index .Config.Labels \"{PROJECT_LABEL}\"}}}}");
        ["container", "inspect", "--format", &format, name].map(str::to_string).to_vec()
    }

    /// What the answer to [`NameHolder::query`] says: a failure is no such container (any
    /// other trouble the start itself reports); a container without the label prints an
    /// empty line (podman) or `<no value>` (docker).
    pub fn of(answer: Option<&str>, project: &str) -> NameHolder {
        match answer.map(str::trim) {
            None => NameHolder::Nobody,
            Some(label) if label == project => NameHolder::Project,
            Some(_) => NameHolder::Foreign,
        }
    }
}

/// Why a replica cannot start when its name is held by a foreign container.
pub fn name_taken_message(engine: &Engine, name: &str, service: &str) -> String {
    format!(
        "container name {name} is taken by a container not started by this project; remove it with `{} rm -f {name}` \
         or rename the service `{service}`",
        engine.name()
    )
}

/// Quotes words for `sh -c`.
pub fn shell_join(words: &[String]) -> String {
    words.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '@'));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// The words of a command for an exec form: split on whitespace when it needs no shell
/// (an image built `FROM scratch` may have none), `sh -c CMD` otherwise.
pub fn exec_words(cmd: &str) -> Vec<String> {
    let needs_shell = cmd.chars().any(|c| "|&;<>()$`\\\"'*?[]#~=%{}\n".contains(c));
    if needs_shell {
        vec!["sh".into(), "-c".into(), cmd.to_string()]
    } else {
        cmd.split_whitespace().map(str::to_string).collect()
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_and_quoting() {
        let spec = ImageSpec {
            name: "localhost/demo-api".into(),
            context: "api".into(),
            file: None,
            stage: Some("debug".into()),
            args: [("VERSION".to_string(), "1 2".to_string())].into(),
        };
        let key = Digest::of_bytes(b"k");
        assert_eq!(image_tag(&spec, &key), format!("localhost/demo-api:kiln-{}", &key.hex()[..12]));
        let engine = Engine { kind: EngineKind::Podman, program: "/usr/bin/podman".into() };
        assert_eq!(
            engine.build_command(&spec, "x:kiln-1", Path::new("/nonexistent"), Path::new("/p/.kiln/state/x.iid")),
            "/usr/bin/podman build --iidfile /p/.kiln/state/x.iid -f api/Dockerfile --target debug --build-arg 'VERSION=1 2' -t x:kiln-1 api"
        );
        let id = project_id(Path::new("/w/My Project"));
        assert_eq!(container_name(Path::new("/w/My Project"), "api", 1), format!("kiln-my-project-{}-api-1", &id[..8]));
        assert_eq!(exec_words("pg_isready -h 127.0.0.1"), vec!["pg_isready", "-h", "127.0.0.1"]);
        assert_eq!(exec_words("test -f /tmp/ready && true")[..2], ["sh", "-c"]);
        assert_ne!(project_id(Path::new("/a/demo")), project_id(Path::new("/b/demo")));
    }

    #[test]
    fn two_checkouts_with_the_same_directory_name_get_different_container_names() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [&a, &b] {
            std::fs::create_dir(d.path().join("app")).unwrap();
        }
        let (a, b) = (a.path().join("app"), b.path().join("app"));
        let (na, nb) = (container_name(&a, "web", 0), container_name(&b, "web", 0));
        assert_ne!(na, nb);
        assert!(na.starts_with("kiln-app-") && na.ends_with("-web-0"), "{na}");
        // Every spelling of one root is one project: `..`, a symlink.
        let spelled = a.join("..").join("app");
        assert_eq!(container_name(&spelled, "web", 0), na);
        assert_eq!(project_id(&spelled), project_id(&a));
        let link = b.parent().unwrap().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert_eq!(container_name(&link, "web", 0), na);
        assert!(na.contains(&project_id(&a)[..8]), "the label's digest: {na}");
    }

    #[test]
    fn a_name_held_without_this_projects_label_is_foreign() {
        assert_eq!(NameHolder::of(None, "p1"), NameHolder::Nobody);
        assert_eq!(NameHolder::of(Some("p1\n"), "p1"), NameHolder::Project);
        assert_eq!(NameHolder::of(Some("\n"), "p1"), NameHolder::Foreign, "podman: no label");
        assert_eq!(NameHolder::of(Some("<no value>\n"), "p1"), NameHolder::Foreign, "docker: no label");
        assert_eq!(NameHolder::of(Some("p2\n"), "p1"), NameHolder::Foreign, "another project");
        assert_eq!(NameHolder::query("n")[3], "{{index .Config.Labels \"kiln.project\"}}");
        let engine = Engine { kind: EngineKind::Podman, program: "/usr/bin/podman".into() };
        assert_eq!(
            name_taken_message(&engine, "kiln-app-1-web-0", "web"),
            "container name kiln-app-1-web-0 is taken by a container not started by this project; remove it with \
             `podman rm -f kiln-app-1-web-0` or rename the service `web`"
        );
    }
}
