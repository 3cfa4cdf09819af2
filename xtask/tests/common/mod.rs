//! Real parts for end-to-end tests: the Docker engine, a registry on loopback, a scratch clone
//! of this project that looks like a developer's tree, and the xtask binary itself.
#![allow(dead_code)] // each test file uses its own subset

pub mod edge_probe;
pub mod faults;
pub mod sshd;
pub mod testbed;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use xshell::{cmd, Shell};

/// The pinned tags the e2e files publish: the base images' (`config::DEFAULT_BASE_TAG`, which
/// build-app builds FROM) and the edge's (compose.yaml). Bump them here with the code.
pub const BASE_TAG: &str = "0.6.0";
pub const EDGE_TAG: &str = "0.5.0";
/// The database image of a swarm stack (compose.yaml's crm-gdb_db tag).
pub const DB_TAG: &str = "0.6.0";

/// True when a Docker engine answers. Without one, the test is skipped loudly (see [`skip`]),
/// except under `CI=true`, where a missing engine is a failure.
pub fn engine_available(test: &str) -> bool {
    forget_skips_of_earlier_runs();
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
        skip(
            test,
            "no Docker engine answers `docker info` (run `sudo bash .ci/setup`)",
        );
    }
    ok
}

/// Where skipped tests leave a file each (`TEST`, holding the reason), for `.ci/skipped-summary`
/// to list after `cargo test`: `target/tmp/e2e-skipped/`, or `$XTASK_TEST_SKIPS_DIR` (for
/// tests of this very mechanism, whose skips are not the run's).
pub fn skips_dir() -> PathBuf {
    match std::env::var_os("XTASK_TEST_SKIPS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-skipped"),
    }
}

/// Says that `test` is skipped, and why, where a developer sees it even though the test
/// "passes": written straight to file descriptor 2, which libtest does not capture (it captures
/// only the `print!`/`eprint!` family), so it shows in every `cargo test` run's output; and as a
/// file in [`skips_dir`], for the summary `.ci/skipped-summary` prints after the run.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    forget_skips_of_earlier_runs();
    let line = format!("\n!!!!! SKIPPED {test}: {why} !!!!!\n");
    // std::io::stderr() is the process's fd 2, unbuffered; the capture hooks only the macros.
    let _ = std::io::stderr().write_all(line.as_bytes());
    let dir = skips_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(test), format!("{why}\n"));
}

/// The skips recorded by an earlier `cargo test` run are stale: the first helper call of each
/// test process (all e2e tests start with one) removes them unless they are from the same run.
/// A run is `$XTASK_TEST_RUN` when set (`.ci/test` runs several `cargo test` at once), else the
/// `cargo test` process, the parent of every test binary it starts, one at a time.
pub(crate) fn forget_skips_of_earlier_runs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = skips_dir();
        let run = std::env::var("XTASK_TEST_RUN")
            .unwrap_or_else(|_| std::os::unix::process::parent_id().to_string());
        let marker = dir.join(".run");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(run.as_str()) {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(&marker, &run);
        }
    });
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

impl Registry {
    /// The digest the registry gives the manifest of `kiora/NAME:TAG` (`None`: no such tag).
    pub fn manifest_digest(&self, name: &str, tag: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET /v2/kiora/{name}/manifests/{tag} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let head = text.split("\r\n\r\n").next()?;
        if head.split_whitespace().nth(1)? != "200" {
            return None;
        }
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("docker-content-digest"))
            .map(|(_, v)| v.trim().to_string())
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
    http_request_within(port, request, Duration::from_secs(10))
}

/// Minimal HTTP/1.0 GET of `addr:port`, a test machine's address (10 s limits): (status, body).
pub fn http_get_at(addr: &str, port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at_within(addr, port, path, Duration::from_secs(10))
}

/// [`http_get_at`] with its own limit to connect and for each read.
pub fn http_get_at_within(
    addr: &str,
    port: u16,
    path: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    let ip: std::net::IpAddr = addr.parse().ok()?;
    http_request_at(
        ip,
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
        limit,
    )
}

/// [`http_request`] giving up after `limit` to connect, and after `limit` without a byte of the
/// answer.
fn http_request_within(port: u16, request: &str, limit: Duration) -> Option<(u16, String)> {
    http_request_at([127, 0, 0, 1].into(), port, request, limit)
}

fn http_request_at(
    ip: std::net::IpAddr,
    port: u16,
    request: &str,
    limit: Duration,
) -> Option<(u16, String)> {
    http_request_why(ip, port, request, limit).ok()
}

/// [`http_request_at`] saying why there is no answer: what failed (connect, write, read, an
/// answer that is no HTTP) and the error, e.g. `read: timed out` or `connect: refused`.
pub fn http_request_why(
    ip: std::net::IpAddr,
    port: u16,
    request: &str,
    limit: Duration,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let address = std::net::SocketAddr::from((ip, port));
    let why = |step: &'static str| move |err: std::io::Error| format!("{step}: {:?}", err.kind());
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, limit).map_err(why("connect"))?;
    stream.set_read_timeout(Some(limit)).map_err(why("setup"))?;
    stream
        .set_write_timeout(Some(limit))
        .map_err(why("setup"))?;
    stream.write_all(request.as_bytes()).map_err(why("write"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(why("read"))?;
    let response = String::from_utf8_lossy(&raw);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer ({} bytes)", raw.len()))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The machine's state when a probe saw a failure, for its message: load average and the share
/// of the last 10 s that tasks waited for CPU, I/O and memory (pressure stall information).
pub fn machine_load() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let loadavg = read("/proc/loadavg");
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let mut said = format!("load {}", load.join(" "));
    for what in ["cpu", "io", "memory"] {
        // "some avg10=1.23 avg60=... total=..."
        let text = read(&format!("/proc/pressure/{what}"));
        if let Some(avg10) = text.split_whitespace().find(|w| w.starts_with("avg10=")) {
            said.push_str(&format!(", {what} {}%", &avg10["avg10=".len()..]));
        }
    }
    said
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
pub fn scratch_clone() -> ScratchClone {
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
    ScratchClone { dir }
}

/// A scratch clone; dropping it also removes its dependency cache beside it ([`cache_dir`]).
pub struct ScratchClone {
    dir: tempfile::TempDir,
}

impl ScratchClone {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(cache_dir(self.dir.path()));
    }
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
    xtask_env(root, tmp, registry, &[], args)
}

/// [`xtask`] with more environment variables, e.g. `XDG_STATE_HOME` (where `up` keeps its
/// APP_SECRET) pointing into a temporary directory.
pub fn xtask_env(
    root: &Path,
    tmp: &Path,
    registry: &str,
    env: &[(&str, &Path)],
    args: &[&str],
) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("XTASK_ROOT", root)
        .env("XTASK_REGISTRY", registry)
        .env("TMPDIR", tmp)
        .env("XTASK_CACHE_DIR", cache_dir(root))
        .envs(env.iter().copied())
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

/// [`http_post_json`] to `addr:port`, a test machine's address.
pub fn http_post_json_at(addr: &str, port: u16, path: &str, json: &str) -> Option<(u16, String)> {
    http_request_at(
        addr.parse().ok()?,
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        ),
        Duration::from_secs(10),
    )
}

/// A safety cap on a probe nobody stopped.
const PROBE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A bounded load probe: GETs the `expected` paths in turn, about 20 per second, until stopped
/// (or 30 min). An answer counts only if it is a 200 with the expected body within
/// [`PROBE_TIMEOUT`] (connect and read); anything else is a failure. It records the longest
/// gap between two good answers, from its start to its end: a 9 s stall that ends in a 200 is
/// a 9 s gap.
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<ProbeResult>,
}

#[derive(Debug, Default)]
pub struct ProbeResult {
    pub requests: usize,
    pub failed: usize,
    pub longest_gap: Duration,
    /// The longest a request took, answered or not.
    pub slowest: Duration,
    pub failures: Vec<String>,
}

/// A path the probe asks for and what its body must be.
#[derive(Clone, Debug)]
pub struct Expected {
    pub path: String,
    body: ExpectedBody,
}

#[derive(Clone, Debug)]
enum ExpectedBody {
    /// Contains every one of these.
    Contains(Vec<String>),
    Exactly(String),
}

impl Expected {
    /// The app's page `/`, whole: any release's (the hashed asset names differ).
    pub fn page() -> Expected {
        Expected {
            path: "/".into(),
            body: ExpectedBody::Contains(vec![
                "<title>CRM GDB Consulting</title>".into(),
                "</html>".into(),
            ]),
        }
    }

    /// `/health` saying the app and its storage are fine.
    pub fn health() -> Expected {
        Expected {
            path: "/health".into(),
            body: ExpectedBody::Contains(vec![r#""status":"ok""#.into()]),
        }
    }

    /// `path` with the body it has now (e.g. a hashed asset, which never changes).
    pub fn same_as_now(port: u16, path: &str) -> Expected {
        let (status, body) = http_get(port, path).expect("the path answers before the probe");
        assert_eq!(status, 200, "{path} before the probe: {body}");
        assert!(!body.is_empty(), "{path} has a body");
        Expected {
            path: path.into(),
            body: ExpectedBody::Exactly(body),
        }
    }

    fn accepts(&self, body: &str) -> bool {
        match &self.body {
            ExpectedBody::Contains(needles) => needles.iter().all(|n| body.contains(n.as_str())),
            ExpectedBody::Exactly(text) => body == text,
        }
    }
}

/// How long the probe waits to connect, and for each read of an answer: a request unanswered
/// for longer failed. [`edge_probe::PATIENCE`]: past nginx's own 60 s, so a hang in the stack
/// ends as its own answer (a 504 naming the hop).
const PROBE_TIMEOUT: Duration = edge_probe::PATIENCE;

impl Probe {
    pub fn start(port: u16, expected: Vec<Expected>) -> Probe {
        Probe::start_at([127, 0, 0, 1].into(), port, expected)
    }

    /// [`Probe::start`] on `ip:port`, e.g. a test machine's address.
    pub fn start_at(ip: std::net::IpAddr, port: u16, expected: Vec<Expected>) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut result, start) = (ProbeResult::default(), Instant::now());
            let mut last_ok = start;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < PROBE_LIMIT {
                let wanted = &expected[result.requests % expected.len()];
                result.requests += 1;
                let sent = Instant::now();
                let answer = http_request_why(
                    ip,
                    port,
                    &format!("GET {} HTTP/1.0\r\nHost: {ip}\r\n\r\n", wanted.path),
                    PROBE_TIMEOUT,
                );
                result.slowest = result.slowest.max(sent.elapsed());
                match answer {
                    Ok((200, body)) if wanted.accepts(&body) => {
                        result.longest_gap = result.longest_gap.max(last_ok.elapsed());
                        last_ok = Instant::now();
                    }
                    other => {
                        result.failed += 1;
                        let said = match other {
                            Err(why) => format!("no answer within {PROBE_TIMEOUT:?} ({why})"),
                            Ok((status, body)) => {
                                let start: String = body.chars().take(80).collect();
                                format!("{status} {start:?}")
                            }
                        };
                        result.failures.push(format!(
                            "{} at {:.1?} (took {:.1?}): {said} [{}]",
                            wanted.path,
                            sent.duration_since(start),
                            sent.elapsed(),
                            machine_load()
                        ));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // Until the end: a probe whose last good answer came long ago saw a gap too.
            result.longest_gap = result.longest_gap.max(last_ok.elapsed());
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
        let labels = ["blue", "green", "edge", "db"]
            .map(|color| format!("com.docker.compose.project={stack}-{color}"));
        for label in labels
            .iter()
            .chain([&format!("org.kiora.crm.throwaway={stack}")])
        {
            let ids = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("label={label}")])
                .output()
                .unwrap();
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
        for volume in ["data", "assets", "edge-conf", "db"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{stack}_{volume}")])
                .output();
        }
        // Each Compose project also made a `PROJECT_default` network: Docker has only ~30
        // address pools, so leftovers make later tests fail to create networks.
        for network in [
            "_edge",
            "_db",
            "-blue_default",
            "-green_default",
            "-edge_default",
            "-db_default",
        ] {
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("{stack}{network}")])
                .output();
        }
    }
}
