//! Registry credentials, against a real registry with password auth (htpasswd) on loopback and
//! a private DOCKER_CONFIG (the user's ~/.docker is never touched): `cargo xtask login` from the
//! environment and from stdin, a wrong password, `--dry-run`, and `build-app` logging in by
//! itself before its pushes, a push refused for good (401) failing at once. Meanwhile every
//! process's command line (what `ps -eo args` shows, read from /proc as fast as it can be) is
//! watched for the password: it must never be there, nor in any output, nor in the environment
//! of any docker or git the xtask runs (only `docker login` gets it, on its stdin).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    // Not logged in, the pushes are refused for good (401): no retry, no backoff.
    publish_base_locally(root, tmp, &prefix);
    refused_push_is_not_retried(root, tmp, &prefix, &docker_config);

    // build-app logs in by itself (credentials in the environment) and its pushes go through;
    // every docker and git it runs is recorded (spy), to see what their environment held.
    let spy = Spy::new(&["docker", "git"]);
    let mut spied_env = with_env.to_vec();
    spied_env.push(("PATH", &spy.path));
    let (out, leaks, saw) = watched(
        root,
        tmp,
        &prefix,
        &["-v", "build-app", "--tag", "4.0.0"],
        &spied_env,
        None,
        &password,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(saw && leaks.is_empty(), "{leaks:?}");
    let all = text(&out);
    assert!(!all.contains(&password));
    assert!(all.contains(&format!("Logged in to {host} as ci")), "{all}");
    spy.assert_no_child_had(&password);
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

/// `docker-publish` without a login to a registry that wants one: each push fails with 401, and
/// fails at once, with no retry (the default backoff alone would wait 1 + 2 + 4 s).
fn refused_push_is_not_retried(root: &Path, tmp: &Path, prefix: &str, docker_config: &str) {
    let mut run = Running::start(
        root,
        tmp,
        prefix,
        &["-v", "docker-publish", "--image", "php", "--tag", BASE_TAG],
        &[("DOCKER_CONFIG", docker_config)],
    );
    let push = run.wait_for_line(Duration::from_secs(300), |l| {
        l.starts_with("$ docker push ")
    });
    assert!(push.is_some(), "no push started:\n{}", run.stderr());
    let pushing = Instant::now();
    let status = run.wait(Duration::from_secs(60));
    let took = pushing.elapsed();
    let log = run.stderr();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        !log.contains("; retry "),
        "a refused push was retried:\n{log}"
    );
    assert!(
        took < Duration::from_secs(5),
        "{took:?} from the push to the end:\n{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("`docker push "), "{}", errors[0]);
    assert!(!errors[0].contains("gave up"), "{}", errors[0]);
    // docker's reason is shown: the registry wants a login it does not have.
    assert!(
        log.contains("no basic auth credentials") || log.contains("unauthorized"),
        "{log}"
    );
}

/// A directory for the front of PATH with a wrapper per program: it records the arguments and
/// the environment it was given (`/proc/$$/environ`), then runs the real program.
struct Spy {
    dir: tempfile::TempDir,
    path: String,
}

impl Spy {
    fn new(programs: &[&str]) -> Spy {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (bin, calls) = (dir.path().join("bin"), dir.path().join("calls"));
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&calls).unwrap();
        for program in programs {
            let real = Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .unwrap();
            let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
            assert!(real.starts_with('/'), "no {program} on PATH");
            let script = bin.join(program);
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\ncall='{calls}/{program}.'$$\ncat /proc/$$/environ >\"$call.environ\"\nprintf '%s\\n' \"$@\" >\"$call.argv\"\nexec '{real}' \"$@\"\n",
                    calls = calls.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        Spy { dir, path }
    }

    /// No recorded child had `secret` (or the variable that holds it) in its environment or
    /// arguments; `docker login` was among them, and the recording saw the rest of the
    /// environment (the user name is there).
    fn assert_no_child_had(&self, secret: &str) {
        let calls = self.dir.path().join("calls");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(&calls).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.to_str().unwrap().strip_suffix(".environ") else {
                continue;
            };
            let environ = std::fs::read(&path).unwrap();
            let argv = std::fs::read_to_string(format!("{stem}.argv")).unwrap();
            let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let what = format!("{name} ({})", argv.replace('\n', " "));
            assert!(
                !environ.contains(secret) && !environ.contains("XTASK_REGISTRY_PASSWORD"),
                "{what} got the password in its environment"
            );
            assert!(
                !argv.contains(secret),
                "{what} got the password as an argument"
            );
            assert!(
                environ.lines().any(|l| l == "XTASK_REGISTRY_USER=ci"),
                "{what}: the environment was not recorded:\n{environ}"
            );
            seen.push((name, argv));
        }
        let count = |program: &str, first: &str| {
            seen.iter()
                .filter(|(name, argv)| {
                    name.starts_with(&format!("{program}.")) && argv.starts_with(first)
                })
                .count()
        };
        assert!(count("docker", "login\n") >= 1, "{seen:?}");
        assert!(count("docker", "push\n") >= 3, "{seen:?}");
        assert!(count("git", "") >= 1, "{seen:?}");
    }
}
