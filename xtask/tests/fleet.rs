//! End to end on real machines (a testbed of 3 network namespaces, each with its own Docker
//! engine and sshd): a fleet deploy ends on ONE release. Under a load probe on every machine's
//! edge: A then B in waves of one with no failed request; a release that fails on machine 3
//! only puts machines 1 and 2 back; an unreachable machine is refused before any switch;
//! Ctrl-C mid-wave; a fleet rollback; an engine that dies mid-deploy.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::edge_probe::{hashed_css, stop_all, EdgeProbe};
use common::testbed::Testbed;
use common::*;
use xshell::{cmd, Shell};

/// The port every machine's edge is published on (each machine has its own network).
const EDGE_PORT: u16 = 8080;

#[test]
fn fleet_deploys_end_on_one_release() {
    if !testbed::available("fleet_deploys_end_on_one_release") {
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

    // Two releases: A, and B with other CSS (so a page says which release rendered it).
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
    eprintln!("releases built after {:?}", started.elapsed());

    let bed = Testbed::start(3, Some(registry.port));
    let fleet = Fleet::new(&bed, root, &prefix);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--deploy-config", fleet.config.to_str().unwrap()]);
        xtask(root, tmp.path(), &prefix, &all)
    };

    // First deploy of A to all three.
    let out = run(&["deploy", "--env", "e2e", "--tag", "1.0.0-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let asset_a = fleet.css(1);
    for m in 1..=3 {
        assert_eq!(fleet.css(m), asset_a, "m{m} serves A");
    }

    // A -> B in waves of one, under load on every edge: nothing fails, every machine serves B.
    let probes = fleet.probes();
    let out = run(&[
        "deploy",
        "--env",
        "e2e",
        "--tag",
        "1.0.0-b",
        "--wave",
        "1",
        "--canary-wait",
        "3s",
    ]);
    let loads = stop_all(probes);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "[{}] Watching the canary for 3.0s",
            fleet.label(1)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("[{}] [6/8] Switching to 1.0.0-b", fleet.label(3))),
        "lines are prefixed with their host: {err}"
    );
    let asset_b = fleet.css(1);
    assert_ne!(asset_b, asset_a);
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert!(load.requests > 20, "m{} probe ran: {load:?}", m + 1);
        assert_eq!(fleet.css(m + 1), asset_b, "m{} serves B", m + 1);
    }
    let said = fleet.status(&run);
    for m in 1..=3 {
        assert!(
            said.lines()
                .any(|l| l.starts_with(&fleet.label(m)) && l.contains("1.0.0-b")),
            "status shows m{m} on B: {said}"
        );
    }
    assert!(!said.contains("TWO RELEASES"), "{said}");
    // One history line per host, with one deploy id shared by the fleet.
    let ids: BTreeSet<String> = (1..=3).map(|m| fleet.last_history(m)[6].clone()).collect();
    assert_eq!(ids.len(), 1, "one deploy id: {ids:?}");

    // A machine unreachable at the start: refused before anything is locked or switched.
    let out = run(&["deploy", "--env", "e2e-dead", "--tag", "1.0.0-a"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("unreachable"), "{err}");
    assert!(!err.contains("[6/8]"), "nothing switched: {err}");
    for m in 1..=3 {
        assert_eq!(fleet.css(m), asset_b, "m{m} still serves B");
        assert!(!fleet.locked(m), "m{m} not locked");
    }

    // A release that fails only on machine 3 (the database password its new containers read is
    // wrong: their /health fails): the canary, then machines 2 and 3 together (the
    // environment's wave of 2); the command fails, machines 1 and 2 are back on B, machine 3
    // never served A, no request failed. The file is replaced (renamed over), not rewritten:
    // the running containers keep the one they mounted.
    let password = fleet.dir(3).join(".deploy/secrets/db_password");
    let good_password = std::fs::read(&password).unwrap();
    let replace_password = |bytes: &[u8]| {
        let new = password.with_extension("e2e-new");
        std::fs::write(&new, bytes).unwrap();
        std::fs::rename(&new, &password).unwrap();
    };
    replace_password(b"not-the-password");
    // And a harmless change of m3's .env (the default data directory, spelled out): compose
    // recreates its standby php of A instead of starting it again with the file it mounted.
    let good_env = std::fs::read_to_string(fleet.dir(3).join(".env")).unwrap();
    std::fs::write(
        fleet.dir(3).join(".env"),
        format!("{good_env}APP_DATA_DIR=/var/www/app/var/data\n"),
    )
    .unwrap();
    // Without the release command, which would meet the wrong password of m3 in the prepare
    // phase, before any host switches: this is the failure only a switch reveals.
    let probes = fleet.probes();
    let out = run(&[
        "deploy",
        "--env",
        "e2e",
        "--tag",
        "1.0.0-a",
        "--skip-release-command",
    ]);
    let loads = stop_all(probes);
    replace_password(&good_password);
    std::fs::write(fleet.dir(3).join(".env"), &good_env).unwrap();
    assert!(
        !out.status.success(),
        "a release failing on m3 fails the fleet"
    );
    let err = stderr(&out);
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(fleet.css(m + 1), asset_b, "m{} back on B", m + 1);
    }
    assert_eq!(
        loads[2].seen,
        BTreeSet::from([asset_b.clone()]),
        "m3 never served A"
    );
    assert!(
        loads[0].seen.contains(&asset_a),
        "the canary did serve A before going back: {:?}",
        loads[0].seen
    );
    assert!(
        report_line(&err, &fleet.label(1)).contains("reverted")
            && report_line(&err, &fleet.label(2)).contains("reverted")
            && report_line(&err, &fleet.label(3)).contains("failed"),
        "{err}"
    );
    assert!(
        err.contains("every host was back on its previous release"),
        "{err}"
    );
    assert!(
        err.contains(&format!("[{}] --- logs of", fleet.label(3))),
        "the failed machine's logs are printed under its name: {err}"
    );

    // Ctrl-C in the middle of a wave: exit 130, every machine on one release, no lock left.
    let probes = fleet.probes();
    let mut running = faults::Running::start(
        root,
        tmp.path(),
        &prefix,
        &[
            "deploy",
            "--env",
            "e2e",
            "--tag",
            "1.0.0-a",
            "--wave",
            "1",
            "--deploy-config",
            fleet.config.to_str().unwrap(),
        ],
        &[],
    );
    let marker = format!("[{}] [6/8]", fleet.label(2));
    assert!(
        running
            .wait_for_line(Duration::from_secs(240), |l| l.starts_with(&marker))
            .is_some(),
        "wave 1 started: {}",
        running.stderr()
    );
    std::thread::sleep(Duration::from_millis(1500));
    running.signal(libc::SIGINT);
    let code = running.wait(Duration::from_secs(180)).code();
    let loads = stop_all(probes);
    eprintln!("--- deploy interrupted in wave 1 ->\n{}", running.stderr());
    assert_eq!(code, Some(130), "{}", running.stderr());
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(fleet.css(m + 1), asset_b, "m{} on B after Ctrl-C", m + 1);
        assert!(!fleet.locked(m + 1), "m{} lock released", m + 1);
    }

    // Rollback of the fleet: every machine back to A together (the previous fleet release).
    let probes = fleet.probes();
    let out = run(&["rollback", "--env", "e2e"]);
    let loads = stop_all(probes);
    assert!(out.status.success(), "{}", stderr(&out));
    for (m, load) in loads.iter().enumerate() {
        assert_eq!(load.failed, 0, "m{}: {:?}", m + 1, load.failures);
        assert_eq!(fleet.css(m + 1), asset_a, "m{} rolled back to A", m + 1);
    }

    // Machine 3's engine dies in the middle of the deploy: the others end on A, and the report
    // names the dead machine.
    let probes = fleet.probes();
    let mut running = faults::Running::start(
        root,
        tmp.path(),
        &prefix,
        &[
            "deploy",
            "--env",
            "e2e",
            "--tag",
            "1.0.0-b",
            "--deploy-config",
            fleet.config.to_str().unwrap(),
        ],
        &[],
    );
    let marker = format!("[{}] [6/8]", fleet.label(3));
    assert!(
        running
            .wait_for_line(Duration::from_secs(240), |l| l.starts_with(&marker))
            .is_some(),
        "the wave after the canary started: {}",
        running.stderr()
    );
    bed.stop_engine(3);
    let status = running.wait(Duration::from_secs(240));
    let loads = stop_all(probes);
    let err = running.stderr();
    eprintln!("--- deploy while m3's engine dies ->\n{err}");
    assert!(!status.success(), "{err}");
    for m in 1..=2 {
        assert_eq!(loads[m - 1].failed, 0, "m{m}: {:?}", loads[m - 1].failures);
        assert_eq!(fleet.css(m), asset_a, "m{m} back on A");
        assert!(!fleet.locked(m));
    }
    let line = report_line(&err, &fleet.label(3));
    assert!(
        line.contains("failed") || line.contains("REVERT FAILED"),
        "the report names the dead machine: {err}"
    );
    assert!(
        !fleet.locked(3),
        "the dead engine's machine is unlocked (ssh still works)"
    );
    bed.start_engine(3);
    eprintln!("fleet e2e took {:?}", started.elapsed());
}

/// The three machines' deploy directories and the deploy.yaml naming them.
struct Fleet<'a> {
    bed: &'a Testbed,
    config: PathBuf,
    _dirs: tempfile::TempDir,
}

impl<'a> Fleet<'a> {
    fn new(bed: &'a Testbed, root: &Path, prefix: &str) -> Fleet<'a> {
        let dirs = tempfile::tempdir().unwrap();
        let compose = std::fs::read_to_string(root.join("compose.yaml"))
            .unwrap()
            .replace("registry.kiora.tech/kiora", prefix);
        let mut hosts = String::new();
        for m in 1..=3 {
            let dir = dirs.path().join(format!("m{m}"));
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join("compose.yaml"), &compose).unwrap();
            // Published on every address of the machine: its loopback (the deploy's own check)
            // and its address on the testbed's bridge (the probes).
            std::fs::write(
                dir.join(".env"),
                format!("APP_SECRET=e2e-secret\nHTTP_PORT={EDGE_PORT}\nHTTP_BIND=0.0.0.0\n"),
            )
            .unwrap();
            hosts.push_str(&format!(
                "      - {{host: {}, dir: {}}}\n",
                bed.host(m),
                dir.display()
            ));
        }
        let dead = format!(
            "      - {{host: root@{}:2, dir: {}}}\n",
            bed.addr(3),
            dirs.path().join("m3").display()
        );
        let two_hosts: String = hosts.lines().take(2).map(|l| format!("{l}\n")).collect();
        let config = dirs.path().join("deploy.yaml");
        std::fs::write(
            &config,
            format!(
                "environments:\n  e2e:\n    hosts:\n{hosts}    stack: e2e\n    ssh_config: {ssh}\n    wave: 2\n    keep_backups: 2\n    min_free_disk: 100MiB\n  e2e-dead:\n    hosts:\n{two_hosts}{dead}    stack: e2e\n    ssh_config: {ssh}\n",
                ssh = bed.ssh_config().display()
            ),
        )
        .unwrap();
        Fleet {
            bed,
            config,
            _dirs: dirs,
        }
    }

    fn dir(&self, m: usize) -> PathBuf {
        self._dirs.path().join(format!("m{m}"))
    }

    /// How output names machine m: its address.
    fn label(&self, m: usize) -> String {
        self.bed.addr(m)
    }

    fn locked(&self, m: usize) -> bool {
        self.dir(m).join(".deploy/lock").exists()
    }

    /// The hashed stylesheet of the page machine m serves now.
    fn css(&self, m: usize) -> String {
        let (status, page) = http_get_at(&self.bed.addr(m), EDGE_PORT, "/")
            .unwrap_or_else(|| panic!("m{m} does not answer"));
        assert_eq!(status, 200, "m{m}: {page}");
        hashed_css(&page).unwrap_or_else(|| panic!("m{m}'s page names no stylesheet: {page}"))
    }

    /// The fields of the last line of machine m's history (time, tag, revision, who, strategy,
    /// result, deploy id).
    fn last_history(&self, m: usize) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir(m).join(".deploy/history.tsv")).unwrap();
        let fields: Vec<String> = text
            .lines()
            .last()
            .unwrap()
            .split('\t')
            .map(String::from)
            .collect();
        assert_eq!(fields.len(), 7, "{fields:?}");
        fields
    }

    fn status(&self, run: &dyn Fn(&[&str]) -> std::process::Output) -> String {
        let out = run(&["status", "--env", "e2e"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn probes(&self) -> Vec<EdgeProbe> {
        (1..=3)
            .map(|m| EdgeProbe::start(self.bed.addr(m), EDGE_PORT))
            .collect()
    }
}

/// The report's line for `host` (the table printed at the end).
fn report_line(stderr: &str, host: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_default()
        .to_string()
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
