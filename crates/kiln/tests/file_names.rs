//! File names are bytes: an input whose name is not UTF-8 is part of the key and its edits
//! rebuild, in `kiln build` and in `kiln up`; a directory under an input pattern that cannot
//! be read fails the build with a message naming it.

mod common;
use common::{Project, Up, kiln_bin};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Command;

/// `rel` (bytes, any) under the project root.
fn raw_path(p: &Project, rel: &[u8]) -> PathBuf {
    p.root().join(OsStr::from_bytes(rel))
}

fn write_raw(p: &Project, rel: &[u8], text: &str) {
    let path = raw_path(p, rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn key_of(run: &common::Run, target: &str) -> String {
    run.events()
        .iter()
        .find(|e| e["type"] == "target.finished" && e["target"] == target)
        .and_then(|e| e["key"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no key for {target}:\n{}", run.stdout))
}

fn finished(run: &common::Run, target: &str) -> (String, String) {
    run.finished()
        .into_iter()
        .find(|(t, _, _)| t == target)
        .map(|(_, s, r)| (s, r))
        .unwrap_or_else(|| panic!("no target.finished for {target}:\n{}\n{}", run.stdout, run.stderr))
}

const CONFIG: &str = r#"
[settings]
debounce = "50ms"

[target.all]
cmd = "mkdir -p out && cat src/*.c > out/all.txt"
inputs = ["src/**/*.c"]
outputs = ["out/all.txt"]

[target.glob]
cmd = "true"
inputs = ["src/{bad,none}?.c"]
"#;

#[test]
fn an_input_whose_name_is_not_utf8_is_part_of_the_key_and_its_edit_rebuilds() {
    let p = Project::new(CONFIG);
    p.write("src/ok.c", "ok\n");
    write_raw(&p, b"src/bad\xff.c", "one\n");

    let first = p.build(&[]);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(p.read("out/all.txt"), "one\nok\n");
    let again = p.build(&[]);
    assert_eq!(again.with_status("fresh"), vec!["all", "glob"], "the state round-trips: {}", again.stdout);

    write_raw(&p, b"src/bad\xff.c", "two\n");
    let edited = p.build(&[]);
    assert_eq!(edited.code, 0, "{}", edited.stderr);
    for target in ["all", "glob"] {
        let (status, reason) = finished(&edited, target);
        assert_eq!(status, "built", "{target}: {reason}");
        // Shown lossily, as `Path::display` shows it.
        assert_eq!(reason, "src/bad\u{FFFD}.c changed", "{target}");
    }
    assert_ne!(key_of(&first, "all"), key_of(&edited, "all"));
    assert_eq!(p.read("out/all.txt"), "two\nok\n");

    // Two names that show the same are still two files.
    write_raw(&p, b"src/bad\xfe.c", "three\n");
    let added = p.build(&[]);
    assert_eq!(finished(&added, "all"), ("built".to_string(), "src/bad\u{FFFD}.c added".to_string()));
    assert_eq!(finished(&added, "glob").0, "built", "a glob matches it by its bytes");
    std::fs::remove_file(raw_path(&p, b"src/bad\xfe.c")).expect("rm");
    let back = p.build(&[]);
    assert_eq!(finished(&back, "all").0, "cached", "back to the content of an earlier build: {}", back.stdout);
    assert_eq!(key_of(&back, "all"), key_of(&edited, "all"));
}

#[test]
fn kiln_up_rebuilds_when_an_input_whose_name_is_not_utf8_changes() {
    let p = Project::new(CONFIG);
    p.write("src/ok.c", "ok\n");
    write_raw(&p, b"src/bad\xff.c", "one\n");
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", |e| e["type"] == "run.finished");

    write_raw(&p, b"src/bad\xff.c", "two\n");
    let changed = up.wait_for("the edit to be seen", |e| e["type"] == "watch.changed");
    assert_eq!(changed["paths"], serde_json::json!(["src/bad\u{FFFD}.c"]), "{changed}");
    let built = up.wait_for("all rebuilt", |e| e["type"] == "target.finished" && e["target"] == "all");
    assert_eq!(
        (built["status"].as_str(), built["reason"].as_str()),
        (Some("built"), Some("src/bad\u{FFFD}.c changed"))
    );
    up.wait_for("the round", |e| e["type"] == "run.finished");
    assert_eq!(p.read("out/all.txt"), "two\nok\n");

    // A new directory whose name is not UTF-8: watched, and what it holds counts.
    write_raw(&p, b"src/d\xfe/new.c", "new\n");
    let built = up.wait_for("all rebuilt for the new directory", |e| {
        e["type"] == "target.finished" && e["target"] == "all" && e["status"] == "built"
    });
    assert_eq!(built["reason"], "src/d\u{FFFD}/new.c added", "{built}");
    up.wait_for("the round", |e| e["type"] == "run.finished");
    write_raw(&p, b"src/d\xfe/new.c", "newer\n");
    let built = up.wait_for("all rebuilt for the edit in it", |e| {
        e["type"] == "target.finished" && e["target"] == "all" && e["status"] == "built"
    });
    assert_eq!(built["reason"], "src/d\u{FFFD}/new.c changed", "{built}");
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

/// Makes a directory unreadable (mode 000) and restores its mode when dropped, on every
/// exit path of the test.
struct Locked(PathBuf);

impl Locked {
    fn new(dir: PathBuf) -> Locked {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
        Locked(dir)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

/// Whether the tests run as root: the project directory they just made is owned by their uid.
fn running_as_root(p: &Project) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p.root()).expect("the project exists").uid() == 0
}

/// `kiln ARGS` in the project, unable to bypass file permissions. Root reads a mode-000
/// directory through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, so as root kiln runs under
/// `setpriv` with both dropped from its bounding set (for a uid-0 process, what it execs gets
/// exactly the bounding set): the kernel then refuses the read with EACCES, as it would for
/// anyone else. Everything else stays root's, so kiln still writes `.kiln/`.
fn kiln_without_dac_override(p: &Project, args: &[&str]) -> common::Run {
    let mut command = if running_as_root(p) {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set", "-dac_override,-dac_read_search", "--", kiln_bin()]);
        c
    } else {
        Command::new(kiln_bin())
    };
    command.args(args).current_dir(p.root()).env("NO_COLOR", "1").stdin(std::process::Stdio::null());
    let out = command.output().unwrap_or_else(|e| {
        panic!("setpriv (util-linux) is needed to run kiln without CAP_DAC_OVERRIDE ({e}): apt-get install util-linux")
    });
    assert!(!String::from_utf8_lossy(&out.stderr).contains("setpriv:"), "{}", String::from_utf8_lossy(&out.stderr));
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_unreadable_directory_under_an_input_pattern_fails_the_build_and_names_it() {
    let p = Project::new(
        "[target.app]\ncmd = \"true\"\ninputs = [\"src/**/*.c\"]\n\n\
         [target.docs]\ncmd = \"true\"\ninputs = [\"docs/*.md\"]\n\n\
         [target.one-file]\ncmd = \"true\"\ninputs = [\"src/a.c\"]\n",
    );
    p.write("src/a.c", "a\n");
    p.write("src/locked/hidden.c", "h\n");
    p.write("docs/x.md", "x\n");
    let _locked = Locked::new(p.path("src/locked"));
    // What kiln runs as must really be refused, or the test proves nothing.
    if running_as_root(&p) {
        let ls = Command::new("setpriv")
            .args(["--bounding-set", "-dac_override,-dac_read_search", "--", "ls"])
            .arg(p.path("src/locked"))
            .output()
            .expect("setpriv (util-linux) is needed: apt-get install util-linux");
        assert!(!ls.status.success(), "the directory is readable after all: {ls:?}");
    }

    let run = kiln_without_dac_override(&p, &["--json", "build", "--keep-going"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let (status, reason) = finished(&run, "app");
    assert_eq!(status, "failed");
    assert!(
        reason.starts_with("cannot read input directory `src/locked`: Permission denied (os error 13)"),
        "{reason}"
    );
    assert!(reason.contains("chmod u+rx 'src/locked'"), "says what to do: {reason}");
    assert_eq!(finished(&run, "docs").0, "built", "a target whose inputs are elsewhere builds");
    assert_eq!(finished(&run, "one-file").0, "built", "a literal input beside it is listed without it");
    assert!(run.stderr.contains("src/locked"), "the terminal says it too: {}", run.stderr);
}

#[test]
fn an_output_whose_name_is_not_utf8_is_stored_restored_and_cleaned() {
    let p = Project::new(
        "[target.gen]\ncmd = \"mkdir -p out && printf made > \\\"out/bad$(printf '\\\\377').txt\\\"\"\noutputs = [\"out\"]\n",
    );
    let made = raw_path(&p, b"out/bad\xff.txt");
    let first = p.build(&[]);
    assert_eq!(first.status_of("gen"), "built", "{}\n{}", first.stdout, first.stderr);
    assert_eq!(std::fs::read_to_string(&made).expect("the command wrote it"), "made");

    std::fs::remove_file(&made).expect("rm");
    let restored = p.build(&[]);
    let (status, reason) = finished(&restored, "gen");
    assert_eq!(status, "cached", "{reason}");
    assert_eq!(reason, "output out/bad\u{FFFD}.txt is missing; restored 1 file from cache");
    assert_eq!(std::fs::read_to_string(&made).expect("restored"), "made");

    let clean = p.kiln(&["clean"]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert!(clean.stdout.contains("removed 1 output files"), "{}", clean.stdout);
    assert!(!made.exists(), "kiln clean removes it");
}
