//! End to end on a real Docker Swarm (a testbed of 3 network namespaces, each with its own
//! engine, joined in one swarm): `deploy --env` of an environment of `kind: swarm` deploys
//! compose.swarm.yaml from the manager over ssh. Under a load probe on every node's edge: a first
//! deploy, a rolling update A -> B with replicas on several nodes and no failed request; a broken
//! release that swarm rolls back by itself (our command says so and fails, nothing fails for the
//! clients); `rollback`; `status`; `logs` and `exec`; the secret's value nowhere in `inspect`
//! output; a worker node's engine stopped and its replicas back on the other nodes. A's hashed
//! CSS answers on every edge during and after the update (B's nginx image carries it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::testbed::Testbed;
use common::*;
use xshell::{cmd, Shell};

/// The edge's port on every node (host mode: each node's own address).
const EDGE_PORT: u16 = 8080;
const SECRET: &str = "swarm-e2e-secret-0123456789abcdef";

#[test]
fn the_stack_file_is_valid_for_compose_and_swarm() {
    if !engine_available("the_stack_file_is_valid_for_compose_and_swarm") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sh = Shell::new().unwrap();
    sh.change_dir(root);
    let _tag = sh.push_env("CRM_TAG", "1.0.0");
    let _secret = sh.push_env("CRM_APP_SECRET", "crm_app_secret_x");
    let stack = cmd!(sh, "docker stack config -c compose.swarm.yaml")
        .read()
        .unwrap();
    for wanted in [
        "order: start-first",
        "failure_action: rollback",
        "endpoint_mode: dnsrr",
        "mode: host",
        "mode: global",
        "node.role == manager",
        "rollback_config:",
        "monitor: 10s",
    ] {
        assert!(stack.contains(wanted), "{wanted}: {stack}");
    }
    // The same file is a valid Compose file too (deploy: sections and all).
    let compose = cmd!(sh, "docker compose -f compose.swarm.yaml config")
        .read()
        .unwrap();
    assert!(compose.contains("replicas: 2"), "{compose}");
}

#[test]
fn swarm_deploys_update_and_roll_back_without_failed_requests() {
    if !testbed::available("swarm_deploys_update_and_roll_back_without_failed_requests") {
        return;
    }
    let started = Instant::now();
    let sh = Shell::new().unwrap();
    let registry = Registry::start();
    let prefix = registry.prefix();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };
    // Three releases: A; B with other CSS; C whose php health check always fails.
    // The nodes pull release images only: the base images need not be in the registry.
    ok(&[
        "docker-publish",
        "--image",
        "php",
        "--tag",
        BASE_TAG,
        "--no-push",
    ]);
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    ok(&["build-app", "--tag", "1.0.0-a"]);
    commit(&sh, root, "app/assets/app.css", |css| {
        format!("{css}\nbody {{ outline: 0; }}\n")
    });
    ok(&["build-app", "--tag", "1.0.0-b"]);
    commit(&sh, root, "app/bin/healthcheck.php", |php| {
        php.replacen(
            "if (($argv[1] ?? '') === 'worker') {",
            "unhealthy('broken on purpose');\n\nif (($argv[1] ?? '') === 'worker') {",
            1,
        )
    });
    ok(&["build-app", "--tag", "1.0.0-c"]);
    eprintln!("releases built after {:?}", started.elapsed());

    let bed = Testbed::start_swarm(3, Some(registry.port));
    eprintln!("swarm testbed up after {:?}", started.elapsed());
    let conf = tempfile::tempdir().unwrap();
    let env_file = conf.path().join("swarm.env");
    std::fs::write(&env_file, format!("APP_SECRET={SECRET}\n")).unwrap();
    let config = conf.path().join("deploy.yaml");
    std::fs::write(
        &config,
        format!(
            "environments:\n  cluster:\n    kind: swarm\n    manager: {}\n    stack: e2e\n    ssh_config: {}\n    env_file: {}\n",
            bed.host(1),
            bed.ssh_config().display(),
            env_file.display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--deploy-config", config.to_str().unwrap()]);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let css = |m: usize| -> String {
        let (status, page) = http_get_at(&bed.addr(m), EDGE_PORT, "/")
            .unwrap_or_else(|| panic!("m{m}'s edge does not answer"));
        assert_eq!(status, 200, "m{m}: {page}");
        hashed_css(&page).unwrap_or_else(|| panic!("m{m}'s page names no stylesheet: {page}"))
    };
    let probes = || -> Vec<EdgeProbe> { (1..=3).map(|m| EdgeProbe::start(bed.addr(m))).collect() };
    // A page of A still open in a browser: its CSS, asked on every edge during the update.
    let probes_with = |asset: &str| -> Vec<EdgeProbe> {
        (1..=3)
            .map(|m| EdgeProbe::start_with(bed.addr(m), &["/", "/health", asset]))
            .collect()
    };

    // First deploy: every node's edge serves A.
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("first deploy took {:?}", t.elapsed());
    let asset_a = css(1);
    for m in 1..=3 {
        assert_eq!(css(m), asset_a, "m{m} serves A");
    }

    // A -> B under load on every edge: nothing fails (A's CSS included: no volume spans the
    // nodes, B's nginx image carries it), every node ends on B, nginx runs on more than one
    // node, the report has a line per service.
    let probing = probes_with(&asset_a);
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-b"]);
    let update = t.elapsed();
    let loads = stop(probing);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    eprintln!("rolling update A -> B took {update:?}: {loads:?}");
    let asset_b = css(1);
    assert_ne!(asset_b, asset_a);
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert!(load.requests > 20, "m{} probe ran: {load:?}", m + 1);
        assert_eq!(css(m + 1), asset_b, "m{} serves B", m + 1);
        let (status, _) = http_get_at(&bed.addr(m + 1), EDGE_PORT, &asset_a).unwrap();
        assert_eq!(status, 200, "m{}: A's {asset_a} after the update", m + 1);
    }
    for service in ["php ", "worker ", "nginx ", "edge "] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(service) && l.contains("/")),
            "a report line for {service}: {err}"
        );
    }
    let nodes = task_nodes(&bed, "e2e_nginx");
    assert_eq!(nodes.len(), 2, "two nginx tasks: {nodes:?}");
    assert_eq!(
        nodes.iter().collect::<BTreeSet<_>>().len(),
        2,
        "nginx replicas on two nodes: {nodes:?}"
    );

    // A broken release: swarm rolls php back by itself, our command says so and fails, every
    // service is put back on B, and no request failed.
    let probing = probes();
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-c"]);
    let loads = stop(probing);
    let err = stderr(&out);
    eprintln!("broken release rolled back in {:?}: {loads:?}", t.elapsed());
    // What swarm did, in the log (task states and times), for when the probes saw failures.
    let _ = bed
        .docker(1)
        .args(["service", "ps", "e2e_php", "e2e_worker", "e2e_nginx"])
        .status();
    assert!(!out.status.success(), "a rolled back update fails: {err}");
    assert!(err.contains("swarm rolled back"), "{err}");
    assert!(err.contains("every service is back on 1.0.0-b"), "{err}");
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(css(m + 1), asset_b, "m{} back on B", m + 1);
    }
    let out = run(&["status", "--env", "cluster"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(
        said.lines()
            .any(|l| l.starts_with("php ") && l.contains("1.0.0-b") && l.contains("2/2")),
        "{said}"
    );

    // rollback: back to A, the release before B.
    let probing = probes();
    let out = run(&["rollback", "--env", "cluster"]);
    let loads = stop(probing);
    assert!(out.status.success(), "{}", stderr(&out));
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(css(m + 1), asset_a, "m{} rolled back to A", m + 1);
    }

    // logs and exec on the swarm: a service's logs from the manager (the probes' requests, from
    // every node's task), a command in a php task's container, its exit status ours.
    let out = run(&[
        "logs",
        "--env",
        "cluster",
        "--service",
        "nginx",
        "--tail",
        "5",
    ]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("nginx") && l.contains("e2e_nginx.") && l.contains("GET /")),
        "{said}"
    );
    // (--deploy-config before `--`: everything after it is the command.)
    let exec = |command: &[&str]| {
        let mut all = vec!["exec", "--env", "cluster", "--deploy-config"];
        all.push(config.to_str().unwrap());
        all.push("--");
        all.extend(command);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let out = exec(&["php", "-r", "echo getenv('APP_SECRET_FILE');"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(said.contains("/run/secrets/app_secret"), "{said}");
    let out = exec(&["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // The secret's value is in no service's or container's inspect output, on any node.
    for m in 1..=3 {
        let ids =
            String::from_utf8(bed.docker(m).args(["ps", "-aq"]).output().unwrap().stdout).unwrap();
        let mut inspect = bed.docker(m);
        inspect.arg("inspect").args(ids.split_whitespace());
        let text = String::from_utf8_lossy(&inspect.output().unwrap().stdout).into_owned();
        if m == 1 {
            assert!(text.contains("APP_SECRET_FILE"), "m1 runs php: {text:.300}");
        }
        assert!(!text.contains(SECRET), "m{m}: the secret in docker inspect");
    }
    let services = bed
        .docker(1)
        .args(["service", "inspect", "e2e_php", "e2e_worker"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&services.stdout).contains(SECRET));

    // A worker node's engine stops: its nginx replica comes back on a living node, and the other
    // edges keep answering.
    let nodes = task_nodes(&bed, "e2e_nginx");
    let victim = nodes.iter().copied().find(|m| *m != 1).unwrap_or(3);
    let probing: Vec<EdgeProbe> = (1..=3)
        .filter(|m| *m != victim)
        .map(|m| EdgeProbe::start(bed.addr(m)))
        .collect();
    let t = Instant::now();
    bed.stop_engine(victim);
    let mut recovered = None;
    while t.elapsed() < Duration::from_secs(90) {
        let nodes = task_nodes(&bed, "e2e_nginx");
        if nodes.len() == 2 && !nodes.contains(&victim) {
            recovered = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let loads = stop(probing);
    eprintln!("node m{victim} lost: nginx back on living nodes after {recovered:?}; {loads:?}");
    let recovered = recovered.expect("nginx replicas back on the living nodes");
    assert!(
        recovered < Duration::from_secs(60),
        "recovered in {recovered:?}"
    );
    for load in &loads {
        // The edges still send a few requests to the lost node's nginx until their 5 s DNS
        // cache expires and swarm takes it out (each waits out the edge's connect timeout).
        assert!(
            load.failed <= 4,
            "only requests sent to the lost node fail: {:?}",
            load.failures
        );
    }
    bed.start_engine(victim);
    eprintln!("swarm e2e took {:?}", started.elapsed());
}

/// The machines (1, 2, 3) running the service's tasks now. Found by node address: the machines
/// share this host's hostname (a network namespace has its own network only).
fn task_nodes(bed: &Testbed, service: &str) -> Vec<usize> {
    let query = |args: &[&str]| -> String {
        let out = bed.docker(1).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tasks = query(&[
        "service",
        "ps",
        "-q",
        service,
        "--filter",
        "desired-state=running",
    ]);
    let mut machines = Vec::new();
    for task in tasks.split_whitespace() {
        let info = query(&["inspect", "--format", "{{.NodeID}} {{.Status.State}}", task]);
        let mut words = info.split_whitespace();
        let (Some(node), Some("running")) = (words.next(), words.next()) else {
            continue;
        };
        let addr = query(&["node", "inspect", "--format", "{{.Status.Addr}}", node]);
        if let Some(m) = (1..=3).find(|m| bed.addr(*m) == addr.trim()) {
            machines.push(m);
        }
    }
    machines
}

/// A bounded load probe on one node's edge: `/` and `/health`, ~20 requests/s.
struct EdgeProbe {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<EdgeLoad>,
}

#[derive(Debug, Default)]
#[allow(dead_code)] // Debug output in the test log
struct EdgeLoad {
    requests: usize,
    failed: usize,
    failures: Vec<String>,
    longest_gap: Duration,
}

impl EdgeProbe {
    fn start(addr: String) -> EdgeProbe {
        EdgeProbe::start_with(addr, &["/", "/health"])
    }

    /// Asks each of `paths` in turn.
    fn start_with(addr: String, paths: &[&str]) -> EdgeProbe {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (start, mut load) = (Instant::now(), EdgeLoad::default());
            let mut last_ok = Instant::now();
            while !flag.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(400) {
                let path = paths[load.requests % paths.len()].as_str();
                load.requests += 1;
                match http_get_at(&addr, EDGE_PORT, path) {
                    Some((200, _)) => {
                        load.longest_gap = load.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    other => {
                        load.failed += 1;
                        load.failures.push(format!(
                            "{path} at {:.1}s: {:?}",
                            start.elapsed().as_secs_f64(),
                            other.map(|(s, _)| s)
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            load
        });
        EdgeProbe { stop, handle }
    }
}

fn stop(probes: Vec<EdgeProbe>) -> Vec<EdgeLoad> {
    for p in &probes {
        p.stop.store(true, Ordering::SeqCst);
    }
    probes
        .into_iter()
        .map(|p| p.handle.join().unwrap())
        .collect()
}

fn hashed_css(page: &str) -> Option<String> {
    let start = page.find("\"/build/")? + 1;
    let end = start + page[start..].find('"')?;
    Some(page[start..end].to_string())
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
