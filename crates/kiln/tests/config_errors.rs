//! Every kind of configuration mistake: file:line:column, the source line, a caret under
//! the span, a hint where one helps, and exit code 2.

mod common;
use common::{Project, Up};

fn error_of(config: &str) -> String {
    let p = Project::new(config);
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 2, "config errors exit 2; stderr:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing on stdout: {}", run.stdout);
    run.stderr
}

#[test]
fn toml_syntax_error() {
    assert_eq!(
        error_of("[target.a\ncmd = \"x\"\n"),
        "error: invalid TOML: unclosed table, expected `]`\n --> kiln.toml:1:10\n  |\n1 | [target.a\n  |          ^ here\n"
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"true\"\ndpes = []\n"),
        "error: unknown key `dpes` in [target.a]\n --> kiln.toml:3:1\n  |\n3 | dpes = []\n  | ^^^^ unknown key\n  |\n  = help: did you mean `deps`?\n"
    );
}

#[test]
fn unknown_top_level_and_settings_keys() {
    let err = error_of("[setings]\njobs = 2\n");
    assert!(err.contains("unknown key `setings` in kiln.toml"), "{err}");
    assert!(err.contains("did you mean `settings`?"), "{err}");
    let err = error_of("[settings]\ndebounse = \"1s\"\n");
    assert!(err.contains("--> kiln.toml:2:1") && err.contains("did you mean `debounce`?"), "{err}");
}

#[test]
fn wrong_type() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"true\"\nretries = \"two\"\n"),
        "error: wrong type for `retries` of target `a`: expected an integer, found a string\n --> kiln.toml:3:11\n  |\n3 | retries = \"two\"\n  |           ^^^^^ expected an integer\n"
    );
    let err = error_of("[target.a]\ncmd = [\"true\"]\n");
    assert!(err.contains("expected a string, found an array") && err.contains("kiln.toml:2:7"), "{err}");
}

#[test]
fn unknown_dependency_with_did_you_mean() {
    assert_eq!(
        error_of("[target.core]\ncmd = \"true\"\n\n[target.api]\ncmd = \"true\"\ndeps = [\"cor\"]\n"),
        "error: unknown dependency `cor`\n --> kiln.toml:6:9\n  |\n6 | deps = [\"cor\"]\n  |         ^^^^^ no target has this name\n  |\n  = help: did you mean `core`?\n"
    );
}

#[test]
fn dependency_cycle_prints_the_whole_cycle() {
    let err = error_of(
        "[target.a]\ncmd = \"x\"\ndeps = [\"b\"]\n[target.b]\ncmd = \"x\"\ndeps = [\"c\"]\n[target.c]\ncmd = \"x\"\ndeps = [\"a\"]\n",
    );
    assert_eq!(
        err,
        "error: dependency cycle: a → b → c → a\n --> kiln.toml:9:9\n  |\n9 | deps = [\"a\"]\n  |         ^^^ `c` depends on `a`, closing the cycle\n  |\n  = help: remove one of these dependencies to break the cycle\n"
    );
}

#[test]
fn target_with_both_or_neither_action() {
    let both = error_of("[target.a]\ncmd = \"x\"\nimage = { name = \"n\" }\n");
    assert!(both.starts_with("error: target `a` has both `cmd` and `image`\n --> kiln.toml:3:9\n"), "{both}");
    let neither = error_of("[target.a]\ninputs = []\n");
    assert_eq!(
        neither,
        "error: target `a` has neither `cmd` nor `image`\n --> kiln.toml:1:9\n  |\n1 | [target.a]\n  |         ^ nothing to do\n  |\n  = help: add `cmd = \"...\"` to run a command, or `image = { name = \"...\" }` to build an image\n"
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"x\"\ntimeout = \"10 minutes\"\n"),
        "error: bad duration for `timeout` of target `a`: unknown unit `minutes` (use ms, s, m or h)\n --> kiln.toml:3:11\n  |\n3 | timeout = \"10 minutes\"\n  |           ^^^^^^^^^^^^ not a duration\n  |\n  = help: write durations like \"500ms\", \"10s\", \"5m\" or \"1h\"\n"
    );
    let err = error_of("[settings]\ndebounce = \"fast\"\n");
    assert!(err.contains("bad duration for `debounce` in [settings]") && err.contains("kiln.toml:2:12"), "{err}");
}

#[test]
fn bad_glob() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"x\"\ninputs = [\"src/[a\"]\n"),
        "error: bad glob in `inputs` of target `a`: unclosed character class; missing ']'\n --> kiln.toml:3:11\n  |\n3 | inputs = [\"src/[a\"]\n  |           ^^^^^^^^ invalid glob\n  |\n  = help: globs use `*`, `**`, `?`, `[abc]` and `{a,b}`\n"
    );
}

#[test]
fn paths_that_leave_the_root() {
    let err = error_of("[target.a]\ncmd = \"x\"\noutputs = [\"../escape\"]\n");
    assert!(err.contains("path in `outputs` of target `a` leaves the project root"), "{err}");
    assert!(err.contains("kiln.toml:3:12"), "{err}");
}

#[test]
fn service_image_must_name_an_image_target() {
    assert_eq!(
        error_of("[target.bin]\ncmd = \"x\"\n\n[service.api]\nimage = \"bin\"\n"),
        "error: `bin` is not an image target\n --> kiln.toml:5:9\n  |\n5 | image = \"bin\"\n  |         ^^^^^ this target runs a command, it builds no image\n  |\n  = help: give target `bin` an `image = { ... }` spec, or use `cmd` to run a process service\n"
    );
}

#[test]
fn service_errors_are_checked_too() {
    let err = error_of(
        "[target.b]\ncmd = \"x\"\n[service.api]\ncmd = \"x\"\nrestart = \"sometimes\"\nafter = [\"dbb\"]\nready = { http = \"u\", tcp = \"v\" }\n[service.db]\ncmd = \"y\"\n",
    );
    assert!(err.contains("unknown restart policy `sometimes`"), "{err}");
    assert!(err.contains("unknown service `dbb` in `after`") && err.contains("did you mean `db`?"), "{err}");
    assert!(err.contains("needs exactly one of `http`, `tcp`, `cmd` or `log`"), "{err}");
    assert!(err.ends_with("error: kiln.toml has 3 errors\n"), "{err}");
}

#[test]
fn every_mistake_is_reported_at_once() {
    let err = error_of("[target.a]\ncmd = \"x\"\ndpes = []\n[target.b]\ncmd = 3\n");
    assert!(err.contains("unknown key `dpes`") && err.contains("wrong type for `cmd` of target `b`"), "{err}");
    assert!(err.ends_with("error: kiln.toml has 2 errors\n"), "{err}");
}

#[test]
fn unknown_profile_and_errors_inside_profiles() {
    let p = Project::new("[target.a]\ncmd = \"x\"\n[profile.debug]\ntarget.a.cmd = \"y\"\n");
    let run = p.kiln(&["build", "--profile", "debgu"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "error: no profile named `debgu` in kiln.toml (did you mean `debug`?)\n");
    let err = error_of("[target.a]\ncmd = \"x\"\n[profile.debug]\ntarget.a.cmdd = \"y\"\n");
    assert!(err.contains("unknown key `cmdd` in [target.a]") && err.contains("kiln.toml:4:10"), "{err}");
}

#[test]
fn unknown_target_on_the_command_line() {
    let p = Project::new("[target.core]\ncmd = \"true\"\n");
    let run = p.kiln(&["build", "coer"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr, "error: unknown target `coer` (did you mean `core`?)\n");
}

#[test]
fn missing_config_says_where_it_looked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out =
        std::process::Command::new(common::kiln_bin()).arg("build").current_dir(dir.path()).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no kiln.toml in") && err.contains("--file PATH or -C DIR"), "{err}");
}

/// Regression: a duration too long for the clock panicked kiln while reading kiln.toml.
#[test]
fn a_duration_too_long_is_a_config_error_not_a_panic() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"true\"\ntimeout = \"99999999999999999999h\"\n"),
        "error: bad duration for `timeout` of target `a`: `99999999999999999999h` is too long\n --> kiln.toml:3:11\n  |\n3 | timeout = \"99999999999999999999h\"\n  |           ^^^^^^^^^^^^^^^^^^^^^^^ not a duration\n  |\n  = help: write durations like \"500ms\", \"10s\", \"5m\" or \"1h\"\n"
    );
}

/// Regression: a kiln.toml that is not UTF-8 said only "stream did not contain valid UTF-8",
/// with no line or column.
#[test]
fn invalid_utf8_points_at_the_first_bad_byte() {
    let p = Project::new("");
    std::fs::write(p.path("kiln.toml"), b"[target.a]\ncmd = \"caf\xe9 au lait\"\n").expect("write");
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "error: kiln.toml is not valid UTF-8: invalid byte 0xE9\n --> kiln.toml:2:11\n  |\n2 | cmd = \"caf\u{fffd} au lait\"\n  |           ^ not UTF-8\n  |\n  = help: save the file as UTF-8 (for example `iconv -f LATIN1 -t UTF-8`)\n"
    );
}

/// Regression: every one of thousands of errors was printed (and rendering them was
/// quadratic in the size of the file).
#[test]
fn at_most_fifty_errors_are_printed_then_how_many_more() {
    let mut config = String::new();
    for i in 0..400 {
        config.push_str(&format!("[target.t{i}]\ncmd = \"true\"\ndeps = [\"missing{i}\"]\n"));
    }
    let err = error_of(&config);
    assert_eq!(err.matches("\nerror: unknown dependency").count() + 1, 50, "{err}");
    assert!(err.starts_with("error: unknown dependency `missing0`\n --> kiln.toml:3:9\n"), "{err}");
    assert!(err.contains("error: unknown dependency `missing49`\n"), "the 50th in source order: {err}");
    assert!(!err.contains("missing50`"), "{err}");
    assert!(
        err.ends_with(
            "\n\nand 350 more errors (fix the ones above and run again to see them)\n\nerror: kiln.toml has 400 errors\n"
        ),
        "{err}"
    );
}

#[test]
fn one_error_past_fifty_is_one_more_error() {
    let config: String = (0..51).map(|i| format!("[target.t{i}]\ncmd = 1\n")).collect();
    let err = error_of(&config);
    assert!(
        err.ends_with(
            "\n\nand 1 more error (fix the ones above and run again to see them)\n\nerror: kiln.toml has 51 errors\n"
        ),
        "{err}"
    );
}

/// The hint of an unknown name among thousands is still found for the errors shown.
#[test]
fn did_you_mean_among_many_names() {
    let mut config: String = (0..3000).map(|i| format!("[target.name{i}]\ncmd = \"true\"\n")).collect();
    config.push_str("[target.last]\ncmd = \"true\"\ndeps = [\"nmae2999\"]\n");
    let err = error_of(&config);
    assert!(err.contains("unknown dependency `nmae2999`") && err.contains("did you mean `name2999`?"), "{err}");
}

/// Regression: an `https://` probe URL was accepted and then failed at every period with
/// "only http:// URLs can be probed", so the service never became ready.
#[test]
fn an_https_probe_url_is_named_as_unsupported() {
    assert_eq!(
        error_of("[service.web]\ncmd = \"./web\"\nready = { http = \"https://127.0.0.1:8443/health\" }\n"),
        "error: https:// URLs are not supported in `ready.http` of service `web`\n --> kiln.toml:3:18\n  |\n3 | ready = { http = \"https://127.0.0.1:8443/health\" }\n  |                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^ https is not supported\n  |\n  = help: the probe speaks plain HTTP: probe a plain-HTTP port (`http://…`), or check that the TLS port accepts connections with `tcp = \"HOST:PORT\"`\n"
    );
    let err = error_of("[service.web]\ncmd = \"./web\"\nready = { http = \"127.0.0.1:8080/health\" }\n");
    assert!(
        err.contains("`ready.http` of service `web` must be an http:// URL") && err.contains("kiln.toml:3:18"),
        "{err}"
    );
    let err = error_of("[service.web]\ncmd = \"./web\"\nready = { http = \"http://localhost:99999/\" }\n");
    assert!(err.contains("port 99999 in `ready.http` of service `web` is out of range"), "{err}");
    assert!(err.contains("kiln.toml:3:36"), "the caret is under the port: {err}");
}

/// Regression: `tcp = "127.0.0.1"` was accepted, and every probe failed with "invalid socket
/// address".
#[test]
fn a_tcp_probe_needs_host_and_port() {
    assert_eq!(
        error_of("[service.db]\ncmd = \"./db\"\nready = { tcp = \"127.0.0.1\" }\n"),
        "error: `ready.tcp` of service `db` needs `HOST:PORT`, found `127.0.0.1`\n --> kiln.toml:3:17\n  |\n3 | ready = { tcp = \"127.0.0.1\" }\n  |                 ^^^^^^^^^^^ no port\n  |\n  = help: write `HOST:PORT`, like `127.0.0.1:5432` or `localhost:6379`\n"
    );
    let err = error_of("[service.db]\ncmd = \"./db\"\nready = { tcp = \"localhost:0\" }\n");
    assert!(err.contains("port 0 in `ready.tcp` of service `db` is out of range"), "{err}");
}

/// Regression: a `log` pattern that is not a regex was silently matched as plain text.
#[test]
fn a_log_probe_regex_must_compile() {
    assert_eq!(
        error_of("[service.api]\ncmd = \"./api\"\nready = { log = 'listening on (port' }\n"),
        "error: bad regex in `ready.log` of service `api`: unclosed group\n --> kiln.toml:3:31\n  |\n3 | ready = { log = 'listening on (port' }\n  |                               ^ invalid regex\n  |\n  = help: to match the text as written, escape it: `log = 'listening on \\(port'`\n"
    );
    let err = error_of("[service.api]\ncmd = \"./api\"\nready = { log = \"ready \\\\p{Nope}\" }\n");
    assert!(err.contains("bad regex in `ready.log` of service `api`: Unicode property not found"), "{err}");
    let p = Project::new("[service.api]\ncmd = \"true\"\nready = { log = 'listening on port \\d+' }\n");
    let run = p.kiln(&["build"]);
    assert_eq!(run.code, 0, "a valid regex is fine: {}", run.stderr);
}

/// Regression: ports out of range reached the container engine, which refused to start the
/// container at run time.
#[test]
fn ports_are_1_to_65535() {
    assert_eq!(
        error_of("[service.web]\nimage = \"nginx\"\nports = [\"8080:70000\"]\n"),
        "error: port 70000 in `ports` of service `web` is out of range\n --> kiln.toml:3:16\n  |\n3 | ports = [\"8080:70000\"]\n  |                ^^^^^ ports are 1 to 65535\n"
    );
    let err = error_of("[service.web]\nimage = \"nginx\"\nports = [\"web:80\", \"0:80\"]\n");
    assert!(err.contains("`web` in `ports` of service `web` is not a port number"), "{err}");
    assert!(err.contains("port 0 in `ports` of service `web` is out of range"), "{err}");
    // Filled in for each replica, as the supervisor does: replicas 0 to 5 are fine.
    let err = error_of("[service.web]\nimage = \"nginx\"\nreplicas = 7\nports = [\"6553${KILN_REPLICA}:80\"]\n");
    assert!(
        err.starts_with("error: port 65536 (for replica 6) in `ports` of service `web` is out of range\n"),
        "{err}"
    );
    let p = Project::new("[service.web]\nimage = \"nginx\"\nreplicas = 6\nports = [\"6553${KILN_REPLICA}:80\"]\n");
    assert_eq!(p.kiln(&["build"]).code, 0);
}

/// Regression: a zero timeout killed every command at once, a zero `stop_timeout` sent
/// SIGKILL with no grace, a zero probe period probed in a busy loop.
#[test]
fn timeouts_and_periods_must_be_longer_than_zero() {
    assert_eq!(
        error_of("[target.a]\ncmd = \"true\"\ntimeout = \"0s\"\n"),
        "error: `timeout` of target `a` must be longer than zero\n --> kiln.toml:3:11\n  |\n3 | timeout = \"0s\"\n  |           ^^^^ zero\n  |\n  = help: write a positive duration like \"500ms\" or \"10s\"\n"
    );
    let err = error_of(
        "[service.a]\ncmd = \"./a\"\nstop_timeout = \"0ms\"\nready = { cmd = \"true\", period = \"0s\", timeout = \"0h\" }\n",
    );
    assert!(err.contains("`stop_timeout` of service `a` must be longer than zero"), "{err}");
    assert!(err.contains("`ready.period` of service `a` must be longer than zero"), "{err}");
    assert!(err.contains("`ready.timeout` of service `a` must be longer than zero"), "{err}");
    assert!(err.ends_with("error: kiln.toml has 3 errors\n"), "{err}");
}

/// The same, for an edit that `kiln up` reads again: reported as `config.invalid` with the
/// line and column, and the old configuration keeps running.
#[test]
fn a_reloaded_kiln_toml_that_is_not_utf8_points_at_the_byte() {
    let config = "[settings]\ndebounce = \"50ms\"\n[target.a]\ncmd = \"true\"\n";
    let p = Project::new(config);
    let mut up = Up::start(&p, &[]);
    up.wait_for("the first build", |e| e["type"] == "run.finished");
    let mut bytes = config.as_bytes().to_vec();
    bytes.extend_from_slice(b"# \xff\n");
    std::fs::write(p.path("kiln.toml"), bytes).expect("write");
    let invalid = up.wait_for("config.invalid", |e| e["type"] == "config.invalid");
    let message = invalid["message"].as_str().unwrap_or_default();
    assert!(message.contains("kiln.toml is not valid UTF-8: invalid byte 0xFF"), "{message}");
    assert!(message.contains("--> kiln.toml:5:3"), "{message}");
}

#[test]
fn network_on_a_process_service_and_a_bad_network_name() {
    assert_eq!(
        error_of("[service.api]\ncmd = \"./api\"\nnetwork = \"host\"\n"),
        "error: service `api` runs a command: `network` is for container services\n --> kiln.toml:3:11\n  |\n3 | network = \"host\"\n  |           ^^^^^^ not a container service\n  |\n  = help: a process shares the host's network: it reaches containers through their `ports`\n"
    );
    let err = error_of("[service.api]\nimage = \"localhost/api:1\"\nnetwork = \"my:net\"\n");
    assert!(err.contains("error: `network` of service `api`: `my:net` is not a network name"), "{err}");
    assert!(err.contains("--> kiln.toml:3:11"), "{err}");
    assert!(
        err.contains("= help: use \"project\" (the default), \"host\", \"none\", or the name of a network"),
        "{err}"
    );
    let err = error_of("[service.api]\nimage = \"localhost/api:1\"\nnetwork = \"none\"\nports = [\"8080:80\"]\n");
    assert!(err.contains("service `api` has `network = \"none\"`: `ports` cannot be mapped"), "{err}");
    assert!(err.contains("--> kiln.toml:4:10"), "{err}");
}

/// Regression: `image = "bb-imag"` beside an image target `bb-image` was taken as a registry
/// reference, and the service crash-looped on the engine's short-name error.
#[test]
fn an_image_close_to_an_image_targets_name_is_a_typo() {
    let config = "[target.bb-image]\nimage = { name = \"localhost/bb\" }\n\n[service.web]\nimage = \"bb-imag\"\n";
    assert_eq!(
        error_of(config),
        "error: `bb-imag` is not an image target of kiln.toml; did you mean `bb-image`?\n --> kiln.toml:5:9\n  |\n5 | image = \"bb-imag\"\n  |         ^^^^^^^^^ no image target has this name\n  |\n  = help: to run an image that is not built here, name it in full with its registry or tag, e.g. `localhost/bb-imag:latest` (a reference with `/` or `:` is used as written)\n"
    );
    // A reference with `/` or `:` is never questioned, nor a name close to no image target's.
    for image in ["localhost/bb-imag", "bb-imag:1", "busybox"] {
        let p = Project::new(&format!(
            "[target.bb-image]\nimage = {{ name = \"localhost/bb\" }}\n[target.bb-imagf]\ncmd = \"true\"\n\
             [service.web]\nimage = \"{image}\"\n"
        ));
        let run = p.kiln(&["graph"]);
        assert_eq!(run.code, 0, "`{image}` is a reference: {}", run.stderr);
    }
}

#[test]
fn cmd_and_image_on_one_service_says_how_to_override_a_containers_command() {
    assert_eq!(
        error_of("[service.web]\ncmd = \"./web\"\nimage = \"localhost/web:1\"\n"),
        "error: service `web` has both `cmd` and `image`\n --> kiln.toml:3:9\n  |\n3 | image = \"localhost/web:1\"\n  |         ^^^^^^^^^^^^^^^^^ second action here\n  |\n  = help: a service runs either a command or a container: keep one (a container's own command is overridden with `command = \"…\"` beside `image`)\n"
    );
}

#[test]
fn command_without_image_points_to_cmd() {
    assert_eq!(
        error_of("[service.web]\ncommand = \"python3 web.py\"\n"),
        "error: service `web` has neither `cmd` nor `image`\n --> kiln.toml:2:11\n  |\n2 | command = \"python3 web.py\"\n  |           ^^^^^^^^^^^^^^^^ `command` without `image`\n  |\n  = help: `command` overrides the command of a container service (one with `image = \"TARGET\"`); a process service runs `cmd = \"...\"`\n"
    );
}

/// Regression: `command`, `ports` and `volumes` on a process service were accepted and
/// never used.
#[test]
fn container_keys_on_a_process_service_are_errors() {
    assert_eq!(
        error_of("[service.api]\ncmd = \"./api\"\nports = [\"8080:80\"]\n"),
        "error: service `api` runs a command: `ports` is for container services\n --> kiln.toml:3:9\n  |\n3 | ports = [\"8080:80\"]\n  |         ^^^^^^^^^^^ not a container service\n  |\n  = help: a process listens on the host's ports itself; `ports` maps a container's ports to the host\n"
    );
    assert_eq!(
        error_of("[service.api]\ncmd = \"./api\"\ncommand = \"./api --verbose\"\n"),
        "error: service `api` runs a command: `command` is for container services\n --> kiln.toml:3:11\n  |\n3 | command = \"./api --verbose\"\n  |           ^^^^^^^^^^^^^^^^^ not a container service\n  |\n  = help: a process service runs `cmd`: put the command there\n"
    );
    assert_eq!(
        error_of("[service.api]\ncmd = \"./api\"\nvolumes = [\"./data:/data\"]\n"),
        "error: service `api` runs a command: `volumes` is for container services\n --> kiln.toml:3:11\n  |\n3 | volumes = [\"./data:/data\"]\n  |           ^^^^^^^^^^^^^^^^ not a container service\n  |\n  = help: a process reads the host's files directly (run it in `dir`); `volumes` mounts them into a container\n"
    );
}

/// Regression: a misspelt check said twice what was wrong: the unknown key, and that the
/// probe had no check.
#[test]
fn a_misspelt_probe_check_is_one_error() {
    assert_eq!(
        error_of("[service.web]\ncmd = \"./web\"\nready = { htp = \"http://127.0.0.1:8080/\" }\n"),
        "error: unknown key `htp` in `ready` of service `web`\n --> kiln.toml:3:11\n  |\n3 | ready = { htp = \"http://127.0.0.1:8080/\" }\n  |           ^^^ unknown key\n  |\n  = help: did you mean `http`?\n"
    );
    // Two checks are still too many, whatever else is wrong.
    let err = error_of(
        "[service.web]\ncmd = \"./web\"\nlive = { tcp = \"127.0.0.1:1\", cmd = \"true\", intervl = \"1s\" }\n",
    );
    assert!(
        err.contains("unknown key `intervl`") && err.contains("needs exactly one of `http`, `tcp` or `cmd`"),
        "{err}"
    );
}

/// Regression: with `--file`, the count of errors said `kiln.toml has 2 errors`.
#[test]
fn the_error_count_names_the_file_given_with_file() {
    let p = Project::new("");
    p.write("conf/typo.toml", "[setings]\n[target.a]\ncmd = 1\n");
    let run = p.kiln(&["--file", "conf/typo.toml", "build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: unknown key `setings` in typo.toml\n --> conf/typo.toml:1:2\n"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.ends_with("\n\nerror: conf/typo.toml has 2 errors\n"), "{}", run.stderr);
}

/// `settings.events_sink` is checked when kiln.toml is read: kiln posts plain HTTP only, so
/// an https:// sink is named as unsupported, with the caret under the scheme.
#[test]
fn an_https_events_sink_is_named_as_unsupported() {
    assert_eq!(
        error_of("[settings]\nevents_sink = \"https://127.0.0.1:9000/\"\n[target.a]\ncmd = \"true\"\n"),
        "error: https:// is not supported in `events_sink` in [settings]\n --> kiln.toml:2:16\n  |\n2 | events_sink = \"https://127.0.0.1:9000/\"\n  |                ^^^^^ https is not supported\n  |\n  = help: kiln posts events over plain HTTP only: use the sink's plain-HTTP port (`http://…`), or put a local proxy that speaks TLS onward in front of it\n"
    );
    let err = error_of("[settings]\nevents_sink = \"http://127.0.0.1:70000/\"\n[target.a]\ncmd = \"true\"\n");
    assert!(err.contains("port 70000 in `events_sink` in [settings] is out of range"), "{err}");
    assert!(err.contains("kiln.toml:2:33"), "the caret is under the port: {err}");
}
