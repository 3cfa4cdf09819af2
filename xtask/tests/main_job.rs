//! The README's main job, `cargo xtask up`, on a real engine: with no registry and no published
//! base images it builds what is missing, keeps it local and shows the app running, its contact
//! form working (an APP_SECRET made on the first run, kept outside the tree and the images, reused
//! by the next run). A taken port is refused before anything starts, and a failure once the stack
//! is starting leaves no container behind.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::*;

const PROJECT: &str = "crm-gdb-e2e-up";
const REGISTRY: &str = "registry.kiora.tech/kiora";

/// The tests of this file build and tag the same local images (release `dev`): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `cargo xtask ARGS` with the user's state directory (where `up` keeps APP_SECRET) in `state`.
fn run(root: &Path, tmp: &Path, state: &Path, args: &[&str]) -> Output {
    xtask_env(root, tmp, REGISTRY, &[("XDG_STATE_HOME", state)], args)
}

#[test]
fn up_runs_the_app_with_only_a_docker_engine() {
    if !engine_available("up_runs_the_app_with_only_a_docker_engine") {
        return;
    }
    let _serial = serial();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let _down = Down::new(root, PROJECT);
    let before = snapshot(root);

    let up = ["up", "--port", &port.to_string(), "--project-name", PROJECT];
    let out = run(root, tmp.path(), state.path(), &up);
    assert!(out.status.success(), "cargo xtask up failed");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("running at http://127.0.0.1:{port}/")),
        "{said}"
    );

    let (status, body) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, page) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    let css = page
        .split("\"/build/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page names a hashed asset");
    let (status, _) = http_get(port, &format!("/build/{css}")).unwrap();
    assert_eq!(status, 200, "hashed asset {css} not served");
    // php, worker and nginx take compose.yaml's deploy.restart_policy (which Compose prefers to
    // `restart`): unless-stopped, as Compose needs.
    let policies = restart_policies(PROJECT);
    assert!(
        policies.len() >= 3 && policies.iter().all(|p| p.ends_with(" unless-stopped")),
        "{policies:?}"
    );

    // The secret: made on this first run, private, outside the tree and the images.
    let env_file = state.path().join("xtask").join(PROJECT).join(".env");
    let secret = app_secret(&env_file);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{} is not private", env_file.display());
    }
    assert!(snapshot(root) == before, "up changed the developer's tree");
    assert!(is_empty_dir(tmp.path()), "up left files in TMPDIR");
    let images = [
        "crm-gdb_php:dev",
        "crm-gdb_php:dev-supervisor",
        "crm-gdb_nginx:dev",
    ]
    .map(|image| format!("{REGISTRY}/{image}"));
    assert!(
        !docker_save_contains(&images, secret.as_bytes()),
        "APP_SECRET is in an image"
    );

    // The form works: GET the page and its CSRF token, POST a contact, see it listed.
    let (status, head, page) = request(port, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(!page.contains("Adding contacts is disabled"), "{page}");
    let nonce = header(&head, "set-cookie")
        .and_then(|cookie| cookie.strip_prefix("crm_csrf="))
        .and_then(|rest| rest.split(';').next())
        .expect("the page sets the CSRF cookie")
        .to_string();
    let token = form_token(&page);
    let form =
        format!("_token={token}&name=Ada+Lovelace&email=ada%40example.com&company=Analytical");
    let (status, head, body) = request(
        port,
        &format!(
            "POST /contacts HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: crm_csrf={nonce}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 303, "the form was not accepted: {body}");
    assert_eq!(header(&head, "location"), Some("/?added=1"));
    let (_, _, page) = request(port, &get_with_cookie("/?added=1", &nonce));
    assert!(page.contains("Contact added."), "{page}");
    assert!(
        page.contains("ada@example.com") && page.contains("Ada Lovelace"),
        "{page}"
    );

    // A second run reuses the secret: same file, and the running app signs the same nonce with
    // the same token. `-v` echoes every command: the secret is on none of them.
    let again: Vec<&str> = std::iter::once("-v").chain(up).collect();
    let out = run(root, tmp.path(), state.path(), &again);
    assert!(out.status.success(), "second cargo xtask up failed");
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(text).contains(&secret),
            "the secret was printed"
        );
    }
    assert_eq!(
        app_secret(&env_file),
        secret,
        "the second up made a new secret"
    );
    let (_, _, page) = request(port, &get_with_cookie("/", &nonce));
    assert_eq!(form_token(&page), token, "the app runs with another secret");
    assert!(page.contains("ada@example.com"), "the contact is gone");
    assert!(snapshot(root) == before, "up changed the developer's tree");

    let out = run(
        root,
        tmp.path(),
        state.path(),
        &["down", "--volumes", "--project-name", PROJECT],
    );
    assert!(out.status.success());
    assert_eq!(
        project_containers(PROJECT),
        "",
        "containers left after down"
    );
}

#[test]
fn up_refuses_a_taken_port_before_starting_anything() {
    if !engine_available("up_refuses_a_taken_port_before_starting_anything") {
        return;
    }
    const BUSY: &str = "crm-gdb-e2e-up-busy";
    let clone = scratch_clone();
    let root = clone.path();
    let (tmp, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _down = Down::new(root, BUSY);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let out = run(
        root,
        tmp.path(),
        state.path(),
        &["up", "--port", &port, "--project-name", BUSY],
    );
    assert!(!out.status.success(), "up started on a taken port");
    let said = stderr(&out);
    assert_eq!(said.trim().lines().count(), 1, "not one line:\n{said}");
    assert!(said.contains(&port) && said.contains("--port"), "{said}");
    assert_eq!(project_containers(BUSY), "", "up created containers");
    assert!(
        is_empty_dir(state.path()),
        "up wrote a secret before refusing"
    );
}

#[test]
fn a_failed_up_leaves_no_container_running() {
    if !engine_available("a_failed_up_leaves_no_container_running") {
        return;
    }
    const BROKEN: &str = "crm-gdb-e2e-up-broken";
    let _serial = serial();
    let clone = scratch_clone();
    let root = clone.path();
    let (tmp, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _down = Down::new(root, BROKEN);
    // A real failure after every container started: the edge's live.conf (a volume kept across
    // runs, rewritten by deploys) names a release that does not exist, so /health never answers
    // through the edge, while each container is healthy.
    let seeded = Command::new("docker")
        .args(["run", "--rm", "--volume"])
        .arg(format!("{BROKEN}_edge-conf:/conf"))
        .args([
            "debian:bookworm-slim",
            "bash",
            "-c",
            "printf 'set $crm_live \"no-such-release:80\";\\n' > /conf/live.conf",
        ])
        .status()
        .unwrap();
    assert!(seeded.success(), "cannot seed the edge's live.conf volume");

    let port = free_port().to_string();
    let out = run(
        root,
        tmp.path(),
        state.path(),
        &["up", "--port", &port, "--project-name", BROKEN],
    );
    assert!(!out.status.success(), "up succeeded with a broken edge");
    assert!(stderr(&out).contains("/health"), "{}", stderr(&out));
    assert_eq!(
        project_containers(BROKEN),
        "",
        "a failed up left containers"
    );
}

/// The APP_SECRET line of `up`'s env file.
/// "NAME POLICY" of each running container of the Compose project.
fn restart_policies(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let ids = Command::new("docker")
        .args(["ps", "-q", "--filter", &label])
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Vec::new();
    }
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.Name}} {{.HostConfig.RestartPolicy.Name}}",
        ])
        .args(&ids)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn app_secret(env_file: &Path) -> String {
    let text = std::fs::read_to_string(env_file)
        .unwrap_or_else(|e| panic!("no env file {}: {e}", env_file.display()));
    let secret = text
        .lines()
        .find_map(|line| line.strip_prefix("APP_SECRET="))
        .expect("APP_SECRET in the env file")
        .to_string();
    assert!(secret.len() >= 32, "a short secret: {secret:?}");
    secret
}

/// True when `needle` is anywhere in `docker save IMAGES` (layers are plain tar archives).
fn docker_save_contains(images: &[String], needle: &[u8]) -> bool {
    let mut child = Command::new("docker")
        .arg("save")
        .args(images)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut window, mut chunk, mut total) = (Vec::new(), vec![0u8; 1 << 20], 0);
    let mut found = false;
    loop {
        let n = stdout.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        window.extend_from_slice(&chunk[..n]);
        found |= window.windows(needle.len()).any(|w| w == needle);
        // Keep the tail: a match may straddle two reads.
        window.drain(..window.len().saturating_sub(needle.len() - 1));
    }
    assert!(child.wait().unwrap().success(), "docker save failed");
    assert!(total > 1 << 20, "docker save wrote only {total} bytes");
    found
}

/// One HTTP/1.0 request on loopback: (status, head, body).
fn request(port: u16, raw: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {response}"));
    (status, head.to_string(), body.to_string())
}

fn get_with_cookie(path: &str, nonce: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nCookie: crm_csrf={nonce}\r\n\r\n")
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The form's CSRF token (hex, so nothing to unescape).
fn form_token(page: &str) -> String {
    page.split("name=\"_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the page:\n{page}"))
        .to_string()
}

/// The ids of `project`'s containers, running or not.
fn project_containers(project: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the project's containers, volumes and network even when an assertion failed.
struct Down(PathBuf, &'static str);

impl Down {
    fn new(root: &Path, project: &'static str) -> Down {
        Down(root.to_path_buf(), project)
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        let (root, project) = (&self.0, self.1);
        let _ = Command::new("docker")
            .args(["compose", "--project-name", project, "--project-directory"])
            .arg(root)
            .args(["--profile", "edge", "down", "--volumes", "--remove-orphans"])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", "--force"])
            .args(["data", "assets", "edge-conf", "db"].map(|v| format!("{project}_{v}")))
            .output();
        for network in ["edge", "db"] {
            let _ = Command::new("docker")
                .args(["network", "rm", &format!("{project}_{network}")])
                .output();
        }
    }
}
