//! Real, separate machines on this one, for fleet deploys and their tests.
//!
//! A testbed `NAME` is N machines `m1..mN`. Each is a network namespace with its own address
//! (10.231.K.11.., one /24 per testbed, on the bridge `NAME-br` where the host is 10.231.K.1),
//! its own Docker engine (own data root, exec root and socket) and its own sshd on port 22 of
//! its address (root by key only, every session's `docker` talking to that machine's engine).
//! The testbed makes one client key, a known_hosts with every machine's host key and an
//! `ssh -F` config, so `deploy --host root@ADDR --ssh-config ...` checks host keys as usual.
//! With a registry port, `socat` forwarders make the host's `127.0.0.1:PORT` registry answer at
//! `127.0.0.1:PORT` inside every machine too, so the same image names pull there.
//!
//! Everything lives in `/tmp/xtask-testbed/NAME/`, and what is made outside it (namespaces,
//! links, the FORWARD rule, daemons) is written to its journal first (see `journal`): `down`
//! undoes exactly that, by name and by pid, and works on a half-made testbed; a failed or
//! interrupted `up` undoes itself the same way. Needs root.

mod commands;
mod journal;
mod layout;

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::interrupt;

pub use journal::Entry;
use journal::Journal;
pub use layout::{check_machines, Layout, Machine, Name, BASE_DIR};

/// How long engines and sshds may take to answer after they were started.
const READY_LIMIT: Duration = Duration::from_secs(90);

#[derive(Clone, Debug)]
pub struct UpOptions {
    pub machines: usize,
    pub swarm: bool,
    /// Forward the host's `127.0.0.1:PORT` registry into every machine.
    pub registry_port: Option<u16>,
    /// The port an edge would be published on, for the printed addresses.
    pub edge_port: u16,
}

/// Refuses, in one line, to go on without root or without a program the testbed needs.
pub fn preflight(need_socat: bool) -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the testbed needs root (it makes network namespaces and starts Docker engines): run it as root, e.g. `sudo -E cargo xtask testbed up`");
    }
    let mut needed = vec![
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("ssh-keygen", "openssh-client"),
        (commands::NSENTER, "util-linux"),
        (commands::START_STOP_DAEMON, "dpkg"),
        (commands::DOCKERD, "docker.io"),
        (commands::SSHD, "openssh-server"),
    ];
    if need_socat {
        needed.push((commands::SOCAT, "socat"));
    }
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the testbed needs the Debian packages {}: `apt-get install {}` (or run `bash .ci/setup`)",
            missing.join(", "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Makes the testbed `name` under `base` and returns its layout; on failure or Ctrl-C, removes
/// what it made before returning the error. Under `--dry-run`, prints the commands only.
pub fn up(runner: &Runner, base: &Path, name: Name, opts: &UpOptions) -> Result<Layout> {
    check_machines(opts.machines)?;
    if runner.dry_run {
        let layout = Layout::new(base, name, free_subnet(runner, base)?, opts.machines);
        Maker {
            runner,
            journal: None,
        }
        .build(&layout, opts)?;
        return Ok(layout);
    }
    std::fs::create_dir_all(base).with_context(|| format!("cannot create {}", base.display()))?;
    let dir = base.join(name.as_str());
    // Held while a subnet is chosen and claimed in the journal, so two `up`s at once differ.
    let lock = lock(base)?;
    if let Err(err) = std::fs::create_dir(&dir) {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            bail!("testbed {name} already exists ({}): see it with `cargo xtask testbed status --name {name}`, or remove it with `cargo xtask testbed down --name {name}`", dir.display());
        }
        return Err(err).with_context(|| format!("cannot create {}", dir.display()));
    }
    let made = (|| {
        let journal = Journal::create(&dir)?;
        let subnet = free_subnet(runner, base)?;
        journal.record(&Entry::Subnet(subnet))?;
        drop(lock);
        journal.record(&Entry::Machines(opts.machines))?;
        journal.record(&Entry::EdgePort(opts.edge_port))?;
        if let Some(port) = opts.registry_port {
            journal.record(&Entry::RegistryPort(port))?;
        }
        let layout = Layout::new(base, name.clone(), subnet, opts.machines);
        Maker {
            runner,
            journal: Some(journal),
        }
        .build(&layout, opts)?;
        Ok(layout)
    })();
    match made {
        Ok(layout) => Ok(layout),
        Err(err) => {
            runner.say(format!(
                "testbed {name} could not be made; removing what was made"
            ));
            match teardown(runner, &name, &dir) {
                Ok(()) => Err(err),
                Err(cleanup) => {
                    Err(err.context(format!("and removing it failed too ({cleanup:#})")))
                }
            }
        }
    }
}

/// Removes everything the testbed `name` made (see the module doc). A one-line refusal when
/// there is no such testbed.
pub fn down(runner: &Runner, base: &Path, name: &Name) -> Result<()> {
    let dir = base.join(name.as_str());
    if !dir.is_dir() {
        bail!("{}", unknown(base, name));
    }
    runner.say(format!("Removing testbed {name}"));
    teardown(runner, name, &dir)
}

/// What `up` prints, with whether each daemon runs: one testbed, or every one under `base`.
pub fn status(base: &Path, name: Option<&Name>) -> Result<String> {
    let names = match name {
        Some(name) => {
            if !base.join(name.as_str()).is_dir() {
                bail!("{}", unknown(base, name));
            }
            vec![name.clone()]
        }
        None => existing(base),
    };
    if names.is_empty() {
        return Ok(format!(
            "no testbed (nothing in {}); make one with `cargo xtask testbed up`",
            base.display()
        ));
    }
    let mut text = String::new();
    for name in names {
        let (layout, entries) = load(base, &name)?;
        text.push_str(&describe(&layout, &entries, true));
    }
    Ok(text)
}

/// Stops machine `machine`'s engine (for tests of an engine that dies mid-deploy).
pub fn stop_engine(runner: &Runner, base: &Path, name: &Name, machine: &str) -> Result<()> {
    let (layout, _) = load(base, name)?;
    let m = layout.find(machine)?;
    runner.run(&commands::stop_daemon(
        &m.pidfile("dockerd"),
        commands::DOCKERD,
    ))
}

/// Starts machine `machine`'s engine again and waits until it answers.
pub fn start_engine(runner: &Runner, base: &Path, name: &Name, machine: &str) -> Result<()> {
    let (layout, _) = load(base, name)?;
    let m = layout.find(machine)?;
    if daemon_pid(&m.pidfile("dockerd"), commands::DOCKERD).is_some() {
        runner.say(format!("the engine of {machine} is already running"));
        return Ok(());
    }
    start_daemon(
        runner,
        &daemon("dockerd", &m.name, commands::DOCKERD, m.pidfile("dockerd")),
        &commands::start_dockerd(&m),
    )?;
    if runner.dry_run {
        return Ok(());
    }
    wait_ready(&[m], false)
}

/// The layout and journal of an existing testbed.
fn load(base: &Path, name: &Name) -> Result<(Layout, Vec<Entry>)> {
    let dir = base.join(name.as_str());
    if !dir.is_dir() {
        bail!("{}", unknown(base, name));
    }
    let entries = Journal::read(&dir)?;
    let subnet = entries.iter().find_map(|e| match e {
        Entry::Subnet(k) => Some(*k),
        _ => None,
    });
    let machines = entries.iter().find_map(|e| match e {
        Entry::Machines(n) => Some(*n),
        _ => None,
    });
    match (subnet, machines) {
        (Some(subnet), Some(machines)) => {
            Ok((Layout::new(base, name.clone(), subnet, machines), entries))
        }
        _ => bail!("testbed {name} is half made (its state names no subnet or size): remove it with `cargo xtask testbed down --name {name}`"),
    }
}

/// One line for a name with no testbed, listing those that exist.
fn unknown(base: &Path, name: &Name) -> String {
    let existing: Vec<String> = existing(base).iter().map(ToString::to_string).collect();
    let list = if existing.is_empty() {
        "there is none".to_string()
    } else {
        format!("existing: {}", existing.join(", "))
    };
    format!(
        "no testbed named {name} (no {}); {list}",
        base.join(name.as_str()).display()
    )
}

/// The testbeds under `base`, by name.
fn existing(base: &Path) -> Vec<Name> {
    let mut names: Vec<Name> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(Journal::FILE).is_file())
        .filter_map(|e| Name::parse(e.file_name().to_str()?).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names
}

/// An exclusive `flock(2)` on the base directory, released when dropped (or when we die).
fn lock(base: &Path) -> Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let file =
        std::fs::File::open(base).with_context(|| format!("cannot open {}", base.display()))?;
    // SAFETY: flock(2) on a descriptor we own; blocks until the other `up` has claimed its subnet.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", base.display()));
    }
    Ok(file)
}

/// The first K in 1..=254 whose 10.231.K.0/24 no other testbed claims and no interface or route
/// of this host uses (someone may have made one by hand).
fn free_subnet(runner: &Runner, base: &Path) -> Result<u8> {
    let claimed: Vec<u8> = existing(base)
        .iter()
        .filter_map(|name| Journal::read(&base.join(name.as_str())).ok())
        .flatten()
        .filter_map(|e| match e {
            Entry::Subnet(k) => Some(k),
            _ => None,
        })
        .collect();
    let addresses = runner.query(&Cmd::new("ip").args(["-o", "-4", "addr", "show"]))?;
    let routes = runner.query(&Cmd::new("ip").args(["-4", "route", "show", "table", "all"]))?;
    pick_subnet(&claimed, &format!("{addresses}\n{routes}"))
}

fn pick_subnet(claimed: &[u8], in_use: &str) -> Result<u8> {
    (1..=254u8)
        .find(|k| {
            let prefix = format!("{}.{}.{k}.", layout::NET[0], layout::NET[1]);
            !claimed.contains(k) && !in_use.contains(&prefix)
        })
        .context("no free subnet in 10.231.1.0/24..10.231.254.0/24: remove testbeds with `cargo xtask testbed down --name NAME`")
}

/// Runs the steps of `up`, writing each journal entry before the thing it names is made.
/// Without a journal (dry run) it only prints the commands.
struct Maker<'a> {
    runner: &'a Runner,
    journal: Option<Journal>,
}

impl Maker<'_> {
    fn record(&self, entry: Entry) -> Result<()> {
        match &self.journal {
            Some(journal) => journal.record(&entry),
            None => Ok(()),
        }
    }

    /// Records the daemon, then starts it to the end even if Ctrl-C comes meanwhile: stopped
    /// half-way, it could still be `nsenter` or have no pid file yet when `down` looks for it,
    /// and escape. Returns once its pid file names the daemon itself.
    fn start(&self, entry: Entry, cmd: &Cmd) -> Result<()> {
        interrupt::check()?;
        self.record(entry.clone())?;
        start_daemon(self.runner, &entry, cmd)
    }

    fn run_all(&self, cmds: &[Cmd]) -> Result<()> {
        cmds.iter().try_for_each(|c| self.runner.run(c))
    }

    fn write(&self, path: &Path, text: &str) -> Result<()> {
        if self.runner.dry_run {
            return Ok(());
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }

    fn build(&self, layout: &Layout, opts: &UpOptions) -> Result<()> {
        let started = Instant::now();
        let machines = layout.all();
        let runner = self.runner;
        runner.say(format!(
            "Making testbed {}: {} machine(s) on {}",
            layout.name,
            machines.len(),
            layout.cidr()
        ));

        // Keys and configuration files.
        if !runner.dry_run {
            for m in &machines {
                std::fs::create_dir_all(m.deploy_dir())
                    .with_context(|| format!("cannot create {}", m.dir.display()))?;
            }
        }
        let mut keygens = vec![vec![commands::keygen(
            &layout.client_key(),
            &format!("xtask-testbed {}", layout.name),
        )]];
        keygens.extend(machines.iter().map(|m| {
            vec![commands::keygen(
                &m.host_key(),
                &format!("xtask-testbed {} {}", layout.name, m.name),
            )]
        }));
        runner.run_parallel(&keygens)?;
        if !runner.dry_run {
            let client_pub = read(&pub_key(&layout.client_key()))?;
            self.write(&layout.authorized_keys(), &client_pub)?;
            let host_keys = machines
                .iter()
                .map(|m| Ok((m.addr, read(&pub_key(&m.host_key()))?)))
                .collect::<Result<Vec<(Ipv4Addr, String)>>>()?;
            self.write(&layout.known_hosts(), &commands::known_hosts(&host_keys))?;
        }
        self.write(&layout.ssh_config(), &commands::ssh_config(layout))?;
        for m in &machines {
            self.write(&m.sshd_config(), &commands::sshd_config(layout, m))?;
            self.write(&m.engine_config(), &commands::engine_config(m))?;
        }

        // The network: bridge, rule, one namespace and veth per machine.
        self.record(Entry::Bridge(layout.bridge()))?;
        self.run_all(&commands::bridge(layout))?;
        self.record(Entry::ForwardRule(layout.bridge()))?;
        runner.run(&commands::forward_rule("-I", &layout.bridge()))?;
        for m in &machines {
            self.record(Entry::Netns(m.netns.clone()))?;
            runner.run(&commands::netns_add(m))?;
            self.record(Entry::Veth(m.veth.clone()))?;
            self.run_all(&commands::veth(layout, m))?;
            self.run_all(&commands::machine_network(layout, m))?;
            self.record(Entry::Machine {
                name: m.name.clone(),
                addr: m.addr,
                netns: m.netns.clone(),
                docker_host: m.docker_host(),
            })?;
        }

        // The daemons, all started before any is waited for.
        if !runner.dry_run {
            // sshd's privilege separation directory; it refuses to start without it.
            std::fs::create_dir_all("/run/sshd").context("cannot create /run/sshd")?;
        }
        if let Some(port) = opts.registry_port {
            self.start(
                daemon("socat", "host", commands::SOCAT, layout.socat_pidfile()),
                &commands::start_host_forwarder(layout, port),
            )?;
        }
        for m in &machines {
            self.start(
                daemon("dockerd", &m.name, commands::DOCKERD, m.pidfile("dockerd")),
                &commands::start_dockerd(m),
            )?;
            self.start(
                daemon("sshd", &m.name, commands::SSHD, m.pidfile("sshd")),
                &commands::start_sshd(m),
            )?;
            if let Some(port) = opts.registry_port {
                self.start(
                    daemon("socat", &m.name, commands::SOCAT, m.pidfile("socat")),
                    &commands::start_machine_forwarder(layout, m, port),
                )?;
            }
        }
        if !runner.dry_run {
            wait_ready(&machines, true)?;
        }

        if opts.swarm {
            self.swarm(&machines)?;
        }
        if runner.dry_run {
            return Ok(());
        }
        runner.say(format!(
            "testbed {} is up in {:.1} s",
            layout.name,
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// `swarm init` on m1, `swarm join` of the others, each through its own engine.
    fn swarm(&self, machines: &[Machine]) -> Result<()> {
        let runner = self.runner;
        let (manager, workers) = machines.split_first().expect("at least one machine");
        self.record(Entry::Swarm(manager.name.clone()))?;
        // Captured, not shown: `swarm init` prints a join command with the token.
        if runner.dry_run {
            runner.run(&commands::swarm_init(manager))?;
        } else {
            runner
                .query(&commands::swarm_init(manager))
                .context("cannot make m1 a swarm manager")?;
        }
        if workers.is_empty() {
            return Ok(());
        }
        let token = if runner.dry_run {
            "<token of `docker swarm join-token --quiet worker` on m1>".to_string()
        } else {
            runner.query(&commands::swarm_worker_token(manager))?
        };
        let joins: Vec<Vec<Cmd>> = workers
            .iter()
            .map(|w| vec![commands::swarm_join(w, manager, &token)])
            .collect();
        runner.each_parallel(&joins, |cmd| {
            if runner.dry_run {
                runner.run(cmd)
            } else {
                runner.query(cmd).map(drop)
            }
        })
    }
}

fn daemon(role: &str, machine: &str, exe: &str, pidfile: PathBuf) -> Entry {
    Entry::Daemon {
        role: role.to_string(),
        machine: machine.to_string(),
        exe: exe.to_string(),
        pidfile,
    }
}

fn pub_key(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs `cmd` (a `start-stop-daemon --start`) whatever the signals, then waits (at most 5 s)
/// until the pid file of `entry` names a process that runs its program, not `nsenter` any more.
fn start_daemon(runner: &Runner, entry: &Entry, cmd: &Cmd) -> Result<()> {
    runner.cleanup(cmd)?;
    let Entry::Daemon { exe, pidfile, .. } = entry else {
        unreachable!("start_daemon of {entry}")
    };
    if runner.dry_run {
        return Ok(());
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let pid = std::fs::read_to_string(pidfile).unwrap_or_default();
        match std::fs::read_link(format!("/proc/{}/exe", pid.trim())) {
            Ok(running) if running == Path::new(exe) => return Ok(()),
            // Exited: `wait_ready` reports it with its log.
            Err(_) if !pid.is_empty() => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    bail!(
        "{} did not start within 5 s (pid file {})",
        exe,
        pidfile.display()
    )
}

/// The pid in `pidfile`, if that process runs `exe` (or still `nsenter`, about to become it).
pub fn daemon_pid(pidfile: &Path, exe: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let running = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    (running == Path::new(exe) || running == Path::new(commands::NSENTER)).then_some(pid)
}

/// Waits until every machine's engine answers on its socket and (with `sshd`) its sshd greets
/// on its address; fails early, with the end of its log, when one of them exits.
fn wait_ready(machines: &[Machine], sshd: bool) -> Result<()> {
    let start = Instant::now();
    let mut waiting: Vec<(&Machine, &str)> = machines.iter().map(|m| (m, "dockerd")).collect();
    if sshd {
        waiting.extend(machines.iter().map(|m| (m, "sshd")));
    }
    while !waiting.is_empty() {
        interrupt::check()?;
        let mut still = Vec::new();
        for (m, role) in waiting {
            let ready = match role {
                "dockerd" => engine_answers(&m.socket()),
                _ => ssh_greets(m.addr),
            };
            if ready {
                continue;
            }
            let exe = if role == "dockerd" {
                commands::DOCKERD
            } else {
                commands::SSHD
            };
            let pidfile = m.pidfile(role);
            if pidfile.exists() && daemon_pid(&pidfile, exe).is_none() {
                bail!(
                    "the {role} of {} exited while starting; the end of {}:\n{}",
                    m.name,
                    m.log(role).display(),
                    tail(&m.log(role), 8)
                );
            }
            still.push((m, role));
        }
        waiting = still;
        if !waiting.is_empty() {
            if start.elapsed() > READY_LIMIT {
                let names: Vec<String> = waiting
                    .iter()
                    .map(|(m, r)| format!("{} of {}", r, m.name))
                    .collect();
                bail!(
                    "no answer after {READY_LIMIT:?} from the {}; see their logs in {}",
                    names.join(", "),
                    waiting[0].0.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The engine's `GET /_ping` answers 200 on its unix socket.
fn engine_answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 12];
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && answer.ends_with(b" 200")
}

/// An SSH banner on port 22 of the machine's address.
fn ssh_greets(addr: Ipv4Addr) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(&(addr, 22).into(), Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut banner = [0u8; 8];
    stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-"
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Undoes the journal of `dir` from its end: daemons first (all at once: engines take seconds to
/// stop their containers), then veths, namespaces, the rule and the bridge, mounts left under
/// the directory, and the directory itself. Goes on after a failure; keeps the directory (and
/// so the journal, for another `down`) unless everything else is gone.
fn teardown(runner: &Runner, name: &Name, dir: &Path) -> Result<()> {
    let entries = match Journal::read(dir) {
        Ok(entries) => entries,
        Err(_) if !dir.join(Journal::FILE).exists() => Vec::new(),
        Err(err) => {
            return Err(err.context(format!(
                "the state of testbed {name} is damaged; remove what it lists by hand, then {}",
                dir.display()
            )))
        }
    };
    let mut failures: Vec<String> = Vec::new();
    let stops: Vec<Vec<Cmd>> = entries
        .iter()
        .rev()
        .filter_map(|e| match e {
            Entry::Daemon { exe, pidfile, .. } => Some(vec![commands::stop_daemon(pidfile, exe)]),
            _ => None,
        })
        .collect();
    if let Err(err) = runner.each_parallel(&stops, |cmd| runner.cleanup(cmd).map(drop)) {
        failures.push(format!("{err:#}"));
    }
    for entry in entries.iter().rev() {
        let result = match entry {
            Entry::Veth(link) | Entry::Bridge(link) if link_exists(link) => {
                runner.cleanup(&commands::delete_link(link)).map(drop)
            }
            Entry::Netns(ns) if Path::new("/var/run/netns").join(ns).exists() => {
                runner.cleanup(&commands::delete_netns(ns)).map(drop)
            }
            Entry::ForwardRule(bridge) => {
                // -C fails when the rule is not there (never inserted, or already deleted).
                match runner.cleanup(&commands::forward_rule("-C", bridge)) {
                    Ok(_) => runner
                        .cleanup(&commands::forward_rule("-D", bridge))
                        .map(drop),
                    Err(_) => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(err) = result {
            failures.push(format!("{err:#}"));
        }
    }
    for mount in mounts_under(dir) {
        if let Err(err) = runner.cleanup(&commands::unmount(&mount)) {
            failures.push(format!("{err:#}"));
        }
    }
    if !failures.is_empty() {
        bail!(
            "testbed {name} is not fully removed ({}); its state is kept in {}: fix that, then run `cargo xtask testbed down --name {name}` again",
            failures.join("; "),
            dir.display()
        );
    }
    runner.cleanup(&commands::remove_dir(dir))?;
    Ok(())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Mount points under `dir` (an engine killed hard leaves its overlays), deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(1))
        .filter(|point| point.starts_with(&prefix))
        .map(String::from)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts
}

/// The summary `up` and `status` print: per machine its ssh target, engine and edge address;
/// with `alive`, whether each daemon runs.
pub fn describe(layout: &Layout, entries: &[Entry], alive: bool) -> String {
    let state = |role: &str, pidfile: &Path, exe: &str| -> String {
        if !alive {
            return String::new();
        }
        match daemon_pid(pidfile, exe) {
            Some(pid) => format!(" {role}:up({pid})"),
            None => format!(" {role}:DOWN"),
        }
    };
    let edge_port = entries
        .iter()
        .find_map(|e| match e {
            Entry::EdgePort(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(8080);
    let registry_port = entries.iter().find_map(|e| match e {
        Entry::RegistryPort(p) => Some(*p),
        _ => None,
    });
    let manager = entries.iter().find_map(|e| match e {
        Entry::Swarm(m) => Some(m.clone()),
        _ => None,
    });
    let mut text = format!(
        "testbed {}: {} machine(s) on {} (state in {})\n",
        layout.name,
        layout.machines,
        layout.cidr(),
        layout.dir.display()
    );
    for m in layout.all() {
        text.push_str(&format!(
            "  {:<4} ssh {:<16}  DOCKER_HOST={}  edge http://{}:{edge_port}{}{}{}\n",
            m.name,
            m.ssh_target(),
            m.docker_host(),
            m.addr,
            state("engine", &m.pidfile("dockerd"), commands::DOCKERD),
            state("sshd", &m.pidfile("sshd"), commands::SSHD),
            if registry_port.is_some() {
                state("forwarder", &m.pidfile("socat"), commands::SOCAT)
            } else {
                String::new()
            },
        ));
    }
    if let Some(manager) = manager {
        let m = layout.find(&manager).ok();
        text.push_str(&format!(
            "  swarm: manager {manager} ({}:2377), the others joined as workers\n",
            m.map(|m| m.addr.to_string()).unwrap_or_default()
        ));
    }
    if let Some(port) = registry_port {
        text.push_str(&format!(
            "  registry: 127.0.0.1:{port} of this host answers at 127.0.0.1:{port} in every machine (via {}:{port}){}\n",
            layout.gateway(),
            state("forwarder", &layout.socat_pidfile(), commands::SOCAT)
        ));
    }
    let m1 = layout.machine(1);
    let config = layout.ssh_config();
    text.push_str(&format!(
        "ssh config: {config}\n\
         try:\n\
         \x20 ssh -F {config} {target} docker info\n\
         \x20 DOCKER_HOST={docker_host} docker ps\n\
         \x20 cargo xtask deploy --tag TAG --host {target} --dir {deploy} --ssh-config {config}\n\
         \x20   (the machines share this host's files: each has its own deploy dir mK/srv; put the production compose.yaml and .env there first)\n\
         \x20 an edge published on a machine's 127.0.0.1: nsenter --net={netns} curl -s http://127.0.0.1:{edge_port}/health\n\
         remove it: cargo xtask testbed down --name {name}\n",
        config = config.display(),
        target = m1.ssh_target(),
        docker_host = m1.docker_host(),
        deploy = m1.deploy_dir().display(),
        netns = m1.netns_path(),
        name = layout.name,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_in_use_or_claimed_is_skipped() {
        assert_eq!(pick_subnet(&[], "").unwrap(), 1);
        assert_eq!(pick_subnet(&[1, 2], "").unwrap(), 3);
        let in_use = "5: xtb0    inet 10.231.1.1/24 brd 10.231.1.255 scope global xtb0\n10.231.3.0/24 dev x proto kernel";
        assert_eq!(pick_subnet(&[2], in_use).unwrap(), 4);
        // 10.231.12.x is not 10.231.1.x.
        assert_eq!(pick_subnet(&[], "inet 10.231.12.1/24").unwrap(), 1);
        let all: Vec<u8> = (1..=254).collect();
        assert!(pick_subnet(&all, "").is_err());
    }

    #[test]
    fn down_of_an_unknown_name_is_one_line_naming_the_others() {
        let base = tempfile::tempdir().unwrap();
        let runner = Runner::new(false, crate::progress::Verbosity::Quiet);
        let err = down(&runner, base.path(), &Name::parse("nope").unwrap()).unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("no testbed named nope"), "{line}");
        assert!(line.ends_with("there is none"), "{line}");
        assert!(!line.contains('\n'));

        let other = base.path().join("xtb");
        std::fs::create_dir(&other).unwrap();
        Journal::create(&other).unwrap();
        let err = down(&runner, base.path(), &Name::parse("nope").unwrap()).unwrap_err();
        assert!(err.to_string().ends_with("existing: xtb"), "{err}");
        assert!(status(base.path(), Some(&Name::parse("nope").unwrap())).is_err());
    }

    #[test]
    fn up_refuses_zero_machines_before_doing_anything() {
        let base = tempfile::tempdir().unwrap();
        let runner = Runner::new(false, crate::progress::Verbosity::Quiet);
        let opts = UpOptions {
            machines: 0,
            swarm: false,
            registry_port: None,
            edge_port: 8080,
        };
        let err = up(&runner, base.path(), Name::parse("xtb").unwrap(), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--machines 0: a testbed has 1 to 20 machines"
        );
        assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_half_made_testbed_is_removed_and_its_directory_with_it() {
        // Only a journal with files-only entries: teardown removes the directory.
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("half");
        std::fs::create_dir(&dir).unwrap();
        let journal = Journal::create(&dir).unwrap();
        journal.record(&Entry::Subnet(9)).unwrap();
        // A link and a namespace that do not exist (any more) are skipped, not errors.
        journal.record(&Entry::Bridge("nosuchbr0".into())).unwrap();
        journal
            .record(&Entry::Netns("xtask-nosuch-ns".into()))
            .unwrap();
        let runner = Runner::new(false, crate::progress::Verbosity::Quiet);
        down(&runner, base.path(), &Name::parse("half").unwrap()).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn the_summary_names_targets_engines_edges_and_the_deploy_line() {
        let layout = Layout::new(Path::new("/b"), Name::parse("xtb").unwrap(), 7, 2);
        let entries = [
            Entry::Subnet(7),
            Entry::Machines(2),
            Entry::EdgePort(8081),
            Entry::RegistryPort(5000),
            Entry::Swarm("m1".into()),
        ];
        let text = describe(&layout, &entries, false);
        assert!(text.contains("m2   ssh root@10.231.7.12  DOCKER_HOST=unix:///b/xtb/m2/docker.sock  edge http://10.231.7.12:8081\n"), "{text}");
        assert!(text.contains("cargo xtask deploy --tag TAG --host root@10.231.7.11 --dir /b/xtb/m1/srv --ssh-config /b/xtb/ssh_config"));
        assert!(text.contains("swarm: manager m1 (10.231.7.11:2377)"));
        assert!(
            text.contains("127.0.0.1:5000 of this host answers at 127.0.0.1:5000 in every machine")
        );
        assert!(text.contains("cargo xtask testbed down --name xtb"));
    }
}
