//! Ctrl-C and SIGTERM at every step of `build-app`, on a real engine and registry: each run is
//! signalled right after the command of the step under test is announced (`-v` prints
//! `$ command` just before starting it), with no test-only delay. After each run: exit status
//! 130/143 within seconds (children stopped on SIGTERM, not killed after the grace period), no
//! staging directory, no child process or tool container left, compose.yaml and the developer's
//! tree as they were.
//!
//! SIGINT goes to the whole process group, as a terminal's Ctrl-C does (the children get it too);
//! SIGTERM only to the xtask, as `kill PID` or a CI runner does (the xtask must pass it on).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::*;
use common::*;

/// Where to interrupt: a name and the stderr line after which the signal is sent.
struct Point {
    name: &'static str,
    step: usize,
    line: Box<dyn Fn(&str) -> bool>,
}

fn points(prefix: &str, tag: &'static str) -> Vec<Point> {
    let prefix = prefix.to_string();
    let push = move |image: &str| {
        let expected = format!("$ docker push {prefix}/{image}");
        move |line: &str| line == expected
    };
    let command =
        |needle: &'static str| move |line: &str| line.starts_with("$ ") && line.contains(needle);
    vec![
        Point {
            name: "staging (git archive)",
            step: 1,
            line: Box::new(|l| l.starts_with("[1/7]")),
        },
        Point {
            name: "base image check",
            step: 2,
            line: Box::new(command("docker image inspect")),
        },
        Point {
            name: "base image pull",
            step: 2,
            line: Box::new(command("docker pull")),
        },
        Point {
            name: "composer install",
            step: 3,
            line: Box::new(command(" composer install")),
        },
        Point {
            name: "npm ci",
            step: 4,
            line: Box::new(command(" npm ci")),
        },
        Point {
            name: "npm run build",
            step: 4,
            line: Box::new(command(" npm run build")),
        },
        Point {
            name: "build php",
            step: 5,
            line: Box::new(command("--target php ")),
        },
        Point {
            name: "build php-supervisor",
            step: 5,
            line: Box::new(command("--target supervisor ")),
        },
        Point {
            name: "build nginx",
            step: 5,
            line: Box::new(command("docker/nginx/Dockerfile")),
        },
        Point {
            name: "push php",
            step: 5,
            line: Box::new(push(&format!("crm-gdb_php:{tag}"))),
        },
        Point {
            name: "push php-supervisor",
            step: 5,
            line: Box::new(push(&format!("crm-gdb_php:{tag}-supervisor"))),
        },
        Point {
            name: "push nginx",
            step: 5,
            line: Box::new(push(&format!("crm-gdb_nginx:{tag}"))),
        },
        Point {
            name: "compose.yaml update",
            step: 6,
            line: Box::new(|l| l.starts_with("[6/7]")),
        },
    ]
}

#[test]
fn ctrl_c_at_every_step() {
    interrupt_every_step("ctrl_c_at_every_step", libc::SIGINT, "2.1.0");
}

#[test]
fn sigterm_at_every_step() {
    interrupt_every_step("sigterm_at_every_step", libc::SIGTERM, "2.2.0");
}

fn interrupt_every_step(test: &str, signal: i32, tag: &'static str) {
    if !engine_available(test) {
        return;
    }
    let registry = Registry::start();
    let prefix = registry.prefix();
    let _images = ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    publish_base_locally(root, tmp, &prefix);
    // A developer's tree: secrets and installed dependencies that must stay as they are.
    std::fs::write(root.join("app/.env"), "APP_SECRET=dev-secret\n").unwrap();
    std::fs::create_dir_all(root.join("app/node_modules/left-pad")).unwrap();
    std::fs::write(root.join("app/node_modules/left-pad/index.js"), "1\n").unwrap();

    // For the pull point, the base image must be in the registry and not in the engine.
    let base = format!("{prefix}/crm-gdb_php_base:0.4.1");
    let kept = format!("{prefix}/kept-base:0.4.1");
    docker(&["tag", &base, &kept]);
    docker(&["push", "--quiet", &base]);

    let build_image = format!("{prefix}/crm-gdb_php_build:0.4.1");
    let mut report = Vec::new();
    for point in points(&prefix, tag) {
        if point.name == "base image pull" {
            docker(&["image", "rm", &base]);
        }
        let before = snapshot(root);
        let compose_before = std::fs::read(root.join("compose.yaml")).unwrap();

        // --rebuild: the images an earlier point let finish would otherwise be re-tagged, and
        // the build lines of the later points would never come.
        let mut run = Running::start(
            root,
            tmp,
            &prefix,
            &["-v", "build-app", "--tag", tag, "--rebuild"],
            &[],
        );
        let seen = run.wait_for_line(Duration::from_secs(300), &point.line);
        assert!(
            seen.is_some(),
            "{}: the line never came:\n{}",
            point.name,
            run.stderr()
        );
        // `-v` announces a command just before starting it: wait (briefly) until it runs, so
        // the signal lands inside it. In-process steps have no child; so be it.
        let started = |children: &[(u32, String)]| {
            children
                .iter()
                .any(|(_, args)| !args.is_empty() && !args.starts_with(env!("CARGO_BIN_EXE_xtask")))
        };
        let mut children = descendants(run.pid());
        let until = Instant::now() + Duration::from_secs(2);
        while !started(&children) && point.step != 6 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
            children = descendants(run.pid());
        }
        if point.name == "npm ci" {
            second_writer_is_refused(root, &prefix, run.pid());
        }
        let signalled = Instant::now();
        if signal == libc::SIGINT {
            run.signal_group(signal);
        } else {
            run.signal(signal);
        }
        let status = run.wait(Duration::from_secs(60));
        let took = signalled.elapsed();
        let log = run.stderr();
        // "[3/7] failed after 0.6s": where the signal actually landed.
        let failed_at = log
            .lines()
            .find(|l| l.contains("] failed after"))
            .and_then(|l| l.strip_prefix('['))
            .and_then(|l| l.split('/').next())
            .unwrap_or("-")
            .to_string();

        let what = format!(
            "{} ({})",
            point.name,
            if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            }
        );
        let compose_after = std::fs::read(root.join("compose.yaml")).unwrap();
        if point.step == 6 && status.success() {
            // The signal came after the (atomic) rewrite: the release is complete, not torn.
            assert_eq!(
                String::from_utf8(compose_after).unwrap(),
                expected_compose(&compose_before, tag),
                "{what}"
            );
        } else {
            assert_eq!(
                status.code(),
                Some(128 + signal),
                "{what}: wrong exit status\n{log}"
            );
            let error = log
                .lines()
                .find(|l| l.starts_with("error: "))
                .unwrap_or_default();
            assert!(error.contains("interrupted by"), "{what}: {log}");
            assert!(
                compose_after == compose_before,
                "{what}: compose.yaml changed"
            );
            let mut after = snapshot(root);
            let mut before = before;
            after.remove(Path::new("compose.yaml"));
            before.remove(Path::new("compose.yaml"));
            assert!(after == before, "{what}: the developer's tree changed");
        }
        // Stopped by SIGTERM, not by the SIGKILL that comes after a 10 s grace period.
        assert!(
            took < Duration::from_secs(8),
            "{what}: took {took:?} to stop\n{log}"
        );
        assert_nothing_left(&what, tmp, &children, &build_image, run.pid(), &log);

        if point.name == "base image pull" {
            docker(&["tag", &kept, &base]);
        }
        let running: Vec<String> = children
            .iter()
            .map(|(_, args)| args.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        report.push(format!(
            "{what}: running {running:?}, exit {:?} after {took:.1?}, failed at step {failed_at}",
            status.code()
        ));
    }
    eprintln!("\n{test}:\n  {}", report.join("\n  "));
}

/// No staging directory, child process, process using the staging directory or tool container
/// is left after the xtask `pid` ended.
fn assert_nothing_left(
    what: &str,
    tmp: &Path,
    children: &[(u32, String)],
    build_image: &str,
    pid: u32,
    log: &str,
) {
    assert!(
        is_empty_dir(tmp),
        "{what}: staging left: {:?}",
        std::fs::read_dir(tmp).unwrap().collect::<Vec<_>>()
    );
    let alive: Vec<&(u32, String)> = children
        .iter()
        .filter(|(child, args)| !args.is_empty() && cmdline(*child) == *args)
        .collect();
    assert!(
        alive.is_empty(),
        "{what}: children still running: {alive:?}"
    );
    let tmp_text = tmp.display().to_string();
    assert_eq!(
        processes_mentioning(&tmp_text),
        Vec::<String>::new(),
        "{what}: processes left"
    );
    // Filtered by name: `ancestor=` also matches the other test's containers (same image ID).
    let tool_containers = containers(&format!("ancestor={build_image}"));
    let ours: Vec<&str> = tool_containers
        .lines()
        .filter(|c| c.contains(build_image))
        .collect();
    assert!(
        ours.is_empty(),
        "{what}: tool container left: {ours:?}\n{log}"
    );
    let named = containers(&format!("name=xtask-{pid}-"));
    assert_eq!(named, "", "{what}: container left\n{log}");
}

/// While a build-app holds the tree, another build-app and a set-tag are refused, naming it.
fn second_writer_is_refused(root: &Path, prefix: &str, holder: u32) {
    let other_tmp = tempfile::tempdir().unwrap();
    for args in [
        &["set-tag", "--tag", "9.9.9"][..],
        &["build-app", "--tag", "9.9.9"],
    ] {
        let out = xtask(root, other_tmp.path(), prefix, args);
        assert!(!out.status.success(), "{args:?} ran beside a build-app");
        let err = stderr(&out);
        let expected = format!("is busy: `build-app` (pid {holder}) has been running since");
        assert!(err.contains(&expected), "{args:?}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
}

fn expected_compose(before: &[u8], tag: &str) -> String {
    String::from_utf8(before.to_vec())
        .unwrap()
        .replace(
            "crm-gdb_php:1.0.0-supervisor",
            &format!("crm-gdb_php:{tag}-supervisor"),
        )
        .replace("crm-gdb_php:1.0.0\n", &format!("crm-gdb_php:{tag}\n"))
        .replace("crm-gdb_nginx:1.0.0", &format!("crm-gdb_nginx:{tag}"))
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
