//! The loopback sshd fixture works: key login with a known host key runs a command, and an
//! unknown host key is refused.
mod common;

use std::process::{Command, Output, Stdio};

use common::sshd::{self, Sshd};

fn ssh(config: &std::path::Path, port: u16) -> Output {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-p", &port.to_string(), "127.0.0.1", "--", "echo", "hello"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ssh")
}

#[test]
fn sshd_fixture_accepts_known_host_and_refuses_unknown() {
    if !sshd::available("sshd_fixture_accepts_known_host_and_refuses_unknown") {
        return;
    }
    let server = Sshd::start();
    assert!(server
        .host_spec()
        .ends_with(&format!("@127.0.0.1:{}", server.port)));

    let ok = ssh(&server.client_config(), server.port);
    assert!(
        ok.status.success(),
        "ssh failed: {:?}\n{}\n--- sshd.log ---\n{}",
        ok.status,
        String::from_utf8_lossy(&ok.stderr),
        std::fs::read_to_string(server.dir.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "hello\n");

    let refused = ssh(&server.client_config_unknown_host(), server.port);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(255), "stderr: {stderr}");
    assert!(
        stderr.contains("Host key verification failed"),
        "stderr: {stderr}"
    );
}
