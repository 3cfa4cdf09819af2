//! The commands and files that make and unmake a testbed, built by pure functions from a
//! [`Layout`] (unit tests assert them). Nothing here runs anything.
//!
//! Daemons are started with `start-stop-daemon --background --make-pidfile` (dpkg, on every
//! Debian): it returns at once and leaves the daemon's pid in a file of ours, so the one
//! [`Runner`](crate::cmd::Runner) can start them and `down` can stop them by that pid,
//! checking the pid still runs the same program. Engines and sshds enter their machine's
//! namespace with `nsenter --net=` (not `ip netns exec`, which remounts /sys and breaks dockerd).

use std::net::Ipv4Addr;
use std::path::Path;

use crate::cmd::Cmd;

use super::layout::{Layout, Machine};

pub const NSENTER: &str = "/usr/bin/nsenter";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const SSHD: &str = "/usr/sbin/sshd";
pub const SOCAT: &str = "/usr/bin/socat";
pub const START_STOP_DAEMON: &str = "/usr/sbin/start-stop-daemon";
/// The veth's end inside each machine.
pub const MACHINE_IF: &str = "eth0";

fn ip(args: &[&str]) -> Cmd {
    Cmd::new("ip").args(args.iter().copied())
}

/// The bridge with the host's address on it, up.
pub fn bridge(layout: &Layout) -> Vec<Cmd> {
    let br = layout.bridge();
    let gateway = format!("{}/24", layout.gateway());
    vec![
        ip(&["link", "add", &br, "type", "bridge"]),
        ip(&["addr", "add", &gateway, "dev", &br]),
        ip(&["link", "set", &br, "up"]),
    ]
}

/// Docker sets FORWARD's policy to DROP (and loads br_netfilter, so bridged frames pass
/// iptables): machine-to-machine traffic on the bridge needs this rule. `op` is `-I`, `-C` or `-D`.
pub fn forward_rule(op: &str, bridge: &str) -> Cmd {
    Cmd::new("iptables").args([
        "-w", "10", op, "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
    ])
}

pub fn netns_add(machine: &Machine) -> Cmd {
    ip(&["netns", "add", &machine.netns])
}

/// The veth pair, its peer created directly in the machine's namespace, the host end on the bridge.
pub fn veth(layout: &Layout, machine: &Machine) -> Vec<Cmd> {
    vec![
        ip(&[
            "link",
            "add",
            &machine.veth,
            "type",
            "veth",
            "peer",
            "name",
            MACHINE_IF,
            "netns",
            &machine.netns,
        ]),
        ip(&[
            "link",
            "set",
            &machine.veth,
            "master",
            &layout.bridge(),
            "up",
        ]),
    ]
}

/// Inside the machine: its address, loopback, and the default route via the host.
pub fn machine_network(layout: &Layout, machine: &Machine) -> Vec<Cmd> {
    let ns = machine.netns.as_str();
    let addr = format!("{}/24", machine.addr);
    let gateway = layout.gateway().to_string();
    vec![
        ip(&["-n", ns, "addr", "add", &addr, "dev", MACHINE_IF]),
        ip(&["-n", ns, "link", "set", MACHINE_IF, "up"]),
        ip(&["-n", ns, "link", "set", "lo", "up"]),
        ip(&["-n", ns, "route", "add", "default", "via", &gateway]),
    ]
}

/// Starts `program args` in the background (in `netns` when given), its pid in `pidfile`, its
/// output in `log`.
pub fn start_daemon(
    pidfile: &Path,
    log: &Path,
    netns: Option<&str>,
    program: &str,
    args: &[String],
) -> Cmd {
    let cmd = Cmd::new(START_STOP_DAEMON).args([
        "--start",
        "--background",
        "--make-pidfile",
        "--pidfile",
        &pidfile.display().to_string(),
        "--output",
        &log.display().to_string(),
    ]);
    match netns {
        Some(ns) => cmd
            .args([
                "--exec",
                NSENTER,
                "--",
                &format!("--net=/var/run/netns/{ns}"),
            ])
            .arg(program)
            .args(args.iter().cloned()),
        None => cmd
            .args(["--exec", program, "--"])
            .args(args.iter().cloned()),
    }
}

/// Stops the process of `pidfile` if it still runs `exe`: SIGTERM, up to 20 s, then SIGKILL.
/// Succeeds when there is nothing to stop.
pub fn stop_daemon(pidfile: &Path, exe: &str) -> Cmd {
    Cmd::new(START_STOP_DAEMON).args([
        "--stop",
        "--oknodo",
        "--retry",
        "TERM/20/KILL/5",
        "--remove-pidfile",
        "--pidfile",
        &pidfile.display().to_string(),
        "--exec",
        exe,
    ])
}

/// The machine's own engine: own data root, exec root, pid file and socket.
pub fn dockerd_args(machine: &Machine) -> Vec<String> {
    let d = &machine.dir;
    vec![
        "--data-root".into(),
        d.join("data").display().to_string(),
        "--exec-root".into(),
        d.join("exec").display().to_string(),
        // dockerd's own pid file; not start-stop-daemon's, which dockerd would find "running".
        "--pidfile".into(),
        d.join("engine.pid").display().to_string(),
        "--host".into(),
        machine.docker_host(),
        // Its own settings (see `engine_config`), not the host engine's /etc/docker/daemon.json.
        "--config-file".into(),
        machine.engine_config().display().to_string(),
    ]
}

/// The engine's daemon.json. The engine ID comes from a key, /etc/docker/key.json by default:
/// shared here, so every engine would have the host's ID; 20.10 reads another path from here.
pub fn engine_config(machine: &Machine) -> String {
    format!(
        "{{\"deprecated-key-path\": \"{}\"}}\n",
        machine.dir.join("key.json").display()
    )
}

pub fn start_dockerd(machine: &Machine) -> Cmd {
    start_daemon(
        &machine.pidfile("dockerd"),
        &machine.log("dockerd"),
        Some(&machine.netns),
        DOCKERD,
        &dockerd_args(machine),
    )
}

pub fn start_sshd(machine: &Machine) -> Cmd {
    let args = ["-D", "-e", "-f"].map(String::from).to_vec();
    let mut args = args;
    args.push(machine.sshd_config().display().to_string());
    start_daemon(
        &machine.pidfile("sshd"),
        &machine.log("sshd"),
        Some(&machine.netns),
        SSHD,
        &args,
    )
}

/// On the host: the registry on 127.0.0.1:PORT, offered on the bridge address.
pub fn start_host_forwarder(layout: &Layout, port: u16) -> Cmd {
    let args = vec![
        format!("TCP-LISTEN:{port},bind={},fork,reuseaddr", layout.gateway()),
        format!("TCP:127.0.0.1:{port}"),
    ];
    start_daemon(
        &layout.socat_pidfile(),
        &layout.socat_log(),
        None,
        SOCAT,
        &args,
    )
}

/// In a machine: its own 127.0.0.1:PORT leads to the host's forwarder, so images named
/// `127.0.0.1:PORT/...` pull there as they do here (and count as an insecure-allowed registry).
pub fn start_machine_forwarder(layout: &Layout, machine: &Machine, port: u16) -> Cmd {
    let args = vec![
        format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
        format!("TCP:{}:{port}", layout.gateway()),
    ];
    start_daemon(
        &machine.pidfile("socat"),
        &machine.log("socat"),
        Some(&machine.netns),
        SOCAT,
        &args,
    )
}

pub fn keygen(path: &Path, comment: &str) -> Cmd {
    Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path.display().to_string())
}

/// The machine's sshd: its address only, root by key only, and every session's `docker`
/// talking to this machine's engine (the file system is shared with the host).
pub fn sshd_config(layout: &Layout, machine: &Machine) -> String {
    format!(
        "ListenAddress {addr}:22\n\
         HostKey {host_key}\n\
         AuthorizedKeysFile {keys}\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         AllowUsers root\n\
         # The files live under /tmp, whose permissions StrictModes would refuse.\n\
         StrictModes no\n\
         UsePAM no\n\
         PrintMotd no\n\
         # start-stop-daemon keeps the pid file.\n\
         PidFile none\n\
         # SHLVL: the machines share this host's home, and Debian's bash, started by sshd,\n\
         # reads root's ~/.bashrc before each command (this host's ran `pyenv init`: 0.26 s a\n\
         # command). A server's own is its business; a nested bash (SHLVL 1) skips this one.\n\
         # One SetEnv line: sshd keeps only the first.\n\
         SetEnv DOCKER_HOST={docker_host} SHLVL=1\n\
         Subsystem sftp internal-sftp\n\
         LogLevel VERBOSE\n",
        addr = machine.addr,
        host_key = machine.host_key().display(),
        keys = layout.authorized_keys().display(),
        docker_host = machine.docker_host(),
    )
}

/// `ssh -F` configuration for every machine (by address or by `mK`): the testbed's key, its
/// known_hosts, host keys strictly checked, no prompts.
pub fn ssh_config(layout: &Layout) -> String {
    let mut text = format!(
        "# testbed {}: ssh -F {}\n",
        layout.name,
        layout.ssh_config().display()
    );
    for machine in layout.all() {
        text.push_str(&format!(
            "Host {addr} {name}\n\
             \x20 HostName {addr}\n\
             \x20 User root\n\
             \x20 IdentityFile {key}\n\
             \x20 IdentitiesOnly yes\n\
             \x20 UserKnownHostsFile {known}\n\
             \x20 GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n\
             \x20 UpdateHostKeys no\n\
             \x20 BatchMode yes\n\
             \x20 ConnectTimeout 10\n\
             \x20 LogLevel ERROR\n",
            addr = machine.addr,
            name = machine.name,
            key = layout.client_key().display(),
            known = layout.known_hosts().display(),
        ));
    }
    text
}

/// A known_hosts line per machine: its address and its host public key (`TYPE BASE64 ...`).
pub fn known_hosts(keys: &[(Ipv4Addr, String)]) -> String {
    keys.iter()
        .map(|(addr, public)| {
            let mut words = public.split_whitespace();
            let kind = words.next().unwrap_or_default();
            let key = words.next().unwrap_or_default();
            format!("{addr} {kind} {key}\n")
        })
        .collect()
}

fn docker(machine: &Machine) -> Cmd {
    Cmd::new("docker").env("DOCKER_HOST", machine.docker_host())
}

/// The testbed swarm's heartbeat period (swarm's default: 5s).
pub const SWARM_HEARTBEAT: &str = "3s";

pub fn swarm_init(manager: &Machine) -> Cmd {
    let addr = manager.addr.to_string();
    docker(manager)
        .args(["swarm", "init", "--advertise-addr", &addr, "--listen-addr"])
        .arg(format!("{addr}:2377"))
        // A node is marked down after 3 missed heartbeats: ~9 s instead of the default 5 s
        // period's ~15 s, so a lost node's replicas are started elsewhere sooner.
        .args(["--dispatcher-heartbeat", SWARM_HEARTBEAT])
}

pub fn swarm_worker_token(manager: &Machine) -> Cmd {
    docker(manager).args(["swarm", "join-token", "--quiet", "worker"])
}

pub fn swarm_join(worker: &Machine, manager: &Machine, token: &str) -> Cmd {
    docker(worker)
        .args(["swarm", "join", "--token", token, "--advertise-addr"])
        .arg(worker.addr.to_string())
        .arg(format!("{}:2377", manager.addr))
}

pub fn delete_link(name: &str) -> Cmd {
    ip(&["link", "delete", name])
}

pub fn delete_netns(name: &str) -> Cmd {
    ip(&["netns", "delete", name])
}

/// Detaches a mount a killed engine left under the testbed's directory.
pub fn unmount(path: &str) -> Cmd {
    Cmd::new("umount").args(["--lazy", path])
}

/// Removes the testbed's directory, never crossing into another file system (a mount missed above).
pub fn remove_dir(dir: &Path) -> Cmd {
    Cmd::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::layout::Name;
    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::new("/b"), Name::parse("xtb").unwrap(), 7, 2)
    }

    #[test]
    fn network_commands() {
        let l = layout();
        let m = l.machine(2);
        let argvs =
            |cmds: Vec<Cmd>| -> Vec<String> { cmds.iter().map(|c| c.argv().join(" ")).collect() };
        assert_eq!(
            argvs(bridge(&l)),
            [
                "ip link add xtb-br type bridge",
                "ip addr add 10.231.7.1/24 dev xtb-br",
                "ip link set xtb-br up"
            ]
        );
        assert_eq!(
            forward_rule("-I", "xtb-br").argv(),
            [
                "iptables", "-w", "10", "-I", "FORWARD", "-i", "xtb-br", "-o", "xtb-br", "-j",
                "ACCEPT"
            ]
        );
        assert_eq!(netns_add(&m).argv(), ["ip", "netns", "add", "xtb-m2"]);
        assert_eq!(
            argvs(veth(&l, &m)),
            [
                "ip link add xtb-m2h type veth peer name eth0 netns xtb-m2",
                "ip link set xtb-m2h master xtb-br up"
            ]
        );
        assert_eq!(
            argvs(machine_network(&l, &m)),
            [
                "ip -n xtb-m2 addr add 10.231.7.12/24 dev eth0",
                "ip -n xtb-m2 link set eth0 up",
                "ip -n xtb-m2 link set lo up",
                "ip -n xtb-m2 route add default via 10.231.7.1"
            ]
        );
        assert_eq!(
            delete_link("xtb-br").argv(),
            ["ip", "link", "delete", "xtb-br"]
        );
        assert_eq!(
            delete_netns("xtb-m2").argv(),
            ["ip", "netns", "delete", "xtb-m2"]
        );
    }

    #[test]
    fn the_engine_runs_in_its_namespace_with_its_own_roots() {
        let m = layout().machine(1);
        assert_eq!(
            start_dockerd(&m).argv(),
            [
                START_STOP_DAEMON,
                "--start",
                "--background",
                "--make-pidfile",
                "--pidfile",
                "/b/xtb/m1/dockerd.pid",
                "--output",
                "/b/xtb/m1/dockerd.log",
                "--exec",
                NSENTER,
                "--",
                "--net=/var/run/netns/xtb-m1",
                DOCKERD,
                "--data-root",
                "/b/xtb/m1/data",
                "--exec-root",
                "/b/xtb/m1/exec",
                "--pidfile",
                "/b/xtb/m1/engine.pid",
                "--host",
                "unix:///b/xtb/m1/docker.sock",
                "--config-file",
                "/b/xtb/m1/daemon.json",
            ]
        );
        assert_eq!(
            engine_config(&m),
            "{\"deprecated-key-path\": \"/b/xtb/m1/key.json\"}\n"
        );
        assert_eq!(
            stop_daemon(&m.pidfile("dockerd"), DOCKERD).argv(),
            [
                START_STOP_DAEMON,
                "--stop",
                "--oknodo",
                "--retry",
                "TERM/20/KILL/5",
                "--remove-pidfile",
                "--pidfile",
                "/b/xtb/m1/dockerd.pid",
                "--exec",
                DOCKERD
            ]
        );
    }

    #[test]
    fn sshd_and_forwarders() {
        let l = layout();
        let m = l.machine(1);
        let sshd = start_sshd(&m);
        assert_eq!(
            sshd.argv()[8..],
            [
                "--exec",
                NSENTER,
                "--",
                "--net=/var/run/netns/xtb-m1",
                SSHD,
                "-D",
                "-e",
                "-f",
                "/b/xtb/m1/sshd_config"
            ]
        );
        let host = start_host_forwarder(&l, 5000);
        assert_eq!(
            host.argv()[1..],
            [
                "--start",
                "--background",
                "--make-pidfile",
                "--pidfile",
                "/b/xtb/socat.pid",
                "--output",
                "/b/xtb/socat.log",
                "--exec",
                SOCAT,
                "--",
                "TCP-LISTEN:5000,bind=10.231.7.1,fork,reuseaddr",
                "TCP:127.0.0.1:5000"
            ]
        );
        let inside = start_machine_forwarder(&l, &m, 5000);
        assert_eq!(
            inside.argv()[8..],
            [
                "--exec",
                NSENTER,
                "--",
                "--net=/var/run/netns/xtb-m1",
                SOCAT,
                "TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr",
                "TCP:10.231.7.1:5000"
            ]
        );
    }

    #[test]
    fn ssh_files_check_host_keys_and_point_sessions_at_the_machine_engine() {
        let l = layout();
        let m = l.machine(2);
        let sshd = sshd_config(&l, &m);
        assert!(sshd.contains("ListenAddress 10.231.7.12:22\n"));
        assert!(sshd.contains("SetEnv DOCKER_HOST=unix:///b/xtb/m2/docker.sock SHLVL=1\n"));
        assert!(sshd.contains("PasswordAuthentication no\n"));
        assert!(sshd.contains("AuthorizedKeysFile /b/xtb/authorized_keys\n"));
        let client = ssh_config(&l);
        assert!(client.contains("Host 10.231.7.11 m1\n"));
        assert!(client.contains("Host 10.231.7.12 m2\n"));
        assert!(client.contains("  StrictHostKeyChecking yes\n"));
        assert!(client.contains("  UserKnownHostsFile /b/xtb/known_hosts\n"));
        assert!(!client.to_lowercase().contains("stricthostkeychecking no"));
        assert_eq!(
            known_hosts(&[(m.addr, "ssh-ed25519 AAAAC3 xtask-testbed xtb m2\n".into())]),
            "10.231.7.12 ssh-ed25519 AAAAC3\n"
        );
        assert_eq!(
            keygen(Path::new("/b/xtb/client_key"), "xtb").argv(),
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "xtb",
                "-f",
                "/b/xtb/client_key"
            ]
        );
    }

    #[test]
    fn swarm_commands_go_to_each_machine_engine() {
        let l = layout();
        let (m1, m2) = (l.machine(1), l.machine(2));
        let init = swarm_init(&m1);
        assert_eq!(
            init.argv(),
            [
                "docker",
                "swarm",
                "init",
                "--advertise-addr",
                "10.231.7.11",
                "--listen-addr",
                "10.231.7.11:2377",
                "--dispatcher-heartbeat",
                "3s"
            ]
        );
        assert_eq!(
            init.env,
            [(
                "DOCKER_HOST".to_string(),
                "unix:///b/xtb/m1/docker.sock".to_string()
            )]
        );
        let join = swarm_join(&m2, &m1, "SWMTKN-1-x");
        assert_eq!(
            join.argv(),
            [
                "docker",
                "swarm",
                "join",
                "--token",
                "SWMTKN-1-x",
                "--advertise-addr",
                "10.231.7.12",
                "10.231.7.11:2377"
            ]
        );
        assert_eq!(join.env[0].1, "unix:///b/xtb/m2/docker.sock");
        assert_eq!(
            swarm_worker_token(&m1).argv(),
            ["docker", "swarm", "join-token", "--quiet", "worker"]
        );
    }

    #[test]
    fn cleanup_never_leaves_its_file_system() {
        assert_eq!(
            remove_dir(Path::new("/b/xtb")).argv(),
            ["rm", "-rf", "--one-file-system", "/b/xtb"]
        );
        assert_eq!(
            unmount("/b/xtb/m1/data/overlay2/x/merged").argv()[..2],
            ["umount", "--lazy"]
        );
    }
}
