//! `env_file` and a service's `dir`, with the real binary: a target's environment from a
//! dotenv file is part of its key; a process service runs in its `dir` with the file's
//! variables; a change to the file reaches a running `kiln up` as a change of the
//! configuration.

mod common;
use common::{Project, Up};

#[test]
fn an_env_file_is_part_of_a_targets_key_and_env_wins_over_it() {
    let p = Project::new(
        "[target.greet]\ncmd = \"mkdir -p out && echo \\\"$GREETING $NAME\\\" > out/greet.txt\"\n\
         outputs = [\"out/greet.txt\"]\nenv_file = \"build.env\"\nenv = { NAME = \"from-env\" }\n",
    );
    p.write("build.env", "# build settings\nGREETING='hello there'\nNAME=from-file\n");
    let first = p.build(&[]);
    assert_eq!(first.status_of("greet"), "built", "{}", first.stderr);
    assert_eq!(p.read("out/greet.txt"), "hello there from-env\n");
    assert_eq!(p.build(&[]).status_of("greet"), "fresh");

    p.write("build.env", "GREETING=\"hi\" # shorter\nNAME=from-file\n");
    let again = p.build(&[]);
    let (_, status, reason) = again.finished().into_iter().find(|(t, _, _)| t == "greet").expect("greet");
    assert_eq!(status, "built");
    assert!(reason.contains("GREETING"), "the reason names the variable: {reason}");
    assert_eq!(p.read("out/greet.txt"), "hi from-env\n");
}

#[test]
fn a_broken_env_file_stops_the_build_with_its_line() {
    let p = Project::new("[target.t]\ncmd = \"true\"\nenv_file = \"build.env\"\n");
    p.write("build.env", "OK=1\nthis is not dotenv\n");
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("`env_file` of target `t` `build.env`, line 2: expected `KEY=VALUE`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("kiln.toml:3:12"), "{}", run.stderr);
}

#[test]
fn a_process_service_runs_in_its_dir_with_its_env_file_and_restarts_when_the_file_changes() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n\n[service.app]\ncmd = \"echo in $(basename $(pwd)) with $MODE; exec sleep 1000\"\n\
         dir = \"srv\"\nenv_file = \"app.env\"\nstop_signal = \"SIGKILL\"\n",
    );
    p.write("srv/.keep", "");
    p.write("app.env", "MODE=first\n");
    let mut up = Up::start(&p, &[]);
    let said = |line: &'static str| move |e: &serde_json::Value| e["type"] == "service.output" && e["line"] == line;
    up.wait_for("the first start", said("in srv with first"));
    p.write("app.env", "MODE=second\n");
    up.wait_for("the configuration reloaded", |e| e["type"] == "config.reloaded");
    up.wait_for("a restart with the new variable", said("in srv with second"));
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}

#[test]
fn a_changed_env_file_rolls_a_service_one_replica_at_a_time_and_says_which_file_changed() {
    let p = Project::new(
        "[settings]\ndebounce = \"50ms\"\n\n[service.app]\ncmd = \"echo replica $KILN_REPLICA with $MODE; exec sleep 1000\"\n\
         env_file = \"app.env\"\nreplicas = 2\nready = { log = \"with\" }\nstop_signal = \"SIGKILL\"\n",
    );
    p.write("app.env", "MODE=first\n");
    let mut up = Up::start(&p, &[]);
    let phase = |r: u64, phase: &'static str| {
        move |e: &serde_json::Value| {
            e["type"] == "service.phase" && e["service"] == "app" && e["replica"] == r && e["phase"] == phase
        }
    };
    up.wait_seen("app[1] ready", phase(1, "ready"));
    p.write("app.env", "MODE=second\n");
    let reloaded = up.wait_for("the configuration reloaded", |e| e["type"] == "config.reloaded");
    assert_eq!(reloaded["files"], serde_json::json!(["app.env"]), "{reloaded}");
    let from = up.seen.len();
    up.wait_for("replica 1 with the new variable", |e| {
        e["type"] == "service.output" && e["line"] == "replica 1 with second"
    });
    up.wait_for("app[1] ready again", phase(1, "ready"));
    // Rolling: replica 1 is told to stop only once the new replica 0 is ready.
    let after = &up.seen[from..];
    let at = |pred: &dyn Fn(&serde_json::Value) -> bool| after.iter().position(pred).expect("seen");
    let stop0 = at(&phase(0, "stopping"));
    let ready0 = stop0 + after[stop0..].iter().position(phase(0, "ready")).expect("replica 0 ready again");
    let stop1 = at(&phase(1, "stopping"));
    assert!(stop0 < stop1 && ready0 < stop1, "one replica at a time:\n{}", up.dump());
    let reason = after[stop0]["reason"].as_str().unwrap_or("");
    assert_eq!(reason, "restarting for a change of its configuration", "{}", after[stop0]);
    let (code, _) = up.stop();
    assert_eq!(code, 130);
}
