//! Host keys are checked on every ssh call, whatever the ssh config says: against a real sshd on
//! loopback, configs with `StrictHostKeyChecking no` or `accept-new` (which let plain `ssh` in,
//! the control) do not let `cargo xtask` connect to an unknown or a changed host key, and
//! nothing gets written to their known_hosts files. And a task's commands for a server share
//! one connection, which is gone, with its socket, when the task ends.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::sshd::{self, Sshd};
use common::*;

/// `config` (the fixture's config for an unknown host) with `StrictHostKeyChecking` set to
/// `policy` and its own known_hosts file holding `known`.
fn lax_config(server: &Sshd, name: &str, policy: &str, known: &str) -> (PathBuf, PathBuf) {
    let d = server.dir.path();
    let known_hosts = d.join(format!("known_hosts_{name}"));
    std::fs::write(&known_hosts, known).unwrap();
    let base = std::fs::read_to_string(server.client_config_unknown_host()).unwrap();
    let empty = d.join("known_hosts_empty").display().to_string();
    assert!(base.contains("StrictHostKeyChecking yes") && base.contains(&empty));
    let text = base
        .replace(
            "StrictHostKeyChecking yes",
            &format!("StrictHostKeyChecking {policy}"),
        )
        .replace(&empty, &known_hosts.display().to_string());
    let config = d.join(format!("ssh_config_{name}"));
    std::fs::write(&config, text).unwrap();
    (config, known_hosts)
}

fn plain_ssh(config: &Path, port: u16) -> std::process::Output {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-p", &port.to_string(), "127.0.0.1", "--", "echo", "in"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_lax_ssh_config_does_not_weaken_host_key_checks() {
    if !sshd::available("a_lax_ssh_config_does_not_weaken_host_key_checks") {
        return;
    }
    let server = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = server.dir.path();
    // A known_hosts entry for this server with another key: a changed host key.
    let other_key = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
    let mut fields = other_key.split_whitespace();
    let changed = format!(
        "[127.0.0.1]:{} {} {}\n",
        server.port,
        fields.next().unwrap(),
        fields.next().unwrap()
    );
    for (name, policy, known) in [
        ("no", "no", ""),
        ("accept_new", "accept-new", ""),
        ("changed_no", "no", changed.as_str()),
    ] {
        let (config, known_hosts) = lax_config(&server, name, policy, known);
        let out = xtask(
            root.path(),
            tmp.path(),
            "127.0.0.1:5000/kiora",
            &[
                "status",
                "--host",
                &server.host_spec(),
                "--ssh-config",
                config.to_str().unwrap(),
                "--dir",
                "/nonexistent",
            ],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("unknown or changed host key for 127.0.0.1: refusing to connect"),
            "{name}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&known_hosts).unwrap(),
            known,
            "{name}: ssh changed known_hosts"
        );

        // The control: the same config lets plain ssh in (and it records the key).
        let control = plain_ssh(&config, server.port);
        assert!(
            control.status.success(),
            "{name}: plain ssh did not get in, so this case tests nothing: {}",
            String::from_utf8_lossy(&control.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&control.stdout), "in\n");
    }
}

#[test]
fn a_task_shares_one_connection_per_server_and_leaves_none() {
    let test = "a_task_shares_one_connection_per_server_and_leaves_none";
    if !sshd::available(test) {
        return;
    }
    let server = Sshd::start();
    let root = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The sockets go to $XDG_RUNTIME_DIR/xtask-ssh: here, a directory of this test's own.
    let runtime = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    std::fs::write(target.path().join("compose.yaml"), "services: {}\n").unwrap();
    let log = server.dir.path().join("sshd.log");
    let logins = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    };
    let before = logins();
    let out = xtask_env(
        root.path(),
        tmp.path(),
        "127.0.0.1:5000/kiora",
        &[("XDG_RUNTIME_DIR", runtime.path())],
        &[
            "-v",
            "lock",
            "status",
            "--host",
            &server.host_spec(),
            "--ssh-config",
            server.client_config().to_str().unwrap(),
            "--dir",
            target.path().to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let commands = err.lines().filter(|l| l.starts_with("$ ssh -o")).count();
    let connections = logins() - before;
    assert!(
        commands >= 2,
        "the task ran {commands} commands on the server, too few to share: {err}"
    );
    assert_eq!(connections, 1, "{commands} commands: {err}");
    let sockets = runtime.path().join("xtask-ssh");
    assert_eq!(
        std::fs::read_dir(&sockets).unwrap().count(),
        0,
        "a socket is left in {}",
        sockets.display()
    );
    let left = faults::processes_mentioning(&runtime.path().display().to_string());
    assert!(left.is_empty(), "still running: {left:?}");
}
