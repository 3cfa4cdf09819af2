//! End to end on real machines (a testbed of 2 network namespaces, each with its own Docker
//! engine and sshd), operating a fleet with `--env`: `logs -f` shows a request made after it
//! started on each machine, under that machine's prefix, and ends on SIGINT with 130 leaving no
//! ssh or remote `docker compose logs` behind; `logs` without -f; `exec` on every host (first
//! non-zero status, failed hosts named) or on the primary; maintenance on (both edges 503 with
//! Retry-After), status, off (200), refused as a whole when one edge is down, and put back on
//! every host when one fails half-way; `prune --dry-run` per host. Then a traffic canary over
//! the fleet (`deploy --env --canary 20%`): both edges split at once, the hosts' counts judged
//! together, both promoted while a probe on each edge sees no failure; a canary left on both
//! (`--canary-wait 0`) shows in `status --env` and `deploy --env --abort` withdraws it on both.
//! Two releases, one testbed serve every scenario.

mod common;

use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::testbed::Testbed;
use common::*;

/// The port every machine's edge is published on (each machine has its own network).
const EDGE_PORT: u16 = 8080;

#[test]
fn logs_exec_maintenance_prune_over_a_fleet() {
    if !testbed::available("logs_exec_maintenance_prune_over_a_fleet") {
        return;
    }
    let started = Instant::now();
    let registry = Registry::start();
    let prefix = registry.prefix();
    // The images this file tagged under its registry, removed when it ends.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };
    ok(&["docker-publish", "--image", "php", "--tag", BASE_TAG]);
    // 0.4.0: the edge that can split requests (the traffic canary below).
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    ok(&["build-app", "--tag", "1.0.0-a"]);
    ok(&["build-app", "--tag", "1.0.0-b"]);
    eprintln!("release built after {:?}", started.elapsed());

    let bed = Testbed::start(2, Some(registry.port));
    // A stack name of this test only: the remote processes it starts can be told from others'.
    let stack = format!("fo{}", std::process::id());
    let dirs = tempfile::tempdir().unwrap();
    let config = deploy_config(&bed, root, &prefix, &stack, dirs.path());
    // `--deploy-config` before `--`, after which every word is the command's.
    let run = |args: &[&str]| {
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut all = args[..at].to_vec();
        all.extend(["--deploy-config", config.as_str()]);
        all.extend(&args[at..]);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let out = run(&["deploy", "--env", "e2e", "--tag", "1.0.0-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("deployed after {:?}", started.elapsed());
    let labels = [bed.addr(1), bed.addr(2)];

    // logs -f over the fleet: a request made on each machine after it started shows up under
    // that machine's prefix; SIGINT (to xtask alone) ends it with 130 and no child left.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["logs", "-f", "--env", "e2e", "--deploy-config", &config])
        .env("XTASK_ROOT", root)
        .env("XTASK_REGISTRY", &prefix)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
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
    let mut err_pipe = follow.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err_pipe.read_to_string(&mut text);
        text
    });
    let mut shown = Vec::new();
    // Both machines' streams run once each has said something (the logs so far).
    let until = Instant::now() + Duration::from_secs(30);
    while !labels
        .iter()
        .all(|l| shown.iter().any(|s: &String| s.starts_with(l.as_str())))
    {
        let left = until
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        match seen.recv_timeout(left) {
            Ok(line) => shown.push(line),
            Err(_) => panic!("logs -f did not start on both machines: {shown:#?}"),
        }
    }
    let marker = format!("fleet-logs-{}", std::process::id());
    for (m, label) in [1, 2].into_iter().zip(&labels) {
        let path = format!("/?{marker}-m{m}");
        assert_eq!(http_get_at(label, EDGE_PORT, &path).unwrap().0, 200);
        let until = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let left = until
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            match seen.recv_timeout(left) {
                Ok(line) if line.contains(&path) => break line,
                Ok(line) => shown.push(line),
                Err(_) => panic!("logs -f did not show the request to m{m}: {shown:#?}"),
            }
        };
        assert!(
            line.starts_with(&format!("{label} | ")),
            "the request to m{m} is shown under its host: {line}"
        );
    }
    let children = faults::descendants(follow.id());
    assert!(
        children
            .iter()
            .filter(|(_, c)| c.starts_with("ssh "))
            .count()
            >= 2,
        "one ssh per machine: {children:?}"
    );
    let remote_follow = format!("--project-name {stack}-");
    assert!(
        remote_logs(&remote_follow).len() >= 2,
        "a remote logs --follow per machine: {:?}",
        faults::processes_mentioning(&remote_follow)
    );
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(follow.id() as i32, libc::SIGINT) }, 0);
    let code = wait_with_limit(&mut follow, Duration::from_secs(20));
    let err = err_reader.join().unwrap();
    assert_eq!(code, Some(130), "logs -f --env after SIGINT: {err}");
    for (pid, cmdline) in &children {
        assert_eq!(faults::cmdline(*pid), "", "left behind: {pid} {cmdline}");
    }
    // The remote followers hang up with their ssh (a remote terminal), not at their next line.
    let until = Instant::now() + Duration::from_secs(10);
    while !remote_logs(&remote_follow).is_empty() {
        assert!(
            Instant::now() < until,
            "remote logs --follow left running: {:?}",
            remote_logs(&remote_follow)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Not following: each machine's logs in turn, prefixed, then the end.
    let out = run(&["logs", "--env", "e2e", "--service", "nginx", "--tail", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (m, label) in [1, 2].into_iter().zip(&labels) {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{label} | "))
                    && l.contains(&format!("{marker}-m{m}"))),
            "m{m}'s request in its own logs: {text}"
        );
    }

    // exec on every host in turn: both run, the status is the first non-zero one (m1's 3),
    // and both failed hosts are named; --primary runs on m1 only, unprefixed.
    let script = "$s = getenv('APP_SECRET'); echo $s, \"\\n\"; exit($s === 'secret-m1' ? 3 : 4);";
    let out = run(&["exec", "--env", "e2e", "--", "php", "-r", script]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for (m, label) in [1, 2].into_iter().zip(&labels) {
        assert!(
            text.lines().any(|l| l == format!("{label} | secret-m{m}")),
            "m{m} ran it: {text}"
        );
    }
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the command failed on 2 of 2 hosts of e2e: {} (exit status 3), {} (exit status 4)",
            labels[0], labels[1]
        )),
        "{err}"
    );
    let out = run(&[
        "exec",
        "--env",
        "e2e",
        "--primary",
        "--",
        "php",
        "-r",
        script,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret-m1\n");
    let out = run(&[
        "exec", "--env", "e2e", "--only", &labels[1], "--", "php", "-r", "exit(0);",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["exec", "--env", "e2e", "-i", "--", "php", "-a"]);
    assert!(
        stderr(&out)
            .contains("-i needs one host, and environment e2e has 2: add --primary or --only HOST"),
        "{}",
        stderr(&out)
    );

    // Maintenance on the fleet: both edges answer 503 with Retry-After (health still 200);
    // status says ON for both; off: both serve again.
    let out = run(&["maintenance", "on", "--env", "e2e", "--retry-after", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for label in &labels {
        let answer = raw_get_at(label, "/");
        assert!(answer.starts_with("HTTP/1.1 503"), "{label}: {answer}");
        assert!(
            answer.contains("\r\nRetry-After: 120\r\n"),
            "{label}: {answer}"
        );
        assert_eq!(http_get_at(label, EDGE_PORT, "/health").unwrap().0, 200);
    }
    let out = run(&["maintenance", "status", "--env", "e2e"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for label in &labels {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{label} | maintenance: ON"))),
            "{text}"
        );
    }
    let out = run(&["maintenance", "off", "--env", "e2e"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for label in &labels {
        assert_eq!(
            http_get_at(label, EDGE_PORT, "/").unwrap().0,
            200,
            "{label}"
        );
    }
    // One edge down: `on` is refused as a whole, naming it, and m1 keeps serving.
    let edge = format!("{stack}-edge-edge-1");
    let docker_m2 = |args: &[&str]| {
        let out = bed.docker(2).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?} on m2: {}",
            stderr(&out)
        );
    };
    docker_m2(&["stop", &edge]);
    let out = run(&["maintenance", "on", "--env", "e2e"]);
    docker_m2(&["start", &edge]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("maintenance on refused: ")
            && err.contains(&format!("{}: the edge on root@{}:", labels[1], labels[1]))
            && err.contains("is stopped; start it")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(http_get_at(&labels[0], EDGE_PORT, "/").unwrap().0, 200);
    // m2's edge fails half-way (the page cannot be written: a directory is in the way), after
    // m1 turned on: m1 is put back, the fleet ends off, and the error names m2.
    let in_the_way = "/etc/nginx/crm-edge/maintenance.html.new";
    docker_m2(&["exec", &edge, "mkdir", in_the_way]);
    let out = run(&["maintenance", "on", "--env", "e2e"]);
    docker_m2(&["exec", &edge, "rmdir", in_the_way]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "maintenance on failed on {}; every host is back as it was",
            labels[1]
        )),
        "{err}"
    );
    for label in &labels {
        assert_eq!(
            http_get_at(label, EDGE_PORT, "/").unwrap().0,
            200,
            "{label} back off"
        );
    }
    let out = run(&["maintenance", "status", "--env", "e2e"]);
    assert!(out.status.success(), "both off: {}", stderr(&out));

    // prune --dry-run over the fleet: each machine's plan under its prefix, a table, nothing gone.
    let out = run(&["--dry-run", "prune", "--env", "e2e"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for label in &labels {
        assert!(
            text.lines().any(
                |l| l.starts_with(&format!("{label} | prune on root@{label}:"))
                    && l.contains("keeping release(s) 1.0.0-a")
            ),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{label} ")) && l.trim_end().ends_with("plan")),
            "the summary row of {label}: {text}"
        );
    }
    for m in 1..=2 {
        assert_eq!(http_get_at(&bed.addr(m), EDGE_PORT, "/").unwrap().0, 200);
    }

    // A healthy traffic canary over the fleet: both edges split, the fleet's line sums both
    // hosts' counts, both are promoted, and no request to either edge failed.
    let probes: Vec<Probe> = labels
        .iter()
        .map(|l| {
            Probe::start_at(
                l.parse().unwrap(),
                EDGE_PORT,
                vec![Expected::page(), Expected::health()],
            )
        })
        .collect();
    let out = run(&[
        "deploy",
        "--env",
        "e2e",
        "--tag",
        "1.0.0-b",
        "--canary",
        "20%",
        "--canary-wait",
        "15s",
    ]);
    let seen: Vec<ProbeResult> = probes.into_iter().map(Probe::stop).collect();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let fleet_line = err
        .lines()
        .rfind(|l| l.contains("fleet: canary 20% (asked)"))
        .unwrap_or_else(|| panic!("no fleet comparison line: {err}"));
    for (label, seen) in labels.iter().zip(&seen) {
        assert_eq!(seen.failed, 0, "{label}: {:?}", seen.failures);
        // `label N/0 | M/0`: this host's edge sent the canary requests, none failed.
        let counts = fleet_line
            .split(&format!("{label} "))
            .nth(1)
            .unwrap_or_else(|| panic!("{label} in {fleet_line}"));
        let canary: u64 = counts.split('/').next().unwrap().parse().unwrap();
        assert!(canary > 0, "{label}'s canary got requests: {fleet_line}");
    }
    assert!(
        err.contains("promoted: 1.0.0-b answers every request"),
        "{err}"
    );
    let status = String::from_utf8_lossy(&run(&["status", "--env", "e2e"]).stdout).to_string();
    for label in &labels {
        assert!(
            status.lines().any(|l| l.starts_with(label.as_str())
                && l.contains(" 1.0.0-b ")
                && !l.contains("canary")),
            "{label} serves 1.0.0-b alone: {status}"
        );
    }

    // Left on both for a person: status --env shows it per host, --abort withdraws it on both.
    let out = run(&[
        "deploy",
        "--env",
        "e2e",
        "--tag",
        "1.0.0-a",
        "--canary",
        "20%",
        "--canary-wait",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = String::from_utf8_lossy(&run(&["status", "--env", "e2e"]).stdout).to_string();
    for label in &labels {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(label.as_str())
                    && l.contains("1.0.0-b (canary: 20% to 1.0.0-a")),
            "{label} holds the canary: {status}"
        );
    }
    let out = run(&["deploy", "--env", "e2e", "--abort"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = String::from_utf8_lossy(&run(&["status", "--env", "e2e"]).stdout).to_string();
    assert!(!status.contains("(canary:"), "withdrawn on both: {status}");
    for label in &labels {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(label.as_str()) && l.contains(" 1.0.0-b ")),
            "{status}"
        );
        assert_eq!(http_get_at(label, EDGE_PORT, "/").unwrap().0, 200);
    }
    eprintln!("fleet ops e2e took {:?}", started.elapsed());
}

/// deploy.yaml with environment `e2e`: the two machines, each its own directory and APP_SECRET
/// (so a command can tell on which machine it ran).
fn deploy_config(bed: &Testbed, root: &Path, prefix: &str, stack: &str, dirs: &Path) -> String {
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", prefix);
    let mut hosts = String::new();
    for m in 1..=2 {
        let dir = dirs.join(format!("m{m}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), &compose).unwrap();
        std::fs::write(
            dir.join(".env"),
            format!("APP_SECRET=secret-m{m}\nHTTP_PORT={EDGE_PORT}\nHTTP_BIND=0.0.0.0\n"),
        )
        .unwrap();
        hosts.push_str(&format!(
            "      - {{host: {}, dir: {}}}\n",
            bed.host(m),
            dir.display()
        ));
    }
    let config = dirs.join("deploy.yaml");
    std::fs::write(
        &config,
        format!(
            "environments:\n  e2e:\n    hosts:\n{hosts}    stack: {stack}\n    ssh_config: {}\n    min_free_disk: 100MiB\n",
            bed.ssh_config().display()
        ),
    )
    .unwrap();
    config.to_str().unwrap().to_string()
}

/// The processes (any machine: they share this host's process table) following the logs of
/// the compose project named by `needle`.
fn remote_logs(needle: &str) -> Vec<String> {
    faults::processes_mentioning(needle)
        .into_iter()
        // Not our own ssh clients, whose one remote-command argument mentions it too.
        .filter(|p| {
            !p.split_once(' ')
                .is_some_and(|(_, args)| args.starts_with("ssh "))
        })
        .filter(|p| p.contains(" logs ") && p.contains("--follow"))
        .collect()
}

/// A GET of a machine's edge answered whole, headers included.
fn raw_get_at(addr: &str, path: &str) -> String {
    let ip: std::net::IpAddr = addr.parse().unwrap();
    let mut stream = std::net::TcpStream::connect((ip, EDGE_PORT)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
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
