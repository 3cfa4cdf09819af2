//! `cargo xtask doctor`: checks this machine has what the tasks need, one line per check, and
//! says what to install or run for each one that fails.
//!
//! Required checks (docker client, engine, git and the git checkout) failing make the exit
//! status non-zero; the others print a warning. Marks are `✓ ✗ !` on a terminal, and
//! `ok FAIL warn` when stdout is not a terminal or `NO_COLOR` is set. Everything it runs is
//! read-only; credentials are looked up by registry name only, never printed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::build::platform;
use crate::cmd::{Cmd, Runner};
use crate::ctx::Ctx;
use crate::docker;
use crate::progress::Verbosity;
use crate::project;

/// The result of one check, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Check {
    name: String,
    /// A required check failing makes `doctor` fail; an optional one only warns.
    required: bool,
    /// `Ok(what was found)`, or `Err(what is wrong; what to do)`.
    outcome: Result<String, String>,
}

impl Check {
    fn new(name: impl Into<String>, required: bool, outcome: Result<String, String>) -> Check {
        Check {
            name: name.into(),
            required,
            outcome,
        }
    }
}

const INSTALL_DOCKER: &str =
    "install Docker (https://docs.docker.com/engine/install/; Debian: `sudo apt-get install docker.io`)";
const GB: u64 = 1_000_000_000;

pub fn run(ctx: &Ctx) -> Result<()> {
    let fancy = std::io::stdout().is_terminal() && colors_allowed();
    let mut checks = Vec::new();
    let mut show = |check: Check| {
        // `-q`: only what needs attention.
        if check.outcome.is_err() || ctx.runner.verbosity > Verbosity::Quiet {
            println!("{}", line(&check, fancy));
        }
        checks.push(check);
    };
    let runner = &ctx.runner;
    let client = docker_client(runner);
    let has_client = client.outcome.is_ok();
    show(client);
    let engine = engine(runner, has_client);
    let has_engine = engine.outcome.is_ok();
    show(engine);
    show(buildx(runner, has_client, has_engine));
    show(platforms(
        runner,
        has_client && has_engine,
        &ctx.config.platforms,
    ));
    show(compose(runner, has_client));
    let host = crate::reference::registry_host(&ctx.config.registry);
    show(registry(runner, host));
    show(credentials(host));
    let git = git(runner);
    let has_git = git.outcome.is_ok();
    show(git);
    show(checkout(runner, &ctx.root, has_git));
    show(docker_disk(runner, has_engine));
    show(disk(
        runner,
        "free space in TMPDIR",
        &std::env::temp_dir(),
        GB,
        "build-app stages the app there",
    ));
    let config = &ctx.config;
    let publish = format!(
        "`cargo xtask docker-publish --image php --tag {} --no-push` builds it (`cargo xtask up` does it all)",
        config.base_tag
    );
    for image in [
        config.php_base().to_string(),
        config.php_build().to_string(),
    ] {
        show(local_image(runner, has_engine, &image, &publish));
    }
    let os_fix = "`docker pull` it, or `cargo xtask up` makes it from Debian packages";
    show(local_image(runner, has_engine, &config.os_image, os_fix));
    verdict(&checks)?;
    let warnings = checks.iter().filter(|c| c.outcome.is_err()).count();
    if runner.verbosity > Verbosity::Quiet {
        println!("Required checks passed; {warnings} warning(s).");
    }
    Ok(())
}

/// Errors when a required check failed, naming them; optional failures were warnings.
fn verdict(checks: &[Check]) -> Result<()> {
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.required && c.outcome.is_err())
        .map(|c| c.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} required check(s) failed ({}); fix them as shown above and run `cargo xtask doctor` again",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// `✓ docker client        28.2.2 (/usr/local/bin/docker)`, or `ok   docker client ...`.
fn line(check: &Check, fancy: bool) -> String {
    let (mark, detail) = match (&check.outcome, check.required) {
        (Ok(found), _) => (if fancy { "\x1b[32m✓\x1b[0m" } else { "ok  " }, found),
        (Err(fix), true) => (if fancy { "\x1b[31m✗\x1b[0m" } else { "FAIL" }, fix),
        (Err(fix), false) => (if fancy { "\x1b[33m!\x1b[0m" } else { "warn" }, fix),
    };
    format!("{mark} {:<22} {detail}", check.name)
}

/// `NO_COLOR` (any non-empty value) and `TERM=dumb` turn escape codes off.
fn colors_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

fn docker_client(runner: &Runner) -> Check {
    let outcome = match find_on_path("docker") {
        None => Err(format!("not found on PATH; {INSTALL_DOCKER}")),
        Some(path) => runner
            .query(&Cmd::new("docker").arg("--version"))
            .map(|out| format!("{} ({})", version_word(&out, 2), path.display()))
            .map_err(|err| format!("{} does not run ({err}); {INSTALL_DOCKER}", path.display())),
    };
    Check::new("docker client", true, outcome)
}

fn engine(runner: &Runner, has_client: bool) -> Check {
    let outcome = if has_client {
        docker::check_engine(runner)
            .map(|version| format!("{version}, reachable"))
            .map_err(|err| err.to_string())
    } else {
        Err(format!("needs the docker client; {INSTALL_DOCKER}"))
    };
    Check::new("docker engine", true, outcome)
}

fn buildx(runner: &Runner, has_client: bool, has_engine: bool) -> Check {
    let install = "builds fall back to the classic builder; install the buildx plugin \
                   (https://github.com/docker/buildx#installing, or `sudo bash .ci/setup`)";
    let outcome =
        match has_client.then(|| runner.query(&Cmd::new("docker").args(["buildx", "version"]))) {
            Some(Ok(out)) => {
                let version = version_word(&out, 1);
                let inspect = Cmd::new("docker").args(["buildx", "inspect"]);
                match has_engine
                    .then(|| runner.query(&inspect))
                    .and_then(Result::ok)
                {
                    Some(text) => {
                        let b = platform::parse_buildx_inspect(&text);
                        Ok(format!(
                            "{version} (builder {}, driver {}, platforms {})",
                            b.name,
                            b.driver,
                            b.platforms.join(",")
                        ))
                    }
                    None => Ok(version),
                }
            }
            _ => Err(format!("not installed: {install}")),
        };
    Check::new("buildx plugin", false, outcome)
}

/// The platforms the current buildx builder builds, against those a release wants (the
/// configured list, else amd64 and arm64, which teams deploy to): required only when configured.
fn platforms(runner: &Runner, has_engine: bool, configured: &[String]) -> Check {
    let inspect = Cmd::new("docker").args(["buildx", "inspect"]);
    let builder = has_engine
        .then(|| runner.query(&inspect).ok())
        .flatten()
        .map(|text| platform::parse_buildx_inspect(&text));
    Check::new(
        "platforms",
        !configured.is_empty(),
        platforms_outcome(builder.as_ref(), configured),
    )
}

fn platforms_outcome(
    builder: Option<&platform::BuildxBuilder>,
    configured: &[String],
) -> Result<String, String> {
    let wanted: Vec<String> = if configured.is_empty() {
        vec!["linux/amd64".into(), "linux/arm64".into()]
    } else {
        configured.to_vec()
    };
    let Some(builder) = builder else {
        return Err(format!(
            "no buildx builder: only the engine's own platform; for {} install the buildx plugin and QEMU (`sudo bash .ci/setup`)",
            wanted.join(", ")
        ));
    };
    let can = builder.platforms.join(", ");
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|p| !builder.platforms.contains(p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "builds {can}; for {} install qemu-user-static and register it with binfmt_misc (`sudo bash .ci/setup` does both)",
            missing.join(", ")
        ));
    }
    let how = if builder.driver == "docker" {
        "several at once: one build per platform, lists assembled in the registry"
    } else {
        "several at once: one buildx call"
    };
    Ok(format!("builds {can} ({how})"))
}

fn compose(runner: &Runner, has_client: bool) -> Check {
    let v2 = Cmd::new("docker").args(["compose", "version", "--short"]);
    let plugin = "install the Compose v2 plugin (https://docs.docker.com/compose/install/linux/, or `sudo bash .ci/setup`)";
    let outcome = match has_client.then(|| runner.query(&v2)) {
        Some(Ok(version)) => Ok(format!("v2 {version}")),
        _ if find_on_path("docker-compose").is_some() => Err(format!(
            "only Compose v1 (`docker-compose`) found, and `cargo xtask up` needs v2 (`docker compose`); {plugin}"
        )),
        _ => Err(format!("not installed; `cargo xtask up` needs it: {plugin}")),
    };
    Check::new("compose v2", false, outcome)
}

/// The registry's API root: plain HTTP on loopback (as the engine allows), HTTPS elsewhere.
fn registry_url(host: &str) -> String {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    if name.starts_with("127.") || name == "localhost" {
        format!("http://{host}/v2/")
    } else {
        format!("https://{host}/v2/")
    }
}

/// `curl` prints only the HTTP status (`000` when nothing answered), within 5 seconds.
fn curl_status(url: &str) -> Cmd {
    Cmd::new("curl").args([
        "--disable",
        "--silent",
        "--show-error",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        "--max-time",
        "5",
        url,
    ])
}

fn registry(runner: &Runner, host: &str) -> Check {
    let url = registry_url(host);
    let fix = "check the network (VPN, proxy) or set XTASK_REGISTRY / --registry";
    let outcome = if find_on_path("curl").is_some() {
        match runner.query(&curl_status(&url)) {
            // 401: a registry that wants `docker login`, which is how it should answer.
            Ok(code) if code == "200" || code == "401" => {
                Ok(format!("{url} answers (HTTP {code})"))
            }
            Ok(code) => Err(format!(
                "{url} answers HTTP {code}, not like a registry; {fix}"
            )),
            Err(err) => Err(format!("cannot reach {url}: {}; {fix}", curl_error(&err))),
        }
    } else {
        tcp_connect(host, url.starts_with("https"))
            .map(|addr| format!("{addr} accepts connections (install curl for an HTTP check)"))
            .map_err(|err| format!("cannot connect to {host} ({err}); {fix}"))
    };
    Check::new("registry", false, outcome)
}

fn tcp_connect(host: &str, https: bool) -> Result<String, String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let target = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{}", if https { 443 } else { 80 })
    };
    let addr = target
        .to_socket_addrs()
        .map_err(|err| err.to_string())?
        .next()
        .ok_or("no address")?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|err| err.to_string())?;
    Ok(target)
}

fn credentials(host: &str) -> Check {
    let name = "docker login";
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")));
    let Some(path) = dir.map(|dir| dir.join("config.json")) else {
        return Check::new(name, false, Err("HOME is not set".into()));
    };
    let login = format!(
        "run `docker login {host}` before pushing (not needed for a registry without auth)"
    );
    let outcome = match std::fs::read_to_string(&path) {
        Err(_) => Err(format!("no {}: {login}", path.display())),
        Ok(json) if has_login(&json, host) => {
            Ok(format!("credentials for {host} in {}", path.display()))
        }
        Ok(_) => Err(format!(
            "no credentials for {host} in {}: {login}",
            path.display()
        )),
    };
    Check::new(name, false, outcome)
}

/// Whether `config.json` has an `auths` entry or a `credHelpers` entry for `host`
/// (keys may carry a scheme and a path: `https://host/v1/`). Values are never read.
fn has_login(json: &str, host: &str) -> bool {
    ["auths", "credHelpers"]
        .iter()
        .flat_map(|field| json_object_keys(json, field))
        .any(|key| {
            let key = key
                .strip_prefix("https://")
                .or_else(|| key.strip_prefix("http://"))
                .unwrap_or(&key);
            crate::reference::registry_host(key) == host
        })
}

/// The keys of the JSON object under the first `"field":`, without a JSON parser (config.json
/// is written by docker): strings followed by `:` one level inside that object.
fn json_object_keys(json: &str, field: &str) -> Vec<String> {
    let needle = format!("\"{field}\"");
    let Some(start) = json.find(&needle) else {
        return Vec::new();
    };
    let rest = json[start + needle.len()..].trim_start();
    let Some(rest) = rest.strip_prefix(':').map(str::trim_start) else {
        return Vec::new();
    };
    if !rest.starts_with('{') {
        return Vec::new();
    }
    let (mut keys, mut depth, mut chars) = (Vec::new(), 0, rest.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            '"' => {
                let mut text = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => text.extend(chars.next()),
                        '"' => break,
                        _ => text.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if depth == 1 && chars.peek() == Some(&':') {
                    keys.push(text);
                }
            }
            _ => {}
        }
    }
    keys
}

fn git(runner: &Runner) -> Check {
    let outcome = match find_on_path("git") {
        None => Err("not found on PATH; install git (Debian: `sudo apt-get install git`)".into()),
        Some(path) => runner
            .query(&Cmd::new("git").arg("--version"))
            .map(|out| format!("{} ({})", version_word(&out, 2), path.display()))
            .map_err(|err| format!("{} does not run ({err}); reinstall git", path.display())),
    };
    Check::new("git", true, outcome)
}

fn checkout(runner: &Runner, root: &Path, has_git: bool) -> Check {
    let fix =
        "build-app builds a commit: use a git clone of the project (or set XTASK_ROOT to one)";
    let outcome = if has_git {
        runner
            .query(&project::git(root).args(["rev-parse", "--short", "HEAD"]))
            .map(|head| format!("{} at {head}", root.display()))
            .map_err(|_| {
                format!(
                    "{} is not a git checkout with a commit; {fix}",
                    root.display()
                )
            })
    } else {
        Err(format!("needs git; {fix}"))
    };
    Check::new("git checkout", true, outcome)
}

fn docker_disk(runner: &Runner, has_engine: bool) -> Check {
    let name = "free space for Docker";
    let root = Cmd::new("docker").args(["info", "--format", "{{.DockerRootDir}}"]);
    match has_engine.then(|| runner.query(&root)) {
        Some(Ok(dir)) => disk(
            runner,
            name,
            Path::new(&dir),
            5 * GB,
            "images and build cache live there; `docker system prune` frees some",
        ),
        _ => Check::new(name, false, Err("needs a reachable engine".into())),
    }
}

fn disk(runner: &Runner, name: &str, dir: &Path, want: u64, why: &str) -> Check {
    let df = Cmd::new("df").args(["-Pk", &dir.display().to_string()]);
    let outcome = match runner.query(&df).ok().and_then(|out| df_available(&out)) {
        Some(free) if free >= want => Ok(format!("{} free in {}", gb(free), dir.display())),
        Some(free) => Err(format!(
            "only {} free in {} (want {}): {why}",
            gb(free),
            dir.display(),
            gb(want)
        )),
        None => Err(format!("cannot tell: `df -Pk {}` failed", dir.display())),
    };
    Check::new(name, false, outcome)
}

/// Bytes available, from `df -Pk` (POSIX format: the 4th column of the 2nd line, in KiB).
fn df_available(output: &str) -> Option<u64> {
    let kib: u64 = output
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / GB as f64)
}

fn local_image(runner: &Runner, has_engine: bool, image: &str, fix: &str) -> Check {
    let outcome = match has_engine.then(|| runner.succeeds(&docker::image_exists(image))) {
        Some(Ok(true)) => Ok("is in the local engine".to_string()),
        Some(_) => Err(format!("is not in the local engine: {fix}")),
        None => Err("cannot be checked: needs a reachable engine".into()),
    };
    let outcome = outcome
        .map(|found| format!("{image} {found}"))
        .map_err(|fix| format!("{image} {fix}"));
    Check::new("image", false, outcome)
}

/// The `n`th word of a `--version` line, without a trailing comma:
/// `Docker version 28.2.2, build e6534b4` -> `28.2.2` (n = 2).
fn version_word(line: &str, n: usize) -> String {
    let word = line.split_whitespace().nth(n).unwrap_or(line);
    word.trim_end_matches(',').to_string()
}

/// `... failed (exit code 6): curl: (6) Could not resolve host: x` -> `(6) Could not resolve host: x`.
fn curl_error(err: &anyhow::Error) -> String {
    let text = err.to_string();
    let stderr = text.split_once("): ").map_or(text.as_str(), |(_, s)| s);
    stderr.trim_start_matches("curl: ").trim().to_string()
}

/// Where `program` is on PATH, if it is there and executable.
fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_marks_for_terminals_and_words_for_pipes() {
        let ok = Check::new("git", true, Ok("2.39.5 (/usr/bin/git)".into()));
        let fail = Check::new(
            "docker client",
            true,
            Err("not found on PATH; install Docker".into()),
        );
        let warn = Check::new("buildx plugin", false, Err("not installed".into()));
        assert_eq!(
            line(&ok, false),
            "ok   git                    2.39.5 (/usr/bin/git)"
        );
        assert_eq!(
            line(&fail, false),
            "FAIL docker client          not found on PATH; install Docker"
        );
        assert_eq!(
            line(&warn, false),
            "warn buildx plugin          not installed"
        );
        assert!(line(&ok, true).contains('✓'));
        assert!(line(&fail, true).contains('✗'));
        for plain in [line(&ok, false), line(&fail, false), line(&warn, false)] {
            assert!(!plain.contains('\x1b'), "{plain}");
        }
    }

    #[test]
    fn platforms_say_what_to_install_for_the_missing_ones() {
        let builder = |platforms: &[&str]| platform::BuildxBuilder {
            name: "default".into(),
            driver: "docker".into(),
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
        };
        let err =
            platforms_outcome(Some(&builder(&["linux/amd64", "linux/386"])), &[]).unwrap_err();
        assert!(
            err.starts_with(
                "builds linux/amd64, linux/386; for linux/arm64 install qemu-user-static"
            ),
            "{err}"
        );
        let ok = platforms_outcome(Some(&builder(&["linux/amd64", "linux/arm64"])), &[]).unwrap();
        assert!(ok.contains("one build per platform"), "{ok}");
        let err = platforms_outcome(Some(&builder(&["linux/amd64"])), &["linux/riscv64".into()])
            .unwrap_err();
        assert!(err.contains("for linux/riscv64"), "{err}");
        assert!(platforms_outcome(None, &[])
            .unwrap_err()
            .contains("buildx plugin"));
    }

    #[test]
    fn only_required_failures_fail() {
        let warn = Check::new("buildx plugin", false, Err("missing".into()));
        verdict(std::slice::from_ref(&warn)).unwrap();
        let fail = Check::new("docker engine", true, Err("down".into()));
        let err = verdict(&[warn, fail]).unwrap_err().to_string();
        assert!(
            err.starts_with("1 required check(s) failed (docker engine)"),
            "{err}"
        );
    }

    #[test]
    fn registry_urls_use_http_on_loopback_only() {
        assert_eq!(registry_url("127.0.0.1:5999"), "http://127.0.0.1:5999/v2/");
        assert_eq!(registry_url("localhost:5000"), "http://localhost:5000/v2/");
        assert_eq!(
            registry_url("registry.kiora.tech"),
            "https://registry.kiora.tech/v2/"
        );
        assert_eq!(
            curl_status("http://127.0.0.1:5999/v2/").argv(),
            [
                "curl",
                "--disable",
                "--silent",
                "--show-error",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
                "--max-time",
                "5",
                "http://127.0.0.1:5999/v2/"
            ]
        );
    }

    #[test]
    fn logins_are_found_by_registry_name_only() {
        let config = "{\n\t\"auths\": {\n\t\t\"https://registry.kiora.tech/v1/\": {\n\t\t\t\"auth\": \"c2VjcmV0\"\n\t\t},\n\t\t\"127.0.0.1:5000\": {}\n\t},\n\t\"credHelpers\": {\"ghcr.io\": \"pass\"},\n\t\"x\": \"\\\"auths\\\"\"\n}";
        assert_eq!(
            json_object_keys(config, "auths"),
            ["https://registry.kiora.tech/v1/", "127.0.0.1:5000"]
        );
        assert!(has_login(config, "registry.kiora.tech"));
        assert!(has_login(config, "127.0.0.1:5000"));
        assert!(has_login(config, "ghcr.io"));
        assert!(!has_login(config, "127.0.0.1:5999"));
        assert!(!has_login(config, "c2VjcmV0"));
        assert!(!has_login("{}", "registry.kiora.tech"));
        assert!(!has_login("{\"auths\": {}}", "registry.kiora.tech"));
    }

    #[test]
    fn reads_df_and_version_lines() {
        let df = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                  /dev/vda         264212084 12995100  82290788      14% /var/lib/docker\n";
        assert_eq!(df_available(df), Some(82_290_788 * 1024));
        assert_eq!(df_available("garbage"), None);
        assert_eq!(
            version_word("Docker version 28.2.2, build e6534b4", 2),
            "28.2.2"
        );
        assert_eq!(
            version_word("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3", 1),
            "0.13.1+ds1"
        );
        assert_eq!(version_word("git version 2.39.5", 2), "2.39.5");
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("no-such-program-xyz").is_none());
    }
}
