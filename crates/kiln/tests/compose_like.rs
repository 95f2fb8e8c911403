//! examples/compose-like end to end, as its README runs it: the Debian base image made by
//! scripts/debian-base.sh, redis, web and worker in containers on the project's network
//! (web and worker reach `redis:6379` by name), readiness and liveness probes, env_file,
//! `kiln ps`, `kiln logs web --tail 5`, check.sh, and `kiln down` leaving no container or
//! network behind. Needs podman and the Debian mirror (for debootstrap and apt), like the
//! example itself.

mod common;
use common::{Project, Up};
use std::path::Path;
use std::process::Command;

/// The example's published port in the copy the test runs (the example's own is 18480).
const PORT: &str = "19961";

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read the example") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == ".kiln" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// A failed assertion still leaves nothing running: `kiln down` with no `kiln up` left
/// removes the project's containers and network (declared before the `Up`, dropped after it).
struct Cleanup<'a>(&'a Project);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.kiln(&["down"]);
    }
}

fn podman(args: &[&str]) -> String {
    let out = Command::new("podman").args(args).output().expect("podman runs (scripts/install-deps.sh installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_compose_like_example_runs_reaches_redis_by_name_and_leaves_nothing_behind() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = Command::new("bash").arg(repo.join("scripts/debian-base.sh")).output().expect("bash");
    assert!(
        base.status.success(),
        "scripts/debian-base.sh failed (it needs podman, root and Debian's mirror):\n{}{}",
        String::from_utf8_lossy(&base.stdout),
        String::from_utf8_lossy(&base.stderr)
    );
    let p = Project::new("");
    copy_tree(&repo.join("examples/compose-like"), p.root());
    p.write("kiln.toml", &p.read("kiln.toml").replace("18480", PORT));

    // The images first: a cold apt layer takes longer than an event wait allows.
    let built = p.kiln(&["build"]);
    assert_eq!(built.code, 0, "{}\n{}", built.stdout, built.stderr);

    let _cleanup = Cleanup(&p);
    let mut up = Up::start(&p, &[]);
    for service in ["redis", "web", "worker"] {
        up.wait_seen(&format!("{service} ready"), |e| {
            e["type"] == "service.phase" && e["service"] == service && e["phase"] == "ready"
        });
    }
    let network = up.wait_seen("the project network", |e| e["type"] == "network.created")["network"]
        .as_str()
        .expect("its name")
        .to_string();

    // Visits: the counter lives in redis, which web reaches by its service name.
    for _ in 0..2 {
        let check = Command::new("sh").arg(p.path("check.sh")).env("WEB_PORT", PORT).output().expect("sh");
        let said = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{said}{}", String::from_utf8_lossy(&check.stderr));
        assert!(said.starts_with("ok: visits "), "{said}");
    }
    // The worker takes the queued visits from redis.
    up.wait_seen("the worker took a visit", |e| {
        e["type"] == "service.output"
            && e["service"] == "worker"
            && e["line"].as_str().is_some_and(|l| l.contains(" processed"))
    });

    let ps = p.kiln(&["ps"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    for service in ["redis", "web", "worker"] {
        let line = ps.stdout.lines().find(|l| l.starts_with(service)).unwrap_or_else(|| panic!("{}", ps.stdout));
        assert!(line.contains("ready"), "{line}");
    }
    let web = ps.stdout.lines().find(|l| l.starts_with("web")).expect("web's line");
    assert!(web.contains(&format!("127.0.0.1:{PORT}")), "web's published port: {web}");

    let logs = p.kiln(&["logs", "web", "--tail", "5"]);
    assert_eq!(logs.stdout.lines().count(), 5, "{}", logs.stdout);
    assert!(logs.stdout.contains("GET / 200"), "web logged the visits:\n{}", logs.stdout);

    let down = p.kiln(&["down"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    assert!(down.stdout.contains("): redis, web, worker"), "{}", down.stdout);
    assert!(down.stdout.contains(&format!("removed the network {network}")), "{}", down.stdout);
    let _ = up.child.wait();
    let left = podman(&["ps", "-a", "--format", "{{.Names}}"]);
    let prefix = network.as_str();
    assert!(!left.lines().any(|n| n.starts_with(prefix)), "containers left: {left}");
    let networks = podman(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!networks.lines().any(|n| n == network), "network left: {networks}");
}
