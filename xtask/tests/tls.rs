//! End to end on a real engine, registry and sshd: HTTPS at the edge with a certificate from a CA
//! the test makes (openssl). A probe over TLS, verifying against that CA, sees no failed request
//! across a deploy and a certificate swap (the renewed files replaced by a rename, then
//! `tls reload`); the served certificate is then the new one. Plain HTTP gets a redirect, HTTPS
//! answers carry HSTS; `status` shows the expiry, and warns for a certificate expiring in 5 days;
//! a key of another certificate is refused and the edge keeps serving; the key is in no image.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn https_at_the_edge_across_a_deploy_and_a_certificate_swap() {
    let test = "https_at_the_edge_across_a_deploy_and_a_certificate_swap";
    if !engine_available(test) || !sshd::available(test) || !openssl_available(test) {
        return;
    }
    let registry = Registry::start();
    let prefix = registry.prefix();
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let stack = format!("tls{}", std::process::id());
    // Dropped in reverse: the stack's containers go first, then the images they held.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let _cleanup = RemoveStack(stack.clone());
    let ok = |args: &[&str]| {
        assert!(
            xtask(root, tmp.path(), &prefix, args).status.success(),
            "{args:?} failed"
        )
    };
    // Kept in the engine, not pushed: the target (over ssh, on this machine) uses the same
    // engine, so the deploy finds them there, and the test saves minutes of pushes.
    ok(&[
        "docker-publish",
        "--image",
        "php",
        "--tag",
        BASE_TAG,
        "--no-push",
    ]);
    ok(&[
        "docker-publish",
        "--image",
        "edge",
        "--tag",
        EDGE_TAG,
        "--no-push",
    ]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&[
        "docker-publish",
        "--image",
        "db",
        "--tag",
        DB_TAG,
        "--no-push",
    ]);
    ok(&["build-app", "--tag", "1.0.0-a", "--no-push"]);
    // Same inputs: a new tag of the same images, no build. Enough for a real switch.
    ok(&["build-app", "--tag", "1.0.0-b", "--no-push"]);

    // The CA, and a first certificate (90 days) for 127.0.0.1, on the "target" (this machine).
    let pki = tempfile::tempdir().unwrap();
    let pki = pki.path();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(pki.join("ca.key")),
        "-out",
        &s(pki.join("ca.pem")),
        "-days",
        "30",
        "-subj",
        "/CN=xtask e2e CA",
    ]);
    let tls_dir = pki.join("live");
    std::fs::create_dir(&tls_dir).unwrap();
    let (cert, key) = (tls_dir.join("fullchain.pem"), tls_dir.join("privkey.pem"));
    issue(pki, "first", 90);
    std::fs::rename(pki.join("first.pem"), &cert).unwrap();
    std::fs::rename(pki.join("first.key"), &key).unwrap();

    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_str().unwrap().to_string();
    let (http, https) = (free_port(), free_port());
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", &prefix);
    std::fs::write(target.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(
        target.path().join(".env"),
        format!("APP_SECRET=e2e-secret\nHTTP_PORT={http}\nHTTPS_PORT={https}\n"),
    )
    .unwrap();
    let sshd = sshd::Sshd::start();
    let ssh_config = sshd.client_config();
    let host = sshd.host_spec();
    let (cert_s, key_s) = (s(&cert), s(&key));
    let over_ssh = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--host",
            &host,
            "--ssh-config",
            ssh_config.to_str().unwrap(),
            "--dir",
            &dir,
            "--stack",
            &stack,
        ]);
        xtask(root, tmp.path(), &prefix, &all)
    };
    let with_tls = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--tls-cert", &cert_s, "--tls-key", &key_s]);
        over_ssh(&all)
    };
    let ca = pki.join("ca.pem");

    // First deploy with TLS: HTTPS answers (verified against the test CA), with HSTS.
    assert!(with_tls(&["deploy", "--tag", "1.0.0-a"]).status.success());
    let head = curl(&ca, &["-D", "-", "-o", "/dev/null"], https, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "HSTS on HTTPS: {head}"
    );
    // Plain HTTP: a redirect to the same path over HTTPS, no HSTS there; the health checks still
    // answer (deploys verify through them).
    let plain = plain_head(http, "/contacts?x=1");
    assert!(plain.starts_with("HTTP/1.1 301"), "{plain}");
    assert!(
        plain.contains(&format!("Location: https://127.0.0.1:{https}/contacts?x=1")),
        "{plain}"
    );
    assert!(
        !plain.to_ascii_lowercase().contains("strict-transport"),
        "{plain}"
    );
    assert_eq!(http_get(http, "/health").unwrap().0, 200);
    let out = over_ssh(&["status"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        said.contains("tls:      on, certificate (CN = localhost) expires ")
            && said.contains("(in 89 days)"),
        "{said}"
    );

    // Under a probe over TLS: a deploy, then a renewed certificate (5 days left) swapped in the
    // way certbot does it (new files renamed over the old), then `tls reload`.
    let probe = TlsProbe::start(ca.clone(), https);
    let out = with_tls(&["deploy", "--tag", "1.0.0-b"]);
    assert!(out.status.success());
    issue(pki, "second", 5);
    std::fs::rename(pki.join("second.pem"), &cert).unwrap();
    std::fs::rename(pki.join("second.key"), &key).unwrap();
    let reload = with_tls(&["-v", "tls", "reload"]);
    assert!(reload.status.success());
    // Some answers after the swap too.
    std::thread::sleep(Duration::from_secs(1));
    let load = probe.stop();
    assert_eq!(load.failed, 0, "HTTPS requests failed: {:?}", load.failures);
    assert!(load.requests > 20, "the probe ran: {load:?}");
    eprintln!(
        "TLS probe: {} requests, 0 failed, slowest {:.1?}",
        load.requests, load.slowest
    );
    assert_eq!(
        served_certificate(https),
        first_pem(&std::fs::read_to_string(&cert).unwrap()),
        "the edge serves the renewed certificate once `tls reload` returned"
    );
    let out = over_ssh(&["status"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("tls:      WARNING: the certificate (CN = localhost) expires ")
            && said.contains("in 4 day(s); renew it, then `cargo xtask tls reload`"),
        "{said}"
    );

    // A key that does not belong to the certificate: refused, the edge serves as before.
    let out = over_ssh(&[
        "tls",
        "reload",
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &s(pki.join("ca.key")),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the edge refused the certificate"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        served_certificate(https),
        first_pem(&std::fs::read_to_string(&cert).unwrap())
    );
    assert!(
        curl(
            &ca,
            &["-o", "/dev/null", "-w", "%{http_code}"],
            https,
            "/health"
        ) == "200"
    );

    // The key never enters an image, nor xtask's output (even with -v); the edge runs the image
    // as published (nothing committed on top).
    let key_line = key_body_line(&std::fs::read_to_string(&key).unwrap());
    for output in [&reload.stdout, &reload.stderr] {
        assert!(!String::from_utf8_lossy(output).contains(&key_line));
    }
    let edge_image = format!("{prefix}/crm-gdb_edge:{EDGE_TAG}");
    let saved = Command::new("docker")
        .args(["save", &edge_image])
        .output()
        .unwrap();
    assert!(saved.status.success() && saved.stdout.len() > 1_000_000);
    assert!(
        !contains(&saved.stdout, key_line.as_bytes()),
        "the key is in the edge image"
    );
    let running = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={stack}-edge"),
        "--format",
        "{{.Image}}",
    ]);
    assert_eq!(running.trim(), edge_image);

    // Off: plain HTTP serves again, no redirect.
    assert!(over_ssh(&["tls", "off"]).status.success());
    assert!(plain_head(http, "/").starts_with("HTTP/1.1 200"));
    let said = String::from_utf8_lossy(&over_ssh(&["status"]).stdout).into_owned();
    assert!(said.contains("tls:      off (plain HTTP only)"), "{said}");
}

fn s(path: impl AsRef<Path>) -> String {
    path.as_ref().to_str().unwrap().to_string()
}

/// openssl is what makes the test's CA; without it the test is skipped, except under CI=true.
fn openssl_available(test: &str) -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: no openssl, and CI=true: run `bash .ci/setup` first"
        );
        skip(
            test,
            "no openssl (run `sudo bash .ci/setup`, which installs it)",
        );
    }
    ok
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `NAME.pem` and `NAME.key` in `pki`: a server certificate for 127.0.0.1 and localhost, signed
/// by the test CA, valid `days` days (a new key and serial each time).
fn issue(pki: &Path, name: &str, days: u32) {
    let key = pki.join(format!("{name}.key"));
    openssl(&[
        "req",
        "-x509",
        "-CA",
        &s(pki.join("ca.pem")),
        "-CAkey",
        &s(pki.join("ca.key")),
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&key),
        "-out",
        &s(pki.join(format!("{name}.pem"))),
        "-days",
        &days.to_string(),
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `curl` over HTTPS to 127.0.0.1, verifying against `ca` (2 s limit): its stdout.
fn curl(ca: &Path, args: &[&str], port: u16, path: &str) -> String {
    let out = curl_within(ca, Duration::from_secs(2), args, port, path);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`curl`] with a limit of `limit`: its whole output (status and stderr included).
fn curl_within(
    ca: &Path,
    limit: Duration,
    args: &[&str],
    port: u16,
    path: &str,
) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", &limit.as_secs().to_string()])
        .args(["--cacert", &s(ca)])
        .args(args)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .unwrap()
}

/// The status line and headers of a plain HTTP GET.
fn plain_head(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The certificate the edge serves (PEM), as a TLS client sees it.
fn served_certificate(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    first_pem(&String::from_utf8_lossy(&out.stdout))
}

fn first_pem(text: &str) -> String {
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .expect("a certificate");
    let end = text[start..].find("-----END CERTIFICATE-----").unwrap() + start;
    text[start..end].to_string()
}

/// A full base64 line of the key's body: what would show up wherever the key was copied.
fn key_body_line(pem: &str) -> String {
    pem.lines()
        .find(|l| !l.starts_with("-----") && l.len() >= 40)
        .expect("a PEM body line")
        .to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bounded load probe over HTTPS: `curl` verifying against the test CA, `/` and `/health` in
/// turn about every 50 ms, until stopped (or 10 min). An answer counts only if it is a 200 with
/// the page's or health's body; a request waits as long as the other probes do
/// (`edge_probe::PATIENCE`, past nginx's own 60 s), so a slow answer on a loaded CI machine is
/// slow, not failed. A failure says curl's own error and the machine's load.
struct TlsProbe {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Load>,
}

#[derive(Debug, Default)]
struct Load {
    requests: usize,
    failed: usize,
    failures: Vec<String>,
    /// The longest a request took, answered or not.
    slowest: Duration,
}

impl TlsProbe {
    fn start(ca: PathBuf, port: u16) -> TlsProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut load, start) = (Load::default(), Instant::now());
            let wanted = [
                ("/", "<title>CRM GDB Consulting</title>"),
                ("/health", "\"status\":\"ok\""),
            ];
            while !flag.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(600) {
                let (path, needle) = wanted[load.requests % wanted.len()];
                load.requests += 1;
                let sent = Instant::now();
                let out = curl_within(
                    &ca,
                    edge_probe::PATIENCE,
                    &["-w", "\n%{http_code}"],
                    port,
                    path,
                );
                load.slowest = load.slowest.max(sent.elapsed());
                let body = String::from_utf8_lossy(&out.stdout);
                if !(body.ends_with("\n200") && body.contains(needle)) {
                    load.failed += 1;
                    let (page, status) = body.rsplit_once('\n').unwrap_or(("", &body));
                    let tail = &page[page.floor_char_boundary(page.len().saturating_sub(80))..];
                    load.failures.push(format!(
                        "{path} at {:.1}s (took {:.1?}): HTTP {status} {tail:?}, curl {}: {} [{}]",
                        sent.duration_since(start).as_secs_f64(),
                        sent.elapsed(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim(),
                        machine_load()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            load
        });
        TlsProbe { stop, handle }
    }

    fn stop(self) -> Load {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}
