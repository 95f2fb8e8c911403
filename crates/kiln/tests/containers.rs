//! Image targets and container services against a real engine: podman, and the docker CLI
//! talking to podman's Docker-compatible service. Images are built `FROM scratch` from
//! Debian's static busybox; nothing is pulled. Without a working podman these tests fail
//! and say what to install.

mod common;
use common::{Project, Up, wait_until};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Runs podman, panicking with what to install when it is missing.
fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).output().unwrap_or_else(|e| {
        panic!("podman is needed for these tests ({e}): run `bash scripts/install-deps.sh` (apt-get install podman runc busybox-static)")
    })
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image_exists(reference: &str) -> bool {
    podman(&["image", "exists", reference]).status.success()
}

fn image_id(reference: &str) -> String {
    podman_ok(&["image", "inspect", "--format", "{{.Id}}", reference]).trim().trim_start_matches("sha256:").to_string()
}

/// Names of containers carrying `label=value`, running or not.
fn containers_with(label: &str) -> Vec<String> {
    let out = podman_ok(&["ps", "-a", "--filter", &format!("label={label}"), "--format", "{{.Names}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn container_id(name: &str) -> String {
    podman_ok(&["inspect", "--format", "{{.Id}}", name]).trim().to_string()
}

/// A test's image repository: `localhost/kiln-test-<test>-<unique>`.
struct Images(String);

/// Removes the images earlier runs of these tests left, once, before any test builds:
/// podman 4.3 fails builds that look for cached layers while another client removes
/// images, so nothing is removed while tests run.
fn remove_old_test_images() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out =
            podman(&["images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=localhost/kiln-test-*"]);
        let tags: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !tags.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(tags.iter().map(String::as_str));
            let _ = podman(&args);
        }
        // The build cache's intermediate images of those runs: every test image starts with
        // a `kiln.test` label, so nobody else's images match.
        let out = podman(&["images", "-q", "--filter", "dangling=true", "--filter", "label=kiln.test"]);
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let mut args = vec!["rmi"];
            args.extend(ids.iter().map(String::as_str));
            let _ = podman(&args);
        }
    });
}

/// Removes a test project's containers when dropped: when a test fails, its `kiln up` is
/// killed with SIGKILL and they would be left running, holding their ports.
struct Containers(String);

impl Containers {
    fn of(p: &Project) -> Containers {
        Containers(format!("kiln-{}-", base(p)))
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let out = podman(&["ps", "-a", "--filter", &format!("name=^{}", self.0), "--format", "{{.Names}}"]);
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(names.iter().map(String::as_str));
            let _ = podman(&args);
        }
        common::remove_networks_named(&self.0);
    }
}

/// A unique image repository for one test.
fn repo(test: &str) -> Images {
    remove_old_test_images();
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    Images(format!("localhost/kiln-test-{test}-{n:x}"))
}

/// An image context with busybox: `production` serves /www over HTTP on 8080, `debug` is the
/// same with `MODE=debug`. The label makes every layer this test's own: tests run side by
/// side, and one removing its images must not take layers another is building on.
fn write_context(p: &Project, images: &Images) {
    write_context_at(p, "app", images);
}

/// [`write_context`] at `dir` (root-relative).
fn write_context_at(p: &Project, dir: &str, images: &Images) {
    std::fs::create_dir_all(p.path(dir)).expect("mkdir");
    std::fs::copy("/bin/busybox", p.path(&format!("{dir}/busybox")))
        .expect("/bin/busybox (Debian's busybox-static) is needed: apt-get install busybox-static");
    p.write(
        &format!("{dir}/Containerfile"),
        &format!("FROM scratch AS base\nLABEL kiln.test={}\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         COPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
         FROM base AS production\nENV MODE=production\n\
         FROM base AS debug\nENV MODE=debug\n",
            images.0
        ),
    );
    p.write(&format!("{dir}/www/index.html"), "v1\n");
    p.write(&format!("{dir}/.containerignore"), "*.md\n");
}

fn image_target(name: &str) -> String {
    format!(
        "[settings]\ndebounce = \"50ms\"\n\n[target.img]\nimage = {{ name = \"{name}\", context = \"app\", stage = \"production\", args = {{ GREETING = \"hi\" }} }}\n"
    )
}

fn finished(run: &common::Run, target: &str) -> (String, String) {
    run.finished()
        .into_iter()
        .find(|(t, _, _)| t == target)
        .map(|(_, s, r)| (s, r))
        .unwrap_or_else(|| panic!("no target.finished for {target}:\n{}\n{}", run.stdout, run.stderr))
}

fn key_of(run: &common::Run, target: &str) -> String {
    run.events()
        .iter()
        .find(|e| e["type"] == "target.finished" && e["target"] == target)
        .and_then(|e| e["key"].as_str())
        .unwrap_or_else(|| panic!("no key for {target}"))
        .to_string()
}

#[test]
fn image_target_is_tagged_by_key_fresh_while_the_tag_exists_and_keyed_on_its_context() {
    let images = repo("key");
    let p = Project::new(&image_target(&images.0));
    write_context(&p, &images);

    let first = p.build(&[]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(finished(&first, "img").0, "built");
    let key = key_of(&first, "img");
    let tag = format!("{}:kiln-{}", images.0, &key[..12]);
    assert!(image_exists(&tag), "the image is tagged NAME:kiln-<12 hex of the key>: {tag}");
    let streamed = first.events().iter().any(|e| {
        e["type"] == "target.output"
            && e["target"] == "img"
            && e["line"].as_str().is_some_and(|l| l.contains("COPY www /www"))
    });
    assert!(streamed, "build output streams as target.output:\n{}", first.stdout);
    assert!(podman_ok(&["image", "inspect", "--format", "{{.Config.Env}}", &tag]).contains("MODE=production"));

    // Unchanged, touched, or changed only in what the ignore file leaves out: nothing runs.
    assert_eq!(finished(&p.build(&[]), "img").0, "fresh");
    let mtime = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options().write(true).open(p.path("app/www/index.html")).unwrap().set_modified(mtime).unwrap();
    assert_eq!(finished(&p.build(&[]), "img").0, "fresh");
    p.write("app/NOTES.md", "not in the context\n");
    assert_eq!(finished(&p.build(&[]), "img").0, "fresh");

    // The context, the Containerfile, args and stage are in the key.
    p.write("app/www/index.html", "v2\n");
    let (status, reason) = finished(&p.build(&[]), "img");
    assert_eq!((status.as_str(), reason.as_str()), ("built", "app/www/index.html changed"));
    let containerfile = p.read("app/Containerfile");
    p.write("app/Containerfile", &format!("{containerfile}# a comment\n"));
    assert_eq!(finished(&p.build(&[]), "img"), ("built".to_string(), "app/Containerfile changed".to_string()));
    p.write("kiln.toml", &image_target(&images.0).replace("\"hi\"", "\"hello\""));
    let explain = p.kiln(&["explain", "img"]);
    assert!(explain.stdout.contains("would run: image definition changed"), "{}", explain.stdout);
    assert!(
        explain.stdout.contains("\"hi\"") && explain.stdout.contains("\"hello\""),
        "was and now: {}",
        explain.stdout
    );
    assert_eq!(finished(&p.build(&[]), "img"), ("built".to_string(), "image definition changed".to_string()));
    p.write("kiln.toml", &image_target(&images.0).replace("\"hi\"", "\"hello\"").replace("production", "debug"));
    let debug = p.build(&[]);
    assert_eq!(finished(&debug, "img").0, "built");
    let debug_tag = format!("{}:kiln-{}", images.0, &key_of(&debug, "img")[..12]);
    assert!(podman_ok(&["image", "inspect", "--format", "{{.Config.Env}}", &debug_tag]).contains("MODE=debug"));

    // A removed tag is rebuilt (and `explain` says why, as the build does); going back to
    // content the engine still has is not.
    assert!(podman(&["rmi", &debug_tag]).status.success());
    let explain = p.kiln(&["explain", "img"]);
    assert!(
        explain.stdout.contains(&format!("would run: image {debug_tag} is no longer in podman")),
        "{}",
        explain.stdout
    );
    let (status, reason) = finished(&p.build(&[]), "img");
    assert_eq!(status, "built");
    assert_eq!(reason, format!("image {debug_tag} is no longer in podman"));
    p.write("kiln.toml", &image_target(&images.0).replace("\"hi\"", "\"hello\""));
    let (status, reason) = finished(&p.build(&[]), "img");
    assert_eq!(status, "cached", "{reason}");
    assert!(reason.contains("podman already has image"), "{reason}");
}

#[test]
fn the_image_id_is_the_output_digest_so_dependents_cut_off_early() {
    let images = repo("cutoff");
    let config =
        format!("{}\n[target.after]\ncmd = \"echo ran >> runs.txt\"\ndeps = [\"img\"]\n", image_target(&images.0));
    let p = Project::new(&config);
    write_context(&p, &images);
    let first = p.build(&[]);
    assert_eq!(first.with_status("built"), vec!["after", "img"], "{}", first.stderr);
    let tag = format!("{}:kiln-{}", images.0, &key_of(&first, "img")[..12]);
    let state: Value = serde_json::from_str(&p.read(".kiln/state/targets.json")).expect("state JSON");
    let recorded = state["targets"]["img"]["output_digest"].as_str().expect("output digest").to_string();
    assert_eq!(recorded, image_id(&tag), "the image ID is the output digest");

    // A Containerfile comment changes the key, but the engine's layer cache gives the same
    // image: the dependent does not run.
    let containerfile = p.read("app/Containerfile");
    p.write("app/Containerfile", &format!("# only a comment\n{containerfile}"));
    let second = p.build(&[]);
    assert_eq!(finished(&second, "img").0, "built");
    assert_eq!(finished(&second, "after").0, "fresh", "{}", second.stdout);
    assert_eq!(p.read("runs.txt"), "ran\n");

    // A real change reaches it.
    p.write("app/www/index.html", "v2\n");
    let third = p.build(&[]);
    assert_eq!(third.with_status("built"), vec!["after", "img"]);
}

#[test]
fn without_an_engine_image_targets_and_container_services_fail_saying_what_to_install() {
    // A PATH with a shell and nothing else: no podman, no docker.
    let bin = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink("/bin/sh", bin.path().join("sh")).expect("symlink");
    let p = Project::new(
        "[target.tool]\ncmd = \"echo ok > tool.txt\"\noutputs = [\"tool.txt\"]\n\n\
         [target.img]\nimage = { name = \"localhost/kiln-test-none\", context = \"app\" }\n\n\
         [service.web]\nimage = \"img\"\n\n[service.other]\nimage = \"docker.io/library/busybox\"\n",
    );
    p.write("app/Containerfile", "FROM scratch\n");
    let tool = Run::of(p.command(&["--json", "build", "tool"]).env("PATH", bin.path()));
    assert_eq!((tool.code, finished(&tool, "tool").0.as_str()), (0, "built"), "everything else works");
    let run = Run::of(p.command(&["--json", "build", "--keep-going"]).env("PATH", bin.path()));
    assert_eq!(run.code, 1);
    assert_eq!(finished(&run, "tool").0, "fresh");
    let (status, reason) = finished(&run, "img");
    assert_eq!(status, "failed");
    assert!(reason.contains("no container engine found") && reason.contains("apt-get install podman"), "{reason}");

    let explicit = Run::of(p.command(&["--json", "--engine", "docker", "build", "img"]).env("PATH", bin.path()));
    let (_, reason) = finished(&explicit, "img");
    assert!(reason.contains("`docker`") && reason.contains("install the docker CLI"), "{reason}");

    // A service on an external image has no build to fail, and fails itself.
    let _containers = Containers::of(&p);
    let mut up = Up::start_with(&p, &["other"], |c| {
        c.env("PATH", bin.path());
    });
    let failed = up.wait_for("other failed", |e| e["type"] == "service.phase" && e["service"] == "other");
    assert_eq!(failed["phase"], "failed");
    assert!(failed["reason"].as_str().unwrap_or("").contains("apt-get install podman"), "{failed}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

use common::Run;

const SERVICE: &str = r#"
[settings]
debounce = "50ms"

[target.img]
image = { name = "NAME", context = "app", stage = "production" }

[service.web]
image = "img"
replicas = 2
ports = ["PORT${KILN_REPLICA}:8080"]
env = { GREETING = "hello" }
volumes = ["./data:/data"]
command = "sh -c 'echo $GREETING from $KILN_REPLICA > /data/hello-$KILN_REPLICA; echo serving; exec httpd -f -p 8080 -h /www'"
stop_signal = "SIGKILL"
ready = { http = "http://127.0.0.1:PORT${KILN_REPLICA}/index.html", period = "100ms" }
"#;

fn service_project(images: &Images, port: u16) -> Project {
    let p = Project::new(&SERVICE.replace("NAME", &images.0).replace("PORT", &port.to_string()));
    write_context(&p, images);
    std::fs::create_dir_all(p.path("data")).expect("mkdir data");
    p
}

fn phase(e: &Value, service: &str, replica: u64, phase: &str) -> bool {
    e["type"] == "service.phase" && e["service"] == service && e["replica"] == replica && e["phase"] == phase
}

/// The project part of container names: the root's directory name as kiln cleans it and
/// the digest of the root, `<dir>-<digest>` in `kiln-<dir>-<digest>-<service>-<replica>`.
fn base(p: &Project) -> String {
    let name = kiln_engine::container_name(p.root(), "s", 0);
    let base = name.strip_prefix("kiln-").and_then(|n| n.strip_suffix("-s-0")).expect("kiln-…-s-0").to_string();
    let dir = p.root().file_name().expect("a temporary directory has a name").to_string_lossy().to_lowercase();
    assert!(base.starts_with(dir.trim_start_matches('.')), "{base}");
    base
}

fn project_label(up_containers: &[String]) -> String {
    let label = podman_ok(&["inspect", "--format", "{{index .Config.Labels \"kiln.project\"}}", &up_containers[0]]);
    format!("kiln.project={}", label.trim())
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

#[test]
fn container_service_runs_replicas_with_ports_env_volumes_labels_and_rolls_on_a_new_image() {
    let images = repo("svc");
    let port = 1852;
    let p = service_project(&images, port);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));

    // Names, labels, restart policy off, ports, env, volumes, command, logs followed.
    let names = vec![format!("kiln-{}-web-0", base(&p)), format!("kiln-{}-web-1", base(&p))];
    let label = project_label(&names);
    assert_eq!(containers_with(&label), names);
    assert_eq!(containers_with("kiln.service=web").iter().filter(|n| names.contains(n)).count(), 2);
    let policy = podman_ok(&["inspect", "--format", "{{.HostConfig.RestartPolicy.Name}}", &names[0]]);
    assert!(matches!(policy.trim(), "" | "no"), "the engine restarts nothing: {policy}");
    assert_eq!(http_get(18520, "/index.html").as_deref(), Some("v1\n"));
    assert_eq!(http_get(18521, "/index.html").as_deref(), Some("v1\n"));
    assert_eq!(p.read("data/hello-1"), "hello from 1\n", "env, volume and command");
    up.wait_seen("output followed", |e| e["type"] == "service.output" && e["line"] == "serving");
    let first_tag = up.wait_seen("image", |e| phase(e, "web", 0, "ready"))["image"].as_str().unwrap().to_string();
    assert!(first_tag.starts_with(&format!("{}:kiln-", images.0)), "{first_tag}");

    // `kiln status`: `web  ready  2/2 replicas  image NAME:kiln-xxxx…`.
    let status = p.kiln(&["status"]);
    let line = status.stdout.lines().find(|l| l.starts_with("web ")).expect("web in status").to_string();
    let short = format!(
        "image {}:kiln-{}…",
        images.0.rsplit('/').next().unwrap(),
        &first_tag.rsplit("kiln-").next().unwrap()[..4]
    );
    assert!(line.contains("ready") && line.contains("2/2 replicas") && line.contains(&short), "{line}");

    // A new image replaces the containers one at a time.
    let old_ids: Vec<String> = names.iter().map(|n| container_id(n)).collect();
    p.write("app/www/index.html", "v2\n");
    up.wait_for("web[1] stopping", |e| phase(e, "web", 1, "stopping"));
    up.wait_for("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let at = |pred: &dyn Fn(&Value) -> bool| up.seen.iter().position(pred).expect("seen");
    let built = at(&|e| e["type"] == "target.finished" && e["target"] == "img" && e["status"] == "built");
    let stop0 = at(&|e| phase(e, "web", 0, "stopping"));
    let ready0 = up.seen.iter().enumerate().skip(stop0).find(|(_, e)| phase(e, "web", 0, "ready")).expect("ready0").0;
    let stop1 = at(&|e| phase(e, "web", 1, "stopping"));
    assert!(built < stop0 && stop0 < ready0 && ready0 < stop1, "rolling:\n{}", up.dump());
    assert_eq!(http_get(18520, "/index.html").as_deref(), Some("v2\n"), "{}", up.dump());
    assert_eq!(http_get(18521, "/index.html").as_deref(), Some("v2\n"));
    let new_ids: Vec<String> = names.iter().map(|n| container_id(n)).collect();
    assert!(old_ids.iter().all(|o| !new_ids.contains(o)), "containers replaced: {old_ids:?} {new_ids:?}");
    let new_tag =
        up.seen.iter().rev().find(|e| phase(e, "web", 1, "ready")).unwrap()["image"].as_str().unwrap().to_string();
    assert_ne!(new_tag, first_tag);

    // Ctrl-C stops and removes them.
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(containers_with(&label).is_empty(), "{:?}", containers_with(&label));
}

#[test]
fn probes_run_from_the_host_and_inside_the_container_and_crashes_back_off() {
    let images = repo("probes");
    let marker = format!("ready-{}", images.0.rsplit('-').next().unwrap());
    let p = Project::new(&format!(
        r#"
[target.img]
image = {{ name = "{}", context = "app", stage = "production" }}

[service.http]
image = "img"
ports = ["18530:8080"]
stop_signal = "SIGKILL"
ready = {{ http = "http://127.0.0.1:18530/index.html", period = "100ms" }}

[service.tcp]
image = "img"
ports = ["18531:8080"]
stop_signal = "SIGKILL"
ready = {{ tcp = "127.0.0.1:18531", period = "100ms" }}

[service.inside]
image = "img"
command = "sh -c 'sleep 1; mkdir -p /tmp; touch /tmp/{marker}; exec sleep 1000'"
stop_signal = "SIGKILL"
ready = {{ cmd = "test -f /tmp/{marker}", period = "100ms" }}

[service.logs]
image = "img"
command = "sh -c 'echo warming up; sleep 0.5; echo accepting connections; exec sleep 1000'"
stop_signal = "SIGKILL"
ready = {{ log = "accepting connections" }}

[service.crash]
image = "img"
command = "sh -c 'echo crashing; exit 3'"

[service.external]
image = "{}:external"
command = "sh -c 'echo external image up; exec sleep 1000'"
stop_signal = "SIGKILL"
ready = {{ log = "external image up" }}
"#,
        images.0,
        images.0,
        marker = marker
    ));
    write_context(&p, &images);
    // An image reference kiln does not build.
    let app = p.path("app");
    podman_ok(&[
        "build",
        "-q",
        "--target",
        "production",
        "-t",
        &format!("{}:external", images.0),
        &app.to_string_lossy(),
    ]);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    for service in ["http", "tcp", "inside", "logs", "external"] {
        let ready = up.wait_seen(service, |e| phase(e, service, 0, "ready"));
        let by_log = matches!(service, "logs" | "external");
        assert!(ready["reason"].as_str().unwrap_or("").contains(if by_log { "log probe" } else { "probe passed" }));
    }
    // The `cmd` probe ran in the container: the file it tests exists there, not on the host.
    assert!(!std::path::Path::new("/tmp").join(&marker).exists());
    let inside_started = up.seen.iter().position(|e| phase(e, "inside", 0, "starting")).unwrap();
    let inside_ready = up.seen.iter().position(|e| phase(e, "inside", 0, "ready")).unwrap();
    assert!(inside_started < inside_ready);

    let first = up.wait_seen("crash backoff 1", |e| phase(e, "crash", 0, "backoff"));
    assert_eq!(first["next_try_ms"].as_u64().map(|ms| ms / 100), Some(10), "{first}");
    assert!(first["reason"].as_str().unwrap_or("").contains("exited with code 3"), "{first}");
    let second = up.wait_seen("crash backoff 2", |e| phase(e, "crash", 0, "backoff") && e["restarts"] == 2);
    let next = second["next_try_ms"].as_u64().unwrap_or(0);
    assert!((2000..=2200).contains(&next), "doubled, with at most 10 % jitter: {second}");
    assert!(up.count(|e| e["type"] == "service.output" && e["service"] == "crash" && e["line"] == "crashing") >= 2);
    let label = project_label(&[format!("kiln-{}-http-0", base(&p))]);
    let running = containers_with(&label);
    for s in ["external", "http", "inside", "logs", "tcp"] {
        assert!(running.contains(&format!("kiln-{}-{s}-0", base(&p))), "{running:?}");
    }

    // `kiln down` from another terminal: `kiln up` stops its containers and exits cleanly.
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let status = up.child.wait().expect("kiln up exits");
    assert_eq!(status.code(), Some(0));
    assert!(containers_with(&label).is_empty(), "{:?}", containers_with(&label));
}

#[test]
fn after_sigkill_the_next_up_or_down_removes_this_projects_leftovers_and_nothing_else() {
    let images = repo("leftover");
    let p = service_project(&images, 1854);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    let base = base(&p);
    let ours = vec![format!("kiln-{base}-web-0"), format!("kiln-{base}-web-1")];
    let label = project_label(&ours);
    let tag = up.seen.iter().find(|e| phase(e, "web", 0, "ready")).unwrap()["image"].as_str().unwrap().to_string();

    // Containers that are not this project's: another project's label, and no label at all.
    let other = format!("kiln-{base}-foreign");
    let plain = format!("kiln-{base}-plain");
    podman_ok(&["run", "-d", "--name", &other, "--label", "kiln.project=someoneelse", &tag, "sleep", "1000"]);
    podman_ok(&["run", "-d", "--name", &plain, &tag, "sleep", "1000"]);

    up.child.kill().expect("kill -9");
    let _ = up.child.wait();
    assert_eq!(containers_with(&label), ours, "SIGKILL leaves the containers running");

    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains("removed 2 containers") && down.stdout.contains(&ours[0]), "{}", down.stdout);
    assert!(containers_with(&label).is_empty());
    let running = podman_ok(&["ps", "--format", "{{.Names}}"]);
    assert!(running.lines().any(|n| n == other) && running.lines().any(|n| n == plain), "others untouched: {running}");

    // The same through the next `kiln up`.
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    up.child.kill().expect("kill -9");
    let _ = up.child.wait();
    assert_eq!(containers_with(&label).len(), 2);
    let mut again = Up::start(&p, &[]);
    let notice = again.wait_seen("leftover notice", |e| e["type"] == "run.notice");
    assert!(notice["message"].as_str().unwrap_or("").contains("removed 2 containers"), "{notice}");
    again.wait_for("web[0] ready", |e| phase(e, "web", 0, "ready"));
    let (code, _) = again.stop();
    assert_eq!(code, 130);
    assert!(containers_with(&label).is_empty());
    let running = podman_ok(&["ps", "--format", "{{.Names}}"]);
    assert!(running.lines().any(|n| n == other) && running.lines().any(|n| n == plain));
    podman_ok(&["rm", "-f", "-t", "0", &other, &plain]);
}

/// `podman system service` on a socket of its own, stopped when dropped.
struct DockerApi {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl DockerApi {
    fn start() -> DockerApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("docker.sock");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0", &format!("unix://{}", sock.display())])
            .spawn()
            .expect("podman system service starts (apt-get install podman)");
        assert!(wait_until(Duration::from_secs(10), || sock.exists()), "podman's Docker API socket did not appear");
        DockerApi { child, dir }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }
}

impl Drop for DockerApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_docker_cli_path_builds_runs_and_cleans_up_through_docker_host() {
    assert!(
        Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the docker CLI is needed for the docker path: apt-get install docker.io (only its client is used)"
    );
    let api = DockerApi::start();
    let images = repo("docker");
    let p = service_project(&images, 1856);
    let _containers = Containers::of(&p);
    let with_docker = |c: &mut Command| {
        c.env("DOCKER_HOST", api.host());
    };
    let mut build = p.command(&["--json", "--engine", "docker", "build"]);
    with_docker(&mut build);
    let run = Run::of(&mut build);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let key = key_of(&run, "img");
    let tag = format!("{}:kiln-{}", images.0, &key[..12]);
    assert!(image_exists(&tag), "built through docker into podman's store");
    let mut again = p.command(&["--json", "--engine", "docker", "build"]);
    with_docker(&mut again);
    assert_eq!(finished(&Run::of(&mut again), "img").0, "fresh");

    // `auto` prefers podman, and takes docker when podman is not on PATH.
    let docker_said = |run: &Run| {
        run.events()
            .iter()
            .any(|e| e["type"] == "target.output" && e["line"].as_str().is_some_and(|l| l.contains("legacy builder")))
    };
    p.write("app/www/index.html", "auto, both on PATH\n");
    let both = Run::of(&mut p.command(&["--json", "build"]));
    assert_eq!(finished(&both, "img").0, "built");
    assert!(!docker_said(&both), "auto took podman:\n{}", both.stdout);
    let bin = tempfile::tempdir().expect("tempdir");
    for tool in ["sh", "docker"] {
        let real = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().expect("sh");
        let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
        std::os::unix::fs::symlink(&real, bin.path().join(tool)).expect("symlink");
    }
    p.write("app/www/index.html", "auto, docker only\n");
    let mut only_docker = p.command(&["--json", "build"]);
    with_docker(&mut only_docker);
    let only_docker = Run::of(only_docker.env("PATH", bin.path()));
    assert_eq!(finished(&only_docker, "img").0, "built", "{}", only_docker.stderr);
    assert!(docker_said(&only_docker), "auto took docker:\n{}", only_docker.stdout);
    p.write("app/www/index.html", "v1\n");

    let mut up = Up::start_with(&p, &["--engine", "docker"], with_docker);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    assert_eq!(http_get(18560, "/index.html").as_deref(), Some("v1\n"));
    let label = project_label(&[format!("kiln-{}-web-0", base(&p))]);
    p.write("app/www/index.html", "v2\n");
    up.wait_for("web[1] rolled", |e| phase(e, "web", 1, "stopping"));
    up.wait_for("web[1] ready", |e| phase(e, "web", 1, "ready"));
    assert_eq!(http_get(18561, "/index.html").as_deref(), Some("v2\n"));

    // SIGKILL, then `kiln down` through docker.
    up.child.kill().expect("kill -9");
    let _ = up.child.wait();
    assert_eq!(containers_with(&label).len(), 2);
    let mut down = p.command(&["--engine", "docker", "down"]);
    with_docker(&mut down);
    let down = Run::of(&mut down);
    assert!(down.stdout.contains("removed 2 containers"), "{}\n{}", down.stdout, down.stderr);
    assert!(containers_with(&label).is_empty());
}

#[test]
fn plugins_containers_example_rebuilds_only_what_an_edit_reaches() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins-containers");
    let p = Project::new("");
    copy_tree(&example, p.root());
    let _ = std::fs::remove_dir_all(p.path(".kiln"));
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    for s in ["postgres", "kafka", "redis"] {
        up.wait_seen(s, |e| phase(e, s, 0, "ready"));
    }
    assert!(http_get(18431, "/").unwrap_or_default().contains("postgres plugin"));
    let ids = || -> Vec<String> {
        ["postgres", "kafka", "redis"].iter().map(|s| container_id(&format!("kiln-{}-{s}-0", base(&p)))).collect()
    };
    let before = ids();

    // One plugin: its binary and image, its container. (An image the engine still has from
    // an earlier run of this test is `cached`: tagged by key, it needs no build.)
    let made = |up: &Up, from: usize| -> Vec<String> {
        let mut v: Vec<String> = up.seen[from..]
            .iter()
            .filter(|e| e["type"] == "target.finished" && matches!(e["status"].as_str(), Some("built" | "cached")))
            .map(|e| e["target"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    up.settled(&p, "core/core.h");
    let seen = up.seen.len();
    let src = p.read("plugins/redis/plugin.c").replace("cache warm", "cache hot");
    p.write("plugins/redis/plugin.c", &src);
    up.wait_for("redis ready", |e| phase(e, "redis", 0, "ready"));
    up.settled(&p, "core/core.h");
    assert_eq!(made(&up, seen), vec!["redis", "redis-image"]);
    let after = ids();
    assert_eq!((before[0] == after[0], before[1] == after[1], before[2] == after[2]), (true, true, false));
    assert!(http_get(18433, "/").unwrap_or_default().contains("cache hot"));

    // A touch rebuilds nothing.
    let runs = up.runs();
    let now = std::time::SystemTime::now() + Duration::from_secs(3);
    std::fs::File::options().write(true).open(p.path("core/core.c")).unwrap().set_modified(now).unwrap();
    up.wait_for("unchanged", |e| e["type"] == "watch.unchanged");
    assert_eq!(up.runs(), runs);

    // Core: all three.
    let seen = up.seen.len();
    let core = p.read("core/core.c").replace("core 1.0", "core 1.1");
    p.write("core/core.c", &core);
    for s in ["postgres", "kafka", "redis"] {
        if !up.seen[seen..].iter().any(|e| phase(e, s, 0, "ready")) {
            up.wait_for(s, |e| phase(e, s, 0, "ready"));
        }
    }
    assert_eq!(made(&up, seen), ["core", "kafka", "kafka-image", "postgres", "postgres-image", "redis", "redis-image"]);
    let last = ids();
    assert!(after.iter().zip(&last).all(|(a, b)| a != b), "every container replaced");
    assert!(http_get(18432, "/").unwrap_or_default().contains("core 1.1"));
    let (code, _) = up.stop();
    assert_eq!(code, 130);

    // `--profile debug` builds every image's debug stage.
    let debug = p.kiln(&["--json", "--profile", "debug", "build"]);
    let mut images: Vec<String> = debug.with_status("built");
    images.extend(debug.with_status("cached"));
    images.sort();
    assert_eq!(images, vec!["kafka-image", "postgres-image", "redis-image"], "{}", debug.stderr);
    assert_eq!(debug.with_status("fresh"), vec!["core", "kafka", "postgres", "redis"]);
    for t in ["kafka-image", "postgres-image", "redis-image"] {
        let name = format!("localhost/kiln-demo-{}", t.trim_end_matches("-image"));
        let tag = format!("{name}:kiln-{}", &key_of(&debug, t)[..12]);
        assert!(podman_ok(&["image", "inspect", "--format", "{{.Config.Env}}", &tag]).contains("PLUGIN_DEBUG=1"));
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == ".kiln" || name == "out" || name == "build" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn editing_a_container_service_in_kiln_toml_restarts_it_with_the_new_settings() {
    let images = repo("reload");
    let p = service_project(&images, 1858);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web[0] ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready", |e| phase(e, "web", 1, "ready"));
    assert_eq!(http_get(18580, "/index.html").as_deref(), Some("v1\n"));

    let config = p.read("kiln.toml").replace("1858${KILN_REPLICA}", "1859${KILN_REPLICA}");
    p.write("kiln.toml", &config);
    let reloaded = up.wait_for("config.reloaded", |e| e["type"] == "config.reloaded");
    assert_eq!(reloaded["services_changed"], serde_json::json!(["web"]), "{reloaded}");
    up.wait_for("web[0] ready again", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("web[1] ready again", |e| phase(e, "web", 1, "ready") && e["seq"].as_u64() > reloaded["seq"].as_u64());
    assert_eq!(http_get(18590, "/index.html").as_deref(), Some("v1\n"));
    assert_eq!(http_get(18591, "/index.html").as_deref(), Some("v1\n"));
    assert_eq!(http_get(18580, "/index.html"), None, "the old port is closed");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

const TWIN: &str = r#"
[settings]
debounce = "50ms"

[target.img]
image = { name = "NAME", context = "app", stage = "production" }

[service.web]
image = "img"
command = "sh -c 'echo serving; exec httpd -f -p 8080 -h /www'"
stop_signal = "SIGKILL"
ready = { log = "serving" }
"#;

#[test]
fn two_checkouts_with_the_same_directory_name_run_their_containers_side_by_side() {
    let images = repo("twins");
    let p = Project::new("");
    // `/…/a/twin-N` and `/…/b/twin-N`: the same directory name, two projects.
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = format!("twin{n:x}");
    let roots = [format!("a/{dir}"), format!("b/{dir}")];
    let mut guards = Vec::new();
    for root in &roots {
        p.write(&format!("{root}/kiln.toml"), &TWIN.replace("NAME", &images.0));
        write_context_at(&p, &format!("{root}/app"), &images);
        guards.push(Containers(format!("kiln-{dir}-")));
    }
    let start = |root: &str| {
        Up::start_with(&p, &[], |c| {
            c.current_dir(p.path(root));
        })
    };
    let mut a = start(&roots[0]);
    a.wait_for("a's web ready", |e| phase(e, "web", 0, "ready"));
    let mut b = start(&roots[1]);
    b.wait_for("b's web ready", |e| phase(e, "web", 0, "ready"));
    let names: Vec<String> = roots.iter().map(|r| kiln_engine::container_name(&p.path(r), "web", 0)).collect();
    assert_ne!(names[0], names[1]);
    let running = podman_ok(&["ps", "--filter", &format!("name=^kiln-{dir}-"), "--format", "{{.Names}}"]);
    let mut running: Vec<&str> = running.lines().collect();
    running.sort();
    let mut want: Vec<&str> = names.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(running, want, "both run");
    assert!(names.iter().all(|n| n.starts_with(&format!("kiln-{dir}-")) && n.ends_with("-web-0")), "{names:?}");
    let labels: Vec<String> = names.iter().map(|n| project_label(std::slice::from_ref(n))).collect();
    assert_ne!(labels[0], labels[1]);
    assert!(
        b.seen.iter().all(|e| !(e["type"] == "service.phase" && e["service"] == "web" && e["phase"] == "backoff")),
        "b never backed off:\n{}",
        b.dump()
    );
    for up in [a, b] {
        let (code, _) = up.stop();
        assert_eq!(code, 130);
    }
    for label in &labels {
        assert!(containers_with(label).is_empty(), "each stopped its own");
    }
}

#[test]
fn a_container_name_taken_by_a_foreign_container_fails_the_service_and_leaves_that_container_alone() {
    let images = repo("taken");
    let p = Project::new(&format!(
        "[target.img]\nimage = {{ name = \"{}\", context = \"app\", stage = \"production\" }}\n\n\
         [service.web]\nimage = \"img\"\nrestart = \"always\"\nstop_signal = \"SIGKILL\"\n\
         command = \"sh -c 'echo serving; exec sleep 1000'\"\n",
        images.0
    ));
    write_context(&p, &images);
    let _containers = Containers::of(&p);
    let build = p.build(&["img"]);
    assert_eq!(build.code, 0, "{}\n{}", build.stdout, build.stderr);
    let tag = format!("{}:kiln-{}", images.0, &key_of(&build, "img")[..12]);
    // A container someone else started under the name kiln gives web[0]: no kiln.project label.
    let name = kiln_engine::container_name(p.root(), "web", 0);
    podman_ok(&["run", "-d", "--name", &name, &tag, "sleep", "1000"]);
    let foreign = container_id(&name);

    let mut up = Up::start(&p, &[]);
    // (`pending` while its image target is checked, then `starting`.)
    let failed = up.wait_for("web failed", |e| {
        e["type"] == "service.phase"
            && e["service"] == "web"
            && !matches!(e["phase"].as_str(), Some("starting" | "pending"))
    });
    assert_eq!(failed["phase"], "failed", "the first phase after starting is failed:\n{}", up.dump());
    assert_eq!(
        failed["reason"].as_str().unwrap_or_default(),
        format!(
            "container name {name} is taken by a container not started by this project; remove it with \
             `podman rm -f {name}` or rename the service `web`"
        )
    );
    let said = up.wait_seen("the reason in its output", |e| e["type"] == "service.output" && e["service"] == "web");
    assert!(said["line"].as_str().unwrap_or_default().contains("is taken by a container not started"), "{said}");
    assert_eq!(container_id(&name), foreign, "the other container is untouched");
    let state = podman_ok(&["inspect", "--format", "{{.State.Running}}", &name]);
    assert_eq!(state.trim(), "true", "and still running");
    let web = |phase: &str| up.count(|e| e["type"] == "service.phase" && e["service"] == "web" && e["phase"] == phase);
    assert_eq!((web("ready"), web("backoff")), (0, 0), "never ready, no backoff loop:\n{}", up.dump());

    // Doing what the message says, and `kiln trigger web`, starts it.
    podman_ok(&["rm", "-f", "-t", "0", &name]);
    let trigger = p.kiln(&["trigger", "web"]);
    assert_eq!(trigger.code, 0, "{}", trigger.stderr);
    up.wait_for("web ready", |e| phase(e, "web", 0, "ready"));
    // Without a probe, `ready` comes with the engine's client started: the container itself
    // follows a moment later.
    let ours = |n: &str| {
        let out = podman(&["inspect", "--format", "{{.Id}}", n]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() != foreign
    };
    assert!(wait_until(Duration::from_secs(30), || ours(&name)), "kiln's own container never took the name");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_container_whose_server_is_sigstopped_is_replaced_by_its_liveness_probe() {
    let images = repo("live");
    let p = Project::new(&format!(
        "[target.img]\nimage = {{ name = \"{}\", context = \"app\", stage = \"production\" }}\n\n\
         [service.web]\nimage = \"img\"\nports = [\"127.0.0.1:19473:8080\"]\nstop_timeout = \"1s\"\n\
         ready = {{ http = \"http://127.0.0.1:19473/\", period = \"100ms\" }}\n\
         live = {{ http = \"http://127.0.0.1:19473/\", period = \"100ms\", interval = \"300ms\", timeout = \"200ms\" }}\n",
        images.0
    ));
    write_context(&p, &images);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    let starting = up.wait_seen("starting", |e| phase(e, "web", 0, "starting"));
    let ready = up.wait_seen("ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("a passing liveness probe", |e| {
        e["type"] == "service.probed" && e["probe"] == "live" && e["ok"] == true
    });
    let started = up.wait_seen("its container named", |e| e["type"] == "service.started" && e["container"].is_string());
    let name = kiln_engine::container_name(p.root(), "web", 0);
    let first = container_id(&name);
    assert_eq!(started["container"].as_str(), Some(&first[..12]), "the short ID: {started}");
    assert_eq!(started["ports"], serde_json::json!(["127.0.0.1:19473:8080"]));
    let ps = p.kiln(&["ps"]);
    assert!(
        ps.stdout.lines().nth(1).is_some_and(|l| l.contains(&first[..12]) && l.contains("127.0.0.1:19473:8080")),
        "{}",
        ps.stdout
    );

    // The server (the container's pid 1) stops answering: SIGSTOP through the engine.
    let stopped_at = std::time::Instant::now();
    podman_ok(&["kill", "--signal", "SIGSTOP", &name]);
    let stopping = up.wait_for("the liveness restart", |e| phase(e, "web", 0, "stopping"));
    assert!(stopping["reason"].as_str().unwrap_or("").starts_with("liveness probe failed: "), "{stopping}");
    let restarted = up.wait_for("its restart, at once", |e| phase(e, "web", 0, "starting"));
    assert_eq!(restarted["restarts"], 1, "{restarted}");
    up.wait_for("ready again", |e| phase(e, "web", 0, "ready"));
    let back_in = stopped_at.elapsed();
    // interval × failures, `podman rm -f -t 1` of the stopped process (SIGKILL after the
    // stop timeout), the start time, and a margin (the first liveness restart has no backoff:
    // 1 s of the bound is spare).
    let start_ms = |e: &Value| e["ts"].as_str().map(ts_ms).expect("ts");
    let start_time = Duration::from_millis(start_ms(&ready).saturating_sub(start_ms(&starting)));
    let bound = Duration::from_millis(900 + 1000 + 1000) + start_time + Duration::from_secs(8);
    eprintln!("back and ready {back_in:?} after SIGSTOP (bound {bound:?}, start time {start_time:?})");
    assert!(back_in < bound, "back after {back_in:?}; bound {bound:?}\n{}", up.dump());
    assert_ne!(container_id(&name), first, "a new container");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// `2026-11-22T10:04:05.123Z` → milliseconds into the day.
fn ts_ms(ts: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<u64>().expect("a timestamp");
    ((n(11..13) * 60 + n(14..16)) * 60 + n(17..19)) * 1000 + n(20..23)
}

/// Regression: a foreign process held the published host port, the engine failed the
/// container (`address already in use`), and the readiness probe, run from the host,
/// reached that process and passed: `ready` with no container.
#[test]
fn a_published_port_held_by_another_process_fails_the_start_instead_of_passing_its_probe() {
    let images = repo("port-held");
    let p = Project::new(&format!(
        "[target.img]\nimage = {{ name = \"{}\", context = \"app\", stage = \"production\" }}\n\n\
         [service.web]\nimage = \"img\"\nrestart = \"never\"\nstop_signal = \"SIGKILL\"\n\
         ports = [\"127.0.0.1:19770:8080\"]\n\
         ready = {{ http = \"http://127.0.0.1:19770/index.html\", period = \"100ms\" }}\n",
        images.0
    ));
    write_context(&p, &images);
    let _containers = Containers::of(&p);
    // Another process answers HTTP on that port.
    let mut foreign = Command::new("python3")
        .args(["-m", "http.server", "19770", "--bind", "127.0.0.1"])
        .current_dir(p.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let listening = wait_until(Duration::from_secs(10), || std::net::TcpStream::connect("127.0.0.1:19770").is_ok());
    assert!(listening, "the foreign server never listened");

    let mut up = Up::start(&p, &[]);
    let ended = up.wait_for("web to leave starting", |e| {
        e["type"] == "service.phase"
            && e["service"] == "web"
            && !matches!(e["phase"].as_str(), Some("starting" | "pending"))
    });
    let _ = foreign.kill();
    let _ = foreign.wait();
    assert_eq!(ended["phase"], "failed", "{}", up.dump());
    assert_eq!(
        ended["reason"].as_str().unwrap_or_default(),
        "port 127.0.0.1:19770 (`ports` of service `web`) is already in use by another process: stop it, or change \
         `ports`; restart = \"never\"",
        "{ended}"
    );
    assert_eq!(up.count(|e| phase(e, "web", 0, "ready")), 0, "never ready:\n{}", up.dump());

    // With the port free, `kiln trigger web` starts it, and its own server answers.
    let trigger = p.kiln(&["trigger", "web"]);
    assert_eq!(trigger.code, 0, "{}", trigger.stderr);
    up.wait_for("web ready", |e| phase(e, "web", 0, "ready"));
    assert_eq!(http_get(19770, "/index.html").as_deref(), Some("v1\n"));
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// Regression: podman's own warnings were shown as the service's output: `run --replace`
/// (a restart) printed `level=warning msg="StopSignal SIGTERM failed to stop container …
/// resorting to SIGKILL"` at the start of the new attempt's log.
#[test]
fn podmans_own_warnings_are_not_shown_as_the_services_output() {
    let images = repo("quiet");
    // `sleep` as PID 1 ignores SIGTERM: the replaced container is SIGKILLed after 1 s.
    let p = Project::new(&format!(
        "[target.img]\nimage = {{ name = \"{}\", context = \"app\", stage = \"production\" }}\n\n\
         [service.web]\nimage = \"img\"\nstop_timeout = \"1s\"\n\
         command = \"sh -c 'echo up; exec sleep 1000'\"\n",
        images.0
    ));
    write_context(&p, &images);
    let _containers = Containers::of(&p);
    let mut up = Up::start(&p, &[]);
    up.wait_seen("web ready", |e| phase(e, "web", 0, "ready"));
    up.wait_seen("its output", |e| e["type"] == "service.output" && e["line"] == "up");
    let trigger = p.kiln(&["trigger", "web"]);
    assert_eq!(trigger.code, 0, "{}", trigger.stderr);
    up.wait_for("web restarting", |e| phase(e, "web", 0, "starting"));
    up.wait_for("the new attempt's output", |e| e["type"] == "service.output" && e["line"] == "up");
    let output: Vec<String> = up
        .seen
        .iter()
        .filter(|e| e["type"] == "service.output")
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(output.iter().all(|l| !l.contains("level=warning")), "podman's warnings as output: {output:?}");
    let log = p.kiln(&["logs", "web"]).stdout;
    assert!(!log.contains("level=warning") && !log.contains("StopSignal"), "{log}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}
