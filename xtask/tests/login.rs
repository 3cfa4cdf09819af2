//! Registry credentials, against a real registry with password auth (htpasswd) on loopback and
//! a private DOCKER_CONFIG (the user's ~/.docker is never touched): `cargo xtask login` from the
//! environment and from stdin, a wrong password, `--dry-run`, and `build-app` logging in by
//! itself before its pushes. Meanwhile every process's command line (what `ps -eo args` shows,
//! read from /proc as fast as it can be) is watched for the password: it must never be there,
//! nor in any output.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::faults::*;
use common::*;

const USER: &str = "ci";

/// Runs the xtask with `env` (and `stdin`) while another thread reads every command line on the
/// machine; returns its output, the command lines holding `password`, and whether a
/// `docker login` was seen running at all (so the watch really covered it).
fn watched(
    root: &Path,
    tmp: &Path,
    registry: &str,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
    password: &str,
) -> (Output, Vec<String>, bool) {
    let done = Arc::new(AtomicBool::new(false));
    let leaks = Arc::new(Mutex::new(Vec::new()));
    let saw_login = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (done, leaks, saw_login) = (done.clone(), leaks.clone(), saw_login.clone());
        let password = password.to_string();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                leaks
                    .lock()
                    .unwrap()
                    .extend(processes_mentioning(&password));
                if !processes_mentioning("docker login --username=").is_empty() {
                    saw_login.store(true, Ordering::SeqCst);
                }
                // A `docker login` lives for 100 ms or more; leave the build a core.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .env("XTASK_ROOT", root)
        .env("XTASK_REGISTRY", registry)
        .env("TMPDIR", tmp)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    eprintln!(
        "--- cargo xtask {} -> {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let leaks = leaks.lock().unwrap().clone();
    (output, leaks, saw_login.load(Ordering::SeqCst))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn login_keeps_the_password_secret() {
    if !engine_available("login_keeps_the_password_secret") {
        return;
    }
    let password = format!("pw-{}-Zq9#x y", std::process::id());
    let registry = Registry::start_with_password(USER, &password);
    let prefix = registry.prefix();
    let host = format!("127.0.0.1:{}", registry.port);
    let _images = ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let docker_config = tempfile::tempdir().unwrap();
    let docker_config = docker_config.path().to_str().unwrap().to_string();
    let config_json = Path::new(&docker_config).join("config.json");
    let with_env = [
        ("DOCKER_CONFIG", docker_config.as_str()),
        ("XTASK_REGISTRY_USER", USER),
        ("XTASK_REGISTRY_PASSWORD", password.as_str()),
    ];

    // The registry wants a login: a push without one is refused.
    let probe = format!("{prefix}/probe:1");
    let os_image = "debian:bookworm-slim";
    assert!(Command::new("docker")
        .args(["tag", os_image, &probe])
        .status()
        .unwrap()
        .success());
    let out = Command::new("docker")
        .args(["push", &probe])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the registry accepted a push without login"
    );

    // --dry-run shows the command, not the password, and logs nobody in.
    let (out, leaks, _) = watched(
        root,
        tmp,
        &prefix,
        &["--dry-run", "login"],
        &with_env,
        None,
        &password,
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("docker login --username=ci --password-stdin {host} <<stdin")
    );
    assert!(!text(&out).contains(&password) && leaks.is_empty());
    assert!(!config_json.exists(), "--dry-run logged in");

    // A wrong password: one redacted error line, nothing stored.
    let wrong = format!("wrong-{password}");
    let bad_env = [
        ("DOCKER_CONFIG", docker_config.as_str()),
        ("XTASK_REGISTRY_PASSWORD", wrong.as_str()),
    ];
    let (out, leaks, _) = watched(
        root,
        tmp,
        &prefix,
        &["-v", "login", "--username", USER],
        &bad_env,
        None,
        &wrong,
    );
    assert!(!out.status.success());
    let all = text(&out);
    assert!(
        !all.contains(&wrong) && leaks.is_empty(),
        "{all}\n{leaks:?}"
    );
    let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{all}");
    assert!(
        errors[0].starts_with(&format!("error: login to {host} as ci failed: "))
            && errors[0].ends_with("(or --password-stdin)"),
        "{}",
        errors[0]
    );

    // From stdin, with -v echoing the command: logged in, password nowhere.
    let stdin_env = [("DOCKER_CONFIG", docker_config.as_str())];
    let piped = format!("{password}\n");
    let (out, leaks, saw) = watched(
        root,
        tmp,
        &prefix,
        &["-v", "login", "--username", USER, "--password-stdin"],
        &stdin_env,
        Some(&piped),
        &password,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains(&password) && leaks.is_empty(),
        "{leaks:?}"
    );
    assert!(saw, "the watch never saw `docker login` run");
    assert!(std::fs::read_to_string(&config_json)
        .unwrap()
        .contains(&host));
    std::fs::remove_file(&config_json).unwrap();

    // build-app logs in by itself (credentials in the environment) and its pushes go through.
    publish_base_locally(root, tmp, &prefix);
    let (out, leaks, saw) = watched(
        root,
        tmp,
        &prefix,
        &["-v", "build-app", "--tag", "4.0.0"],
        &with_env,
        None,
        &password,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(saw && leaks.is_empty(), "{leaks:?}");
    let all = text(&out);
    assert!(!all.contains(&password));
    assert!(all.contains(&format!("Logged in to {host} as ci")), "{all}");
    let catalog = http_get(registry.port, "/v2/kiora/crm-gdb_nginx/tags/list");
    assert_eq!(
        catalog.map(|(status, _)| status),
        Some(401),
        "tags need a login"
    );
    let pushed = Command::new("docker")
        .args(["pull", &format!("{prefix}/crm-gdb_nginx:4.0.0")])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
}
