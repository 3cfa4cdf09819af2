//! End to end on a real Docker Swarm (a testbed of 3 network namespaces, each with its own
//! engine, joined in one swarm): `deploy --env` of an environment of `kind: swarm` deploys
//! compose.yaml (the file Compose runs) from the manager over ssh. Under a load probe on every node's edge: a first
//! deploy, a rolling update A -> B with replicas on several nodes and no failed request; a broken
//! release that swarm rolls back by itself (our command says so and fails, nothing fails for the
//! clients); `rollback`; `status`; a backup, a write and a restore of the database; the secrets'
//! values nowhere in an image layer, `inspect` output or a node's files; a worker node's engine
//! stopped and its replicas back on the other nodes. php replicas on several nodes share one
//! PostgreSQL: every edge shows the same contacts, and none is lost on the way. `logs` and
//! `exec`; A's hashed CSS answers on every edge during and after the update (B's nginx image
//! carries it).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::edge_probe::{hashed_css, stop_all, EdgeProbe};
use common::testbed::Testbed;
use common::*;
use xshell::{cmd, Shell};

/// The edge's port on every node (host mode: each node's own address).
const EDGE_PORT: u16 = 8080;
/// A request not answered within 10 s counts as failed. Shorter than the other files' patience
/// (75 s, past nginx's 60 s): when a node dies, a request in flight on its tasks hangs until
/// nginx gives up, and the node-loss phase counts those as the requests that may fail. Under
/// CI's load a request that opens a database connection was seen to take 2-3 s.
const PATIENCE: Duration = Duration::from_secs(10);
const SECRET: &str = "swarm-e2e-secret-0123456789abcdef";
const DB_PASSWORD: &str = "swarm-e2e-db-password-fedcba9876543210";

/// compose.yaml's variables on a swarm (xtask/src/deploy/swarm.rs, SWARM_ENV, and the stack's
/// names), as the deploy sets them.
const SWARM_ENV: [(&str, &str); 16] = [
    ("CRM_STACK", "crm"),
    ("COMPOSE_PROJECT_NAME", "crm"),
    ("CRM_APP_SECRET", "crm_app_secret_x"),
    ("CRM_DB_PASSWORD", "crm_db_password_x"),
    ("CRM_SWARM", "true"),
    ("CRM_APP_SECRET_FILE", "/run/secrets/app_secret"),
    ("APP_SECRET", ""),
    ("CRM_REPLICAS", "2"),
    ("CRM_DB_DATA", "db"),
    ("CRM_DB_BACKUPS", "db-backups"),
    ("CRM_NETWORK_DRIVER", "overlay"),
    ("CRM_DRAIN_SIGNAL", "SIGWINCH"),
    ("CRM_DRAIN_GRACE", "20s"),
    ("CRM_HEALTH_INTERVAL", "3s"),
    ("CRM_RESTART_CONDITION", "any"),
    ("CRM_PREVIOUS", "0.9.0"),
];

#[test]
fn the_stack_file_is_valid_for_compose_and_swarm() {
    if !engine_available("the_stack_file_is_valid_for_compose_and_swarm") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sh = Shell::new().unwrap();
    sh.change_dir(root);
    // Compose: the file as it is, no variable set (a .env in the tree is not read).
    let empty = tempfile::tempdir().unwrap();
    let env_file = empty.path().join("none.env");
    std::fs::write(&env_file, "").unwrap();
    let compose = cmd!(
        sh,
        "docker compose --env-file {env_file} -f compose.yaml -p crm-blue config"
    )
    .read()
    .unwrap();
    for wanted in [
        "replicas: 1",
        "stop_signal: SIGQUIT",
        "driver: bridge",
        "name: crm_edge",
        "name: crm_db",
        // PostgreSQL on Compose too (its own project on a deploy's target).
        "DB_HOST: db",
        "order: start-first",
        "file: /dev/null",
        // php, worker and nginx: Compose takes the restart policy from deploy.restart_policy.
        "condition: unless-stopped",
    ] {
        assert!(compose.contains(wanted), "{wanted}: {compose}");
    }
    assert!(
        compose.contains("name: crm_app_secret\n    file: /dev/null\n"),
        "{compose}"
    );
    for unwanted in ["replicas: 0", "replicas: 2"] {
        assert!(!compose.contains(unwanted), "{unwanted}: {compose}");
    }
    // Swarm: the same file with the deploy's variables.
    let mut stack_config = cmd!(sh, "docker stack config -c compose.yaml");
    for (key, value) in SWARM_ENV {
        stack_config = stack_config.env(key, value);
    }
    let stack = stack_config.read().unwrap();
    for wanted in [
        "order: start-first",
        "failure_action: rollback",
        "endpoint_mode: dnsrr",
        "mode: host",
        "mode: global",
        "node.labels.org.kiora.crm.db == true",
        "attachable: true",
        "driver: overlay",
        &format!("crm-gdb_db:{DB_TAG}"),
        "rollback_config:",
        "monitor: 10s",
        "replicas: 2",
        "stop_signal: SIGWINCH",
        "stop_grace_period: 20s",
        "DB_HOST: db",
        "APP_SECRET_FILE: /run/secrets/app_secret",
        "source: db\n        target: /var/lib/postgresql/data",
        "org.kiora.crm.previous: 0.9.0",
        "condition: any\n        delay: 1s",
    ] {
        assert!(stack.contains(wanted), "{wanted}: {stack}");
    }
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
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
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
    std::fs::write(
        &env_file,
        format!("APP_SECRET={SECRET}\nDB_PASSWORD={DB_PASSWORD}\n"),
    )
    .unwrap();
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
    let probes_with = |paths: &[&str]| -> Vec<EdgeProbe> {
        (1..=3)
            .map(|m| EdgeProbe::start_with(bed.addr(m), EDGE_PORT, paths, PATIENCE))
            .collect()
    };
    let probes = || probes_with(&["/", "/health"]);

    // First deploy: every node's edge serves A.
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("first deploy took {:?}", t.elapsed());
    let asset_a = css(1);
    for m in 1..=3 {
        assert_eq!(css(m), asset_a, "m{m} serves A");
    }
    // Contacts written through two edges: every edge, whichever php replica answers, shows
    // both, and the worker (on any node) processes them.
    let mut contacts = BTreeSet::new();
    for (m, who) in [(2, "ada"), (3, "grace")] {
        add_contact(&bed, m, who);
        contacts.insert(format!("{who}@example.com"));
    }
    same_contacts_everywhere(&bed, &[1, 2, 3], &contacts);
    wait_until(Duration::from_secs(30), || {
        let (_, body) = http_get_at(&bed.addr(1), EDGE_PORT, "/api/contacts").unwrap_or_default();
        body.contains("\"processed_at\":\"") && !body.contains("\"processed_at\":null")
    });

    // A -> B under load on every edge: nothing fails (A's CSS included: no volume spans the
    // nodes, B's nginx image carries it), every node ends on B, nginx runs on more than one
    // node, the report has a line per service.
    // A page of A still open in a browser: its CSS, asked on every edge during the update.
    let probing = probes_with(&["/", "/health", &asset_a]);
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-b"]);
    let update = t.elapsed();
    let loads = stop_all(probing);
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
    for service in ["e2e_nginx", "e2e_php"] {
        let nodes = task_nodes(&bed, service);
        assert_eq!(nodes.len(), 2, "two {service} tasks: {nodes:?}");
        assert_eq!(
            nodes.iter().collect::<BTreeSet<_>>().len(),
            2,
            "{service} replicas on two nodes: {nodes:?}"
        );
    }
    same_contacts_everywhere(&bed, &[1, 2, 3], &contacts);

    // A broken release: swarm rolls php back by itself, our command says so and fails, every
    // service is put back on B, and no request failed.
    let probing = probes();
    let t = Instant::now();
    let out = run(&["deploy", "--env", "cluster", "--tag", "1.0.0-c"]);
    let loads = stop_all(probing);
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
    same_contacts_everywhere(&bed, &[1, 2, 3], &contacts);
    let out = run(&["status", "--env", "cluster"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said}{}", stderr(&out));
    // 2 of 2 running, or 3 of 2 while a replaced task serves out its stop grace period.
    assert!(
        said.lines().any(|l| l.starts_with("php ")
            && l.contains("1.0.0-b")
            && (l.contains(" 2/2") || l.contains(" 3/2"))),
        "{said}"
    );

    // rollback: back to A, the release before B.
    let probing = probes();
    let out = run(&["rollback", "--env", "cluster"]);
    let loads = stop_all(probing);
    assert!(out.status.success(), "{}", stderr(&out));
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(css(m + 1), asset_a, "m{} rolled back to A", m + 1);
    }
    same_contacts_everywhere(&bed, &[1, 2, 3], &contacts);

    // Backup, a later write, restore: the later contact is gone, the earlier ones are back.
    let t = Instant::now();
    let out = run(&["backup", "--env", "cluster"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let dump = err
        .split_whitespace()
        .find(|w| w.starts_with("db-") && w.ends_with("-manual.dump"))
        .unwrap_or_else(|| panic!("backup names its dump: {err}"))
        .to_string();
    add_contact(&bed, 2, "later");
    let mut with_later = contacts.clone();
    with_later.insert("later@example.com".into());
    same_contacts_everywhere(&bed, &[1, 3], &with_later);
    let out = run(&["backup", "--env", "cluster", "--restore", &dump]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("restored {dump}")), "{err}");
    same_contacts_everywhere(&bed, &[1, 2, 3], &contacts);
    let out = run(&[
        "backup",
        "--env",
        "cluster",
        "--restore",
        "db-../../etc/passwd.dump",
    ]);
    assert!(!out.status.success() && stderr(&out).contains("invalid dump name"));
    eprintln!("backup, write, restore took {:?}", t.elapsed());

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

    // The secrets' values: in no image layer, no `inspect` output, no file of any node.
    let t = Instant::now();
    for m in 1..=3 {
        no_secret_in_images(&bed, m);
        no_secret_in_inspect(&bed, m);
        no_secret_in_files(&bed, m);
    }
    eprintln!("secrets looked for in 3 nodes in {:?}", t.elapsed());

    // A worker node's engine stops: its nginx replica comes back on a living node, and the other
    // edges keep answering.
    let nodes = task_nodes(&bed, "e2e_nginx");
    let victim = nodes.iter().copied().find(|m| *m != 1).unwrap_or(3);
    // Its serving tasks: each may die with one request of a probe in flight.
    let dying: usize = ["e2e_nginx", "e2e_php"]
        .iter()
        .map(|service| {
            task_nodes(&bed, service)
                .iter()
                .filter(|m| **m == victim)
                .count()
        })
        .sum();
    let probing: Vec<EdgeProbe> = (1..=3)
        .filter(|m| *m != victim)
        .map(|m| EdgeProbe::start_with(bed.addr(m), EDGE_PORT, &["/", "/health"], PATIENCE))
        .collect();
    let t = Instant::now();
    // Stopped beside the watch: the engine's shutdown lasts as long as its tasks' drain (20 s),
    // and the timeline below says when each step of the recovery happened within it.
    let (stopped, timeline) = std::thread::scope(|scope| {
        let stopper = scope.spawn(|| {
            bed.stop_engine(victim);
            t.elapsed()
        });
        let timeline = watch_recovery(&bed, victim, t);
        (stopper.join().unwrap(), timeline)
    });
    let loads = stop_all(probing);
    eprintln!("node m{victim} lost: its engine stopped after {stopped:?}; {timeline:?}; {loads:?}");
    // The testbed's swarm has a 3 s heartbeat (swarm marks a node down after 3 missed ones),
    // and replaces a lost task after 1 s (compose.yaml's restart_policy); the new task must
    // then start and pass its health check (every 3 s).
    assert!(
        timeline
            .running
            .is_some_and(|t| t < Duration::from_secs(30)),
        "nginx and php replicas not back on the living nodes within 30 s: {timeline:?}"
    );
    // Until swarm takes the lost node's tasks out of the DNS, an edge may still send a request
    // to its nginx, and an nginx to its php: each gives up on the dead address after 500 ms
    // and tries the next one, well within the probe's patience. Only requests in flight on
    // the lost node's tasks when they died may fail: a probe sends one request at a time, so
    // at most one per dying task (its engine stops them one after the other).
    for load in &loads {
        assert!(
            load.failed <= dying,
            "only requests in flight on the lost node's {dying} tasks fail: {:?}",
            load.failures
        );
    }
    let living: Vec<usize> = (1..=3).filter(|m| *m != victim).collect();
    same_contacts_everywhere(&bed, &living, &contacts);
    bed.start_engine(victim);
    eprintln!("swarm e2e took {:?}", started.elapsed());
}

/// When each step of a node loss's recovery was first seen, from the engine's stop.
#[derive(Debug, Default)]
struct Recovery {
    /// The manager marks the node down (heartbeats missed).
    node_down: Option<Duration>,
    /// nginx and php each have their replicas' tasks on living nodes (any state).
    rescheduled: Option<Duration>,
    /// ... and running (started, health check passed).
    running: Option<Duration>,
}

/// Watches machine `victim`'s loss for up to 90 s, until nginx and php run their replicas on the
/// living nodes.
fn watch_recovery(bed: &Testbed, victim: usize, t: Instant) -> Recovery {
    let mut seen = Recovery::default();
    while t.elapsed() < Duration::from_secs(90) {
        if seen.node_down.is_none() && node_state(bed, victim) == "down" {
            seen.node_down = Some(t.elapsed());
        }
        let (mut placed, mut running) = (true, true);
        for service in ["e2e_nginx", "e2e_php"] {
            let tasks = task_states(bed, service);
            let living: Vec<_> = tasks.iter().filter(|(m, _)| *m != victim).collect();
            placed &= living.len() == 2;
            running &= living.len() == 2 && living.iter().all(|(_, state)| state == "running");
        }
        if placed && seen.rescheduled.is_none() {
            seen.rescheduled = Some(t.elapsed());
        }
        if running {
            seen.running = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    seen
}

/// The state of machine `m`'s node, as the manager (m1) sees it: `ready`, `down`...
fn node_state(bed: &Testbed, m: usize) -> String {
    let out = bed.docker(1).args(["node", "ls", "-q"]).output().unwrap();
    for node in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let out = bed
            .docker(1)
            .args([
                "node",
                "inspect",
                "--format",
                "{{.Status.Addr}} {{.Status.State}}",
                node,
            ])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some((addr, state)) = said.trim().split_once(' ') {
            if addr == bed.addr(m) {
                return state.to_string();
            }
        }
    }
    String::new()
}

/// The machines (1, 2, 3) running the service's tasks now.
fn task_nodes(bed: &Testbed, service: &str) -> Vec<usize> {
    task_states(bed, service)
        .into_iter()
        .filter(|(_, state)| state == "running")
        .map(|(m, _)| m)
        .collect()
}

/// The machine (1, 2, 3) and state of each of the service's tasks meant to run. Found by node
/// address: the machines share this host's hostname (a network namespace has its own network
/// only).
fn task_states(bed: &Testbed, service: &str) -> Vec<(usize, String)> {
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
        // A replacement waits in `ready` for its restart delay.
        "--filter",
        "desired-state=ready",
    ]);
    let mut placed = Vec::new();
    for task in tasks.split_whitespace() {
        let info = query(&["inspect", "--format", "{{.NodeID}} {{.Status.State}}", task]);
        let mut words = info.split_whitespace();
        let (Some(node), Some(state)) = (words.next(), words.next()) else {
            continue;
        };
        let addr = query(&["node", "inspect", "--format", "{{.Status.Addr}}", node]);
        if let Some(m) = (1..=3).find(|m| bed.addr(*m) == addr.trim()) {
            placed.push((m, state.to_string()));
        }
    }
    placed
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

/// Adds the contact `who@example.com` through machine `m`'s edge (the JSON API).
fn add_contact(bed: &Testbed, m: usize, who: &str) {
    let json = format!("{{\"name\":\"{who}\",\"email\":\"{who}@example.com\"}}");
    let answer = http_post_json_at(&bed.addr(m), EDGE_PORT, "/api/contacts", &json);
    assert!(
        matches!(answer, Some((201, _))),
        "adding {who} through m{m}: {answer:?}"
    );
}

/// The contacts' e-mail addresses `/api/contacts` lists through machine `m`'s edge.
fn emails_at(bed: &Testbed, m: usize) -> BTreeSet<String> {
    let (status, body) = http_get_at(&bed.addr(m), EDGE_PORT, "/api/contacts")
        .unwrap_or_else(|| panic!("m{m}'s edge does not answer /api/contacts"));
    assert_eq!(status, 200, "m{m}: {body}");
    body.split("\"email\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(String::from)
        .collect()
}

/// Every edge of `machines`, asked several times (the requests go to php replicas on several
/// nodes), lists exactly `want`.
fn same_contacts_everywhere(bed: &Testbed, machines: &[usize], want: &BTreeSet<String>) {
    for m in machines {
        for _ in 0..6 {
            assert_eq!(
                &emails_at(bed, *m),
                want,
                "the contacts through m{m}'s edge"
            );
        }
    }
}

/// Where the needles are in `haystack`, for a message that names the place and not the value.
fn secrets_in(haystack: &[u8]) -> Vec<&'static str> {
    [
        ("APP_SECRET", SECRET),
        ("the database password", DB_PASSWORD),
    ]
    .into_iter()
    .filter(|(_, value)| haystack.windows(value.len()).any(|w| w == value.as_bytes()))
    .map(|(what, _)| what)
    .collect()
}

/// `docker save` of every image of machine `m`, streamed through `grep -F`: no layer, config or
/// manifest holds a secret.
fn no_secret_in_images(bed: &Testbed, m: usize) {
    let out = bed
        .docker(m)
        .args(["image", "ls", "--quiet"])
        .output()
        .unwrap();
    let ids: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(ids.len() >= 3, "m{m} has the stack's images: {ids:?}");
    let mut save = bed.docker(m);
    save.arg("save")
        .args(&ids)
        .stdout(std::process::Stdio::piped());
    let mut save = save.spawn().unwrap();
    let found = std::process::Command::new("grep")
        .args([
            "--count",
            "--text",
            "--fixed-strings",
            "-e",
            SECRET,
            "-e",
            DB_PASSWORD,
        ])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success(), "docker save on m{m}");
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        "0",
        "m{m}: a secret in an image ({} images saved)",
        ids.len()
    );
}

/// `docker inspect` of every container, service, task and secret the engine of `m` knows: none
/// holds a secret's value (only the names of the files that do).
fn no_secret_in_inspect(bed: &Testbed, m: usize) {
    let list = |args: &[&str]| -> Vec<String> {
        let out = bed.docker(m).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let mut objects = list(&["ps", "--all", "--quiet"]);
    if m == 1 {
        let services = list(&["service", "ls", "--quiet"]);
        for service in &services {
            objects.extend(list(&["service", "ps", "--quiet", service]));
        }
        objects.extend(services);
        objects.extend(list(&["secret", "ls", "--quiet"]));
    }
    assert!(!objects.is_empty(), "m{m} runs tasks");
    let out = bed
        .docker(m)
        .arg("inspect")
        .args(&objects)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if m == 1 {
        assert!(text.contains("DB_PASSWORD_FILE"), "m1 runs db: {text:.300}");
    }
    assert_eq!(
        secrets_in(text.as_bytes()),
        Vec::<&str>::new(),
        "m{m}: docker inspect"
    );
}

/// Every file of machine `m` (its engine's data and exec roots, its deploy dir, its sshd's
/// files), except the tmpfs mounts where the engine hands the secrets to the tasks: no secret.
fn no_secret_in_files(bed: &Testbed, m: usize) {
    let dir = bed.dir.join(format!("m{m}"));
    assert!(dir.join("data").is_dir(), "{} is a machine", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    // The engine's secret mounts: DATA_ROOT/containers/ID/mounts/secrets, tmpfs.
    let secret_mounts: Vec<&str> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "tmpfs" && f[1].ends_with("/mounts/secrets")).then(|| f[1])
        })
        .collect();
    let out = std::process::Command::new("grep")
        .args([
            "--recursive",
            "--files-with-matches",
            "--no-messages",
            "--devices=skip",
            "--fixed-strings",
            "-e",
            SECRET,
            "-e",
            DB_PASSWORD,
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let (handed, found): (Vec<String>, Vec<String>) = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .partition(|file| {
            secret_mounts
                .iter()
                .any(|t| file.starts_with(&format!("{t}/")))
        });
    assert!(found.is_empty(), "m{m}: secrets in files {found:?}");
    if m == 1 {
        // The search does see them where they must be: db's secret, on m1.
        assert!(!handed.is_empty(), "m1: grep found no secret file of db");
    }
}
