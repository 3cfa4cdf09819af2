//! The command-line surface, run as users run it: the task listing, each task's help, plain
//! output when nothing is a terminal, `--dry-run` and `-q`, `doctor` on a machine without
//! docker, shell completions, and `--platform` refusals that come before anything is built.
//!
//! Nothing here builds an image or needs the network: the registry named is 127.0.0.1:5999,
//! where nothing listens. Tests that ask the engine are skipped (loudly) without one; that a
//! skip is seen in the output of a passing run, and recorded for `.ci/skipped-summary`, is
//! checked here too.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const REGISTRY: &str = "127.0.0.1:5999/kiora";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap()
}

/// The xtask binary against this project, with pipes (not a terminal) for stdout and stderr.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .env("XTASK_ROOT", root())
        .env("XTASK_REGISTRY", REGISTRY)
        .env_remove("XTASK_BASE_TAG")
        .env_remove("XTASK_OS_IMAGE")
        .env_remove("XTASK_LOCAL_PROJECT")
        .stdin(Stdio::null());
    cmd
}

fn xtask(args: &[&str]) -> Output {
    let output = command(args).output().unwrap();
    eprintln!(
        "--- cargo xtask {} -> {}\n{}{}",
        args.join(" "),
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Task names from the no-argument listing (`Commands:` section), without clap's `help`.
fn listed_tasks(listing: &str) -> Vec<String> {
    listing
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

#[test]
fn no_argument_lists_every_task_with_a_description_and_exits_2() {
    let output = xtask(&[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a missing task is a usage error"
    );
    assert!(output.stdout.is_empty());
    let listing = stderr(&output);
    assert!(listing.contains("Usage: cargo xtask"), "{listing}");
    let tasks = listed_tasks(&listing);
    for task in [
        "up",
        "down",
        "docker-publish",
        "build-app",
        "set-tag",
        "doctor",
        "completions",
    ] {
        assert!(
            tasks.iter().any(|t| t == task),
            "{task} not listed: {tasks:?}"
        );
    }
    for line in listing
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
    {
        assert!(
            line.split_whitespace().count() > 2,
            "no description: {line}"
        );
    }
    assert!(listing.contains("cargo xtask doctor"), "{listing}");
    assert!(!says_seed(&listing), "{listing}");
}

#[test]
fn every_task_help_shows_an_example() {
    let tasks = listed_tasks(&stderr(&xtask(&[])));
    assert!(tasks.len() >= 7, "{tasks:?}");
    for task in tasks {
        let output = xtask(&[&task, "--help"]);
        assert!(output.status.success(), "{task} --help");
        let help = stdout(&output);
        assert!(
            help.contains("Example"),
            "`{task} --help` has no example:\n{help}"
        );
        assert!(help.contains(&format!("cargo xtask {task}")), "{help}");
        assert!(
            !says_seed(&help),
            "`{task} --help` speaks of a seed:\n{help}"
        );
    }
    let bench = stdout(&xtask(&["bench", "--help"]));
    assert!(bench.contains("old Makefile procedure"), "{bench}");
}

/// Users never heard of "the seed" (the project's starting point): it is the old Makefile.
fn says_seed(text: &str) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|word| word.eq_ignore_ascii_case("seed") || word.eq_ignore_ascii_case("seeds"))
}

#[test]
fn dry_runs_without_a_terminal_print_plain_commands_and_write_nothing() {
    if !common::engine_available(
        "dry_runs_without_a_terminal_print_plain_commands_and_write_nothing",
    ) {
        return;
    }
    let compose = root().join("compose.yaml");
    let before = std::fs::read(&compose).unwrap();
    for args in [
        &["--dry-run", "build-app", "--tag", "1.2.3", "--allow-dirty"][..],
        &[
            "--dry-run",
            "build-app",
            "--tag",
            "1.2.3",
            "--allow-dirty",
            "--platform",
            "linux/amd64",
        ],
        &[
            "--dry-run",
            "docker-publish",
            "--image",
            "php",
            "--tag",
            common::BASE_TAG,
        ],
        &["--dry-run", "set-tag", "--tag", "1.2.3"],
        &["--dry-run", "up", "--port", "8089"],
    ] {
        let output = xtask(args);
        assert!(output.status.success(), "{args:?}");
        for text in [stdout(&output), stderr(&output)] {
            assert!(!text.contains('\x1b'), "escape code in {args:?}:\n{text}");
            assert!(!text.contains('\r'), "carriage return in {args:?}:\n{text}");
        }
        // stdout is the plan: command lines (and `#` notes), nothing else.
        for line in stdout(&output).lines() {
            assert!(
                line.starts_with('#')
                    || ["docker ", "git ", "tar ", "mkdir ", "dd of=", "chmod ", "mv ", "rm "]
                        .iter()
                        .any(|p| line.contains(p)),
                "not a command line in {args:?}: {line}"
            );
        }
    }
    let plan = stdout(&xtask(&[
        "--dry-run",
        "build-app",
        "--tag",
        "1.2.3",
        "--allow-dirty",
        "--platform",
        "linux/amd64",
    ]));
    assert!(
        plan.contains("docker buildx build --load --platform linux/amd64 ")
            || plan.contains("docker build --platform linux/amd64 "),
        "{plan}"
    );
    assert_eq!(
        std::fs::read(&compose).unwrap(),
        before,
        "--dry-run wrote compose.yaml"
    );
}

#[test]
fn dry_run_down_prints_exactly_the_command_it_would_run() {
    // A project name of its own, so no network of that name exists (its `rm` would be listed).
    let output = xtask(&[
        "--dry-run",
        "down",
        "--volumes",
        "--project-name",
        "crm-gdb-cli-test",
    ]);
    assert!(output.status.success());
    // `up`'s database password file, in the user's state directory (local_env.rs).
    let state = std::env::var("XDG_STATE_HOME")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{}/.local/state", std::env::var("HOME").unwrap()));
    assert_eq!(
        stdout(&output),
        format!(
            "CRM_STACK=crm-gdb-cli-test HTTP_PORT=0 CRM_DB_PASSWORD_FILE={state}/xtask/crm-gdb-cli-test/db_password \
             docker compose --project-name crm-gdb-cli-test --project-directory {} \
             --file - down --remove-orphans <<stdin\n\
             docker volume rm --force crm-gdb-cli-test_data crm-gdb-cli-test_assets crm-gdb-cli-test_edge-conf \
             crm-gdb-cli-test_db crm-gdb-cli-test_db-backups\n",
            root().display()
        )
    );
}

#[test]
fn quiet_prints_only_errors() {
    let output = xtask(&["-q", "--dry-run", "set-tag", "--tag", "1.2.3"]);
    assert!(output.status.success());
    assert_eq!(stderr(&output), "");
    let output = xtask(&["-q", "set-tag", "--tag", "not a tag"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid tag"), "{err}");
}

#[test]
fn doctor_without_docker_fails_and_says_to_install_it() {
    let git = std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|dir| dir.join("git"))
        .find(|path| path.is_file())
        .expect("git on PATH");
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&git, bin.path().join("git")).unwrap();
    let output = command(&["doctor"])
        .env("PATH", bin.path())
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    eprintln!("{out}{err}");
    assert!(!output.status.success(), "doctor must fail without docker");
    let docker = out
        .lines()
        .find(|line| line.contains("docker client"))
        .expect("a docker client line");
    assert!(docker.starts_with("FAIL"), "{docker}");
    assert!(docker.contains("install Docker"), "{docker}");
    let git_line = out
        .lines()
        .find(|l| l.contains(" git "))
        .expect("a git line");
    assert!(git_line.starts_with("ok"), "{git_line}");
    assert!(
        !out.contains('\x1b') && !err.contains('\x1b'),
        "escape codes without a terminal"
    );
    assert!(
        err.contains("required check(s) failed (docker client, docker engine)"),
        "{err}"
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = xtask(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        assert!(script.contains("build-app"), "{shell}: {script}");
        assert!(script.contains("doctor"), "{shell}");
        assert!(script.contains("xtask"), "{shell}");
    }
    assert_eq!(xtask(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn a_malformed_platform_is_refused_by_the_parser() {
    let output = xtask(&["build-app", "--tag", "1.2.3", "--platform", "amd64"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid platform"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_platform_the_builder_cannot_build_is_refused_before_anything_is_built() {
    if !common::engine_available(
        "a_platform_the_builder_cannot_build_is_refused_before_anything_is_built",
    ) {
        return;
    }
    for args in [
        &[
            "build-app",
            "--tag",
            "1.2.3",
            "--allow-dirty",
            "--no-push",
            "--platform",
            "linux/amd64,linux/s390x",
        ][..],
        &[
            "docker-publish",
            "--image",
            "php",
            "--tag",
            common::BASE_TAG,
            "--platform",
            "linux/amd64,linux/s390x",
        ],
    ] {
        let output = xtask(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "one line, nothing built:\n{err}");
        assert!(err.starts_with("error: "), "{err}");
        // .ci/setup registers QEMU for arm64 only: s390x is one no builder here can build.
        assert!(
            err.contains("cannot build linux/s390x") || err.contains("classic builder"),
            "names the platform: {err}"
        );
        assert!(
            err.contains("qemu-user-static")
                || err.contains("docker buildx create --use --driver docker-container"),
            "names the fix: {err}"
        );
        assert!(stdout(&output).is_empty());
    }
}

/// Only as the child of `a_skip_is_seen_in_the_output_of_a_passing_run`, on a PATH whose
/// `docker` fails: skips, as an e2e test does without an engine.
#[test]
#[ignore = "run by a_skip_is_seen_in_the_output_of_a_passing_run, as its child"]
fn skipping_child() {
    assert!(!common::engine_available("skipping_child"));
}

#[test]
fn a_skip_is_seen_in_the_output_of_a_passing_run() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("docker"),
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(bin.join("docker"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let skips = dir.path().join("skips");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // This test binary again, running only the child, with libtest's usual output capture.
    let child = |ci: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "skipping_child", "--include-ignored"])
            .env("PATH", &path)
            .env("CI", ci)
            .env("XTASK_TEST_SKIPS_DIR", &skips)
            .env_remove("RUST_TEST_NOCAPTURE")
            .output()
            .unwrap()
    };

    let out = child("false");
    let seen = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{seen}");
    assert!(seen.contains("test skipping_child ... ok"), "{seen}");
    assert!(
        seen.contains("!!!!! SKIPPED skipping_child: no Docker engine answers `docker info`"),
        "the skip is not in the output of the passing test:\n{seen}"
    );
    let recorded = std::fs::read_to_string(skips.join("skipping_child")).unwrap();
    assert!(recorded.starts_with("no Docker engine"), "{recorded}");

    // Under CI=true a missing engine fails the test instead.
    let out = child("true");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{seen}");
    assert!(seen.contains("no Docker engine, and CI=true"), "{seen}");
}
