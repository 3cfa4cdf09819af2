//! End to end on a real engine, a real registry and a real sshd on loopback: deploy, a
//! zero-downtime switch under load, a broken release rolled back automatically, rollback,
//! backup and restore, the deploy lock, refusals; then the same target reached over ssh.

mod common;

use std::path::Path;

use common::*;
use xshell::{cmd, Shell};

/// The longest a zero-downtime switch (rolling deploy, rollback) may leave the probe without a
/// good answer (requests go out every ~50 ms).
const MAX_GAP: std::time::Duration = std::time::Duration::from_secs(1);

#[test]
fn deploy_rollback_backup_locally_and_over_ssh() {
    if !engine_available("deploy_rollback_backup_locally_and_over_ssh")
        || !sshd::available("deploy_rollback_backup_locally_and_over_ssh")
    {
        return;
    }
    let sh = Shell::new().unwrap();
    let registry = Registry::start();
    let prefix = registry.prefix();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let stack = format!("e2e{}", std::process::id());
    // Dropped in reverse: the stack's containers go first, then the images they held.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let _cleanup = RemoveStack(stack.clone());

    // Three releases in the registry: A, B (other CSS, so other hashed assets), X (broken health).
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };
    ok(&["docker-publish", "--image", "php", "--tag", BASE_TAG]);
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    ok(&["build-app", "--tag", "1.0.0-a"]);
    commit(&sh, root, "app/assets/app.css", |css| {
        format!("{css}\nbody {{ outline: 0; }}\n")
    });
    ok(&["build-app", "--tag", "1.0.0-b"]);
    commit(&sh, root, "app/src/App.php", |php| {
        php.replacen("    private function health(): Response\n    {\n", "    private function health(): Response\n    {\n        return Response::json(['status' => 'broken'], 503);\n", 1)
    });
    ok(&["build-app", "--tag", "1.0.0-x"]);

    // The target: a directory with the production compose file and a .env that stays there.
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_str().unwrap().to_string();
    let port = free_port();
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", &prefix);
    std::fs::write(target.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(
        target.path().join(".env"),
        format!("APP_SECRET=e2e-secret\nHTTP_PORT={port}\n"),
    )
    .unwrap();
    let deploy = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--dir", &dir, "--stack", &stack]);
        xtask(root, tmp.path(), &prefix, &all)
    };

    // An edge network an earlier xtask made binds every address, while HTTP_BIND (unset) means
    // loopback: no edge is created on it, in one line, and nothing of the stack starts.
    let network = format!("{stack}_edge");
    cmd!(sh, "docker network create {network}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
    let out = deploy(&["deploy", "--tag", "1.0.0-a"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("would publish the new edge on every address"),
        "{err}"
    );
    let started = cmd!(
        sh,
        "docker ps -q --filter label=com.docker.compose.project={stack}-edge"
    )
    .read()
    .unwrap();
    assert!(started.is_empty(), "no edge started: {started}");
    cmd!(sh, "docker network rm {network}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();

    // First deploy: nothing to back up, then A serves.
    assert!(deploy(&["deploy", "--tag", "1.0.0-a"]).status.success());
    assert_eq!(http_get(port, "/health").unwrap().0, 200);
    let (status, created) = http_post_json(
        port,
        "/api/contacts",
        r#"{"name":"Ada","email":"ada@example.com"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let page_a = http_get(port, "/").unwrap().1;
    let asset_a = hashed_css(&page_a);

    // A -> B, rolling, under load: no failed request, and A's page still gets A's assets.
    let probe = Probe::start(
        port,
        vec![
            Expected::page(),
            Expected::same_as_now(port, &asset_a),
            Expected::health(),
        ],
    );
    let out = deploy(&["deploy", "--tag", "1.0.0-b"]);
    let load = probe.stop();
    assert!(out.status.success());
    assert_eq!(
        load.failed, 0,
        "rolling deploy dropped requests: {:?}",
        load.failures
    );
    assert!(load.requests > 20, "the probe ran: {load:?}");
    eprintln!("rolling deploy: longest gap {:?}", load.longest_gap);
    assert!(
        load.longest_gap <= MAX_GAP,
        "rolling deploy: no good answer for {:?}: {load:?}",
        load.longest_gap
    );
    let page_b = http_get(port, "/").unwrap().1;
    assert_ne!(hashed_css(&page_b), asset_a, "B serves its own assets");
    assert_eq!(
        http_get(port, &asset_a).unwrap().0,
        200,
        "A's assets are still served after the switch"
    );
    assert!(
        contacts(port).contains("ada@example.com"),
        "contacts survive a deploy"
    );

    // A second deploy while one holds the lock is refused, naming the holder.
    std::fs::create_dir_all(target.path().join(".deploy/lock")).unwrap();
    std::fs::write(
        target.path().join(".deploy/lock/owner"),
        "deploy 9.9.9 by someone@else (pid 1) since 2026-01-01T00:00:00Z",
    )
    .unwrap();
    let out = deploy(&["deploy", "--tag", "1.0.0-a"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another deploy holds the lock")
            && stderr(&out).contains("someone@else"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(target.path().join(".deploy/lock")).unwrap();

    // A broken release: automatic rollback, B keeps serving, nothing dropped.
    let probe = Probe::start(port, vec![Expected::page(), Expected::health()]);
    let out = deploy(&["deploy", "--tag", "1.0.0-x"]);
    let load = probe.stop();
    assert!(
        !out.status.success(),
        "a broken release must fail the deploy"
    );
    assert!(
        stderr(&out).contains("rolled back: 1.0.0-b keeps serving"),
        "{}",
        stderr(&out)
    );
    // Failed as soon as that was certain (its /health answers 503), not at the deadline.
    assert!(
        stderr(&out).contains("/health answered HTTP 503 3 times in a row"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("--- logs of") && !stderr(&out).contains('\x1b'),
        "the failed release's logs are shown, as plain text without a terminal"
    );
    assert_eq!(
        load.failed, 0,
        "the broken release dropped requests: {:?}",
        load.failures
    );
    assert_eq!(
        hashed_css(&http_get(port, "/").unwrap().1),
        hashed_css(&page_b)
    );
    assert!(std::fs::read_to_string(target.path().join("compose.yaml"))
        .unwrap()
        .contains("crm-gdb_php:1.0.0-b"));

    // Unknown tag, hostile values: refused before anything stops.
    let out = deploy(&["deploy", "--tag", "9.9.9"]);
    assert!(
        stderr(&out).contains("is not in the registry"),
        "{}",
        stderr(&out)
    );
    let out = xtask(
        root,
        tmp.path(),
        &prefix,
        &[
            "deploy",
            "--tag",
            "1.0.0-a",
            "--dir",
            "/tmp/x; rm -rf /",
            "--stack",
            &stack,
        ],
    );
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let out = deploy(&["deploy", "--tag", "$(id)"]);
    assert!(stderr(&out).contains("invalid tag \"$(id)\""));
    assert_eq!(http_get(port, "/health").unwrap().0, 200);

    // Rollback to the previous successful release (A), under load.
    let probe = Probe::start(port, vec![Expected::page(), Expected::health()]);
    let out = deploy(&["rollback"]);
    let load = probe.stop();
    assert!(out.status.success());
    assert_eq!(
        load.failed, 0,
        "rollback dropped requests: {:?}",
        load.failures
    );
    eprintln!("rollback: longest gap {:?}", load.longest_gap);
    assert!(
        load.longest_gap <= MAX_GAP,
        "rollback: no good answer for {:?}: {load:?}",
        load.longest_gap
    );
    assert_eq!(hashed_css(&http_get(port, "/").unwrap().1), asset_a);
    assert!(
        contacts(port).contains("ada@example.com"),
        "contacts survive a rollback"
    );

    // Backup, a later write, restore: the backup's state comes back.
    assert!(deploy(&["backup"]).status.success());
    let archive = newest_backup(target.path());
    http_post_json(
        port,
        "/api/contacts",
        r#"{"name":"Later","email":"later@example.com"}"#,
    )
    .unwrap();
    assert!(contacts(port).contains("later@example.com"));
    assert!(
        archive.starts_with("db-") && archive.ends_with("-manual.dump"),
        "a pg_dump of the database: {archive}"
    );
    assert!(deploy(&["backup", "--restore", &archive]).status.success());
    // pg_restore in one transaction while the app serves: the very next request sees it.
    let after = contacts(port);
    assert!(
        after.contains("ada@example.com") && !after.contains("later@example.com"),
        "{after}"
    );
    // The database password: a file of the target in a private directory, never in what
    // `docker inspect` shows of the containers that use it (only its path).
    let secrets = target.path().join(".deploy/secrets");
    let password = std::fs::read_to_string(secrets.join("db_password")).unwrap();
    assert!(password.trim().len() >= 32, "a random password");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secrets).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let ids: Vec<String> = cmd!(sh, "docker ps -q --filter name=^{stack}-")
        .read()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(ids.len() >= 4, "db, php, worker, nginx...: {ids:?}");
    let inspected = cmd!(sh, "docker inspect {ids...}").read().unwrap();
    assert!(
        !inspected.contains(password.trim()),
        "the password is in docker inspect"
    );

    let out = deploy(&["status"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("live:     1.0.0-a") && said.contains("1.0.0-x") && said.contains("failed"),
        "{said}"
    );

    // The same target over ssh: a deploy, then refusals for an unknown host key and a dead port.
    let sshd = sshd::Sshd::start();
    let over_ssh = |config: &Path, host: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--host",
            host,
            "--ssh-config",
            config.to_str().unwrap(),
            "--dir",
            &dir,
            "--stack",
            &stack,
        ]);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let probe = Probe::start(port, vec![Expected::page(), Expected::health()]);
    let out = over_ssh(
        &sshd.client_config(),
        &sshd.host_spec(),
        &["deploy", "--tag", "1.0.0-b"],
    );
    let load = probe.stop();
    assert!(out.status.success(), "deploy over ssh failed");
    assert_eq!(
        load.failed, 0,
        "deploy over ssh dropped requests: {:?}",
        load.failures
    );
    assert_eq!(
        hashed_css(&http_get(port, "/").unwrap().1),
        hashed_css(&page_b)
    );
    let out = over_ssh(
        &sshd.client_config_unknown_host(),
        &sshd.host_spec(),
        &["status"],
    );
    assert!(
        stderr(&out).contains("unknown or changed host key"),
        "{}",
        stderr(&out)
    );
    let dead = format!("root@127.0.0.1:{}", free_port());
    let out = over_ssh(&sshd.client_config(), &dead, &["status"]);
    assert!(
        stderr(&out).contains("cannot reach 127.0.0.1 over ssh"),
        "{}",
        stderr(&out)
    );
    assert!(contacts(port).contains("ada@example.com"));

    // --dry-run prints the plan and changes nothing on the target.
    let before = snapshot(target.path());
    let out = deploy(&["--dry-run", "deploy", "--tag", "1.0.0-a"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nginx -s reload"));
    assert!(
        snapshot(target.path()) == before,
        "--dry-run changed the target"
    );

    // Ctrl-C in the middle of the switch: exit 130, the lock released, one version serving.
    let probe = Probe::start(port, vec![Expected::page(), Expected::health()]);
    let code = interrupt_during(
        root,
        tmp.path(),
        &prefix,
        &[
            "deploy", "--tag", "1.0.0-a", "--dir", &dir, "--stack", &stack,
        ],
        "[6/8]",
    );
    let load = probe.stop();
    assert_eq!(code, Some(130), "Ctrl-C exits 130");
    assert!(
        !target.path().join(".deploy/lock").exists(),
        "the lock is released after Ctrl-C"
    );
    assert_eq!(
        load.failed, 0,
        "Ctrl-C during a deploy dropped requests: {:?}",
        load.failures
    );
    let serving = hashed_css(&http_get(port, "/").unwrap().1);
    let compose_now = std::fs::read_to_string(target.path().join("compose.yaml")).unwrap();
    let expected = if serving == asset_a {
        "crm-gdb_php:1.0.0-a"
    } else {
        "crm-gdb_php:1.0.0-b"
    };
    assert!(
        compose_now.contains(expected),
        "compose.yaml names the version that serves ({expected})"
    );

    // A registry the target cannot reach: refused before anything stops.
    let other = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}/kiora", free_port());
    std::fs::write(
        other.path().join("compose.yaml"),
        std::fs::read_to_string(root.join("compose.yaml"))
            .unwrap()
            .replace("registry.kiora.tech/kiora", &dead),
    )
    .unwrap();
    let other_dir = other.path().to_str().unwrap();
    let out = xtask(
        root,
        tmp.path(),
        &prefix,
        &[
            "deploy",
            "--tag",
            "1.0.0-a",
            "--dir",
            other_dir,
            "--stack",
            &format!("{stack}x"),
        ],
    );
    assert!(
        stderr(&out).contains("is unreachable from the target; nothing was stopped"),
        "{}",
        stderr(&out)
    );
    assert!(!other.path().join(".deploy/lock").exists());
}

/// Runs `cargo xtask ARGS`, sends SIGINT 0.3 s after `marker` appears on its stderr, returns its
/// exit code. Soon after: a local switch is over in about a second once it starts (the new
/// color's `docker compose up` is what it interrupts).
fn interrupt_during(
    root: &Path,
    tmp: &Path,
    registry: &str,
    args: &[&str],
    marker: &str,
) -> Option<i32> {
    let mut running = faults::Running::start(root, tmp, registry, args, &[]);
    let seen = running.wait_for_line(std::time::Duration::from_secs(120), |line| {
        line.contains(marker)
    });
    assert!(
        seen.is_some(),
        "the marker {marker:?} appeared: {}",
        running.stderr()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    running.signal(libc::SIGINT);
    running.wait(std::time::Duration::from_secs(120)).code()
}

/// Edits a file of the clone and commits it, as a developer would.
fn commit(sh: &Shell, root: &Path, file: &str, edit: impl FnOnce(&str) -> String) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(&text);
    assert_ne!(text, edited, "the edit of {file} changed nothing");
    std::fs::write(&path, edited).unwrap();
    cmd!(
        sh,
        "git -C {root} -c user.name=dev -c user.email=dev@example.com commit -q -am {file}"
    )
    .run()
    .unwrap();
}

fn hashed_css(page: &str) -> String {
    let start = page
        .find("\"/build/")
        .expect("the page names a hashed asset")
        + 1;
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

fn contacts(port: u16) -> String {
    let (status, body) = http_get(port, "/api/contacts").unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

fn newest_backup(target: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(target.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.pop().expect("a dump")
}
