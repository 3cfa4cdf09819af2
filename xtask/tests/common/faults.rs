//! Fault injection for end-to-end tests: an xtask running in the background whose stderr is
//! watched line by line (to signal it at a precise step), its child processes, a registry that
//! is stopped and started again on the same port and storage, a registry with password auth,
//! and base images published to the local engine only.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{http_get, wait_until, Registry};

/// `cargo xtask ARGS` started in the background in its own process group (like a job started
/// from a shell), against the scratch clone `root`, with TMPDIR at `tmp`.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    pub fn start(
        root: &Path,
        tmp: &Path,
        registry: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(args)
            .env("XTASK_ROOT", root)
            .env("XTASK_REGISTRY", registry)
            .env("TMPDIR", tmp)
            .env("XTASK_CACHE_DIR", super::cache_dir(root))
            .stdin(Stdio::null())
            // Pushes print progress on stdout; nobody reads it, so it must not fill a pipe.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                let _ = send.send(line);
            }
        });
        Running { child, lines, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line for which `wanted` holds, and returns it; `None` if the process
    /// ended (or `limit` passed) first.
    pub fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Sends `signal` to the xtask process only (as `kill PID` or a service manager does).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Sends `signal` to the whole process group (as Ctrl-C in a terminal does).
    pub fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on the process group our child leads.
        assert_eq!(unsafe { libc::kill(-(self.pid() as i32), signal) }, 0);
    }

    /// Waits for the exit, at most `limit`; kills it (and fails the test) if it hangs.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends at EOF; give it a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("xtask still running after {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written on stderr so far.
    pub fn stderr(&self) -> String {
        let mut text = self.log.lock().unwrap().join("\n");
        text.push('\n');
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The descendants of `pid` (children, grandchildren...) as (pid, command line), from /proc.
pub fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rsplit_once(") ").map(|(_, after)| after) else {
            continue;
        };
        if let Some(ppid) = after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent {
                found.push((child, cmdline(child)));
                frontier.push(child);
            }
        }
    }
    found
}

/// The command line of `pid`, or "" once it is gone.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle` (e.g. a private TMPDIR), as `pid args` lines.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .map(|pid| (pid, cmdline(pid)))
        .filter(|(_, args)| args.contains(needle))
        .map(|(pid, args)| format!("{pid} {args}"))
        .collect()
}

/// Containers (running or not) matching a `docker ps` filter, e.g. `ancestor=IMAGE`.
pub fn containers(filter: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--format",
            "{{.Names}} {{.Image}} {{.Status}}",
            "--filter",
            filter,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Registry {
    /// Stops the registry process; its port and storage stay reserved for [`Registry::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        let dir = self._dir.path();
        self.child = spawn_registry(&dir.join("config.yml"), &dir.join("registry.log"));
        let port = self.port;
        wait_until(Duration::from_secs(20), || http_get(port, "/v2/").is_some());
    }

    /// A registry that wants `docker login` (htpasswd, bcrypt) as `user` / `password`.
    pub fn start_with_password(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect(
                "`htpasswd` must be on PATH (apt-get install apache2-utils, or `bash .ci/setup`)",
            );
        assert!(made.status.success());
        std::fs::write(&htpasswd, made.stdout).unwrap();
        let port = super::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nauth: {{htpasswd: {{realm: xtask-test, path: {}}}}}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let child = spawn_registry(&config, &dir.path().join("registry.log"));
        // Without credentials it answers 401: it is up.
        wait_until(Duration::from_secs(20), || {
            http_get(port, "/v2/").is_some_and(|(status, _)| status == 401)
        });
        Registry {
            port,
            child,
            _dir: dir,
        }
    }
}

fn spawn_registry(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("`docker-registry` must be on PATH (apt-get install docker-registry, or `bash .ci/setup`)")
}

/// Builds the pinned base images into the local engine only, named after `prefix` (fast when
/// Docker's build cache has them already, e.g. from another test).
pub fn publish_base_locally(root: &Path, tmp: &Path, prefix: &str) {
    let out = super::xtask(
        root,
        tmp,
        prefix,
        &[
            "-q",
            "docker-publish",
            "--image",
            "php",
            "--tag",
            "0.4.1",
            "--no-push",
        ],
    );
    assert!(out.status.success(), "docker-publish --no-push failed");
}

/// Removes, on drop, every local image named under `prefix` (a test's private registry).
pub struct ImagesUnder(pub String);

impl Drop for ImagesUnder {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        let Ok(out) = out else { return };
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours: Vec<&str> = listed
            .lines()
            .filter(|image| image.starts_with(self.0.as_str()))
            .collect();
        if !ours.is_empty() {
            let _ = Command::new("docker")
                .args(["image", "rm", "--force"])
                .args(&ours)
                .output();
        }
    }
}
