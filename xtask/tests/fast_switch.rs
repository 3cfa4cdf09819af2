//! A rollback to the previous release only switches the edge back to its kept containers. On a
//! real machine (a testbed of one: its own Docker engine and sshd, deployed to over ssh): after
//! deploy A then B, A's containers are kept, its worker stopped and its php and nginx running
//! idle (`status` names the standby); `rollback` under a load probe serves A from those very
//! containers (same ids: no recreate) with no failed request, and B becomes the standby; a
//! deploy killed while starting its color leaves, once the next plain deploy converged, no
//! container beyond the live release, the standby and the edge; `prune` keeps the standby.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::edge_probe::EdgeProbe;
use common::faults::Running;
use common::testbed::Testbed;
use common::*;

const EDGE_PORT: u16 = 8080;
const STACK: &str = "fs";
const A: &str = "1.0.0-a";
const B: &str = "1.0.0-b";

#[test]
fn a_rollback_starts_the_stopped_previous_release() {
    if !testbed::available("a_rollback_starts_the_stopped_previous_release") {
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
        let out = xtask(root, tmp.path(), &prefix, args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        out
    };
    ok(&["docker-publish", "--image", "php", "--tag", BASE_TAG]);
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    ok(&["build-app", "--tag", A]);
    // Same inputs: B is A's images under another tag (a re-tag in the registry, no build).
    // Containers, not pages, tell the releases apart here.
    ok(&["build-app", "--tag", B]);
    eprintln!("releases built after {:?}", started.elapsed());

    let bed = Testbed::start(1, Some(registry.port));
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_str().unwrap().to_string();
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", &prefix);
    std::fs::write(target.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(
        target.path().join(".env"),
        format!("APP_SECRET=e2e-secret\nHTTP_PORT={EDGE_PORT}\nHTTP_BIND=0.0.0.0\n"),
    )
    .unwrap();
    let host = bed.host(1);
    let ssh_config = bed.ssh_config();
    let on_target = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for flag in [
            "--host",
            &host,
            "--dir",
            &dir,
            "--stack",
            STACK,
            "--ssh-config",
            ssh_config.to_str().unwrap(),
            "--min-free-disk",
            "100MiB",
        ] {
            all.push(flag.to_string());
        }
        all
    };
    let run = |args: &[&str]| -> Output {
        let all = on_target(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        xtask(root, tmp.path(), &prefix, &all)
    };
    let machine = Machine { bed: &bed };

    assert!(run(&["deploy", "--tag", A]).status.success());
    let a_color = machine.live_color(&run, A);
    assert!(run(&["deploy", "--tag", B]).status.success());
    let b_color = machine.live_color(&run, B);
    assert_ne!(a_color, b_color);
    let kept_a = machine.containers(&a_color);
    assert_eq!(kept_a.len(), 3, "A's php, worker, nginx are kept");
    assert!(
        parked(&kept_a),
        "its worker stopped, php and nginx idle: {kept_a:?}"
    );
    let status = String::from_utf8_lossy(&run(&["status"]).stdout).into_owned();
    assert!(
        status.contains(&format!(
            "standby:  {A} (php and nginx ready, worker stopped, {STACK}-{a_color})"
        )),
        "{status}"
    );

    // Rollback under load: A serves again from the same containers, nothing fails.
    let probe = EdgeProbe::start(bed.addr(1), EDGE_PORT);
    let began = Instant::now();
    let out = run(&["rollback"]);
    let took = began.elapsed();
    let load = probe.stop();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(machine.live_color(&run, A), a_color);
    let back_a = machine.containers(&a_color);
    assert_eq!(
        ids(&back_a),
        ids(&kept_a),
        "A's kept containers serve again, not recreated"
    );
    assert!(
        back_a.iter().all(|(_, s, _)| s == "running"),
        "and A's worker runs again: {back_a:?}"
    );
    let kept_b = machine.containers(&b_color);
    assert!(
        kept_b.len() == 3 && parked(&kept_b),
        "B is now the standby: {kept_b:?}"
    );
    let said = stderr(&out);
    assert!(
        said.contains("Running the release command: skipped"),
        "a rollback to the standby runs no release command before the switch: {said}"
    );
    assert!(load.requests > 20, "{load:?}");
    assert_eq!(
        load.failed, 0,
        "no request failed during the rollback: {load:?}"
    );
    eprintln!("rollback to the standby took {took:?} ({load:?})");

    // prune keeps the standby's containers (and images).
    let out = run(&["--dry-run", "prune", "--keep", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !listed.contains(&format!("{STACK}-{b_color}")),
        "the standby stays: {listed}"
    );

    // A deploy killed as its color starts (compose.yaml names B, the standby's php and nginx are
    // started again and gated; the switch and its worker come later): the next plain deploy
    // takes the lock over, and afterwards nothing is left beyond the live release, the stopped
    // standby and the edge.
    let args = on_target(&["deploy", "--tag", B]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut killed = Running::start(root, tmp.path(), &prefix, &args, &[]);
    let names_b = format!("crm-gdb_php:{B}\n");
    let start = Instant::now();
    // Looked at often: from this write to the switch is one `up` and a gate over ssh.
    while !std::fs::read_to_string(target.path().join("compose.yaml"))
        .unwrap_or_default()
        .contains(&names_b)
    {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            killed.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    killed.signal_group(libc::SIGKILL);
    assert!(!killed.wait(Duration::from_secs(30)).success());
    assert_eq!(
        machine.live_color(&run, A),
        a_color,
        "killed before its switch"
    );
    let out = run(&["deploy", "--tag", B]);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("took over the deploy lock"), "{said}");
    assert_eq!(machine.live_color(&run, B), b_color);
    let all = machine.all_containers();
    let standby = machine.containers(&a_color);
    assert!(
        all.len() == 8 && standby.len() == 3 && parked(&standby),
        "edge + db + B running + A the standby, nothing else: {all:?}"
    );
    eprintln!("fast_switch took {:?}", started.elapsed());
}

/// A standby: its worker stopped, its php and nginx running (idle, the edge names the other color).
fn parked(containers: &[(String, String, String)]) -> bool {
    containers
        .iter()
        .all(|(_, state, service)| match service.as_str() {
            "worker" => state == "exited",
            _ => state == "running",
        })
}

fn ids(containers: &[(String, String, String)]) -> Vec<String> {
    let mut ids: Vec<String> = containers.iter().map(|(id, _, _)| id.clone()).collect();
    ids.sort();
    ids
}

struct Machine<'a> {
    bed: &'a Testbed,
}

impl Machine<'_> {
    /// (id, state, service) of the containers of one color, on the machine's engine.
    fn containers(&self, color: &str) -> Vec<(String, String, String)> {
        self.ps(&[
            "--filter",
            &format!("label=com.docker.compose.project={STACK}-{color}"),
        ])
    }

    fn all_containers(&self) -> Vec<(String, String, String)> {
        self.ps(&[])
    }

    fn ps(&self, filter: &[&str]) -> Vec<(String, String, String)> {
        let out = self
            .bed
            .docker(1)
            .args(["ps", "--all", "--no-trunc", "--format"])
            .arg("{{.ID}} {{.State}} {{.Label \"com.docker.compose.service\"}}")
            .args(filter)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                Some((
                    w.first()?.to_string(),
                    w.get(1)?.to_string(),
                    w.get(2).unwrap_or(&"").to_string(),
                ))
            })
            .collect()
    }

    /// The live color per `status`, which must name `tag`.
    fn live_color(&self, run: &dyn Fn(&[&str]) -> Output, tag: &str) -> String {
        let out = run(&["status"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        // "live:     1.0.0-a (fs-blue)"
        let line = said
            .lines()
            .find(|l| l.starts_with("live:"))
            .unwrap_or_else(|| panic!("status names the live release: {said}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(1), Some(&tag), "{said}");
        words[2]
            .trim_matches(|c| c == '(' || c == ')')
            .rsplit('-')
            .next()
            .unwrap()
            .to_string()
    }
}
