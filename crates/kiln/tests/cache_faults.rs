//! Hardening of `.kiln` and the cache, from the command line: nothing planted under `.kiln`
//! is written through, symbolic links in outputs are stored and restored as links (and never
//! outside the project), an untrustworthy record is discarded, and cache faults (an
//! unreadable blob, a read-only or full cache, a cache that is a file, a state that cannot
//! be saved) degrade to a rebuild or an uncached build with a warning, never a failure.
//!
//! Read-only and full caches are real file systems: a tmpfs mounted on `.kiln/cache` inside
//! a private mount namespace (`unshare -m`) that dies with the script, so nothing on the
//! host changes, whatever way the test ends. Those tests need root and util-linux's
//! `unshare`, and fail saying so when they are missing.

mod common;
use common::{Project, Run, kiln_bin};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CORE: &str = r#"
[target.core]
cmd = "mkdir -p out && cat core/*.txt > out/core"
inputs = ["core/*.txt"]
outputs = ["out/core"]
"#;

fn project(config: &str) -> Project {
    let p = Project::new(config);
    p.write("core/a.txt", "alpha\n");
    p
}

/// The messages of warning notices (`run.notice`, level `warning`).
fn warnings(run: &Run) -> Vec<String> {
    run.events()
        .iter()
        .filter(|e| e["type"] == "run.notice" && e["level"] == "warning")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn has_warning(run: &Run, needle: &str) -> bool {
    warnings(run).iter().any(|w| w.contains(needle))
}

fn blob_rel(content: &[u8]) -> String {
    let hex = blake3::hash(content).to_hex().to_string();
    format!(".kiln/cache/blobs/{}/{hex}", &hex[..2])
}

fn link_text(path: &Path) -> String {
    std::fs::read_link(path).unwrap_or_else(|e| panic!("{} is not a link: {e}", path.display())).display().to_string()
}

fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

/// `kiln --json build`, failing the test (instead of hanging it) if kiln does not finish:
/// a FIFO opened for reading blocks until a writer comes.
fn build_within(p: &Project, limit: Duration) -> Run {
    let child =
        p.command(&["--json", "build"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kiln starts");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let out = out.expect("kiln runs");
            Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("kiln build did not finish within {limit:?}: it blocked on something in the cache");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Point 4: nothing under .kiln is written through a planted symlink.

#[test]
fn a_link_or_hard_link_planted_as_the_lock_is_refused_and_never_written() {
    let p = project(CORE);
    std::fs::create_dir(p.path(".kiln")).expect("mkdir");
    symlink("../planted", p.path(".kiln/lock")).expect("symlink");
    let run = p.build(&[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(".kiln/lock: it is a symbolic link; kiln writes its pid there"),
        "names the lock and says what to do: {}",
        run.stderr
    );
    assert!(run.stderr.contains("remove it and run again"), "{}", run.stderr);
    assert!(!p.exists("planted"), "the lock was opened through the link");

    std::fs::remove_file(p.path(".kiln/lock")).expect("rm");
    p.write("victim", "precious\n");
    std::fs::hard_link(p.path("victim"), p.path(".kiln/lock")).expect("hard link");
    let run = p.build(&[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(".kiln/lock: it has another hard link"), "{}", run.stderr);
    assert_eq!(p.read("victim"), "precious\n", "the pid was written into someone else's file");

    std::fs::remove_file(p.path(".kiln/lock")).expect("rm");
    assert_eq!(p.build(&[]).code, 0, "a removed lock is made anew");
    let pid = p.read(".kiln/lock");
    assert!(pid.trim().parse::<u32>().is_ok(), "the holder's pid: {pid:?}");
}

#[test]
fn files_planted_as_links_under_kiln_are_replaced_never_followed() {
    let p = Project::new(
        "[target.t]\ncmd = \"cat in.txt; cat in.txt > out.txt\"\ninputs = [\"in.txt\"]\noutputs = [\"out.txt\"]\n",
    );
    p.write("in.txt", "one\n");
    // Before the first run: a dangling link where `.kiln/.gitignore` goes.
    std::fs::create_dir(p.path(".kiln")).expect("mkdir");
    symlink("../planted-ignore", p.path(".kiln/.gitignore")).expect("symlink");
    assert_eq!(p.build(&[]).code, 0);
    assert!(!p.exists("planted-ignore"), "the .gitignore was written through a dangling link");

    for (file, victim) in [
        (".kiln/logs/t.log", "victim-log"),
        (".kiln/state/targets.json", "victim-state"),
        (".kiln/state/stat.bin", "victim-stat"),
    ] {
        p.write(victim, "precious\n");
        std::fs::remove_file(p.path(file)).expect("rm");
        symlink(format!("../../{victim}"), p.path(file)).expect("symlink");
    }
    p.write("in.txt", "two\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("t"), "built");
    for victim in ["victim-log", "victim-state", "victim-stat"] {
        assert_eq!(p.read(victim), "precious\n", "{victim} was written through a link");
    }
    assert!(is_regular(&p.path(".kiln/logs/t.log")) && p.read(".kiln/logs/t.log") == "two\n");
    assert!(is_regular(&p.path(".kiln/state/targets.json")));
    assert_eq!(p.build(&[]).status_of("t"), "fresh", "the state saved in place of the link is read back");
}

#[test]
fn directories_under_kiln_that_are_links_are_never_written_through() {
    let p = project(CORE);
    std::fs::create_dir(p.path(".kiln")).expect("mkdir");
    for dir in ["cache", "state", "logs"] {
        std::fs::create_dir(p.path(&format!("elsewhere-{dir}"))).expect("mkdir");
        symlink(format!("../elsewhere-{dir}"), p.path(&format!(".kiln/{dir}"))).expect("symlink");
    }
    p.write("core/a.txt", "alpha\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "a cache fault never fails the build: {}", run.stderr);
    assert_eq!(run.status_of("core"), "built");
    assert!(
        has_warning(
            &run,
            "the cache is off for this run (outputs are neither restored nor stored): `.kiln/cache` is a symbolic link, \
             not a directory, and kiln never writes through one: remove it and kiln recreates the directory"
        ),
        "{:?}",
        warnings(&run)
    );
    assert!(has_warning(&run, "targets' output is not kept in .kiln/logs this run: `.kiln/logs` is a symbolic link"));
    assert!(has_warning(
        &run,
        "cannot save the build state in .kiln/state/targets.json: `.kiln/state` is a symbolic link"
    ));
    for dir in ["cache", "state", "logs"] {
        let inside: Vec<_> = std::fs::read_dir(p.path(&format!("elsewhere-{dir}"))).expect("dir").collect();
        assert!(inside.is_empty(), "something was written through .kiln/{dir}: {inside:?}");
    }
    assert_eq!(p.read("out/core"), "alpha\n");

    // Removed, as the message says: kiln recreates them and everything works again.
    for dir in ["cache", "state", "logs"] {
        std::fs::remove_file(p.path(&format!(".kiln/{dir}"))).expect("rm");
    }
    let run = p.build(&[]);
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));
    std::fs::remove_file(p.path("out/core")).expect("rm");
    assert_eq!(p.build(&[]).status_of("core"), "cached");
}

#[test]
fn kiln_dir_itself_a_link_is_refused_with_its_name() {
    let p = project(CORE);
    std::fs::create_dir(p.path("elsewhere")).expect("mkdir");
    symlink("elsewhere", p.path(".kiln")).expect("symlink");
    let run = p.build(&[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("`.kiln` is a symbolic link, not a directory, and kiln never writes through one"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(p.path("elsewhere")).expect("dir").count(), 0, "nothing written through .kiln");
    let clean = p.kiln(&["clean"]);
    assert_eq!(clean.code, 1, "{}", clean.stdout);
    assert!(clean.stderr.contains("error: cannot clean: `.kiln` is a symbolic link"), "{}", clean.stderr);
}

// ---------------------------------------------------------------------------------------
// Point 4: symbolic links in outputs.

#[test]
fn symlinks_in_outputs_are_cached_and_restored_as_links() {
    let p = Project::new(
        r#"
[target.dist]
cmd = "mkdir -p dist/v1 && echo a > dist/v1/a.txt && ln -sfn v1 dist/current && ln -sf v1/a.txt dist/a.txt && ln -sf nowhere dist/dangling"
outputs = ["dist"]

[target.tool]
cmd = "mkdir -p bin && printf 'echo hi\n' > tool.sh && ln -sf ../tool.sh bin/tool"
outputs = ["bin/tool", "tool.sh"]
"#,
    );
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    std::fs::remove_dir_all(p.path("dist")).expect("rm");
    std::fs::remove_dir_all(p.path("bin")).expect("rm");
    let run = p.build(&[]);
    assert_eq!(run.with_status("cached"), vec!["dist", "tool"], "{}", run.stdout);
    assert_eq!(link_text(&p.path("dist/current")), "v1");
    assert_eq!(link_text(&p.path("dist/a.txt")), "v1/a.txt", "a link to a file is not dereferenced");
    assert_eq!(link_text(&p.path("dist/dangling")), "nowhere", "a dangling link is an output too");
    assert_eq!(link_text(&p.path("bin/tool")), "../tool.sh", "a declared output that is a link");
    assert_eq!(p.read("dist/current/a.txt"), "a\n");
    assert!(is_regular(&p.path("dist/v1/a.txt")));

    let run = p.build(&[]);
    assert_eq!(run.with_status("fresh"), vec!["dist", "tool"]);
    // A link retargeted by hand is damage like an edited file: put back from the cache.
    std::fs::remove_file(p.path("dist/current")).expect("rm");
    symlink("elsewhere", p.path("dist/current")).expect("symlink");
    let run = p.build(&[]);
    assert_eq!(run.status_of("dist"), "cached");
    assert_eq!(link_text(&p.path("dist/current")), "v1");
}

#[test]
fn a_cached_link_that_would_leave_the_project_is_discarded_and_rebuilt() {
    for target in ["../../outside", "/etc/passwd"] {
        let p = Project::new(&format!(
            "[target.t]\ncmd = \"echo ran >> runs; mkdir -p dist && ln -sfn {target} dist/esc && echo x > dist/x\"\noutputs = [\"dist\"]\n"
        ));
        assert_eq!(p.build(&[]).code, 0);
        std::fs::remove_dir_all(p.path("dist")).expect("rm");
        let run = p.build(&[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.status_of("t"), "built", "{}", run.stdout);
        let want = format!(
            "t: cache entry for `dist/esc` is a symbolic link to `{target}`, which is outside the project root; \
             it was discarded; rebuilding"
        );
        assert!(has_warning(&run, &want), "{:?}", warnings(&run));
        assert_eq!(p.read("runs").lines().count(), 2);
        assert_eq!(link_text(&p.path("dist/esc")), target, "the command itself made its link");
    }
}

#[test]
fn a_record_naming_paths_outside_the_declared_outputs_is_discarded() {
    let unique = format!("kiln-test-{}-{}", std::process::id(), blake3::hash(b"x").to_hex());
    for bad in ["victim.txt", "core/a.txt", "../outside.txt", "/tmp/absolute.txt", "out/../victim.txt"] {
        let bad = bad.replace("outside", &format!("{unique}-outside")).replace("absolute", &format!("{unique}-abs"));
        let p = project(CORE);
        p.write("victim.txt", "precious\n");
        let first = p.build(&[]);
        assert_eq!(first.code, 0);
        let key = first.events().iter().find(|e| e["type"] == "target.finished").expect("finished")["key"]
            .as_str()
            .expect("key")
            .to_string();
        // The entry of this key now also names a path it must never write.
        let record_path = p.path(&format!(".kiln/cache/actions/{key}.json"));
        let mut record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&record_path).expect("record")).expect("json");
        let mut planted = record["outputs"][0].clone();
        planted["path"] = serde_json::Value::from(bad.as_str());
        record["outputs"].as_array_mut().expect("outputs").push(planted);
        std::fs::write(&record_path, record.to_string()).expect("write");

        p.write("core/a.txt", "beta\n");
        assert_eq!(p.build(&[]).status_of("core"), "built");
        p.write("core/a.txt", "alpha\n");
        let run = p.build(&[]);
        assert_eq!(run.code, 0, "{bad}: {}", run.stderr);
        assert_eq!(run.status_of("core"), "built", "{bad}: the entry is not used");
        let why = if bad.starts_with('/') || bad.contains("..") {
            format!("core: cache entry for `{bad}` names a path outside the project root; it was discarded; rebuilding")
        } else {
            format!(
                "core: cache entry names `{bad}`, which is not under its declared outputs (`out/core`); it was discarded; rebuilding"
            )
        };
        assert!(has_warning(&run, &why), "{bad}: {:?}", warnings(&run));
        assert_eq!(p.read("victim.txt"), "precious\n", "{bad}");
        assert_eq!(p.read("core/a.txt"), "alpha\n", "{bad}");
        assert!(!Path::new(&format!("/tmp/{unique}-abs.txt")).exists());
        assert!(!p.root().parent().expect("parent").join(format!("{unique}-outside.txt")).exists());
        // The rebuild wrote the entry of this key anew, naming only its output.
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&record_path).expect("record")).expect("json");
        let paths: Vec<&str> =
            record["outputs"].as_array().expect("outputs").iter().filter_map(|o| o["path"].as_str()).collect();
        assert_eq!(paths, vec!["out/core"], "{bad}");
    }
}

#[test]
fn a_file_where_a_directory_goes_and_a_directory_where_a_file_goes_are_replaced() {
    let p = Project::new(
        "[target.t]\ncmd = \"mkdir -p out/sub && echo f > out/sub/f.txt && echo g > out/g.txt\"\noutputs = [\"out\"]\n",
    );
    assert_eq!(p.build(&[]).code, 0);
    std::fs::remove_dir_all(p.path("out/sub")).expect("rm");
    p.write("out/sub", "a file where a directory goes\n");
    std::fs::remove_file(p.path("out/g.txt")).expect("rm");
    p.write("out/g.txt/junk", "a directory where a file goes\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.status_of("t"), "cached", "{}", run.stdout);
    assert_eq!(p.read("out/sub/f.txt"), "f\n");
    assert_eq!(p.read("out/g.txt"), "g\n");
    assert!(warnings(&run).is_empty(), "{:?}", warnings(&run));
}

#[test]
fn a_link_planted_where_an_output_goes_is_replaced_not_followed() {
    let p = project(CORE);
    assert_eq!(p.build(&[]).code, 0);
    p.write("victim", "precious\n");
    std::fs::remove_file(p.path("out/core")).expect("rm");
    symlink("../victim", p.path("out/core")).expect("symlink");
    let run = p.build(&[]);
    assert_eq!(run.status_of("core"), "cached");
    assert_eq!(p.read("victim"), "precious\n", "the restore wrote through the link");
    assert!(is_regular(&p.path("out/core")));
    assert_eq!(p.read("out/core"), "alpha\n");
}

// ---------------------------------------------------------------------------------------
// Point 5: cache faults degrade.

#[test]
fn an_unreadable_blob_is_discarded_with_its_path_and_the_target_rebuilt() {
    for fault in ["directory", "fifo", "truncated"] {
        let p = project(CORE);
        assert_eq!(p.build(&[]).code, 0);
        let blob = blob_rel(b"alpha\n");
        assert!(is_regular(&p.path(&blob)), "blob stored under its digest");
        std::fs::remove_file(p.path(&blob)).expect("rm");
        match fault {
            "directory" => p.write(&format!("{blob}/inside"), "x"),
            "fifo" => {
                nix::unistd::mkfifo(&p.path(&blob), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("fifo")
            }
            _ => p.write(&blob, "alp"),
        }
        std::fs::remove_file(p.path("out/core")).expect("rm");
        let run = build_within(&p, Duration::from_secs(30));
        assert_eq!(run.code, 0, "{fault}: {}", run.stderr);
        assert_eq!(run.status_of("core"), "built", "{fault}");
        let want = match fault {
            "truncated" => {
                format!("core: cache entry for `out/core` is corrupt (blob {blob} does not match its content)")
            }
            "directory" => {
                format!("core: cache blob {blob} for `out/core` cannot be read (it is a directory, not a regular file)")
            }
            _ => format!("core: cache blob {blob} for `out/core` cannot be read (it is a FIFO, not a regular file)"),
        };
        assert!(has_warning(&run, &want), "{fault}: {:?}", warnings(&run));
        assert!(has_warning(&run, "it was discarded; rebuilding"), "{fault}");
        assert_eq!(p.read("out/core"), "alpha\n");
        assert!(is_regular(&p.path(&blob)), "{fault}: the rebuild stored the blob again");
        assert_eq!(std::fs::read(p.path(&blob)).expect("blob"), b"alpha\n");
        std::fs::remove_file(p.path("out/core")).expect("rm");
        assert_eq!(p.build(&[]).status_of("core"), "cached", "{fault}: the cache works again");
    }
}

#[test]
fn a_cache_that_is_a_file_turns_the_cache_off_with_a_warning() {
    let p = project(CORE);
    p.write(".kiln/cache", "not a directory\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("core"), "built");
    assert!(
        has_warning(
            &run,
            "the cache is off for this run (outputs are neither restored nor stored): `.kiln/cache` is a file, not a directory: remove it and kiln recreates the directory"
        ),
        "{:?}",
        warnings(&run)
    );
    assert_eq!(p.build(&[]).status_of("core"), "fresh", "the state still works without the cache");
    // The human view shows the same warning.
    std::fs::remove_file(p.path("out/core")).expect("rm");
    let human = p.kiln(&["build"]);
    assert_eq!(human.code, 0);
    let shown = format!("{}{}", human.stdout, human.stderr);
    assert!(shown.contains("warning: the cache is off for this run"), "{shown}");
    assert_eq!(p.read(".kiln/cache"), "not a directory\n");
}

#[test]
fn a_state_that_cannot_be_saved_is_a_warning_not_silence() {
    let p = project(CORE);
    assert_eq!(p.build(&[]).code, 0);
    std::fs::remove_dir_all(p.path(".kiln/state")).expect("rm");
    p.write(".kiln/state", "a file where the state directory goes\n");
    p.write("core/a.txt", "beta\n");
    let run = p.build(&[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("core"), "built");
    assert!(
        has_warning(
            &run,
            "cannot save the build state in .kiln/state/targets.json: `.kiln/state` is a file, not a directory"
        ),
        "{:?}",
        warnings(&run)
    );
    assert!(
        has_warning(
            &run,
            "cannot save the stat cache in .kiln/state/stat.bin: `.kiln/state` is a file, not a directory"
        ),
        "{:?}",
        warnings(&run)
    );
}

/// Runs `script` with `sh` in a private mount namespace, in the project directory, with
/// `$KILN` set: mounts made there vanish with it.
fn in_mount_namespace(p: &Project, script: &str) {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .current_dir(p.root())
        .env("KILN", kiln_bin())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs util-linux's `unshare` (apt-get install util-linux): {e}"));
    assert!(
        out.status.success(),
        "the script in a private mount namespace failed (this test needs root, for `unshare --mount` and `mount -t tmpfs`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A run the script recorded as `runs/N.json`, `runs/N.err`, `runs/N.code`.
fn recorded(p: &Project, n: u32) -> Run {
    Run {
        code: p.read(&format!("runs/{n}.code")).trim().parse().expect("exit code"),
        stdout: p.read(&format!("runs/{n}.json")),
        stderr: p.read(&format!("runs/{n}.err")),
    }
}

const RECORD: &str = r#"record() { "$KILN" --json build > runs/$1.json 2> runs/$1.err; echo $? > runs/$1.code; }"#;

#[test]
fn a_read_only_cache_still_restores_and_a_new_build_succeeds_uncached() {
    let p = project(CORE);
    std::fs::create_dir_all(p.path(".kiln/cache")).expect("mkdir");
    std::fs::create_dir_all(p.path("runs")).expect("mkdir");
    in_mount_namespace(
        &p,
        &format!(
            "set -e; {RECORD}
             mount -t tmpfs -o size=1m tmpfs .kiln/cache
             record 1
             rm out/core
             mount -o remount,ro .kiln/cache
             record 2
             echo beta > core/a.txt
             record 3"
        ),
    );
    let first = recorded(&p, 1);
    assert_eq!((first.code, first.status_of("core")), (0, "built".to_string()), "{}", first.stderr);
    let restored = recorded(&p, 2);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    assert_eq!(restored.status_of("core"), "cached", "a read-only cache still restores: {:?}", warnings(&restored));
    let uncached = recorded(&p, 3);
    assert_eq!(uncached.code, 0, "{}", uncached.stderr);
    assert_eq!(uncached.status_of("core"), "built");
    assert!(
        has_warning(&uncached, "core: outputs were not cached (cannot create a file in .kiln/cache/tmp: "),
        "{:?}",
        warnings(&uncached)
    );
    assert!(has_warning(&uncached, "Read-only file system"), "{:?}", warnings(&uncached));
    assert_eq!(p.read("out/core"), "beta\n");
    let after = p.build(&[]);
    assert_eq!(after.status_of("core"), "fresh", "the state recorded the uncached build");
}

#[test]
fn a_full_cache_lets_the_build_succeed_uncached() {
    let p = Project::new(
        "[target.big]\ncmd = \"head -c 300000 /dev/zero | tr '\\\\0' x > big.out\"\noutputs = [\"big.out\"]\n",
    );
    std::fs::create_dir_all(p.path(".kiln/cache")).expect("mkdir");
    std::fs::create_dir_all(p.path("runs")).expect("mkdir");
    in_mount_namespace(&p, &format!("set -e; {RECORD}\n mount -t tmpfs -o size=64k tmpfs .kiln/cache\n record 1"));
    let run = recorded(&p, 1);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.status_of("big"), "built");
    assert!(has_warning(&run, "big: outputs were not cached (cannot write .kiln/cache/tmp/"), "{:?}", warnings(&run));
    assert!(has_warning(&run, "No space left on device"), "{:?}", warnings(&run));
    assert_eq!(std::fs::metadata(p.path("big.out")).expect("output").len(), 300_000);
    assert_eq!(p.build(&[]).status_of("big"), "fresh");
}

// ---------------------------------------------------------------------------------------
// Deleting: `kiln cache prune` and `kiln clean` never delete through a link.

#[test]
fn prune_removes_a_link_planted_in_the_cache_not_what_it_points_to() {
    let p = project(CORE);
    assert_eq!(p.build(&[]).code, 0);
    p.write("elsewhere/precious", "keep me\n");
    symlink("../../../elsewhere", p.path(".kiln/cache/blobs/zz")).expect("symlink");
    let pruned = p.kiln(&["cache", "prune", "--max-size", "0"]);
    assert_eq!(pruned.code, 0, "{}", pruned.stderr);
    assert_eq!(p.read("elsewhere/precious"), "keep me\n", "prune deleted through a link");
    assert!(std::fs::symlink_metadata(p.path(".kiln/cache/blobs/zz")).is_err(), "the planted link is gone");

    std::fs::remove_dir_all(p.path(".kiln/cache")).expect("rm");
    symlink("../elsewhere", p.path(".kiln/cache")).expect("symlink");
    let refused = p.kiln(&["cache", "prune", "--max-size", "0"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("error: cannot prune the cache: `.kiln/cache` is a symbolic link"),
        "{}",
        refused.stderr
    );
    assert_eq!(p.read("elsewhere/precious"), "keep me\n");
}

#[test]
fn clean_removes_recorded_links_and_never_deletes_through_one() {
    let p = Project::new(
        "[target.t]\ncmd = \"mkdir -p out && echo x > out/x && ln -sf x out/link\"\noutputs = [\"out/x\", \"out/link\"]\n",
    );
    assert_eq!(p.build(&[]).code, 0);
    let clean = p.kiln(&["clean"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert!(clean.stdout.starts_with("removed 2 output files"), "{}", clean.stdout);
    assert!(std::fs::symlink_metadata(p.path("out/link")).is_err(), "the link output is removed");

    assert_eq!(p.build(&[]).code, 0);
    // `out` is now a link to a directory outside the recorded outputs.
    std::fs::remove_dir_all(p.path("out")).expect("rm");
    p.write("elsewhere/x", "precious\n");
    symlink("elsewhere", p.path("out")).expect("symlink");
    let clean = p.kiln(&["clean"]);
    assert_eq!(clean.code, 0);
    assert!(clean.stdout.starts_with("removed 0 output files"), "{}", clean.stdout);
    assert_eq!(p.read("elsewhere/x"), "precious\n", "clean deleted through a link");
}
