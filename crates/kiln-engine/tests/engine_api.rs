//! The engine's Docker-compatible API against real podman (`podman system service` started
//! by `EngineApi::connect`), and the docker path through `DOCKER_HOST` to the same service:
//! live-update transfers into running containers. The image is built once `FROM scratch`
//! from Debian's static busybox; nothing is pulled. Without podman these tests fail and say
//! what to install.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_engine::container::engine::{Engine, EngineKind};
use kiln_engine::container::engine_api::{ApiError, EngineApi, Owner};
use kiln_engine::container::sync_batch::{SyncBatch, SyncCopy, apply};

/// Not `kiln-test-*`: the CLI tests remove those images when they start.
const IMAGE: &str = "localhost/kiln-engine-api-test:busybox-1";
const INSTALL: &str = "apt-get install podman runc busybox-static (or run `bash scripts/install-deps.sh`)";

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman is needed for these tests ({e}): {INSTALL}"))
}

fn podman_ok(args: &[&str]) -> String {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the test image once per run (kept between runs: it never changes): busybox, an
/// `app` user 1000:1000 and a `staff` group 50 in /etc/passwd and /etc/group.
fn image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        if podman(&["image", "exists", IMAGE]).status.success() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy("/bin/busybox", dir.path().join("busybox"))
            .unwrap_or_else(|e| panic!("/bin/busybox is needed ({e}): {INSTALL}"));
        std::fs::write(
            dir.path().join("Containerfile"),
            "FROM scratch\nLABEL kiln.test=engine-api\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN mkdir -p /etc /code /tmp && chmod 1777 /tmp \
             && printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/code:/bin/sh\\n' > /etc/passwd \
             && printf 'root:x:0:\\napp:x:1000:\\nstaff:x:50:\\n' > /etc/group\n",
        )
        .expect("write Containerfile");
        let context = dir.path().to_str().expect("a UTF-8 temp path");
        podman_ok(&["build", "-q", "-t", IMAGE, context]);
    });
    IMAGE
}

/// A running container of the test image, removed on every exit path.
struct Container(String);

impl Container {
    fn start(test: &str, extra: &[&str]) -> Container {
        let image = image();
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = format!("kiln-test-api-{test}-{n:x}");
        let mut args = vec!["run", "-d", "--rm", "--name", &name];
        args.extend(extra);
        args.extend([image, "sleep", "600"]);
        podman_ok(&args);
        Container(name)
    }

    /// `sh -c script` in the container as root: its stdout, trimmed.
    fn sh(&self, script: &str) -> String {
        podman_ok(&["exec", "--user", "0", &self.0, "sh", "-c", script]).trim().to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

fn podman_engine() -> Engine {
    Engine::find(kiln_config::EngineChoice::Podman).unwrap_or_else(|e| panic!("{e}"))
}

/// A podman service of the test's own, on a socket in `dir`.
async fn connect(dir: &Path) -> EngineApi {
    EngineApi::connect(&podman_engine(), dir).await.unwrap_or_else(|e| panic!("podman's API service: {e}"))
}

fn copy(root: &Path, container_root: &str, rel: &str) -> SyncCopy {
    SyncCopy::under(root, container_root, &root.join(rel)).expect("under the root")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_links_new_directories_and_deletions_arrive_as_on_the_host() {
    let c = Container::start("files", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("mkdir");
    std::fs::write(run.join("podman.sock"), "a stale socket of an earlier kiln").expect("write");
    let api = connect(&run).await;
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");

    let root = dir.path().join("app");
    write(&root.join("hello.txt"), "hello\n");
    std::fs::set_permissions(root.join("hello.txt"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
    write(&root.join("tool.sh"), "#!/bin/sh\necho tool\n");
    std::fs::set_permissions(root.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    write(&root.join("pkg/deep/er/mod.txt"), "nested\n");
    std::fs::set_permissions(root.join("pkg"), std::fs::Permissions::from_mode(0o750)).expect("chmod");
    std::os::unix::fs::symlink("hello.txt", root.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).expect("symlink");
    let batch = SyncBatch {
        copies: ["hello.txt", "tool.sh", "pkg/deep/er/mod.txt", "link", "dangling"]
            .iter()
            .map(|rel| copy(&root, "/code", rel))
            .collect(),
        deletes: vec![],
    };
    let owner = api.container_owner(&c.0).await.expect("owner");
    assert_eq!(owner, Owner { uid: 0, gid: 0 }, "no user configured: root");
    let report = apply(&api, &c.0, &batch, owner, &tmp).await.expect("applied");
    assert_eq!((report.files, report.deleted, report.bytes), (5, 0, 6 + 20 + 7));

    assert_eq!(c.sh("stat -c '%a %u:%g' /code/hello.txt && cat /code/hello.txt"), "640 0:0\nhello");
    assert_eq!(c.sh("stat -c %a /code/tool.sh && /code/tool.sh"), "755\ntool");
    let host_mtime = std::fs::metadata(root.join("hello.txt")).expect("stat").modified().expect("mtime");
    let host_mtime = host_mtime.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    assert_eq!(c.sh("stat -c %Y /code/hello.txt"), host_mtime.to_string(), "mtime kept");
    assert_eq!(c.sh("cat /code/pkg/deep/er/mod.txt && stat -c %a /code/pkg"), "nested\n750", "the host dir's mode");
    assert_eq!(c.sh("readlink /code/link && cat /code/link"), "hello.txt\nhello", "a link, not a copy");
    assert_eq!(c.sh("readlink /code/dangling"), "/nowhere/at/all");
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp").count(), 0, "the tar is removed");

    // A directory renamed into the tree arrives as one event: everything under it comes.
    write(&root.join("moved/a/one.txt"), "1");
    write(&root.join("moved/b/two.txt"), "22");
    // The rename of pkg → pkg2, a file gone, and a path that vanished before the copy.
    std::fs::rename(root.join("pkg"), root.join("pkg2")).expect("rename");
    std::fs::remove_file(root.join("hello.txt")).expect("rm");
    let batch = SyncBatch {
        copies: vec![copy(&root, "/code", "moved"), copy(&root, "/code", "pkg2"), copy(&root, "/code", "vanished.txt")],
        deletes: vec!["/code/pkg".into(), "/code/hello.txt".into()],
    };
    let report = apply(&api, &c.0, &batch, owner, &tmp).await.expect("applied");
    assert_eq!((report.files, report.deleted), (3, 3), "{report:?}");
    assert_eq!(c.sh("cat /code/moved/a/one.txt /code/moved/b/two.txt /code/pkg2/deep/er/mod.txt"), "122nested");
    assert_eq!(c.sh("ls /code | sort | tr '\\n' ' '"), "dangling link moved pkg2 tool.sh");

    // A file that replaces a directory of the same name (delete, then the new file).
    std::fs::remove_dir_all(root.join("moved")).expect("rm");
    write(&root.join("moved"), "now a file\n");
    let batch = SyncBatch { copies: vec![copy(&root, "/code", "moved")], deletes: vec!["/code/moved".into()] };
    apply(&api, &c.0, &batch, owner, &tmp).await.expect("applied");
    assert_eq!(c.sh("cat /code/moved"), "now a file");

    // A name that is not UTF-8 arrives with its bytes, and is deleted by them.
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 %s\\.txt");
    write(&root.join(odd), "latin-1\n");
    let odd_copy = SyncCopy::under(&root, "/code", &root.join(odd)).expect("under the root");
    let batch = SyncBatch { copies: vec![odd_copy.clone()], deletes: vec![] };
    apply(&api, &c.0, &batch, owner, &tmp).await.expect("applied");
    assert_eq!(c.sh("ls /code | grep -c '^caf.*txt$'"), "1");
    let bytes =
        c.sh("cat /code/caf*.txt && for f in /code/caf*; do printf %s \"$f\"; done | od -An -tx1 | tr -s ' \\n' ' '");
    assert_eq!(bytes, "latin-1\n 2f 63 6f 64 65 2f 63 61 66 e9 20 25 73 5c 2e 74 78 74", "the name's bytes");
    let batch = SyncBatch { copies: vec![], deletes: vec![odd_copy.container_path()] };
    assert_eq!(apply(&api, &c.0, &batch, owner, &tmp).await.expect("deleted").deleted, 1);
    assert_eq!(c.sh("ls /code | grep -c '^caf' || true"), "0");

    // A sync that breaks: the engine's message says why.
    let err = apply(&api, "kiln-test-api-no-such-container", &batch, owner, &tmp).await.expect_err("no container");
    let text = err.to_string();
    assert!(text.starts_with("cannot delete synced paths in container kiln-test-api-no-such-container:"), "{text}");
    assert!(text.to_lowercase().contains("no such container"), "{text}");

    let mut tar = tempfile::NamedTempFile::new_in(&tmp).expect("temp file");
    batch.write_tar(owner, tar.as_file_mut()).expect("tar");
    let err = api.put_archive("kiln-test-api-no-such-container", tar.path()).await.expect_err("no container");
    let text = err.to_string();
    assert!(
        text.starts_with("copy into container kiln-test-api-no-such-container: the engine answered 404:"),
        "{text}"
    );

    let socket = api.socket().to_path_buf();
    let pid = api.service_pid().expect("podman's service is a child");
    api.shutdown().await;
    assert!(!socket.exists(), "the socket is removed");
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(), "the service is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_files_are_copied_then_deleted_in_one_transfer_each() {
    let c = Container::start("many", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let api = connect(dir.path()).await;
    let root = dir.path().join("app");
    let names: Vec<String> =
        (0..2000).map(|i| format!("many/a-file-name-long-enough-to-need-several-rm-commands-{i:05}.txt")).collect();
    for name in &names {
        write(&root.join(name), name);
    }
    let batch = SyncBatch { copies: names.iter().map(|n| copy(&root, "/code", n)).collect(), deletes: vec![] };
    let report = apply(&api, &c.0, &batch, Owner::default(), dir.path()).await.expect("copied");
    assert_eq!(report.files, 2000);
    assert_eq!(c.sh("ls /code/many | wc -l"), "2000");
    assert_eq!(c.sh(&format!("cat /code/{}", names[1234])), names[1234]);

    let batch = SyncBatch { copies: vec![], deletes: names.iter().map(|n| format!("/code/{n}")).collect() };
    let report = apply(&api, &c.0, &batch, Owner::default(), dir.path()).await.expect("deleted");
    assert_eq!(report.deleted, 2000);
    assert_eq!(c.sh("ls /code/many | wc -l"), "0");

    // A large file streams in chunks (the upload is never in memory whole).
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).expect("write");
    let batch = SyncBatch { copies: vec![copy(&root, "/code", "big.bin")], deletes: vec![] };
    let report = apply(&api, &c.0, &batch, Owner::default(), dir.path()).await.expect("copied");
    assert_eq!(report.bytes, big.len() as u64);
    let host_sum = Command::new("md5sum").arg(root.join("big.bin")).output().expect("md5sum (coreutils)");
    let host_sum = String::from_utf8_lossy(&host_sum.stdout).split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(c.sh("md5sum /code/big.bin | cut -d' ' -f1"), host_sum);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_copied_belongs_to_the_containers_user() {
    let c = Container::start("user", &["--user", "1000:1000"]);
    let named = Container::start("named", &["--user", "app:staff"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let api = connect(dir.path()).await;
    let owner = api.container_owner(&c.0).await.expect("owner");
    assert_eq!(owner, Owner { uid: 1000, gid: 1000 });
    assert_eq!(api.container_owner(&named.0).await.expect("owner"), Owner { uid: 1000, gid: 50 }, "by name");

    let root = dir.path().join("app");
    write(&root.join("new/dir/file.txt"), "mine\n");
    // Deletions run as root: a file the user could not remove goes too.
    c.sh("mkdir -p /code/old && echo root > /code/old/rootfile && chmod 755 /code/old");
    let batch = SyncBatch { copies: vec![copy(&root, "/code", "new/dir/file.txt")], deletes: vec!["/code/old".into()] };
    apply(&api, &c.0, &batch, owner, dir.path()).await.expect("applied");
    assert_eq!(c.sh("stat -c %u:%g /code/new /code/new/dir /code/new/dir/file.txt"), "1000:1000\n1000:1000\n1000:1000");
    assert_eq!(c.sh("test -e /code/old || echo gone"), "gone");
    // The user itself can change what was synced.
    let out = podman_ok(&["exec", &c.0, "sh", "-c", "echo more >> /code/new/dir/file.txt && id -u"]);
    assert_eq!(out.trim(), "1000");

    // podman keeps the tar's owners as they are (no `copyUIDGID`): any ids arrive.
    let odd = Owner { uid: 4321, gid: 8765 };
    write(&root.join("odd.txt"), "odd\n");
    let batch = SyncBatch { copies: vec![copy(&root, "/code", "odd.txt")], deletes: vec![] };
    apply(&api, &c.0, &batch, odd, dir.path()).await.expect("applied");
    assert_eq!(c.sh("stat -c %u:%g /code/odd.txt"), "4321:8765");

    // A user the container's files no longer name is an error saying so.
    named.sh("grep -v staff /etc/group > /tmp/g && cat /tmp/g > /etc/group");
    let err = api.container_owner(&named.0).await.expect_err("no such group");
    let text = err.to_string();
    let start = format!("the container {} runs as user `app:staff`, which cannot be resolved: ", named.0);
    assert!(text.starts_with(&start) && text.contains("\"staff\""), "{text}");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_reports_its_exit_code_output_and_timeout() {
    let c = Container::start("exec", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let api = connect(dir.path()).await;
    let argv = |s: &str| ["sh".to_string(), "-c".into(), s.into()];
    let done =
        api.exec(&c.0, &argv("echo out; echo err >&2; exit 3"), None, Duration::from_secs(20)).await.expect("ran");
    assert_eq!(done.exit_code, 3);
    assert_eq!(done.output, "out\nerr\n");
    let done = api.exec(&c.0, &argv("id -u"), Some("1000"), Duration::from_secs(20)).await.expect("ran");
    assert_eq!((done.exit_code, done.output.as_str()), (0, "1000\n"));
    // Only the end of a long output is kept.
    let done = api
        .exec(
            &c.0,
            &argv("i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"),
            None,
            Duration::from_secs(20),
        )
        .await
        .expect("ran");
    assert!(done.output.len() <= 8192 && done.output.ends_with("line-1999\n"), "{}", done.output.len());
    let missing = api.exec(&c.0, &["/no/such/program".to_string()], None, Duration::from_secs(20)).await;
    // podman says so in the output, with docker's exit code for a command not found.
    let missing = missing.expect("an exit code");
    assert_eq!(missing.exit_code, 127, "{missing:?}");
    assert!(missing.output.contains("\"/no/such/program\""), "{missing:?}");
    let slow = api.exec(&c.0, &argv("sleep 30"), None, Duration::from_millis(700)).await.expect_err("timed out");
    assert!(matches!(slow, ApiError::ExecTimeout { .. }), "{slow:?}");
    assert_eq!(slow.to_string(), format!("`sh` in container {} did not finish within 1 s", c.0));
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_to_connect_say_what_failed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Engine { kind: EngineKind::Podman, program: PathBuf::from("/bin/false") };
    let err = EngineApi::connect(&fake, dir.path()).await.expect_err("no service");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("podman system service did not answer on {}/podman.sock", dir.path().display())),
        "{text}"
    );
    assert!(text.contains("it exited (exit status: 1) without a word"), "{text}");
    let err = EngineApi::connect_docker(Some("unix:///nonexistent/docker.sock")).await.expect_err("no daemon");
    assert!(err.to_string().starts_with("cannot reach the docker engine at /nonexistent/docker.sock:"), "{err}");
    // A path too long for a socket address still gets a service (in a short directory).
    let long = dir.path().join("x".repeat(100));
    std::fs::create_dir(&long).expect("mkdir");
    let api = connect(&long).await;
    assert!(api.socket().as_os_str().len() <= 107, "{}", api.socket().display());
    api.ping(Duration::from_secs(5)).await.expect("answers");
    drop(api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docker_path_reaches_podmans_service_through_docker_host() {
    assert!(
        Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success()),
        "the docker CLI is needed for the docker path: apt-get install docker.io (only its client is used)"
    );
    let c = Container::start("docker", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let service = connect(dir.path()).await;
    let host = format!("unix://{}", service.socket().display());
    // SAFETY: no test of this binary reads DOCKER_HOST but this one, which sets it to the
    // same value it asks for (std serializes its own environment access).
    unsafe { std::env::set_var("DOCKER_HOST", &host) };
    let docker = Engine { kind: EngineKind::Docker, program: PathBuf::from("docker") };
    let api = EngineApi::connect(&docker, dir.path()).await.expect("docker's API through DOCKER_HOST");
    assert_eq!(api.kind(), EngineKind::Docker);
    assert_eq!(api.socket(), service.socket(), "the same socket");

    let root = dir.path().join("app");
    write(&root.join("via-docker.txt"), "through docker\n");
    let batch = SyncBatch { copies: vec![copy(&root, "/code", "via-docker.txt")], deletes: vec![] };
    let owner = api.container_owner(&c.0).await.expect("owner");
    apply(&api, &c.0, &batch, owner, dir.path()).await.expect("applied");
    let out = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["exec", &c.0, "cat", "/code/via-docker.txt"])
        .output()
        .expect("docker runs");
    assert!(out.status.success(), "docker exec: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through docker\n");
    api.shutdown().await;
    service.ping(Duration::from_secs(5)).await.expect("docker's shutdown leaves the service alone");
    service.shutdown().await;
}

/// Set for the child run of [`service_helper`]: the run directory it connects in.
const HELPER_ENV: &str = "KILN_TEST_API_HELPER_RUN_DIR";

/// Not a test of its own: the process [`the_service_dies_with_a_kiln_killed_with_sigkill`]
/// starts and kills. It connects, prints the service's pid, and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child by the_service_dies_with_a_kiln_killed_with_sigkill"]
async fn service_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else { return };
    let api = connect(Path::new(&dir)).await;
    let pid = api.service_pid().expect("a child").to_string();
    std::fs::write(Path::new(&dir).join("service.pid"), pid).expect("write the pid");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn the_service_dies_with_a_kiln_killed_with_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut helper = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "service_helper", "--ignored", "--test-threads", "1"])
        .env(HELPER_ENV, dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the helper starts");
    let pid_file = dir.path().join("service.pid");
    let pid = (0..300)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok())
        })
        .expect("the helper started podman's service within 15 s");
    let alive = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(alive(), "the service runs");
    helper.kill().expect("SIGKILL");
    let _ = helper.wait();
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        // A zombie until init reaps it: gone when its state says so, too.
        !alive() || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    });
    assert!(gone, "podman system service (pid {pid}) outlived the process that started it");
}
