//! linux/amd64 and linux/arm64 under one tag, end to end on this machine's default `docker`
//! buildx driver with QEMU (`.ci/setup` registers it): `docker-publish` and `build-app` with
//! both platforms, each tag checked through the registry's own API (manifest list, then each
//! entry's config), the arm64 images run under emulation, a second build-app reusing both
//! platforms, and an interrupted build that publishes nothing. One fixture for all: the base
//! images are built once per run (BuildKit's cache keeps the arm64 layers for later runs).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::faults::{ImagesUnder, Running};
use common::*;

const PLATFORMS: &str = "linux/amd64,linux/arm64";
const TAG: &str = "3.1.0";

#[test]
fn amd64_and_arm64_under_one_tag() {
    if !engine_available("amd64_and_arm64_under_one_tag") {
        return;
    }
    let buildx = std::process::Command::new("docker")
        .args(["buildx", "inspect"])
        .output()
        .unwrap();
    let platforms = String::from_utf8_lossy(&buildx.stdout);
    if !platforms.contains("linux/arm64") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no linux/arm64 builder under CI=true: `bash .ci/setup` registers QEMU"
        );
        skip(
            "amd64_and_arm64_under_one_tag",
            "buildx lists no linux/arm64 (run `sudo bash .ci/setup`)",
        );
        return;
    }
    let registry = Registry::start();
    let prefix = registry.prefix();
    let _images = ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let report = std::cell::RefCell::new(Vec::new());
    let timed = |what: &str, args: &[&str]| {
        let started = Instant::now();
        let out = xtask(root, tmp, &prefix, args);
        report
            .borrow_mut()
            .push(format!("{what}: {:.1?}", started.elapsed()));
        assert!(out.status.success(), "{what} failed:\n{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out)
    };

    let log = timed(
        "docker-publish php, 2 platforms",
        &[
            "docker-publish",
            "--image",
            "php",
            "--tag",
            BASE_TAG,
            "--platform",
            PLATFORMS,
        ],
    );
    assert!(
        log.contains("one build per platform"),
        "says which path runs:\n{log}"
    );
    for name in ["crm-gdb_php_base", "crm-gdb_php_build"] {
        assert_both_platforms(registry.port, name, BASE_TAG);
    }

    // The default list from the environment, as CI sets it: no --platform.
    let started = Instant::now();
    let out = xtask_env(
        root,
        tmp,
        &prefix,
        &[("XTASK_PLATFORMS", Path::new(PLATFORMS))],
        &["-v", "build-app", "--tag", TAG],
    );
    report
        .borrow_mut()
        .push(format!("build-app, 2 platforms: {:.1?}", started.elapsed()));
    assert!(out.status.success(), "{}", stderr(&out));
    let log = String::from_utf8_lossy(&out.stdout).into_owned() + &stderr(&out);
    assert_eq!(
        runs_of(&log, "composer install"),
        1,
        "composer once for both platforms:\n{log}"
    );
    assert_eq!(
        runs_of(&log, " npm ci"),
        1,
        "npm once for both platforms:\n{log}"
    );
    for (name, tag) in release(TAG) {
        assert_both_platforms(registry.port, name, &tag);
    }
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    assert!(compose.contains(&format!("crm-gdb_php:{TAG}")), "{compose}");

    // The arm64 entry of the list, pulled by its digest (the local tag stays amd64), runs here.
    let list = get(
        registry.port,
        &format!("/v2/kiora/crm-gdb_php/manifests/{TAG}"),
    );
    let arm64 = list_entries(&list)
        .into_iter()
        .find(|(_, arch)| arch == "arm64")
        .unwrap()
        .0;
    let by_digest = format!("{prefix}/crm-gdb_php@{arm64}");
    docker(&["pull", "--quiet", &by_digest]);
    let said = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "php",
        &by_digest,
        "-r",
        "echo PHP_OS, php_uname(\"m\");",
    ]);
    assert_eq!(said.trim(), "Linuxaarch64");
    docker(&["image", "rm", &by_digest]);

    timed(
        "test-image --platform linux/arm64",
        &["test-image", "--tag", TAG, "--platform", "linux/arm64"],
    );

    // No change: both platforms reused, nothing staged, built, installed or compiled.
    let log = timed(
        "build-app again, no change",
        &["-v", "build-app", "--tag", "3.1.1", "--platform", PLATFORMS],
    );
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            log.contains(&format!("unchanged inputs ({platform}): reusing")),
            "{platform} not reused:\n{log}"
        );
    }
    for command in ["buildx build", "composer ", "npm "] {
        assert_eq!(runs_of(&log, command), 0, "{command} ran:\n{log}");
    }
    for (name, tag) in release("3.1.1") {
        assert_both_platforms(registry.port, name, &tag);
    }

    // A deploy needs nothing new: a testbed machine's engine pulls its own platform from the
    // lists and serves the release.
    if common::testbed::available("amd64_and_arm64_under_one_tag") {
        let started = Instant::now();
        deploys_from_the_lists(root, tmp, &prefix, registry.port);
        report.borrow_mut().push(format!(
            "deploy of {TAG} on a testbed machine: {:.1?}",
            started.elapsed()
        ));
    }

    // Interrupted while the arm64 images build: no tag of that release, compose.yaml as it was.
    let robots = root.join("app/public/robots.txt");
    let text = std::fs::read_to_string(&robots).unwrap() + "# changed\n";
    std::fs::write(&robots, text).unwrap();
    git(root, &["add", "-A"]);
    git(
        root,
        &[
            "-c",
            "user.name=dev",
            "-c",
            "user.email=dev@example.com",
            "commit",
            "-qm",
            "robots",
        ],
    );
    let compose_before = std::fs::read(root.join("compose.yaml")).unwrap();
    let args = ["-v", "build-app", "--tag", "3.2.0", "--platform", PLATFORMS];
    let started = Instant::now();
    let mut run = Running::start(root, tmp, &prefix, &args, &[]);
    let building = run.wait_for_line(Duration::from_secs(300), |line| {
        line.contains("buildx build") && line.contains("linux/arm64")
    });
    assert!(
        building.is_some(),
        "no arm64 build started:\n{}",
        run.stderr()
    );
    run.signal_group(libc::SIGINT);
    let status = run.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130), "{}", run.stderr());
    report.borrow_mut().push(format!(
        "build-app interrupted in the arm64 build: {:.1?}",
        started.elapsed()
    ));
    for name in ["crm-gdb_php", "crm-gdb_nginx"] {
        let tags = registry.tags(name);
        assert!(
            !tags.iter().any(|t| t.starts_with("3.2.0")),
            "{name}: {tags:?} after an interrupted build"
        );
    }
    assert_eq!(
        std::fs::read(root.join("compose.yaml")).unwrap(),
        compose_before
    );
    assert!(is_empty_dir(tmp), "staging left behind");

    eprintln!(
        "\namd64_and_arm64_under_one_tag:\n  {}",
        report.borrow().join("\n  ")
    );
}

/// Deploys TAG (manifest lists) to one testbed machine over ssh: it serves, and the image its
/// engine pulled is the entry of the list for the machine's own architecture.
fn deploys_from_the_lists(root: &Path, tmp: &Path, prefix: &str, registry_port: u16) {
    let ok = |args: &[&str]| {
        let out = xtask(root, tmp, prefix, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    ok(&["docker-publish", "--image", "edge", "--tag", EDGE_TAG]);
    // The database, PostgreSQL (every Compose target runs it).
    ok(&["docker-publish", "--image", "db", "--tag", DB_TAG]);
    let bed = common::testbed::Testbed::start(1, Some(registry_port));
    let target = tempfile::tempdir().unwrap();
    let compose = std::fs::read_to_string(root.join("compose.yaml"))
        .unwrap()
        .replace("registry.kiora.tech/kiora", prefix);
    std::fs::write(target.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(
        target.path().join(".env"),
        "APP_SECRET=e2e-secret\nHTTP_PORT=8080\nHTTP_BIND=0.0.0.0\n",
    )
    .unwrap();
    let (host, ssh_config) = (bed.host(1), bed.ssh_config());
    ok(&[
        "deploy",
        "--tag",
        TAG,
        "--host",
        &host,
        "--ssh-config",
        ssh_config.to_str().unwrap(),
        "--dir",
        target.path().to_str().unwrap(),
        "--stack",
        "multiarch",
    ]);
    let (status, page) = http_get_at(&bed.addr(1), 8080, "/").expect("the machine's edge answers");
    assert_eq!(status, 200, "{page}");
    // The image the machine runs is the list's entry for its own architecture: its ID is that
    // entry's config digest.
    let out = bed
        .docker(1)
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{prefix}/crm-gdb_php:{TAG}"),
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let list = get(
        registry_port,
        &format!("/v2/kiora/crm-gdb_php/manifests/{TAG}"),
    );
    let (entry, _) = list_entries(&list)
        .into_iter()
        .find(|(_, a)| a == arch)
        .unwrap_or_else(|| panic!("no {arch} entry: {list}"));
    let manifest = get(
        registry_port,
        &format!("/v2/kiora/crm-gdb_php/manifests/{entry}"),
    );
    let config_at = manifest.find("\"config\"").unwrap();
    let config_digest = string_after(&manifest[config_at..], "digest").unwrap();
    assert_eq!(id, config_digest, "the machine runs its {arch} entry");
}

/// The three release images of `tag`: repository and tag.
fn release(tag: &str) -> [(&'static str, String); 3] {
    [
        ("crm-gdb_php", tag.to_string()),
        ("crm-gdb_php", format!("{tag}-supervisor")),
        ("crm-gdb_nginx", tag.to_string()),
    ]
}

/// The registry's manifest of `kiora/NAME:TAG` is a list of exactly linux/amd64 and
/// linux/arm64, and each entry's config names the architecture of its entry.
fn assert_both_platforms(port: u16, name: &str, tag: &str) {
    let list = get(port, &format!("/v2/kiora/{name}/manifests/{tag}"));
    assert!(
        list.contains("manifest.list.v2+json") || list.contains("image.index.v1+json"),
        "{name}:{tag} is no list: {list}"
    );
    let entries = list_entries(&list);
    let mut archs: Vec<&str> = entries.iter().map(|(_, arch)| arch.as_str()).collect();
    archs.sort();
    assert_eq!(archs, ["amd64", "arm64"], "{name}:{tag}: {list}");
    assert_eq!(list.matches("\"os\":\"linux\"").count(), 2, "{list}");
    for (digest, arch) in entries {
        let manifest = get(port, &format!("/v2/kiora/{name}/manifests/{digest}"));
        let config_at = manifest.find("\"config\"").unwrap();
        let config_digest = string_after(&manifest[config_at..], "digest").unwrap();
        let config = get(port, &format!("/v2/kiora/{name}/blobs/{config_digest}"));
        assert_eq!(
            string_after(&config, "architecture").as_deref(),
            Some(arch.as_str()),
            "{name}:{tag} entry {digest}"
        );
        assert_eq!(string_after(&config, "os").as_deref(), Some("linux"));
    }
}

/// `(digest, architecture)` of each entry of a manifest list, in order.
fn list_entries(list: &str) -> Vec<(String, String)> {
    list.split("\"platform\"")
        .zip(list.split("\"platform\"").skip(1))
        .map(|(before, platform)| {
            let digest = before.rsplit("\"digest\"").next().unwrap();
            (
                string_after(&format!("\"digest\"{digest}"), "digest").unwrap(),
                string_after(platform, "architecture").unwrap(),
            )
        })
        .collect()
}

/// The JSON string value of the first `"key"` in `text`.
fn string_after(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// GET from the registry with every manifest type accepted; the body of a 200.
fn get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "GET {path}: {head}"
    );
    body.to_string()
}

/// How many commands echoed by `-v` (lines starting with `$ `) contain `needle`.
fn runs_of(log: &str, needle: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("$ ") && l.contains(needle))
        .count()
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git(root: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}
