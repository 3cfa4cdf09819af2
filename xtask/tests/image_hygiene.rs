//! What the release images (php, php-supervisor, nginx) built by `build-app` may and may not
//! hold, checked layer by layer: the developer's tree has a secret-bearing `.env`, SSH keys,
//! dev dependencies (`vendor/kiora/dev-tools`) and `node_modules`, and is built with
//! `--allow-dirty` (untracked files included), the most exposed way. None of it may be in ANY
//! layer (`docker save`, then `tar -t` and the bytes of every layer), nor in `docker history`.
//! Each image runs as a non-root user (nginx: its workers), has a HEALTHCHECK and OCI labels,
//! and records the exact digest of its base image.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::faults::*;
use common::*;

const TAG: &str = "5.0.0";

#[test]
fn release_images_hold_no_secret_and_no_dev_dependency() {
    if !engine_available("release_images_hold_no_secret_and_no_dev_dependency") {
        return;
    }
    let prefix = format!("127.0.0.1:{}/kiora", free_port());
    let _images = ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    publish_base_locally(root, tmp, &prefix);

    // The developer's secrets and dev dependencies, all untracked.
    let secret = format!("s3cr3t-hygiene-{}", std::process::id());
    let key = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}-key\n-----END OPENSSH PRIVATE KEY-----\n"
    );
    for (path, content) in [
        (".env", format!("APP_SECRET={secret}\n")),
        ("app/.env", format!("APP_SECRET={secret}\n")),
        ("app/.env.local", format!("APP_SECRET={secret}\n")),
        (".ssh/id_ed25519", key.clone()),
        ("app/.ssh/id_ed25519", key.clone()),
        (
            "app/.ssh/authorized_keys",
            format!("ssh-ed25519 AAAA {secret}\n"),
        ),
        ("app/id_rsa", key.clone()),
        (
            "app/node_modules/left-pad/index.js",
            format!("// {secret}\n"),
        ),
    ] {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    install_dev_dependencies(root, &prefix);
    assert!(root.join("app/vendor/kiora/dev-tools").is_dir());

    let out = xtask(
        root,
        tmp,
        &prefix,
        &["build-app", "--tag", TAG, "--no-push", "--allow-dirty"],
    );
    assert!(out.status.success(), "build-app failed");

    let php = format!("{prefix}/crm-gdb_php:{TAG}");
    let supervisor = format!("{prefix}/crm-gdb_php:{TAG}-supervisor");
    let nginx = format!("{prefix}/crm-gdb_nginx:{TAG}");
    let php_base = format!("{prefix}/crm-gdb_php_base:{BASE_TAG}");
    for (image, base) in [
        (&php, &php_base),
        (&supervisor, &php_base),
        (&nginx, &"debian:bookworm-slim".to_string()),
    ] {
        let layers = check_layers(image, &secret);
        let history = docker(&["history", "--no-trunc", image]);
        assert!(
            !history.contains(&secret),
            "{image}: secret in docker history"
        );
        let health = inspect(image, "{{json .Config.Healthcheck}}");
        assert!(
            health.contains("\"Test\":[\"CMD"),
            "{image}: no HEALTHCHECK: {health}"
        );
        let labels = inspect(image, "{{json .Config.Labels}}");
        for label in [
            "version\":\"5.0.0",
            "revision",
            "created",
            "source",
            "base.name\":\"",
        ] {
            assert!(
                labels.contains(&format!("org.opencontainers.image.{label}")),
                "{image}: label {label} missing: {labels}"
            );
        }
        let digest = inspect(
            image,
            "{{index .Config.Labels \"org.opencontainers.image.base.digest\"}}",
        );
        assert_eq!(digest, base_digest(base), "{image}: base digest label");
        eprintln!("{image}: {layers} layers clean, healthcheck, labels, base {base} at {digest}");
    }
    for image in [&php, &supervisor] {
        assert_eq!(inspect(image, "{{.Config.User}}"), "app", "{image}");
        let uid = docker(&["run", "--rm", "--entrypoint", "id", image, "-u"]);
        assert_eq!(uid.trim(), "1000", "{image} runs as root");
    }
    assert_nginx_workers_are_not_root(&nginx);
}

/// `composer install` with the dev packages, into the developer's own app/vendor.
fn install_dev_dependencies(root: &Path, prefix: &str) {
    let app = root.join("app");
    // SAFETY: getuid/getgid cannot fail.
    let user = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
    let out = Command::new("docker")
        .args(["run", "--rm", "--user", &user, "--volume"])
        .arg(format!("{}:/app", app.display()))
        .args([
            "--workdir",
            "/app",
            &format!("{prefix}/crm-gdb_php_build:{BASE_TAG}"),
        ])
        .args(["composer", "install", "--no-interaction", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Saves `image`, then lists and reads every layer; returns how many there were.
fn check_layers(image: &str, secret: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    docker(&["save", "--output", archive.to_str().unwrap(), image]);
    run(
        "tar",
        &[
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&archive).unwrap();
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    // [{"Config":"...","RepoTags":[...],"Layers":["<id>/layer.tar",...]}]
    let layers: Vec<&str> = manifest
        .split("\"Layers\":[")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap()
        .split(',')
        .map(|l| l.trim_matches('"'))
        .collect();
    assert!(!layers.is_empty());
    for layer in &layers {
        let tar = dir.path().join(layer);
        let listing = run("tar", &["-tf", tar.to_str().unwrap()]);
        for path in listing.lines() {
            assert!(!forbidden(path), "{image}: layer {layer} holds {path}");
        }
        assert!(
            !holds_bytes(&tar, secret),
            "{image}: layer {layer} holds the secret"
        );
    }
    layers.len()
}

/// Names that must never be in an image, as `tar -t` lists them (whiteouts included: a file
/// deleted in a later layer is still in the earlier one).
/// An empty `.ssh` (Debian's /root/.ssh) is fine, anything in one is not.
fn forbidden(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.contains("vendor/kiora/dev-tools")
        || path.contains(".ssh/")
        || path.split('/').any(|part| {
            let part = part.strip_prefix(".wh.").unwrap_or(part);
            matches!(
                part,
                ".git" | "node_modules" | "id_rsa" | "id_ecdsa" | "id_ed25519" | "authorized_keys"
            ) || part == ".env"
                || (part.starts_with(".env.") && part != ".env.example")
        })
}

/// Whether any file of the layer contains `needle` (`tar -xO` | `grep -F`).
fn holds_bytes(tar: &Path, needle: &str) -> bool {
    let mut extract = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let grep = Command::new("grep")
        .args(["-a", "-c", "-F", needle])
        .stdin(extract.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(extract.wait().unwrap().success());
    // grep exits 1 when nothing matched.
    grep.status.success()
}

/// The label value expected for `base`: its registry digest when the engine has one for its
/// own repository, else its image ID (the rule of build_app.rs, checked from outside).
fn base_digest(base: &str) -> String {
    let id = inspect(base, "{{.Id}}");
    let repository = base.rsplit_once(':').map_or(base, |(repo, _)| repo);
    let digests = inspect(base, "{{range .RepoDigests}}{{.}} {{end}}");
    digests
        .split_whitespace()
        .find_map(|d| d.strip_prefix(&format!("{repository}@")).map(String::from))
        .unwrap_or(id)
}

/// nginx's master starts as root (to bind port 80); its workers must not be root.
fn assert_nginx_workers_are_not_root(image: &str) {
    let name = format!("xtask-hygiene-{}", std::process::id());
    docker(&["run", "--detach", "--name", &name, image]);
    let _remove = RemoveContainer(name.clone());
    let script = "sleep 1; for d in /proc/[0-9]*; do \
                  case \"$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)\" in \
                  'nginx: worker'*) grep '^Uid:' $d/status;; esac; done";
    let uids = docker(&["exec", &name, "sh", "-c", script]);
    let workers: Vec<&str> = uids.lines().collect();
    assert!(!workers.is_empty(), "no nginx worker found");
    for line in workers {
        // "Uid:	33	33	33	33": real, effective, saved, filesystem.
        assert!(
            line.split_whitespace().skip(1).all(|uid| uid != "0"),
            "an nginx worker runs as root: {line}"
        );
    }
}

struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.0])
            .output();
    }
}

fn inspect(image: &str, format: &str) -> String {
    docker(&["image", "inspect", "--format", format, image])
        .trim()
        .to_string()
}

fn docker(args: &[&str]) -> String {
    run("docker", args)
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
