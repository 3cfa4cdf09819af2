//! A real OpenSSH server on loopback, for end-to-end tests of remote deploys: its own host key,
//! its own configuration (the system's /etc/ssh/sshd_config is not read), key-only login for the
//! current user through an authorized_keys file kept in a temporary directory, stopped on drop.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/setup` installs the server (Debian package `openssh-server`).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long `Sshd::start` waits for the server to greet on its port.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// True when `/usr/sbin/sshd` exists. Without it, the test is skipped loudly, except under
/// `CI=true`, where a missing server is a failure.
pub fn available(test: &str) -> bool {
    super::forget_skips_of_earlier_runs();
    let ok = Path::new(SSHD).is_file();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no {SSHD}, and CI=true: run `bash .ci/setup` first (installs openssh-server)"
        );
        super::skip(
            test,
            &format!("no {SSHD} (run `sudo bash .ci/setup`, which installs openssh-server)"),
        );
    }
    ok
}

/// `sshd -D` on `127.0.0.1:port`. Everything it uses lives in `dir`: `host_key`, `client_key`,
/// `authorized_keys`, `sshd_config`, `sshd.pid`, `sshd.log`, `known_hosts`, `known_hosts_empty`,
/// `ssh_config`, `ssh_config_unknown_host`.
pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    user: String,
    child: Child,
}

impl Sshd {
    /// Starts the server and waits (at most 10 s) until it sends its SSH banner. Panics with a
    /// clear message when `/usr/sbin/sshd` is missing or the server does not come up; whether
    /// to skip is the caller's decision (see [`available`]).
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: install openssh-server (`sudo bash .ci/setup`)"
        );
        // The privilege separation directory; sshd refuses to start without it.
        if !Path::new("/run/sshd").is_dir() {
            let _ = std::fs::create_dir_all("/run/sshd");
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions("/run/sshd", std::fs::Permissions::from_mode(0o755));
        }
        let user = current_user();
        let dir = tempfile::Builder::new()
            .prefix("sshd-fixture.")
            .tempdir()
            .unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "AddressFamily inet\n\
                 AuthorizedKeysFile \"{keys}\"\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 AllowUsers {user}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PrintMotd no\n\
                 PidFile \"{pid}\"\n\
                 # Not this host's ~/.bashrc before each command (bash run by sshd reads it,\n\
                 # unless nested): as on a server, not a developer's shell set-up.\n\
                 SetEnv SHLVL=1\n\
                 LogLevel VERBOSE\n\
                 Subsystem sftp internal-sftp\n",
                keys = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )
        .unwrap();

        // The port is free when asked, but another process may take it before sshd binds it:
        // then sshd exits at once, and a new port is tried.
        let mut attempt = 1;
        loop {
            let port = super::free_port();
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-E")
                .arg(d.join("sshd.log"))
                .arg("-f")
                .arg(d.join("sshd_config"))
                .arg("-h")
                .arg(d.join("host_key"))
                .arg("-p")
                .arg(port.to_string())
                .args(["-o", "ListenAddress=127.0.0.1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {SSHD}: {e}"));
            if let Err(why) = wait_ready(&mut child, port) {
                stop(&mut child);
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                if attempt < 3 && log.contains("Address already in use") {
                    attempt += 1;
                    let _ = std::fs::remove_file(d.join("sshd.log"));
                    continue;
                }
                panic!(
                    "sshd on 127.0.0.1:{port} did not come up: {why}\n--- {}/sshd.log ---\n{log}",
                    d.display()
                );
            }
            // Owned from here on: a panic below still stops the server.
            let sshd = Sshd {
                port,
                dir,
                user,
                child,
            };
            sshd.write_client_files();
            return sshd;
        }
    }

    /// An `ssh -F` configuration for `127.0.0.1`: this server's port, the current user, the
    /// authorized client key, and a known_hosts file holding this server's host key (strictly
    /// checked; batch mode, no prompts).
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The same configuration but with an empty known_hosts file: the host key is unknown, so
    /// `ssh` must refuse to connect ("Host key verification failed", exit 255).
    pub fn client_config_unknown_host(&self) -> PathBuf {
        self.dir.path().join("ssh_config_unknown_host")
    }

    /// The listening server's pid: each connection is served by a child of it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `USER@127.0.0.1:PORT`, e.g. `root@127.0.0.1:40123`.
    pub fn host_spec(&self) -> String {
        format!("{}@127.0.0.1:{}", self.user, self.port)
    }

    fn write_client_files(&self) {
        let d = self.dir.path();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (fields.next().unwrap(), fields.next().unwrap());
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{} {kind} {key}\n", self.port),
        )
        .unwrap();
        std::fs::write(d.join("known_hosts_empty"), "").unwrap();
        for (config, known_hosts) in [
            ("ssh_config", "known_hosts"),
            ("ssh_config_unknown_host", "known_hosts_empty"),
        ] {
            std::fs::write(
                d.join(config),
                format!(
                    "Host 127.0.0.1\n\
                     \x20 HostName 127.0.0.1\n\
                     \x20 Port {port}\n\
                     \x20 User {user}\n\
                     \x20 IdentityFile \"{identity}\"\n\
                     \x20 IdentitiesOnly yes\n\
                     \x20 UserKnownHostsFile \"{known}\"\n\
                     \x20 GlobalKnownHostsFile /dev/null\n\
                     \x20 StrictHostKeyChecking yes\n\
                     \x20 UpdateHostKeys no\n\
                     \x20 BatchMode yes\n\
                     \x20 ConnectTimeout 10\n\
                     \x20 LogLevel ERROR\n",
                    port = self.port,
                    user = self.user,
                    identity = d.join("client_key").display(),
                    known = d.join(known_hosts).display(),
                ),
            )
            .unwrap();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Waits until the port greets with an SSH banner; Err if sshd exits or time runs out.
fn wait_ready(child: &mut Child, port: u16) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited: {status}"));
        }
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut banner = [0u8; 8];
            if stream.read_exact(&mut banner).is_ok() && banner.starts_with(b"SSH-2.0-") {
                return Ok(());
            }
        }
        if start.elapsed() > READY_LIMIT {
            return Err(format!("no SSH banner after {READY_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM to the process we started (by its pid, and only while it has not been reaped), then
/// SIGKILL if it lingers; always reaped.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // First let the per-connection sshd processes finish, so that the listener reaps them: once
    // it is gone they would be left to PID 1, which in some containers never reaps them.
    let start = Instant::now();
    while has_children(child.id()) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on our own child's pid, which has not been reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// True while some process has `pid` as its parent (from /proc/*/stat).
fn has_children(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
            == Some(pid)
    })
}

/// The login name of the current user (`id -un`).
fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("cannot run `id -un`");
    assert!(out.status.success(), "`id -un` failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A fresh passphrase-less ed25519 key pair at `path` and `path.pub`.
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "sshd-fixture", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run ssh-keygen (package openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
