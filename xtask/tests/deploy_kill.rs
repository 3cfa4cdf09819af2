//! A deploy that dies must not block the next one. On a real engine, registry and sshd:
//! SIGKILL the whole process group of a deploy at four moments (pulling, starting the new
//! color, right after the edge switch, draining the old color); after each, a plain `deploy` of
//! the same tag takes the dead lock over, reconciles the target and succeeds with no file
//! touched by hand. Then the same four moments over ssh, with the ssh connection cut (the sshd
//! session serving the deploy killed) instead. A load probe runs across the whole test: not one
//! request may fail, and after every recovery `status` and compose.yaml name the release that
//! serves.
//!
//! The local kill points are exact: a `docker` wrapper first on the killed deploy's PATH pauses
//! at one docker command (before or after running it) and leaves a marker file; the test kills
//! once the marker is there. Over ssh the remote commands are found among the sshd's children.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::faults::{cmdline, descendants, processes_mentioning, Running};
use common::*;

/// One moment of a deploy at which it dies.
struct Moment {
    name: &'static str,
    /// Part of the docker command line at which the deploy is stopped.
    at: &'static str,
    /// Pause after the command ran (its effect is there) rather than before.
    after: bool,
}

const LOCAL: [Moment; 4] = [
    Moment {
        name: "pulling",
        at: " pull --quiet ",
        after: false,
    },
    Moment {
        name: "starting the new color",
        at: " up --detach --remove-orphans",
        after: true,
    },
    // The reload goes through the engine's API (no docker process to pause at); the first docker
    // command after it starts the new release's worker.
    Moment {
        name: "right after the edge switch",
        at: " up --detach --remove-orphans worker ",
        after: false,
    },
    Moment {
        name: "draining the old color",
        at: " stop --timeout 10",
        after: false,
    },
];

/// Over ssh: the remote command during which the connection is cut.
const OVER_SSH: [(&str, &str); 4] = [
    ("pulling", "docker pull --quiet "),
    ("starting the new color", "up --detach --remove-orphans"),
    (
        "right after the edge switch (verifying)",
        "file_get_contents",
    ),
    ("draining the old color", "stop --timeout 10"),
];

const A: &str = "1.0.0-a";
const B: &str = "1.0.0-b";

#[test]
fn killed_deploys_do_not_block_the_next_one() {
    if !engine_available("killed_deploys_do_not_block_the_next_one")
        || !sshd::available("killed_deploys_do_not_block_the_next_one")
    {
        return;
    }
    let registry = Registry::start();
    let prefix = registry.prefix();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let stack = format!("kill{}", std::process::id());
    // Dropped in reverse: the stack's containers go first, then the images they held.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let _cleanup = RemoveStack(stack.clone());

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
    ok(&["build-app", "--tag", A]);
    // B has other CSS: the page served tells which release serves.
    let css = root.join("app/assets/app.css");
    let text = std::fs::read_to_string(&css).unwrap();
    std::fs::write(&css, format!("{text}\nbody {{ outline: 0; }}\n")).unwrap();
    let git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args([
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-q",
            "-am",
            "B",
        ])
        .status()
        .unwrap();
    assert!(git.success());
    ok(&["build-app", "--tag", B]);

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
    let t = Setup {
        root,
        tmp: tmp.path(),
        prefix: &prefix,
        dir: &dir,
        stack: &stack,
        port,
    };

    // Which hashed stylesheet each release's page names, read while it serves.
    assert!(t.deploy(&[], &["deploy", "--tag", A]).status.success());
    let css_a = hashed_css(&http_get(port, "/").unwrap().1);
    assert!(t.deploy(&[], &["deploy", "--tag", B]).status.success());
    let css_b = hashed_css(&http_get(port, "/").unwrap().1);
    assert_ne!(css_a, css_b);
    let css = |tag: &str| {
        if tag == A {
            css_a.clone()
        } else {
            css_b.clone()
        }
    };
    t.converged(B, &css(B));

    // From here to the end, not one request may fail.
    // Both releases' hashed assets stay served (pages of either may be open in a browser).
    let probe = Probe::start(
        port,
        vec![
            Expected::page(),
            Expected::health(),
            Expected::same_as_now(port, &css_a),
            Expected::same_as_now(port, &css_b),
        ],
    );
    let mut serving = B;
    let mut report = Vec::new();

    let wrapper = DockerWrapper::new(tmp.path());
    for moment in &LOCAL {
        let tag = if serving == A { B } else { A };
        if moment.name == "pulling" {
            remove_standby(&stack);
            remove_local_images(&prefix, tag);
        }
        let marker = wrapper.marker(moment.name);
        let env = wrapper.env(moment, &marker);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut running = Running::start(
            root,
            tmp.path(),
            &prefix,
            &t.args(&[], &["deploy", "--tag", tag]),
            &env,
        );
        let start = Instant::now();
        while !marker.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(180)
                    && running.child.try_wait().unwrap().is_none(),
                "the deploy never reached {}:\n{}",
                moment.name,
                running.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The moment really was reached: what each one has done by now is there.
        match moment.name {
            "starting the new color" => assert!(
                !t.project_containers(&t.other_color(serving)).is_empty(),
                "the new color has containers"
            ),
            // nginx -s reload returns before the new workers take over: a moment later.
            "right after the edge switch" => wait_until(Duration::from_secs(10), || {
                http_get(port, "/")
                    .is_some_and(|(status, page)| status == 200 && hashed_css(&page) == css(tag))
            }),
            _ => {}
        }
        running.signal_group(libc::SIGKILL);
        let status = running.wait(Duration::from_secs(30));
        assert!(!status.success(), "{}: the deploy was killed", moment.name);
        assert!(
            target.path().join(".deploy/lock/owner").exists(),
            "{}: the killed deploy left its lock",
            moment.name
        );
        let left = what_was_left(&t, serving, tag);

        let out = t.deploy(&[], &["deploy", "--tag", tag]);
        let said = stderr(&out);
        assert!(
            out.status.success(),
            "{}: the plain deploy after the kill failed",
            moment.name
        );
        assert!(
            said.contains("took over the deploy lock") && said.contains("its process"),
            "{}: {said}",
            moment.name
        );
        let reconciled = said
            .lines()
            .find(|l| l.contains("reconciled:"))
            .unwrap_or_else(|| panic!("{}: no reconcile line: {said}", moment.name))
            .trim()
            .to_string();
        t.converged(tag, &css(tag));
        report.push(format!(
            "local {:<30} left: {left}\n    then: {reconciled}",
            moment.name
        ));
        serving = tag;
    }

    // Over ssh: the connection serving the deploy is cut; xtask itself is not touched.
    let server = sshd::Sshd::start();
    let ssh_args: Vec<String> = vec![
        "--host".into(),
        server.host_spec(),
        "--ssh-config".into(),
        server.client_config().to_str().unwrap().into(),
    ];
    let ssh: Vec<&str> = ssh_args.iter().map(String::as_str).collect();
    for (name, remote) in OVER_SSH {
        let tag = if serving == A { B } else { A };
        if name == "pulling" {
            remove_standby(&stack);
            remove_local_images(&prefix, tag);
        }
        let lines_before = history_lines(target.path());
        let mut running = Running::start(
            root,
            tmp.path(),
            &prefix,
            &t.args(&ssh, &["deploy", "--tag", tag]),
            &[],
        );
        let start = Instant::now();
        let session = loop {
            if let Some(session) = session_running(server.pid(), remote) {
                break session;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180)
                    && running.child.try_wait().unwrap().is_none(),
                "the deploy over ssh never ran {remote:?}:\n{}",
                running.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        cut(session);
        let status = running.wait(Duration::from_secs(300));
        // What the cut left running on the target side (its remote command, orphaned).
        let orphans = processes_mentioning(t.dir);
        wait_until(Duration::from_secs(60), || {
            processes_mentioning(t.dir).is_empty()
        });
        let said = running.stderr();
        let lock_left = target.path().join(".deploy/lock").exists();
        let new_lines: Vec<String> = history_lines(target.path())
            .into_iter()
            .skip(lines_before.len())
            .collect();
        assert!(
            !new_lines.is_empty(),
            "{name}: the cut run left a history line saying what serves:\n{said}"
        );
        let left = what_was_left(&t, serving, tag);

        let out = t.deploy(&ssh, &["deploy", "--tag", tag]);
        assert!(
            out.status.success(),
            "ssh {name}: the plain deploy after the cut failed"
        );
        t.converged(tag, &css(tag));
        report.push(format!(
            "ssh   {name:<30} xtask exited {:?}, lock left: {lock_left}, history: {:?}\n    left: {left}\n    orphaned remote commands: {}\n    error: {}",
            status.code(),
            new_lines.last().map(|l| l.split('\t').next_back().unwrap_or_default().to_string()),
            orphans.len(),
            said.lines().rev().find(|l| l.starts_with("error:")).unwrap_or("-")
        ));
        serving = tag;
    }

    // Two pipelines at once: the second waits for the first (--lock-wait); a third that does
    // not wait is refused, naming the live holder.
    let tag = if serving == A { B } else { A };
    let other = serving;
    let mut first = Running::start(
        root,
        tmp.path(),
        &prefix,
        &t.args(&[], &["deploy", "--tag", tag]),
        &[],
    );
    assert!(
        first
            .wait_for_line(Duration::from_secs(60), |l| l.contains("[3/8]"))
            .is_some(),
        "{}",
        first.stderr()
    );
    let mut second = Running::start(
        root,
        tmp.path(),
        &prefix,
        &t.args(&[], &["deploy", "--tag", other, "--lock-wait", "5m"]),
        &[],
    );
    let refused = t.deploy(&[], &["deploy", "--tag", other]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("another deploy holds the lock")
            && stderr(&refused).contains(&format!("deploy {tag} by")),
        "{}",
        stderr(&refused)
    );
    assert!(
        first.wait(Duration::from_secs(300)).success(),
        "{}",
        first.stderr()
    );
    assert!(
        second.wait(Duration::from_secs(300)).success(),
        "{}",
        second.stderr()
    );
    assert!(
        second
            .stderr()
            .contains("waiting for the deploy lock, held by deploy"),
        "{}",
        second.stderr()
    );
    t.converged(other, &css(other));

    let load = probe.stop();
    eprintln!("--- what each kill left ---\n{}", report.join("\n"));
    eprintln!("--- load probe: {load:?}");
    assert!(load.requests > 200, "the probe ran: {load:?}");
    assert_eq!(
        load.failed, 0,
        "requests failed across the kills: {:?}",
        load.failures
    );
}

/// The test's fixed values, and the commands run against its target.
struct Setup<'a> {
    root: &'a Path,
    tmp: &'a Path,
    prefix: &'a str,
    dir: &'a str,
    stack: &'a str,
    port: u16,
}

impl Setup<'_> {
    fn args<'b>(&'b self, before: &[&'b str], args: &[&'b str]) -> Vec<&'b str> {
        let mut all = args.to_vec();
        all.extend(before);
        all.extend(["--dir", self.dir, "--stack", self.stack]);
        all
    }

    fn deploy(&self, ssh: &[&str], args: &[&str]) -> std::process::Output {
        xtask(self.root, self.tmp, self.prefix, &self.args(ssh, args))
    }

    fn project_containers(&self, color: &str) -> String {
        common::faults::containers(&format!(
            "label=com.docker.compose.project={}-{color}",
            self.stack
        ))
    }

    /// The color that is not `tag`'s, from what runs now.
    fn other_color(&self, serving: &str) -> String {
        let live = self.live();
        assert!(live.0 == serving, "{serving} serves: {live:?}");
        if live.1 == "blue" { "green" } else { "blue" }.into()
    }

    /// (tag, color) per `status`.
    fn live(&self) -> (String, String) {
        let out = self.deploy(&[], &["status"]);
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = said
            .lines()
            .find(|l| l.starts_with("live:"))
            .unwrap_or_else(|| panic!("status says what is live: {said}"));
        // "live:     1.0.0-a (kill123-blue)"
        let words: Vec<&str> = line.split_whitespace().collect();
        let color = words[2]
            .trim_matches(|c| c == '(' || c == ')')
            .rsplit('-')
            .next()
            .unwrap()
            .to_string();
        (words[1].to_string(), color)
    }

    /// `tag` serves, and everything says so: the edge, `status`, compose.yaml, the history; the
    /// other color has no worker running (at most the standby, its worker stopped, no extra
    /// container); no lock is left.
    fn converged(&self, tag: &str, css: &str) {
        assert_eq!(
            hashed_css(&http_get(self.port, "/").unwrap().1),
            css,
            "{tag} serves"
        );
        let (live, color) = self.live();
        assert_eq!(live, tag, "status names the release that serves");
        let compose = std::fs::read_to_string(Path::new(self.dir).join("compose.yaml")).unwrap();
        assert!(
            compose.contains(&format!("crm-gdb_php:{tag}\n")),
            "compose.yaml names {tag}:\n{compose}"
        );
        let other = if color == "blue" { "green" } else { "blue" };
        let left = self.project_containers(other);
        let lines: Vec<&str> = left.lines().collect();
        // `docker compose ps --all` lines: NAME ... STATUS; the worker's name ends -worker-1.
        assert!(
            (lines.is_empty() || lines.len() == 3)
                && lines
                    .iter()
                    .filter(|l| l.contains("-worker-"))
                    .all(|l| l.contains(" Exited (")),
            "{other} was removed or kept as the standby, its worker stopped: {left}"
        );
        assert!(
            !Path::new(self.dir).join(".deploy/lock").exists(),
            "the lock is released"
        );
        // A release command killed between create and start leaves a Created
        // container; the deploy that took over removed it.
        let throwaways =
            common::faults::containers(&format!("label=org.kiora.crm.throwaway={}", self.stack));
        assert!(
            throwaways.is_empty(),
            "no throwaway container is left: {throwaways}"
        );
        let last = history_lines(Path::new(self.dir)).pop().unwrap_or_default();
        // time, tag, revision, who, strategy, result, deploy id
        let fields: Vec<&str> = last.split('\t').collect();
        assert!(
            fields.get(1) == Some(&tag) && fields.get(5) == Some(&"ok"),
            "the last history line says {tag} serves: {last}"
        );
    }
}

/// One line: which colors have containers, what compose.yaml names, whether a lock is there.
fn what_was_left(t: &Setup, serving: &str, tag: &str) -> String {
    let compose = std::fs::read_to_string(Path::new(t.dir).join("compose.yaml")).unwrap();
    let names = if compose.contains(&format!("crm-gdb_php:{tag}\n")) {
        tag
    } else {
        serving
    };
    let colors: Vec<String> = ["blue", "green"]
        .iter()
        .map(|c| {
            let n = t.project_containers(c).lines().count();
            format!("{c}: {n} containers")
        })
        .collect();
    let serves = hashed_css(&http_get(t.port, "/").unwrap().1);
    format!(
        "{}, compose.yaml names {names}, edge serves {serves}, lock: {}",
        colors.join(", "),
        Path::new(t.dir).join(".deploy/lock").exists()
    )
}

fn history_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(".deploy/history.tsv"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Removes the containers a deploy keeps for a rollback (the standby: the color whose worker
/// is stopped), which hold their release's images.
fn remove_standby(stack: &str) {
    for color in ["blue", "green"] {
        let project = format!("label=com.docker.compose.project={stack}-{color}");
        let parked = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                "status=exited",
                "--filter",
                &project,
            ])
            .args(["--filter", "label=com.docker.compose.service=worker"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&parked.stdout).trim().is_empty() {
            continue;
        }
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", &project])
            .output()
            .unwrap();
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = Command::new("docker").args(["rm", "--force", id]).output();
        }
    }
}

/// Removes a release's images from the engine, so deploying it really pulls.
fn remove_local_images(prefix: &str, tag: &str) {
    let images = [
        format!("{prefix}/crm-gdb_php:{tag}"),
        format!("{prefix}/crm-gdb_php:{tag}-supervisor"),
        format!("{prefix}/crm-gdb_nginx:{tag}"),
    ];
    let out = Command::new("docker")
        .args(["image", "rm"])
        .args(&images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sshd session process (a child of the listener `sshd`) whose descendants run a command
/// containing `wanted`.
fn session_running(sshd: u32, wanted: &str) -> Option<u32> {
    let sessions: Vec<u32> = descendants(sshd)
        .into_iter()
        .filter(|(pid, _)| parent(*pid) == Some(sshd))
        .map(|(pid, _)| pid)
        .collect();
    sessions.into_iter().find(|session| {
        descendants(*session)
            .iter()
            .any(|(pid, line)| line.contains(wanted) && !cmdline(*pid).starts_with("sshd"))
    })
}

/// Cuts an ssh connection: SIGKILL to its sshd session process and the sshd processes below
/// it (the privilege-separated child that holds the socket), not to the command it runs.
fn cut(session: u32) {
    let below: Vec<u32> = descendants(session)
        .into_iter()
        .filter(|(_, line)| line.starts_with("sshd"))
        .map(|(pid, _)| pid)
        .collect();
    for pid in std::iter::once(session).chain(below) {
        // SAFETY: kill(2) of an sshd process serving the test's own sshd.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

fn hashed_css(page: &str) -> String {
    let start = page
        .find("\"/build/")
        .expect("the page names a hashed asset")
        + 1;
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

/// A `docker` first on PATH that runs the real one, except at one command line, where it
/// leaves a marker file and sleeps (before or after running the command) until killed.
struct DockerWrapper {
    dir: PathBuf,
}

impl DockerWrapper {
    fn new(tmp: &Path) -> DockerWrapper {
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v docker"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        assert!(real.starts_with('/'), "docker is on PATH: {real:?}");
        let dir = tmp.join("wrapper-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "#!/bin/sh\n\
             # Pauses a deploy at one docker command, for the kill tests.\n\
             case \" $* \" in\n\
             *\"$XTASK_E2E_PAUSE_AT\"*)\n\
             \x20 if [ \"$XTASK_E2E_PAUSE_WHEN\" = after ]; then {real} \"$@\"; fi\n\
             \x20 : > \"$XTASK_E2E_MARKER\"\n\
             \x20 exec sleep 600 ;;\n\
             esac\n\
             exec {real} \"$@\"\n"
        );
        let path = dir.join("docker");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        DockerWrapper { dir }
    }

    fn marker(&self, moment: &str) -> PathBuf {
        self.dir
            .join(format!("reached-{}", moment.replace(' ', "-")))
    }

    fn env(&self, moment: &Moment, marker: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "PATH",
                format!(
                    "{}:{}",
                    self.dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("XTASK_E2E_PAUSE_AT", moment.at.trim_start().to_string()),
            (
                "XTASK_E2E_PAUSE_WHEN",
                if moment.after { "after" } else { "before" }.into(),
            ),
            ("XTASK_E2E_MARKER", marker.display().to_string()),
        ]
    }
}

/// `lock status` and `lock release` on a target directory (no engine needed): a live holder is
/// named alive and kept unless --force; a dead one is named dead; each release is recorded.
#[test]
fn lock_status_and_release_by_hand() {
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("compose.yaml"), "services: {}\n").unwrap();
    let dir = target.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .args(["--dir", dir])
            .env("XTASK_ROOT", env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, said) = run(&["lock", "status"]);
    assert!(ok && said.contains("no deploy lock on"), "{said}");

    // A holder on this machine: a live process of ours, then the same pid once it is gone.
    let mut holder = Command::new("sleep").arg("60").spawn().unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let lock = target.path().join(".deploy/lock");
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("owner"),
        format!(
            "token=t-1\noperation=deploy 9.9.9\nwho=ci@runner\nhost={}\npid={}\nboot_id={}\nsince=2026-12-01T00:00:00Z\nlease_secs=30\n",
            host.trim(),
            holder.id(),
            boot.trim()
        ),
    )
    .unwrap();
    std::fs::write(lock.join("lease-t-1"), "").unwrap();
    let (ok, said) = run(&["lock", "status"]);
    assert!(
        ok && said.contains("held by:  deploy 9.9.9 by ci@runner") && said.contains("alive"),
        "{said}"
    );
    let (ok, said) = run(&["lock", "release"]);
    assert!(
        !ok && said.contains("which is alive") && said.contains("--force"),
        "{said}"
    );
    assert!(lock.exists());

    holder.kill().unwrap();
    holder.wait().unwrap();
    let (ok, said) = run(&["lock", "status"]);
    assert!(ok && said.contains("dead (its process"), "{said}");
    let (ok, said) = run(&["lock", "release"]);
    assert!(
        ok && said.contains("released the deploy lock of deploy 9.9.9"),
        "{said}"
    );
    assert!(!lock.exists());

    // --force releases a live-looking holder (here: another machine, lease fresh).
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("owner"),
        "token=t-2\noperation=deploy 9.9.8\nwho=ci@elsewhere\nhost=elsewhere\npid=1\nboot_id=x\nsince=now\n",
    )
    .unwrap();
    std::fs::write(lock.join("lease-t-2"), "").unwrap();
    assert!(!run(&["lock", "release"]).0);
    let (ok, said) = run(&["lock", "release", "--force"]);
    assert!(ok && said.contains("forced"), "{said}");
    assert!(!lock.exists());
    let history = std::fs::read_to_string(target.path().join(".deploy/history.tsv")).unwrap();
    assert_eq!(history.lines().count(), 2, "{history}");
    assert!(history.contains("released by hand"), "{history}");
}
