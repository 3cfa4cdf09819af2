//! Real, separate machines for end-to-end tests: `cargo xtask testbed up` (the built binary)
//! makes N network namespaces, each with its own address, Docker engine and sshd; dropping the
//! [`Testbed`] runs `testbed down`, also when the test panicked. Machines are numbered from 1,
//! as their names (`m1`, `m2`...).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where `cargo xtask testbed` keeps every testbed's state.
pub const BASE_DIR: &str = "/tmp/xtask-testbed";

/// Programs the testbed needs beyond a Docker engine (installed by `.ci/setup`).
const PROGRAMS: [&str; 6] = [
    "/usr/sbin/dockerd",
    "/usr/sbin/sshd",
    "/usr/bin/socat",
    "/usr/bin/nsenter",
    "/usr/sbin/start-stop-daemon",
    "/usr/sbin/iptables",
];

/// True when testbeds can be made here: root, a Docker engine and the programs above. Otherwise
/// the test is skipped loudly, except under `CI=true`, where that is a failure.
pub fn available(test: &str) -> bool {
    if !super::engine_available(test) {
        return false;
    }
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    let root = unsafe { libc::geteuid() } == 0;
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !Path::new(p).is_file())
        .collect();
    let why = if !root {
        "not root (network namespaces need it)".to_string()
    } else if !missing.is_empty() {
        format!("missing {}", missing.join(", "))
    } else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}, and CI=true: run the tests as root after `bash .ci/setup`"
    );
    eprintln!("\n!!!!! SKIPPED {test}: {why} (run as root after `sudo bash .ci/setup`) !!!!!\n");
    false
}

/// One machine, as `testbed up` recorded it.
#[derive(Clone, Debug)]
pub struct Machine {
    pub name: String,
    pub addr: String,
    pub netns: String,
    pub docker_host: String,
}

/// A daemon `up` started: its program and pid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub exe: String,
    pub pid: u32,
}

pub struct Testbed {
    pub name: String,
    pub dir: PathBuf,
    /// How long `testbed up` took.
    pub up_time: Duration,
    machines: Vec<Machine>,
    removed: bool,
}

impl Testbed {
    /// `testbed up` with `n` machines under a name unique to this process, forwarding the
    /// loopback registry on `registry_port` into every machine when given. Panics (after the
    /// testbed is removed) when `up` fails.
    pub fn start(n: usize, registry_port: Option<u16>) -> Testbed {
        Testbed::start_with(n, registry_port, false)
    }

    /// [`Testbed::start`] with the machines in one Docker swarm: m1 the manager, the others
    /// workers (`testbed up --swarm`).
    pub fn start_swarm(n: usize, registry_port: Option<u16>) -> Testbed {
        Testbed::start_with(n, registry_port, true)
    }

    fn start_with(n: usize, registry_port: Option<u16>, swarm: bool) -> Testbed {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let count = COUNT.fetch_add(1, Ordering::SeqCst);
        // "t" + pid in hex (at most 6 digits) + one digit: at most 8 characters, and unique.
        let name = format!("t{:x}{:x}", std::process::id(), count % 16);
        let dir = Path::new(BASE_DIR).join(&name);
        if dir.exists() {
            // Left by an earlier test process that had this pid and was killed.
            let _ = xtask(&["testbed", "down", "--name", &name]);
        }
        let machines = n.to_string();
        let port = registry_port.map(|p| p.to_string());
        let mut args = vec!["testbed", "up", "--name", &name, "--machines", &machines];
        if let Some(port) = &port {
            args.extend(["--registry-port", port]);
        }
        if swarm {
            args.push("--swarm");
        }
        let start = Instant::now();
        let output = xtask(&args);
        let mut bed = Testbed {
            name,
            dir,
            up_time: start.elapsed(),
            machines: Vec::new(),
            removed: false,
        };
        assert!(
            output.status.success(),
            "testbed up failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        bed.machines = bed
            .state()
            .iter()
            .filter_map(|words| match words.as_slice() {
                [kind, name, addr, netns, docker_host] if kind == "machine" => Some(Machine {
                    name: name.clone(),
                    addr: addr.clone(),
                    netns: netns.clone(),
                    docker_host: docker_host.clone(),
                }),
                _ => None,
            })
            .collect();
        assert_eq!(bed.machines.len(), n, "machines in {}", bed.dir.display());
        bed
    }

    /// The state file's lines, as words.
    fn state(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.join("state"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').map(String::from).collect())
            .collect()
    }

    pub fn machine(&self, i: usize) -> &Machine {
        assert!(i >= 1, "machines are numbered from 1");
        &self.machines[i - 1]
    }

    /// `root@ADDR`, for `--host`.
    pub fn host(&self, i: usize) -> String {
        format!("root@{}", self.machine(i).addr)
    }

    pub fn addr(&self, i: usize) -> String {
        self.machine(i).addr.clone()
    }

    /// The `ssh -F` file for every machine (`--ssh-config`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// `docker` talking to machine i's own engine.
    pub fn docker(&self, i: usize) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.machine(i).docker_host)
            .stdin(Stdio::null());
        cmd
    }

    /// A program run inside machine i's network (e.g. a probe of its loopback).
    pub fn in_machine(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.machine(i).netns))
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// `ssh -F CONFIG root@ADDR -- COMMAND` (a remote shell line: quote it yourself).
    pub fn ssh(&self, i: usize, command: &str) -> Output {
        Command::new("ssh")
            .arg("-F")
            .arg(self.ssh_config())
            .arg(self.host(i))
            .arg("--")
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run ssh")
    }

    /// Stops machine i's engine (as a crash would, from the deploy's point of view).
    pub fn stop_engine(&self, i: usize) {
        let machine = format!("m{i}");
        let out = xtask(&["testbed", "stop-engine", "--name", &self.name, &machine]);
        assert!(out.status.success(), "stop-engine {machine} failed");
    }

    /// Starts machine i's engine again and waits until it answers.
    pub fn start_engine(&self, i: usize) {
        let machine = format!("m{i}");
        let out = xtask(&["testbed", "start-engine", "--name", &self.name, &machine]);
        assert!(out.status.success(), "start-engine {machine} failed");
    }

    /// The daemons `up` started that run now (engines, sshds, forwarders).
    pub fn daemons(&self) -> Vec<Daemon> {
        self.state()
            .iter()
            .filter_map(|words| match words.as_slice() {
                [kind, _role, _machine, exe, pidfile] if kind == "daemon" => {
                    let pid = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
                    Some(Daemon {
                        exe: exe.clone(),
                        pid,
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// `testbed down`; the drop then does nothing more.
    pub fn down(&mut self) -> Output {
        self.removed = true;
        xtask(&["testbed", "down", "--name", &self.name])
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !self.removed && self.dir.exists() {
            let _ = self.down();
        }
    }
}

/// True while `pid` runs `exe`.
pub fn runs(pid: u32, exe: &str) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == Path::new(exe))
}

/// Runs the built `cargo xtask ARGS` from this project, without a configured registry (so
/// nothing is forwarded unless asked), and shows its output.
pub fn xtask(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_ROOT", root)
        .env_remove("XTASK_REGISTRY")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the xtask binary");
    eprintln!(
        "--- cargo xtask {} -> {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
