//! End to end on a real engine, registry and sshd: operating a deployed target. `logs -f` sees a
//! request made after it started and ends on SIGINT with 130; `exec` passes the exit status on
//! and every argument whole (also over ssh); maintenance mode answers 503 with Retry-After while
//! the health checks still answer 200; `prune` after 8 deploys leaves exactly what it must, and
//! a rollback after it still switches without a failed request. One target serves every scenario.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use xshell::{cmd, Shell};

#[test]
fn logs_exec_maintenance_prune_on_one_target() {
    let test = "logs_exec_maintenance_prune_on_one_target";
    if !engine_available(test) || !sshd::available(test) {
        return;
    }
    let sh = Shell::new().unwrap();
    let registry = Registry::start();
    let prefix = registry.prefix();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let stack = format!("ops{}", std::process::id());
    // Dropped in reverse: the stack's containers go first, then the images they held.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let _cleanup = RemoveStack(stack.clone());
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };

    // Releases: a, then b with other CSS (other hashed assets), then c..h reusing b's images.
    ok(&["docker-publish", "--image", "php", "--tag", BASE_TAG]);
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    ok(&["build-app", "--tag", "1.0.0-a"]);
    let css = root.join("app/assets/app.css");
    let text = std::fs::read_to_string(&css).unwrap();
    std::fs::write(&css, format!("{text}\nbody {{ outline: 0; }}\n")).unwrap();
    cmd!(
        sh,
        "git -C {root} -c user.name=dev -c user.email=dev@example.com commit -q -am css"
    )
    .run()
    .unwrap();
    let later = ["b", "c", "d", "e", "f", "g", "h"].map(|r| format!("1.0.0-{r}"));
    for tag in &later {
        ok(&["build-app", "--tag", tag]);
    }

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
    let on_target = |args: &[&str]| {
        let all = with_target(args, &["--dir", &dir, "--stack", &stack]);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let sshd = sshd::Sshd::start();
    let ssh_config = sshd.client_config();
    let host = sshd.host_spec();
    let over_ssh = |args: &[&str]| {
        let all = with_target(
            args,
            &[
                "--host",
                &host,
                "--ssh-config",
                ssh_config.to_str().unwrap(),
                "--dir",
                &dir,
                "--stack",
                &stack,
            ],
        );
        xtask(root, tmp.path(), &prefix, &all)
    };
    assert!(on_target(&["deploy", "--tag", "1.0.0-a"]).status.success());
    let asset_a = hashed_css(&http_get(port, "/").unwrap().1);
    assert!(on_target(&["deploy", "--tag", "1.0.0-b"]).status.success());

    // logs -f: a request made after it started shows up; SIGINT ends it with 130.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["logs", "-f", "--dir", &dir, "--stack", &stack])
        .env("XTASK_ROOT", root)
        .env("XTASK_REGISTRY", &prefix)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Whatever it prints first (the logs so far), a request made once it runs must show up,
    // and then a second one: it follows, not just replays.
    let _ = seen.recv_timeout(Duration::from_secs(5));
    let marker = format!("logs-marker-{}", std::process::id());
    for round in ["first", "second"] {
        let path = format!("/?{marker}-{round}");
        assert_eq!(http_get(port, &path).unwrap().0, 200);
        let until = Instant::now() + Duration::from_secs(30);
        let mut found = false;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match seen.recv_timeout(left) {
                Ok(line) if line.contains(&path) => {
                    found = true;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        assert!(
            found,
            "logs -f did not show the {round} request made after it started"
        );
    }
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(follow.id() as i32, libc::SIGINT) }, 0);
    let code = wait_with_limit(&mut follow, Duration::from_secs(20));
    let mut err = String::new();
    follow
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(130), "logs -f after SIGINT: {err}");
    // Not following, over ssh: the same logs, then the end.
    let out = over_ssh(&["logs", "--service", "nginx", "--tail", "200"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&marker),
        "logs over ssh"
    );
    let out = on_target(&["logs", "--since", "10m; rm -rf /"]);
    assert!(stderr(&out).contains("invalid --since"), "{}", stderr(&out));

    // exec: the exit status comes back, every argument arrives whole (locally and over ssh).
    let code = on_target(&["exec", "--", "php", "-r", "exit(3);"])
        .status
        .code();
    assert_eq!(code, Some(3));
    let code = over_ssh(&["exec", "--", "php", "-r", "exit(3);"])
        .status
        .code();
    assert_eq!(code, Some(3), "over ssh");
    let echo = "echo json_encode(array_slice($argv, 1), JSON_UNESCAPED_SLASHES);";
    let hostile = ["x; rm -rf /", "$(id)", "it's \"quoted\"", "a\nb"];
    let expected = r#"["x; rm -rf /","$(id)","it's \"quoted\"","a\nb"]"#;
    for run in [
        &on_target as &dyn Fn(&[&str]) -> std::process::Output,
        &over_ssh,
    ] {
        let mut args = vec!["exec", "--", "php", "-r", echo];
        args.extend(hostile);
        let out = run(&args);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }
    // --new: a throwaway container of another release, with the target's .env and data.
    let out = on_target(&[
        "exec",
        "--new",
        "--tag",
        "1.0.0-a",
        "--",
        "php",
        "-r",
        "echo getenv('APP_SECRET'), ' ', is_dir('/var/www/app/var/data') ? 'data' : 'none';",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "e2e-secret data");
    assert_eq!(
        containers_named(&format!("{stack}-exec-")),
        "",
        "the throwaway container is gone"
    );

    // Maintenance: 503 with Retry-After and the escaped message; health checks still 200.
    let out = on_target(&["maintenance", "on", "--message", "Back <soon> & \"fast\""]);
    assert!(out.status.success());
    let answer = raw_get(port, "/");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\r\nRetry-After: 300\r\n"), "{answer}");
    assert!(
        answer.contains("Back &lt;soon&gt; &amp; &quot;fast&quot;"),
        "{answer}"
    );
    assert!(raw_get(port, "/contacts").starts_with("HTTP/1.1 503"));
    assert_eq!(
        http_get(port, "/health").unwrap().0,
        200,
        "the edge's /health"
    );
    assert_eq!(http_get(port, "/nginx-health").unwrap().0, 200);
    let said = String::from_utf8_lossy(&on_target(&["status"]).stdout).into_owned();
    assert!(said.contains("maintenance: ON"), "{said}");
    assert!(over_ssh(&["maintenance", "off"]).status.success());
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    let said = String::from_utf8_lossy(&on_target(&["maintenance", "status"]).stdout).into_owned();
    assert_eq!(said.trim(), "maintenance: off");
    // An edge from before maintenance mode (0.1.0 had no include): refused, nothing changed.
    let edge = edge_container(&stack);
    let in_edge = |args: &[&str]| {
        let ok = Command::new("docker")
            .args(["exec", &edge])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{args:?}");
    };
    let conf = "/etc/nginx/conf.d/default.conf";
    in_edge(&["cp", conf, "/tmp/edge.conf"]);
    in_edge(&["sed", "-i", "/maintenance\\*\\.conf/d", conf]);
    let out = on_target(&["maintenance", "on"]);
    assert!(
        !out.status.success() && stderr(&out).contains("predates maintenance mode"),
        "{}",
        stderr(&out)
    );
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    in_edge(&["cp", "/tmp/edge.conf", conf]);

    // Six more deploys (8 in all), then leftovers for prune to find.
    for tag in &later[1..] {
        assert!(on_target(&["deploy", "--tag", tag]).status.success());
    }
    let php = |tag: &str| format!("{prefix}/crm-gdb_php:{tag}");
    let nginx = |tag: &str| format!("{prefix}/crm-gdb_nginx:{tag}");
    let images_of = |tag: &str| [php(tag), format!("{}-supervisor", php(tag)), nginx(tag)];
    let stopped_old = format!("{stack}-exec-1");
    let stopped_kept = format!("{stack}-exec-2");
    for (name, tag) in [(&stopped_old, "1.0.0-a"), (&stopped_kept, "1.0.0-h")] {
        assert!(Command::new("docker")
            .args(["create", "--name", name, &php(tag), "true"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success());
    }
    let cache = cache_dir(root);
    let mut entries: Vec<_> = ["vendor", "assets"]
        .iter()
        .filter(|kind| cache.join(kind).is_dir())
        .flat_map(|kind| std::fs::read_dir(cache.join(kind)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort();
    assert!(entries.len() >= 2, "{entries:?}");
    let aged = entries[0].clone();
    assert!(Command::new("touch")
        .args(["-d", "60 days ago"])
        .arg(&aged)
        .status()
        .unwrap()
        .success());
    // An asset of a release no longer kept anywhere (a's are not: b's nginx image carries them
    // as its past assets, and c..h are b's images).
    let (ok, _) = docker_out(&[
        "run",
        "--rm",
        "--volume",
        &format!("{stack}_assets:/a"),
        "--entrypoint",
        "touch",
        &nginx("1.0.0-h"),
        "/a/app-OLDRELEASE.css",
    ]);
    assert!(ok);
    let volume_before = volume_files(&stack, &nginx("1.0.0-h"));
    assert!(
        volume_before.contains(asset_a.trim_start_matches("/build/"))
            && volume_before.contains("app-OLDRELEASE.css"),
        "a's assets were bridged: {volume_before:?}"
    );
    let backups = |d: &Path| std::fs::read_dir(d.join("backups")).unwrap().count();
    assert!(backups(target.path()) >= 5);

    // --dry-run lists and removes nothing.
    let out = on_target(&["--dry-run", "prune", "--keep", "3", "--keep-backups", "2"]);
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains(&format!("would remove image {}", php("1.0.0-a")))
            && listed.contains(&format!("would remove container {stopped_old}"))
            && listed.contains(&format!("would remove cache entry {}", aged.display())),
        "{listed}"
    );
    assert!(image_exists(&php("1.0.0-a")) && aged.exists());
    assert_eq!(volume_files(&stack, &nginx("1.0.0-h")), volume_before);

    let out = on_target(&["prune", "--keep", "3", "--keep-backups", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("keeping release(s) 1.0.0-h, 1.0.0-g, 1.0.0-f (live: 1.0.0-h, rollback would pick: 1.0.0-g)"),
        "{said}"
    );
    for tag in ["1.0.0-f", "1.0.0-g", "1.0.0-h"] {
        for image in images_of(tag) {
            assert!(image_exists(&image), "{image} was kept");
        }
    }
    for tag in ["1.0.0-a", "1.0.0-b", "1.0.0-c", "1.0.0-d", "1.0.0-e"] {
        for image in images_of(tag) {
            assert!(!image_exists(&image), "{image} was removed");
        }
    }
    assert_eq!(
        containers_named(&stopped_old),
        "",
        "old stopped container removed"
    );
    assert_ne!(
        containers_named(&stopped_kept),
        "",
        "kept release's container stays"
    );
    let release_files = release_files(&nginx("1.0.0-h"));
    assert_eq!(
        volume_files(&stack, &nginx("1.0.0-h")),
        release_files,
        "the volume holds exactly the kept releases' assets"
    );
    assert_eq!(backups(target.path()), 2);
    assert!(!aged.exists(), "the aged cache entry is removed");
    for other in &entries[1..] {
        assert!(other.exists(), "{} stays", other.display());
    }
    assert_eq!(http_get(port, "/").unwrap().0, 200);
    assert!(!release_files.contains("app-OLDRELEASE.css"));
    assert_eq!(
        http_get(port, "/build/app-OLDRELEASE.css").unwrap().0,
        404,
        "the asset of no kept release is gone"
    );
    // a's CSS stays: the kept releases' nginx image carries it (past assets).
    assert!(release_files.contains(asset_a.trim_start_matches("/build/")));
    assert_eq!(http_get(port, &asset_a).unwrap().0, 200);

    // Rollback after prune: to g, under load, without a failed request.
    let probe = Probe::start(port, vec![Expected::page(), Expected::health()]);
    let out = on_target(&["rollback"]);
    let load = probe.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("1.0.0-g is live"), "{}", stderr(&out));
    assert_eq!(load.failed, 0, "rollback after prune: {:?}", load.failures);
    assert!(load.requests > 20, "{load:?}");
}

/// `args` with the target options before `--` (what follows it is exec's command), else at the end.
fn with_target<'a>(args: &[&'a str], target: &[&'a str]) -> Vec<&'a str> {
    let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut all = args[..at].to_vec();
    all.extend(target);
    all.extend(&args[at..]);
    all
}

fn wait_with_limit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {limit:?} after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GET answered whole, headers included.
fn raw_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn hashed_css(page: &str) -> String {
    let start = page
        .find("\"/build/")
        .expect("the page names a hashed asset")
        + 1;
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

fn docker_out(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn image_exists(image: &str) -> bool {
    docker_out(&["image", "inspect", image]).0
}

/// Names of the containers whose name starts with `prefix`, one per line.
fn containers_named(prefix: &str) -> String {
    docker_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^{prefix}"),
        "--format",
        "{{.Names}}",
    ])
    .1
    .trim()
    .to_string()
}

fn edge_container(stack: &str) -> String {
    let (_, id) = docker_out(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={stack}-edge"),
    ]);
    let id = id.trim().to_string();
    assert!(!id.is_empty(), "the edge runs");
    id
}

fn files(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn volume_files(stack: &str, image: &str) -> BTreeSet<String> {
    let (ok, out) = docker_out(&[
        "run",
        "--rm",
        "--volume",
        &format!("{stack}_assets:/a:ro"),
        "--entrypoint",
        "find",
        image,
        "/a",
        "-type",
        "f",
        "-printf",
        "%P\\n",
    ]);
    assert!(ok);
    files(&out)
}

fn release_files(image: &str) -> BTreeSet<String> {
    let (ok, out) = docker_out(&[
        "run",
        "--rm",
        "--entrypoint",
        "find",
        image,
        "/var/www/app/public/build",
        "-type",
        "f",
        "-printf",
        "%P\\n",
    ]);
    assert!(ok);
    files(&out)
}

/// Removes every container (projects and `exec` leftovers), volume and network of the stack.
struct RemoveStack(String);

impl Drop for RemoveStack {
    fn drop(&mut self) {
        let stack = &self.0;
        let (_, ids) = docker_out(&["ps", "-aq", "--filter", &format!("name=^{stack}-")]);
        for id in ids.lines() {
            let _ = Command::new("docker").args(["rm", "-f", id]).output();
        }
        for volume in ["data", "assets", "edge-conf", "db"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{stack}_{volume}")])
                .output();
        }
        // Each Compose project's own `PROJECT_default` network too: Docker has few address pools.
        for network in [
            "_edge",
            "_db",
            "-blue_default",
            "-green_default",
            "-edge_default",
            "-db_default",
        ] {
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("{stack}{network}")])
                .output();
        }
    }
}
