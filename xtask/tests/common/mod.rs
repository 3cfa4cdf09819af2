//! Real parts for end-to-end tests: the Docker engine, a registry on loopback, a scratch clone
//! of this project that looks like a developer's tree, and the xtask binary itself.
#![allow(dead_code)] // each test file uses its own subset

pub mod faults;
pub mod sshd;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xshell::{cmd, Shell};

/// True when a Docker engine answers. Without one, the test is skipped loudly, except under
/// `CI=true`, where a missing engine is a failure.
pub fn engine_available(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no Docker engine, and CI=true: run `bash .ci/setup` first"
        );
        eprintln!("\n!!!!! SKIPPED {test}: no Docker engine answers `docker info` (run `sudo bash .ci/setup`) !!!!!\n");
    }
    ok
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real registry (distribution's `docker-registry serve`) on a free loopback port, stopped on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("`docker-registry` must be on PATH (apt-get install docker-registry, or `bash .ci/setup`)");
        let registry = Registry {
            port,
            child,
            _dir: dir,
        };
        wait_until(Duration::from_secs(20), || {
            http_get(port, "/v2/").is_some_and(|(status, _)| status == 200)
        });
        registry
    }

    /// `127.0.0.1:PORT/kiora`, the value for `--registry`.
    pub fn prefix(&self) -> String {
        format!("127.0.0.1:{}/kiora", self.port)
    }

    /// The tags of `kiora/NAME`, from the registry's HTTP API.
    pub fn tags(&self, name: &str) -> Vec<String> {
        let Some((200, body)) = http_get(self.port, &format!("/v2/kiora/{name}/tags/list")) else {
            return Vec::new();
        };
        // {"name":"kiora/x","tags":["1.4.0","1.4.0-supervisor"]}
        let Some(list) = body.split("\"tags\":[").nth(1) else {
            return Vec::new();
        };
        let mut tags: Vec<String> = list
            .split(']')
            .next()
            .unwrap()
            .split(',')
            .map(|t| t.trim().trim_matches('"').to_string())
            .filter(|t| !t.is_empty())
            .collect();
        tags.sort();
        tags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"),
    )
}

/// Sends a raw HTTP/1.0 request on loopback: (status, body).
fn http_request(port: u16, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The project as committed plus the working tree's untracked, not ignored files, copied into a
/// fresh git repository with one commit: what a developer's checkout looks like.
pub fn scratch_clone() -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let sh = Shell::new().unwrap();
    let listed = cmd!(
        sh,
        "git -C {source} ls-files -z --cached --others --exclude-standard"
    )
    .read()
    .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("xtask-e2e-clone.")
        .tempdir()
        .unwrap();
    for relative in listed.split('\0').filter(|p| !p.is_empty()) {
        let from = source.join(relative);
        if !from.exists() {
            continue;
        }
        let to = dir.path().join(relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let root = dir.path();
    cmd!(sh, "git -C {root} init -q -b main").run().unwrap();
    cmd!(sh, "git -C {root} add -A").run().unwrap();
    cmd!(
        sh,
        "git -C {root} -c user.name=dev -c user.email=dev@example.com commit -q -m initial"
    )
    .run()
    .unwrap();
    dir
}

/// Every file, directory and symlink under `root` with its content: compare two to prove a tree
/// was not touched.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(relative, b"<dir>".to_vec());
                walk(root, &path, out);
            } else if meta.file_type().is_symlink() {
                out.insert(
                    relative,
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec(),
                );
            } else {
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs `cargo xtask ARGS` (the built binary) against the scratch clone `root`, with a private
/// TMPDIR so the test can see that no staging directory is left behind.
pub fn xtask(root: &Path, tmp: &Path, registry: &str, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_ROOT", root)
        .env("XTASK_REGISTRY", registry)
        .env("TMPDIR", tmp)
        .env("XTASK_CACHE_DIR", cache_dir(root))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "--- cargo xtask {} -> {}\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The dependency cache of the scratch clone `root`: its own, beside it (not in TMPDIR, which
/// the tests check is left empty), so each test sees its own composer and npm runs.
pub fn cache_dir(root: &Path) -> PathBuf {
    PathBuf::from(format!("{}.xtask-cache", root.display()))
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

/// HTTP/1.0 POST of a JSON body on loopback: (status, body).
pub fn http_post_json(port: u16, path: &str, json: &str) -> Option<(u16, String)> {
    http_request(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
    )
}

/// A safety cap on a probe nobody stopped.
const PROBE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A bounded load probe: GETs `paths` in turn, about 20 per second, until stopped (or 30 min).
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<ProbeResult>,
}

#[derive(Debug, Default)]
pub struct ProbeResult {
    pub requests: usize,
    pub failed: usize,
    pub longest_gap: Duration,
    pub failures: Vec<String>,
}

impl Probe {
    pub fn start(port: u16, paths: Vec<String>) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut result, start) = (ProbeResult::default(), Instant::now());
            let mut last_ok = Instant::now();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < PROBE_LIMIT {
                let path = &paths[result.requests % paths.len()];
                result.requests += 1;
                match http_get(port, path) {
                    Some((200, _)) => {
                        result.longest_gap = result.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    other => {
                        result.failed += 1;
                        result
                            .failures
                            .push(format!("{path}: {:?}", other.map(|(s, _)| s)));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            result
        });
        Probe { stop, handle }
    }

    pub fn stop(self) -> ProbeResult {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// Removes every project, volume and network of the test's stack.
pub struct RemoveStack(pub String);

impl Drop for RemoveStack {
    fn drop(&mut self) {
        let stack = &self.0;
        for color in ["blue", "green", "edge"] {
            let project = format!("{stack}-{color}");
            let ids = Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=com.docker.compose.project={project}"),
                ])
                .output()
                .unwrap();
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        for volume in ["data", "assets", "edge-conf"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{stack}_{volume}")])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &format!("{stack}_edge")])
            .output();
    }
}
