//! Per-project container networks against real podman (and the docker CLI through podman's
//! Docker-compatible service): services reach each other by name, every replica answers
//! behind its service's name, two checkouts with the same directory name get two networks,
//! and no network outlives `kiln up` (`kiln down`, Ctrl-C, or the sweep after `kill -9`).
//! Images are built `FROM scratch` from Debian's static busybox; nothing is pulled. Without a
//! working podman these tests fail and say what to install.

mod common;
use common::{Project, Run, Up};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

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

fn network_exists(name: &str) -> bool {
    podman(&["network", "exists", name]).status.success()
}

/// A test's image repository, `localhost/kiln-test-net-<test>-<unique>`: what it names is
/// removed by the next run of these tests (see [`remove_old_test_images`]).
struct Images(String);

impl std::ops::Deref for Images {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Images {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Removes the images earlier runs of these tests built, once, before any test builds:
/// podman 4.3 fails builds that look for cached layers while another client removes
/// images, so nothing is removed while tests run (as in containers.rs).
fn remove_old_test_images() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let out = podman(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            "reference=localhost/kiln-test-net-*",
        ]);
        let tags: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !tags.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(tags.iter().map(String::as_str));
            let _ = podman(&args);
        }
        // Their build cache's intermediate images: every layer carries a `kiln.test` label.
        let out = podman(&["images", "-q", "--filter", "dangling=true", "--filter", "label=kiln.test"]);
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !ids.is_empty() {
            let mut args = vec!["rmi"];
            args.extend(ids.iter().map(String::as_str));
            let _ = podman(&args);
        }
    });
}

/// A unique image repository for one test.
fn repo(test: &str) -> Images {
    remove_old_test_images();
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    Images(format!("localhost/kiln-test-net-{test}-{n:x}"))
}

/// Removes a project's containers, then its network, when dropped: a failed test kills its
/// `kiln up` with SIGKILL, which would leave both.
struct Leftovers(std::path::PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let network = kiln_engine::network_name(&self.0);
        let out = podman(&["ps", "-a", "--filter", &format!("name=^{network}-"), "--format", "{{.Names}}"]);
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-t", "0"];
            args.extend(names.iter().map(String::as_str));
            let _ = podman(&args);
        }
        common::remove_networks_named(&network);
    }
}

/// A busybox image context at `dir`; the label makes every layer this test's own.
fn write_image(p: &Project, dir: &str, image: &str) {
    std::fs::create_dir_all(p.path(dir)).expect("mkdir");
    std::fs::copy("/bin/busybox", p.path(&format!("{dir}/busybox")))
        .expect("/bin/busybox (Debian's busybox-static) is needed: apt-get install busybox-static");
    p.write(
        &format!("{dir}/Containerfile"),
        &format!(
            "FROM scratch\nLABEL kiln.test={image}\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n"
        ),
    );
}

/// `redis` (2 replicas, each answering `redis-REPLICA-WHO` on 6379, mapped to the host as
/// PORT0 and PORT1) and `web`, a client that resolves `redis`, asks every address it gets,
/// then asks by the name and by the alias of replica 1, over and over.
const APP: &str = r#"
[settings]
debounce = "50ms"

[target.img]
image = { name = "IMAGE", context = "ctx" }

[service.redis]
image = "img"
replicas = 2
env = { WHO = "WHOAMI" }
command = "sh -c 'mkdir -p /www && echo redis-$KILN_REPLICA-$WHO > /www/r && exec httpd -f -p 6379 -h /www'"
ports = ["PORT${KILN_REPLICA}:6379"]
stop_signal = "SIGKILL"
ready = { cmd = "wget -q -O /dev/null http://127.0.0.1:6379/r", period = "100ms" }

[service.web]
image = "img"
after = ["redis"]
command = "sh -c 'while true; do for a in $(nslookup redis | awk \"/^Address/ && \\$2 !~ /:/ {print \\$2}\"); do echo got $(timeout 3 wget -q -O - http://$a:6379/r); done; echo by-name $(timeout 3 wget -q -O - http://redis:6379/r); echo alias $(timeout 3 wget -q -O - http://redis-1:6379/r); sleep 0.3; done'"
stop_signal = "SIGKILL"
"#;

fn app(image: &str, who: &str, port: u16) -> String {
    APP.replace("IMAGE", image).replace("WHOAMI", who).replace("PORT", &(port / 10).to_string())
}

fn says(e: &Value, service: &str, line: &str) -> bool {
    e["type"] == "service.output" && e["service"] == service && e["line"].as_str().is_some_and(|l| l.trim() == line)
}

/// Waits until `web` has reached both replicas behind `redis`, by name and by alias.
fn wait_reached(up: &mut Up, who: &str) {
    for r in 0..2 {
        let line = format!("got redis-{r}-{who}");
        up.wait_seen(&line, |e| says(e, "web", &line));
    }
    let by_name = [format!("by-name redis-0-{who}"), format!("by-name redis-1-{who}")];
    up.wait_seen("web reached redis by name", |e| by_name.iter().any(|l| says(e, "web", l)));
    let alias = format!("alias redis-1-{who}");
    up.wait_seen("web reached redis-1 by its alias", |e| says(e, "web", &alias));
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
fn web_reaches_every_redis_replica_by_name_and_kiln_down_removes_the_network() {
    let image = repo("names");
    let p = Project::new(&app(&image, "a", 19830));
    write_image(&p, "ctx", &image);
    let _left = Leftovers(p.root().to_path_buf());
    let network = kiln_engine::network_name(p.root());
    let mut up = Up::start(&p, &[]);
    let created = up.wait_for("network.created", |e| e["type"] == "network.created");
    assert_eq!(created["network"], network.as_str());
    eprintln!("network {network} created in {} ms", created["duration_ms"]);
    wait_reached(&mut up, "a");
    assert_eq!(up.count(|e| e["type"] == "network.created"), 1, "once per up");
    // DNS on, this project's label, both replicas and the client on it.
    assert_eq!(podman_ok(&["network", "inspect", "--format", "{{.DNSEnabled}}", &network]).trim(), "true");
    let label = podman_ok(&["network", "inspect", "--format", "{{index .Labels \"kiln.project\"}}", &network]);
    let container = kiln_engine::container_name(p.root(), "web", 0);
    let container_label = podman_ok(&["inspect", "--format", "{{index .Config.Labels \"kiln.project\"}}", &container]);
    assert_eq!(label.trim(), container_label.trim());
    // Ports still map to the host on the project network.
    assert_eq!(http_get(19830, "/r").as_deref(), Some("redis-0-a\n"));
    assert_eq!(http_get(19831, "/r").as_deref(), Some("redis-1-a\n"));
    let status = p.kiln(&["status", "--json"]);
    assert!(status.stdout.contains(&format!("\"network\":\"{network}\"")), "{}", status.stdout);

    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    assert!(down.stdout.contains(&format!("removed the network {network}")), "{}", down.stdout);
    assert!(!network_exists(&network), "kiln down removed {network}");
    let status = up.child.wait().expect("kiln up exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn two_projects_with_the_same_directory_name_each_reach_their_own_redis() {
    let image = repo("twins");
    let p = Project::new("");
    let roots = ["a/app", "b/app"];
    let mut guards = Vec::new();
    for (i, (root, who)) in roots.iter().zip(["first", "second"]).enumerate() {
        let port = 19840 + 10 * u16::try_from(i).expect("two");
        p.write(&format!("{root}/kiln.toml"), &app(&image, who, port));
        write_image(&p, &format!("{root}/ctx"), &image);
        guards.push(Leftovers(p.path(root)));
    }
    let networks: Vec<String> = roots.iter().map(|r| kiln_engine::network_name(&p.path(r))).collect();
    assert_ne!(networks[0], networks[1]);
    assert!(networks.iter().all(|n| n.starts_with("kiln-app-")), "{networks:?}");
    let start = |root: &str| {
        Up::start_with(&p, &[], |c| {
            c.current_dir(p.path(root));
        })
    };
    let (mut a, mut b) = (start(roots[0]), start(roots[1]));
    wait_reached(&mut a, "first");
    wait_reached(&mut b, "second");
    for (up, other) in [(&a, "second"), (&b, "first")] {
        assert_eq!(up.count(|e| e["line"].as_str().is_some_and(|l| l.contains(other))), 0, "{}", up.dump());
    }
    assert!(networks.iter().all(|n| network_exists(n)));
    // Ctrl-C: each removes its own network on the way out.
    for up in [a, b] {
        let (code, _) = up.stop();
        assert_eq!(code, 130);
    }
    assert!(networks.iter().all(|n| !network_exists(n)), "no network left: {networks:?}");
}

#[test]
fn after_kill_9_the_next_up_removes_the_leftover_network_and_creates_it_anew() {
    let image = repo("kill");
    let p = Project::new(&app(&image, "k", 19860));
    write_image(&p, "ctx", &image);
    let _left = Leftovers(p.root().to_path_buf());
    let network = kiln_engine::network_name(p.root());
    let mut up = Up::start(&p, &[]);
    wait_reached(&mut up, "k");
    up.child.kill().expect("kill -9");
    let _ = up.child.wait();
    drop(up);
    assert!(network_exists(&network), "a killed kiln leaves its network");
    let mut again = Up::start(&p, &[]);
    let notice = again.wait_seen("the sweep", |e| {
        e["type"] == "run.notice" && e["message"].as_str().is_some_and(|m| m.contains("an earlier kiln"))
    });
    let message = notice["message"].as_str().expect("a message");
    assert!(message.contains(&format!("; and the network {network}")), "{message}\n{}", again.dump());
    again.wait_for("a new network", |e| e["type"] == "network.created");
    wait_reached(&mut again, "k");
    // kill -9 again, and this time `kiln down` (no `kiln up` running) sweeps.
    again.child.kill().expect("kill -9");
    let _ = again.child.wait();
    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    // `web` prints all the time: its client may already have gone with the closed pipe.
    let redis = kiln_engine::container_name(p.root(), "redis", 0);
    assert!(down.stdout.contains("containers an earlier kiln") && down.stdout.contains(&redis), "{}", down.stdout);
    assert!(down.stdout.contains(&format!("; and the network {network}")), "{}", down.stdout);
    assert!(!network_exists(&network));
}

/// `none`: only loopback; `host`: the host's network (its port answers without `ports`);
/// a network named but missing: the replica says how to create it, and starts once it exists
/// — which kiln then never removes.
const MODES: &str = r#"
[target.img]
image = { name = "IMAGE", context = "ctx" }

[service.alone]
image = "img"
network = "none"
command = "sh -c 'echo interfaces: $(ls /sys/class/net); exec sleep 1000'"
stop_signal = "SIGKILL"

[service.onhost]
image = "img"
network = "host"
command = "sh -c 'mkdir -p /www && echo on-host > /www/r && exec httpd -f -p 127.0.0.1:19879 -h /www'"
stop_signal = "SIGKILL"
ready = { http = "http://127.0.0.1:19879/r", period = "100ms" }

[service.shared]
image = "img"
network = "NETWORK"
command = "sh -c 'echo joined; exec sleep 1000'"
stop_signal = "SIGKILL"
ready = { log = "joined" }
"#;

#[test]
fn none_and_host_take_effect_and_a_missing_named_network_says_how_to_create_it() {
    let image = repo("modes");
    let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let named = format!("kiln-test-shared-{n:x}");
    let p = Project::new(&MODES.replace("IMAGE", &image).replace("NETWORK", &named));
    write_image(&p, "ctx", &image);
    let _left = Leftovers(p.root().to_path_buf());
    let mut up = Up::start(&p, &[]);
    up.wait_seen("alone's interfaces", |e| says(e, "alone", "interfaces: lo"));
    let phase = |e: &Value, service: &str, phase: &str| {
        e["type"] == "service.phase" && e["service"] == service && e["phase"] == phase
    };
    up.wait_seen("onhost ready", |e| phase(e, "onhost", "ready"));
    assert_eq!(http_get(19879, "/r").as_deref(), Some("on-host\n"), "the host's 127.0.0.1, no port mapping");
    let failed = up.wait_seen("shared's missing network", |e| {
        phase(e, "shared", "backoff") && e["reason"].as_str().is_some_and(|r| r.contains("does not exist"))
    });
    let reason = failed["reason"].as_str().expect("a reason");
    assert!(
        reason.contains(&format!(
            "the network {named} (`network` of service `shared`) does not exist; kiln joins it but never creates it: create it with `podman network create {named}`, or use `network = \"project\"`"
        )),
        "{reason}"
    );
    podman_ok(&["network", "create", &named]);
    let made = Cleanup(named.clone());
    up.wait_for("shared ready once its network exists", |e| phase(e, "shared", "ready"));
    let on = podman_ok(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &kiln_engine::container_name(p.root(), "shared", 0),
    ]);
    assert_eq!(on.trim(), named);
    // No service here is on the project network: none was made.
    assert_eq!(up.count(|e| e["type"] == "network.created"), 0);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(network_exists(&named), "a network the user manages is never removed");
    drop(made);
}

/// Removes a network created by hand.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = podman(&["network", "rm", "-f", &self.0]);
    }
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
        assert!(
            common::wait_until(Duration::from_secs(10), || sock.exists()),
            "podman's Docker API socket did not appear"
        );
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
fn the_docker_cli_path_creates_joins_and_removes_the_project_network() {
    assert!(
        Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the docker CLI is needed for the docker path: apt-get install docker.io (only its client is used)"
    );
    let api = DockerApi::start();
    let image = repo("docker");
    let p = Project::new(&app(&image, "d", 19880));
    write_image(&p, "ctx", &image);
    let _left = Leftovers(p.root().to_path_buf());
    let network = kiln_engine::network_name(p.root());
    let mut up = Up::start_with(&p, &["--engine", "docker"], |c| {
        c.env("DOCKER_HOST", api.host());
    });
    wait_reached(&mut up, "d");
    assert_eq!(podman_ok(&["network", "inspect", "--format", "{{.DNSEnabled}}", &network]).trim(), "true");
    let mut down = p.command(&["--engine", "docker", "down"]);
    down.env("DOCKER_HOST", api.host());
    let down = Run::of(&mut down);
    assert_eq!(down.code, 0, "{}\n{}", down.stdout, down.stderr);
    assert!(down.stdout.contains(&format!("removed the network {network}")), "{}", down.stdout);
    assert!(!network_exists(&network));
}

/// Regression: the project network was made once per `kiln up`; once someone removed it,
/// every replica failed its start on "network not found" from then on.
#[test]
fn a_project_network_removed_while_up_runs_is_made_again_and_the_service_comes_back() {
    let image = repo("gone");
    let p = Project::new(&format!(
        "[target.img]\nimage = {{ name = \"{image}\", context = \"ctx\" }}\n\n\
         [service.redis]\nimage = \"img\"\nrestart = \"always\"\nstop_signal = \"SIGKILL\"\n\
         command = \"sh -c 'mkdir -p /www && echo up > /www/r && exec httpd -f -p 6379 -h /www'\"\n\
         ready = {{ cmd = \"wget -q -O /dev/null http://127.0.0.1:6379/r\", period = \"100ms\" }}\n"
    ));
    write_image(&p, "ctx", &image);
    let _left = Leftovers(p.root().to_path_buf());
    let network = kiln_engine::network_name(p.root());
    let ready = |e: &Value| e["type"] == "service.phase" && e["service"] == "redis" && e["phase"] == "ready";
    let mut up = Up::start(&p, &[]);
    up.wait_seen("network.created", |e| e["type"] == "network.created");
    up.wait_seen("redis ready", ready);

    // Forced: its container goes with it.
    podman_ok(&["network", "rm", "-f", &network]);
    let again = up.wait_for("the network made again", |e| e["type"] == "network.created");
    assert_eq!(again["network"], network.as_str());
    up.wait_for("redis ready again", ready);
    assert!(network_exists(&network));
    let (code, _) = up.stop();
    assert_eq!(code, 130);
    assert!(!network_exists(&network), "removed when kiln up ends");
}
