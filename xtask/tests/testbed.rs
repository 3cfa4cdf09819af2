//! The testbed is real: three machines each with its own engine, reached by ssh with checked
//! host keys, pulling from the loopback registry through their forwarders, serving on their own
//! address; `down` leaves no namespace, link, rule, process or file. Refusals are one line.
mod common;

use std::io::{Read, Write};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::testbed::{self, runs, xtask, Testbed};
use common::Registry;

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn run(cmd: &mut Command) -> String {
    stdout(&cmd.output().expect("cannot run"))
}

/// GET / on ADDR:PORT (a testbed machine's own address): the body, if it answered 200.
fn http_body(addr: &str, port: u16) -> Option<String> {
    let target = format!("{addr}:{port}").parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

const PROBE_PORT: u16 = 8080;

/// A tiny HTTP server image: the local OS image plus one file naming the testbed.
fn dockerfile(greeting: &str) -> String {
    format!(
        "FROM debian:bookworm-slim\n\
         RUN echo '{greeting}' > /srv/hello\n\
         CMD perl -MIO::Socket::INET -e 'open my $f, \"/srv/hello\"; my $b = <$f>; \
         my $s = IO::Socket::INET->new(LocalPort => {PROBE_PORT}, Listen => 5, ReuseAddr => 1) or die; \
         while (my $c = $s->accept) {{ <$c>; print $c \"HTTP/1.0 200 OK\\r\\n\\r\\n$b\"; close $c }}'\n"
    )
}

#[test]
fn the_probe_dockerfile_reads() {
    let text = dockerfile("hi");
    assert!(
        text.contains(
            "CMD perl -MIO::Socket::INET -e 'open my $f, \"/srv/hello\"; my $b = <$f>; my $s"
        ),
        "{text}"
    );
    assert!(
        text.contains("print $c \"HTTP/1.0 200 OK\\r\\n\\r\\n$b\"; close $c }'\n"),
        "{text}"
    );
}

#[test]
fn three_machines_with_their_own_engines_then_nothing_left() {
    let test = "three_machines_with_their_own_engines_then_nothing_left";
    if !testbed::available(test) {
        return;
    }
    let registry = Registry::start();
    let mut bed = Testbed::start(3, Some(registry.port));
    eprintln!(
        "testbed up (3 machines) took {:.1} s",
        bed.up_time.as_secs_f64()
    );
    assert!(
        bed.up_time < Duration::from_secs(30),
        "testbed up took {:?}",
        bed.up_time
    );

    // Each machine has its own engine: its own ID and data root, none the host's.
    let host_id = run(Command::new("docker").args(["info", "--format", "{{.ID}}"]));
    let mut ids = Vec::new();
    for i in 1..=3 {
        let info = run(bed
            .docker(i)
            .args(["info", "--format", "{{.ID}} {{.DockerRootDir}}"]));
        let (id, root) = info.split_once(' ').unwrap();
        assert!(
            root.ends_with(&format!("/{}/m{i}/data", bed.name)),
            "{info}"
        );
        assert_ne!(id, host_id, "m{i} answered with the host engine's ID");
        assert!(
            !ids.contains(&id.to_string()),
            "m{i} shares an engine ID: {ids:?}"
        );
        ids.push(id.to_string());
    }

    // ssh with the generated config reaches each machine's own engine (DOCKER_HOST from sshd).
    for i in 1..=3 {
        let out = bed.ssh(i, "docker info --format '{{.ID}}'");
        assert_eq!(
            stdout(&out),
            ids[i - 1],
            "ssh to m{i} reached another engine"
        );
    }
    // Host keys are checked: without the known_hosts, ssh refuses.
    let unknown = Command::new("ssh")
        .arg("-F")
        .arg(bed.ssh_config())
        .args(["-o", "UserKnownHostsFile=/dev/null", &bed.host(1), "true"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // An image pushed to the loopback registry pulls on a machine under the same name.
    let image = format!("{}/testbed-probe:{}", registry.prefix(), bed.name);
    let greeting = format!("hello from testbed {}", bed.name);
    let build = Command::new("docker")
        .args(["build", "--quiet", "--tag", &image, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(dockerfile(&greeting).as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    stdout(&build);
    run(Command::new("docker").args(["push", "--quiet", &image]));
    assert!(registry.tags("testbed-probe").contains(&bed.name));
    run(bed.docker(2).args(["pull", "--quiet", &image]));
    let pulled = bed.ssh(3, &format!("docker pull --quiet {image}"));
    stdout(&pulled);
    assert!(
        run(bed.docker(1).args(["image", "ls", "--quiet", &image])).is_empty(),
        "m1 never pulled, yet has the image: engines are not separate"
    );

    // A container published on machine 2's address answers from here, on that address only.
    let published = format!("{}:{PROBE_PORT}:{PROBE_PORT}", bed.addr(2));
    run(bed.docker(2).args([
        "run",
        "--detach",
        "--name",
        "probe",
        "--publish",
        &published,
        &image,
    ]));
    let start = Instant::now();
    let body = loop {
        if let Some(body) = http_body(&bed.addr(2), PROBE_PORT) {
            break body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "m2's container never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body.trim(), greeting);
    assert_eq!(
        http_body(&bed.addr(1), PROBE_PORT),
        None,
        "m1 answered for m2"
    );

    // The engine can die and come back (for deploys meeting a dead engine).
    bed.stop_engine(3);
    assert!(!bed.docker(3).arg("info").output().unwrap().status.success());
    bed.start_engine(3);
    assert_eq!(
        run(bed.docker(3).args(["info", "--format", "{{.ID}}"])),
        ids[2]
    );

    // down removes everything it made.
    let daemons = bed.daemons();
    assert_eq!(
        daemons.len(),
        3 * 3 + 1,
        "engines, sshds, forwarders: {daemons:?}"
    );
    assert!(daemons.iter().all(|d| runs(d.pid, &d.exe)), "{daemons:?}");
    let down = bed.down();
    assert!(down.status.success());
    let name = bed.name.clone();
    let netns = run(Command::new("ip").args(["netns", "list"]));
    assert!(
        !netns.contains(&format!("{name}-")),
        "namespaces left: {netns}"
    );
    let links = run(Command::new("ip").args(["-o", "link", "show"]));
    assert!(!links.contains(&format!("{name}-")), "links left: {links}");
    let rules = run(Command::new("iptables").args(["-w", "-S", "FORWARD"]));
    assert!(!rules.contains(&format!("{name}-br")), "rule left: {rules}");
    for d in &daemons {
        assert!(!runs(d.pid, &d.exe), "{} (pid {}) still runs", d.exe, d.pid);
    }
    assert!(!bed.dir.exists(), "{} left", bed.dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&format!("{}/", bed.dir.display())),
        "mounts left"
    );

    let _ = Command::new("docker")
        .args(["image", "rm", &image])
        .output();
}

#[test]
fn down_of_an_unknown_testbed_is_one_line() {
    let out = xtask(&["testbed", "down", "--name", "nosuch9"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    let expected = if unsafe { libc::geteuid() } == 0 {
        "error: no testbed named nosuch9"
    } else {
        "error: the testbed needs root"
    };
    assert!(stderr.starts_with(expected), "{stderr}");
}

#[test]
fn zero_machines_are_refused_in_one_line() {
    let out = xtask(&["testbed", "up", "--name", "nosuch9", "--machines", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: --machines 0: a testbed has 1 to 20 machines"
    );
    assert!(!std::path::Path::new(testbed::BASE_DIR)
        .join("nosuch9")
        .exists());
}
