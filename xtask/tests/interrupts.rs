//! Ctrl-C and SIGTERM at every step of `build-app`, on a real engine and registry. Each point
//! is really interrupted: a stand-in `docker` or `git` first on the xtask's PATH (see
//! `PausingTools`) pauses the command of that point, or keeps it running (composer, npm: until
//! their container runs), and the signal is sent while it does; the compose.yaml point blocks
//! the xtask's stderr once every push succeeded, so that it is stopped writing the step's
//! header. No test-only code in the xtask. After each run: the step that failed is the point's
//! step (and the last header printed), exit status 130/143 (never 0) within seconds (children
//! stopped on SIGTERM, not killed after the grace period), no staging directory, no child
//! process or tool container left, compose.yaml and the developer's tree as they were.
//!
//! SIGINT goes to the whole process group, as a terminal's Ctrl-C does (the children get it too);
//! SIGTERM only to the xtask, as `kill PID` or a CI runner does (the xtask must pass it on).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::*;
use common::*;

/// Where to interrupt: the step it is in, and the command that is paused there.
struct Point {
    name: &'static str,
    step: usize,
    /// A substring of the paused command's ` ARGS ` (see `PausingTools`).
    pattern: String,
    pause: Pause,
}

/// The header `build-app` prints for step 6, on which the compose.yaml point blocks it.
const STEP_6_HEADER: &str = "[6/7] Updating compose.yaml";

fn points(prefix: &str, tag: &str) -> Vec<Point> {
    let point = |name, step, pattern: String, pause| Point {
        name,
        step,
        pattern,
        pause,
    };
    let base = format!("{prefix}/crm-gdb_php_base:{BASE_TAG}");
    let push = |image: &str| format!(" push {prefix}/{image} ");
    vec![
        point(
            "staging (git archive)",
            1,
            " archive --format=tar ".into(),
            Pause::Before,
        ),
        // (Step 2's check that the base image is local is an engine API call since the deploy
        // speed work, no process to hold; its pull, when the image is missing, is one.)
        point(
            "base image pull",
            2,
            format!(" pull {base} "),
            Pause::Before,
        ),
        point(
            "composer install",
            3,
            " composer install ".into(),
            Pause::During,
        ),
        point("npm ci", 4, " npm ci ".into(), Pause::During),
        point("npm run build", 4, " npm run build ".into(), Pause::During),
        point("build php", 5, " --target php ".into(), Pause::Before),
        point(
            "build php-supervisor",
            5,
            " --target supervisor ".into(),
            Pause::Before,
        ),
        point(
            "build nginx",
            5,
            "docker/nginx/Dockerfile ".into(),
            Pause::Before,
        ),
        point(
            "push php",
            5,
            push(&format!("crm-gdb_php:{tag}")),
            Pause::Before,
        ),
        point(
            "push php-supervisor",
            5,
            push(&format!("crm-gdb_php:{tag}-supervisor")),
            Pause::Before,
        ),
        point(
            "push nginx",
            5,
            push(&format!("crm-gdb_nginx:{tag}")),
            Pause::Before,
        ),
        // Every push succeeds, then the xtask is held in the write of STEP_6_HEADER.
        point(
            "compose.yaml update",
            6,
            format!(" push {prefix}/"),
            Pause::After,
        ),
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
    let base = format!("{prefix}/crm-gdb_php_base:{BASE_TAG}");
    let kept = format!("{prefix}/kept-base:{BASE_TAG}");
    docker(&["tag", &base, &kept]);
    docker(&["push", "--quiet", &base]);

    let build_image = format!("{prefix}/crm-gdb_php_build:{BASE_TAG}");
    let tools = PausingTools::new();
    let mut report = Vec::new();
    for point in points(&prefix, tag) {
        if point.name == "base image pull" {
            docker(&["image", "rm", &base]);
        }
        let before = snapshot(root);
        let compose_before = std::fs::read(root.join("compose.yaml")).unwrap();
        let what = format!(
            "{} ({})",
            point.name,
            if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            }
        );

        // --rebuild: the images an earlier point let finish would otherwise be re-tagged, and
        // the build commands of the later points would never come.
        let env = tools.env(&point.pattern, point.pause);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args = ["-v", "build-app", "--tag", tag, "--rebuild"];
        let mut run = Running::start_with_stderr_control(root, tmp, &prefix, &args, &env);
        let limit = Duration::from_secs(300);
        let mut blocked_write = None;
        let reached = if point.pause == Pause::After {
            let reached = tools.wait_reached(&mut run, 3, limit);
            // Every push succeeded. Leave the stderr pipe room for "[5/7] done in 12.3s\n"
            // (at most 40 bytes), not for the next header too: the xtask blocks writing that.
            run.block_stderr(40);
            tools.go();
            let until = Instant::now() + Duration::from_secs(20);
            while blocked_write.is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
                blocked_write = run.blocked_writing_stderr();
            }
            assert_eq!(
                blocked_write,
                Some(STEP_6_HEADER.len()),
                "{what}: the xtask is not held writing {STEP_6_HEADER:?}; its threads: {:?}\n{}",
                thread_calls(run.pid()),
                run.stderr()
            );
            reached
        } else {
            tools.wait_reached(&mut run, 1, limit)
        };
        let expected_state = match point.pause {
            Pause::Before => "before",
            Pause::During => "running",
            Pause::After => "finished",
        };
        assert!(
            reached.iter().all(|r| r == expected_state),
            "{what}: the paused command was not {expected_state} when signalled: {reached:?}\n{}",
            run.stderr()
        );
        if point.name == "npm ci" {
            second_writer_is_refused(root, &prefix, run.pid());
        }
        let children = descendants(run.pid());
        let signalled = Instant::now();
        if signal == libc::SIGINT {
            run.signal_group(signal);
        } else {
            run.signal(signal);
        }
        let status = run.wait(Duration::from_secs(60));
        let took = signalled.elapsed();
        let log = run.stderr();

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
        // The step headers: "[3/7] Installing production dependencies", not "[3/7] done in".
        let last_header = log
            .lines()
            .rfind(|l| {
                l.starts_with('[')
                    && l.contains("/7] ")
                    && !l.contains("] done in ")
                    && !l.contains("] failed after ")
                    && !l.contains(": skipped (")
            })
            .unwrap_or_default();
        assert!(
            last_header.starts_with(&format!("[{}/7] ", point.step)),
            "{what}: interrupted at {last_header:?}, not in step {}\n{log}",
            point.step
        );
        let failed_at = log
            .lines()
            .find(|l| l.contains("] failed after"))
            .unwrap_or_default();
        assert!(
            failed_at.starts_with(&format!("[{}/7] failed after", point.step)),
            "{what}: failed at {failed_at:?}, not in step {}\n{log}",
            point.step
        );
        let compose_after = std::fs::read(root.join("compose.yaml")).unwrap();
        assert!(
            compose_after == compose_before,
            "{what}: compose.yaml changed"
        );
        let mut after = snapshot(root);
        let mut before = before;
        after.remove(Path::new("compose.yaml"));
        before.remove(Path::new("compose.yaml"));
        assert!(after == before, "{what}: the developer's tree changed");
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
            .map(|(_, args)| args.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect();
        let held = blocked_write.map_or(String::new(), |n| format!(", held in a {n}-byte write"));
        report.push(format!(
            "{what}: {expected_state}{held}, running {running:?}, exit {:?} after {took:.1?}, {failed_at}",
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

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What each thread of `pid` is doing: /proc/PID/task/TID/syscall, for failure messages.
fn thread_calls(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .map(|task| {
                    let call =
                        std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
                    format!("{}: {}", task.file_name().to_string_lossy(), call.trim())
                })
                .collect()
        })
        .unwrap_or_default()
}
