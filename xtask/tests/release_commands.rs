//! End to end on a real machine (a testbed of one: a network namespace with its own Docker
//! engine and sshd) and a real registry: the release command (the database migrations the php
//! image declares) in deploys over ssh, under a load probe on the machine's edge.
//!
//! - The first deploy starts the database (PostgreSQL, the stack's db project) before the
//!   command, which brings the new database to version 2, then copies in the contacts of the
//!   SQLite file a release before PostgreSQL left in the data volume (a table of before
//!   migrations, with a row): the row is served.
//! - Two deploys of a release with a new migration started at the same time: both succeed (the
//!   second waits for the lock; each runs the command in the php it started), the migration is
//!   applied exactly once (one `schema_version` row, one "applying" line in the two outputs),
//!   no request fails.
//! - A release whose migration fails: the deploy exits non-zero at the release command, before
//!   any switch, naming the command and its exit status; no request fails; the old release
//!   keeps serving and the schema is as it was (the failed run's first statement rolled back);
//!   no container of the command or of the release is left; the history says it never
//!   switched.
//! - `--dry-run` shows the command (beside a live release: a `docker exec` in the release's
//!   php, which a rolling deploy starts beside the backup).

mod common;

use std::path::Path;

use common::testbed::Testbed;
use common::*;
use xshell::{cmd, Shell};

/// A SQLite database of the releases before migrations and before PostgreSQL, with a row.
const PHP_OLD_SQLITE: &str = r#"$p = new PDO("sqlite:/var/www/app/var/data/crm.sqlite");
$p->exec("CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, company TEXT, created_at TEXT NOT NULL, processed_at TEXT)");
$p->exec("INSERT INTO contacts (id, name, email, created_at) VALUES (7, 'Before', 'before@example.com', '2026-01-01T00:00:00Z')");"#;

/// psql's queries of the schema: one line per migration applied (`v 1 001_contacts`), then one
/// per column of contacts (`c phone`).
const SQL_PRINT_SCHEMA: [&str; 2] = [
    "SELECT 'v ' || version || ' ' || name FROM schema_version ORDER BY version",
    "SELECT 'c ' || column_name FROM information_schema.columns WHERE table_name = 'contacts' ORDER BY ordinal_position",
];

#[test]
fn migrations_run_once_before_the_switch_and_a_failing_one_stops_the_deploy() {
    let test = "migrations_run_once_before_the_switch_and_a_failing_one_stops_the_deploy";
    if !testbed::available(test) {
        return;
    }
    let started = std::time::Instant::now();
    let sh = Shell::new().unwrap();
    let registry = Registry::start();
    let prefix = registry.prefix();
    // The images this file tagged under its registry, removed when it ends.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let stack = format!("rel{}", std::process::id());
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };

    // Releases: a (migrations 001, 002), b (+ 003: a new column, which b needs), x (+ 004,
    // which adds a column and then fails).
    ok(&["docker-publish", "--image", "php", "--tag", BASE_TAG]);
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    eprintln!("base images after {:?}", started.elapsed());
    ok(&["build-app", "--tag", "1.0.0-a"]);
    add_migration(
        &sh,
        root,
        "003_contacts_note.sql",
        "ALTER TABLE contacts ADD COLUMN note TEXT;\n",
    );
    ok(&["build-app", "--tag", "1.0.0-b"]);
    add_migration(
        &sh,
        root,
        "004_broken.sql",
        "ALTER TABLE contacts ADD COLUMN fax TEXT;\nSELECT * FROM no_such_table;\n",
    );
    ok(&["build-app", "--tag", "1.0.0-x"]);
    eprintln!("releases built after {:?}", started.elapsed());

    // The target: a machine reached over ssh; its data volume holds the SQLite file of a
    // release before PostgreSQL. The edge is published on the machine's address too (the
    // probe's way in).
    let bed = Testbed::start(1, Some(registry.port));
    let machine = Machine(&bed);
    let addr = bed.addr(1);
    let ip: std::net::IpAddr = addr.parse().unwrap();
    let port = 8080;
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_str().unwrap().to_string();
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", &prefix);
    std::fs::write(target.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(
        target.path().join(".env"),
        format!("APP_SECRET=e2e-secret\nHTTP_PORT={port}\nHTTP_BIND=0.0.0.0\n"),
    )
    .unwrap();
    let php_a = format!("{prefix}/crm-gdb_php:1.0.0-a");
    machine.docker(&["pull", "--quiet", &php_a]);
    machine.php_on_data(&format!("{stack}_data"), &php_a, PHP_OLD_SQLITE);
    let ssh_config = bed.ssh_config();
    let host = bed.host(1);
    let deploy = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--host",
            &host,
            "--ssh-config",
            ssh_config.to_str().unwrap(),
            "--dir",
            &dir,
            "--stack",
            &stack,
        ]);
        xtask(root, tmp.path(), &prefix, &all)
    };

    // First deploy: db starts, 001 and 002 (the phone column) apply, the SQLite row comes in.
    let out = deploy(&["deploy", "--tag", "1.0.0-a"]);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("[5/8] Running the release command")
            && err.contains("  php /var/www/app/bin/migrate.php")
            && err.contains("  | migrate: applying 002_contacts_phone")
            && err.contains(
                "  | migrate: imported 1 contact(s) from /var/www/app/var/data/crm.sqlite"
            )
            && err.contains("  | migrate: database at version 2 (was 0)")
            && err.find("[4/8]") < err.find("[5/8]"),
        "{err}"
    );
    let schema = machine.schema(&stack);
    assert!(
        schema.starts_with("v 1 001_contacts\nv 2 002_contacts_phone\n")
            && schema.contains("c phone\n"),
        "{schema}"
    );
    let (status, body) = http_post_json_at(
        &addr,
        port,
        "/api/contacts",
        r#"{"name":"Ada","email":"ada@example.com","phone":"+33 1 23 45 67 89"}"#,
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let listed = http_get_at(&addr, port, "/api/contacts").unwrap().1;
    assert!(
        listed.contains("before@example.com") && listed.contains("+33 1 23 45 67 89"),
        "the SQLite row is imported, the new column works: {listed}"
    );
    // Its id was kept, and the next one comes after it.
    assert!(
        listed.contains("\"id\":7") && listed.contains("\"id\":8"),
        "{listed}"
    );

    eprintln!("first deploy done after {:?}", started.elapsed());
    // --dry-run shows the command and runs nothing: beside a live release, in the new
    // release's php (started beside the backup), with the database's variables.
    let out = deploy(&["--dry-run", "deploy", "--tag", "1.0.0-b"]);
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("docker exec ")
            && plan.contains("--env DB_PASSWORD_FILE=/run/secrets/db_password")
            && plan.contains(&format!("<php of {stack}-"))
            && plan.contains("<org.kiora.release-command>")
            && plan.contains("crm-gdb_php:1.0.0-b"),
        "{plan}"
    );

    // Two deploys of b at the same time, under load: the second waits for the lock; 003 is
    // applied exactly once, before b takes traffic.
    let probe = Probe::start_at(ip, port, vec![Expected::page(), Expected::health()]);
    let args = ["deploy", "--tag", "1.0.0-b", "--lock-wait", "5m"];
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| deploy(&args));
        let two = s.spawn(|| deploy(&args));
        (one.join().unwrap(), two.join().unwrap())
    });
    let load = probe.stop();
    assert!(one.status.success() && two.status.success());
    assert_eq!(load.failed, 0, "requests failed: {:?}", load.failures);
    assert!(load.requests > 20, "the probe ran: {load:?}");
    let applying = [&one, &two]
        .iter()
        .map(|o| {
            stderr(o)
                .matches("migrate: applying 003_contacts_note")
                .count()
        })
        .sum::<usize>();
    assert_eq!(applying, 1, "003 applied once by the two deploys");
    assert!(
        [&one, &two]
            .iter()
            .any(|o| stderr(o).contains("migrate: database at version 3, nothing to apply")),
        "the second deploy ran the command and found nothing to do"
    );
    let schema = machine.schema(&stack);
    assert_eq!(
        schema.matches("v 3 003_contacts_note\n").count(),
        1,
        "{schema}"
    );
    assert!(schema.contains("c note\n"), "{schema}");
    assert_eq!(http_get_at(&addr, port, "/health").unwrap().0, 200);

    eprintln!("concurrent deploys done after {:?}", started.elapsed());
    // x's migration fails: stopped before the switch, nothing dropped, b and its schema stay.
    let before = machine.release_containers(&stack);
    let probe = Probe::start_at(ip, port, vec![Expected::page(), Expected::health()]);
    let out = deploy(&["deploy", "--tag", "1.0.0-x"]);
    let load = probe.stop();
    assert!(!out.status.success());
    assert_eq!(load.failed, 0, "requests failed: {:?}", load.failures);
    let err = stderr(&out);
    assert!(
        err.contains("  | migrate: applying 004_broken")
            && err.contains("  | migrate: failed, nothing was applied: 004_broken: ")
            && err.contains("\"no_such_table\" does not exist"),
        "the command's output is shown: {err}"
    );
    assert!(
        err.contains("the release command of 1.0.0-x (`php /var/www/app/bin/migrate.php`) failed with exit code 1"),
        "{err}"
    );
    assert!(err.contains("[5/8] failed after"), "{err}");
    assert!(!err.contains("[6/8]"), "nothing switched: {err}");
    assert_eq!(machine.schema(&stack), schema, "schema unchanged");
    // x's php and nginx started beside the backup and the command (in the standby's color),
    // idle: they are gone, and nothing else is new.
    let after = machine.release_containers(&stack);
    assert!(
        after.iter().all(|id| before.contains(id)),
        "no container of x is left: {before:?} -> {after:?}"
    );
    let leftovers = machine.docker(&["ps", "-aq", "--filter", &format!("name={stack}-release-")]);
    assert_eq!(leftovers.trim(), "", "no release command container is left");
    let health = http_get_at(&addr, port, "/health").unwrap();
    assert_eq!(health.0, 200, "{}", health.1);
    let history = std::fs::read_to_string(target.path().join(".deploy/history.tsv")).unwrap();
    let last = history.lines().last().unwrap();
    assert!(
        last.contains("1.0.0-x")
            && last.contains("failed; never switched (")
            && last.contains("release command"),
        "{last}"
    );
    let live = machine.docker(&[
        "ps",
        "--filter",
        &format!("name={stack}-"),
        "--format",
        "{{.Image}}",
    ]);
    assert!(
        live.contains("crm-gdb_php:1.0.0-b") && !live.contains("1.0.0-x"),
        "b serves: {live}"
    );
    eprintln!("release commands e2e took {:?}", started.elapsed());
}

/// Commits a new migration file of the app.
fn add_migration(sh: &Shell, root: &Path, name: &str, sql: &str) {
    std::fs::write(root.join("app/migrations").join(name), sql).unwrap();
    cmd!(sh, "git -C {root} add -A").run().unwrap();
    cmd!(
        sh,
        "git -C {root} -c user.name=dev -c user.email=dev@example.com commit -q -m {name}"
    )
    .run()
    .unwrap();
}

/// The one machine of the testbed: its own engine.
struct Machine<'a>(&'a Testbed);

impl Machine<'_> {
    /// `docker ARGS` on the machine's engine; its stdout.
    fn docker(&self, args: &[&str]) -> String {
        let out = self.0.docker(1).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?} on the machine: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs PHP code in a throwaway container of `image` on the data volume.
    fn php_on_data(&self, volume: &str, image: &str, code: &str) {
        let mount = format!("{volume}:/var/www/app/var/data");
        self.docker(&[
            "run",
            "--rm",
            "--volume",
            &mount,
            "--entrypoint",
            "php",
            image,
            "-r",
            code,
        ]);
    }

    /// The schema of the stack's database ([`SQL_PRINT_SCHEMA`]), read by psql in its db
    /// container.
    fn schema(&self, stack: &str) -> String {
        let db = self.docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={stack}-db"),
        ]);
        let db = db.split_whitespace().next().expect("the db container runs");
        let [versions, columns] = SQL_PRINT_SCHEMA;
        let out = self.docker(&[
            "exec", db, "psql", "-U", "crm", "-d", "crm", "-At", "-c", versions, "-c", columns,
        ]);
        eprintln!("--- schema of {stack}:\n{out}");
        out
    }

    /// The containers of the stack's blue and green projects (ids, sorted).
    fn release_containers(&self, stack: &str) -> Vec<String> {
        let mut ids: Vec<String> = ["blue", "green"]
            .iter()
            .flat_map(|color| {
                self.docker(&[
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=com.docker.compose.project={stack}-{color}"),
                ])
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    }
}
