//! Docker command lines, built as data (see `cmd.rs`), and the read-only queries that go to the
//! engine's API when it is local (`docker_api.rs`), with the CLI as the fallback.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::docker_api::Engine;
use crate::reference::ImageRef;

/// How images get built. buildx (BuildKit) when the plugin is there, else the classic builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builder {
    Buildx,
    Classic,
}

impl Builder {
    pub fn detect(runner: &Runner) -> Result<Builder> {
        // The plugin where the CLI looks for it first: no `docker buildx version` to start.
        if let Some(plugin) = buildx_plugin() {
            runner.trace(&format!("buildx plugin: {}", plugin.display()));
            return Ok(Builder::Buildx);
        }
        let buildx = runner.succeeds(&Cmd::new("docker").args(["buildx", "version"]))?;
        Ok(if buildx {
            Builder::Buildx
        } else {
            Builder::Classic
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            Builder::Buildx => "docker buildx build (BuildKit)",
            Builder::Classic => {
                "docker build (classic builder; install the buildx plugin for BuildKit)"
            }
        }
    }
}

/// The buildx CLI plugin, if it is in one of the directories the docker CLI searches by
/// default (`$DOCKER_CONFIG/cli-plugins`, then the system ones). `None`: ask the CLI.
fn buildx_plugin() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let env = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty());
    let user = env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".docker")))
        .map(|dir| dir.join("cli-plugins"));
    let system = [
        "/usr/local/lib/docker/cli-plugins",
        "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins",
        "/usr/libexec/docker/cli-plugins",
    ]
    .map(PathBuf::from);
    user.into_iter()
        .chain(system)
        .map(|dir| dir.join("docker-buildx"))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The engine's API (`docker_api`), echoed under `-v` as `$ GET PATH (docker.sock)`.
fn api_get<T>(runner: &Runner, what: &str, call: impl FnOnce(&Engine) -> Result<T>) -> Option<T> {
    let engine = Engine::local()?;
    runner.trace(&format!("$ GET {what} ({})", engine.socket.display()));
    call(&engine).ok()
}

/// The image IDs of `images`, in order; `None` if one of them is not in the local engine.
pub fn image_ids(runner: &Runner, images: &[String]) -> Result<Option<Vec<String>>> {
    let from_api = api_get(runner, "/images/NAME/json", |engine| {
        images
            .iter()
            .map(|image| Ok(engine.image(image)?.map(|info| info.id)))
            .collect::<Result<Option<Vec<String>>>>()
    });
    if let Some(ids) = from_api {
        return Ok(ids);
    }
    // One `docker image inspect` for all of them: it fails if one is missing.
    let inspect = Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(images.iter().cloned());
    match runner.query(&inspect) {
        Ok(ids) if ids.lines().count() == images.len() => {
            Ok(Some(ids.lines().map(String::from).collect()))
        }
        Err(err) if err.is::<crate::interrupt::Interrupted>() => Err(err),
        _ => Ok(None),
    }
}

/// The ID of `image` and its `label`, over the engine's API only: `None` where the API cannot
/// be spoken to (the caller then takes its usual way), `Some(None)` for no such image.
#[allow(clippy::type_complexity)]
pub fn image_id_label(
    runner: &Runner,
    image: &str,
    label: &str,
) -> Option<Option<(String, Option<String>)>> {
    api_get(runner, &format!("/images/{image}/json"), |engine| {
        engine.image_id_label(image, label)
    })
}

/// `docker tag SOURCE TARGET` for each pair, side by side. Over the engine's API where it can
/// be spoken to (a request each instead of a CLI process each: this is most of a no-change
/// build-app); the commands are still `Cmd`s, so `--dry-run` and `-v` show them as before, and
/// any refusal of the API sends the rest to the CLI.
pub fn tag_all(runner: &Runner, pairs: &[(String, String)]) -> Result<()> {
    let commands: Vec<Cmd> = pairs
        .iter()
        .map(|(source, target)| Cmd::new("docker").args(["tag", source, target]))
        .collect();
    let engine = Engine::local().filter(|_| !runner.dry_run);
    let mut left = Vec::new();
    for (cmd, (source, target)) in commands.into_iter().zip(pairs) {
        match &engine {
            Some(engine) if left.is_empty() => {
                runner.trace(&format!("$ {cmd}  (engine API)"));
                if engine.tag(source, target).is_err() {
                    left.push(vec![cmd]);
                }
            }
            _ => left.push(vec![cmd]),
        }
    }
    runner.run_parallel(&left)
}

/// The commands `docker create --name NAME IMAGE`, `docker cp NAME:DIR/. DEST`, `docker rm
/// --force NAME` done over the engine's API (three requests and a `tar -x`, where the three CLI
/// processes cost ~0.2 s): `None` where the API cannot be spoken to or would not create the
/// container, and the caller runs the commands. The container is removed whatever happened.
pub fn copy_out(
    runner: &Runner,
    commands: &[&Cmd],
    (name, image): (&str, &str),
    (dir, dest): (&str, &Path),
) -> Option<Result<()>> {
    let engine = Engine::local().filter(|_| !runner.dry_run)?;
    let [create, copy, remove] = commands else {
        return None;
    };
    runner.trace(&format!("$ {create}  (engine API)"));
    let id = engine.create_container(name, image).ok()?;
    runner.trace(&format!("$ {copy}  (engine API, then tar -x)"));
    let copied = engine.archive(&id, dir).and_then(|tar| {
        // The archive's entries start with DIR's last component: stripped, as `DIR/.` copies.
        let untar = Cmd::new("tar")
            .args(["-x", "--strip-components=1", "-C"])
            .arg(dest.display().to_string())
            .stdin(tar);
        runner.query(&untar).map(drop)
    });
    runner.trace(&format!("$ {remove}  (engine API)"));
    let removed = engine.remove_container(&id);
    Some(copied.and(removed))
}

/// `ID SIZE REPO@DIGEST...` of `image` (the answer of `docker image inspect --format
/// '{{.Id}} {{.Size}}{{range .RepoDigests}} {{.}}{{end}}'`).
pub fn image_summary(runner: &Runner, image: &str) -> Result<String> {
    let from_api = api_get(runner, &format!("/images/{image}/json"), |engine| {
        engine.image(image)?.context("no such image")
    });
    if let Some(info) = from_api {
        let mut line = format!("{} {}", info.id, info.size);
        for digest in &info.repo_digests {
            line.push(' ');
            line.push_str(digest);
        }
        return Ok(line);
    }
    runner.query(&summary_inspect(image))
}

/// The value of `label` on `image`: `None` when the local engine has no such image,
/// `Some(None)` when the image has no such label.
pub fn image_label(runner: &Runner, image: &str, label: &str) -> Result<Option<Option<String>>> {
    if let Some(answer) = api_get(runner, &format!("/images/{image}/json"), |engine| {
        engine.image_label(image, label)
    }) {
        return Ok(answer);
    }
    let inspect = Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels {label:?}}}}}"),
        image,
    ]);
    match runner.output(&inspect) {
        Ok(out) if out.status.success() => {
            let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // The template prints `<no value>` for a missing key.
            Ok(Some(
                Some(value).filter(|v| !v.is_empty() && v != "<no value>"),
            ))
        }
        Ok(_) => Ok(None),
        Err(err) => Err(err),
    }
}

/// `docker image inspect`: ID, size in bytes, then every repository digest.
pub fn summary_inspect(image: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Size}}{{range .RepoDigests}} {{.}}{{end}}",
        image,
    ])
}

/// `SHORT-ID REPOSITORY:TAG` lines of the images carrying `label` (`KEY=VALUE`), one per tag
/// (as `docker image ls --format '{{.ID}} {{.Repository}}:{{.Tag}}'` prints them).
pub fn images_labelled(runner: &Runner, label: &str) -> Result<String> {
    let from_api = api_get(runner, "/images/json?filters=label", |engine| {
        engine.images_labelled(label)
    });
    if let Some(images) = from_api {
        let mut lines = String::new();
        for image in images {
            let hex = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
            let short: String = hex.chars().take(12).collect();
            for tag in image.tags {
                lines.push_str(&format!("{short} {tag}\n"));
            }
        }
        return Ok(lines);
    }
    runner.query(&Cmd::new("docker").args([
        "image",
        "ls",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]))
}

/// Checks the engine answers, so a stopped daemon is one clear line instead of a failed build.
pub fn check_engine(runner: &Runner) -> Result<String> {
    if let Some(version) = api_get(runner, "/version", Engine::version) {
        return Ok(version);
    }
    runner.query(&Cmd::new("docker").args(["version", "--format", "{{.Server.Version}}"])).map_err(|err| {
        if err.is::<crate::interrupt::Interrupted>() {
            return err;
        }
        anyhow::anyhow!(
            "cannot reach the Docker engine ({}); start it (e.g. `sudo systemctl start docker`) and check `docker info`",
            err.to_string().lines().last().unwrap_or_default().trim()
        )
    })
}

/// One `docker build`.
#[derive(Clone, Debug)]
pub struct Build {
    pub dockerfile: PathBuf,
    pub target: Option<String>,
    pub context: PathBuf,
    pub image: ImageRef,
    pub build_args: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// `--platform`; empty: the engine's own. Several: buildx pushes the result itself, as a
    /// multi-platform image cannot be loaded into the engine (`platform::check` refuses the
    /// builders that cannot do it, the classic one included).
    pub platforms: Vec<String>,
    /// `--cache-to type=inline` (buildx): the cache goes with the image, for later builds.
    pub inline_cache: bool,
    /// `--cache-from` images (buildx): earlier releases whose layers this build may reuse.
    pub cache_from: Vec<String>,
}

impl Build {
    pub fn command(&self, builder: Builder) -> Cmd {
        let cmd = match builder {
            Builder::Buildx if self.pushes_itself(builder) => {
                Cmd::new("docker").args(["buildx", "build", "--push"])
            }
            // `--load` keeps the result in the local engine; pushes are separate, so they
            // happen only after every build succeeded.
            Builder::Buildx => Cmd::new("docker").args(["buildx", "build", "--load"]),
            // The newer docker CLI refuses BuildKit builds without buildx; ask for the classic one.
            Builder::Classic => Cmd::new("docker").arg("build").env("DOCKER_BUILDKIT", "0"),
        };
        let mut cmd = cmd;
        if !self.platforms.is_empty() {
            cmd = cmd.arg("--platform").arg(self.platforms.join(","));
        }
        cmd = cmd.arg("--file").arg(path(&self.dockerfile));
        if let Some(target) = &self.target {
            cmd = cmd.arg("--target").arg(target);
        }
        cmd = cmd.arg("--tag").arg(self.image.to_string());
        for (key, value) in &self.build_args {
            cmd = cmd.arg("--build-arg").arg(format!("{key}={value}"));
        }
        for (key, value) in &self.labels {
            cmd = cmd.arg("--label").arg(format!("{key}={value}"));
        }
        if builder == Builder::Buildx {
            if self.inline_cache {
                cmd = cmd.args(["--cache-to", "type=inline"]);
            }
            for image in &self.cache_from {
                cmd = cmd
                    .arg("--cache-from")
                    .arg(format!("type=registry,ref={image}"));
            }
        }
        cmd.arg(path(&self.context))
    }

    /// A multi-platform build pushes its result (no separate `docker push`).
    pub fn pushes_itself(&self, builder: Builder) -> bool {
        builder == Builder::Buildx && self.platforms.len() > 1
    }
}

/// OCI labels every image we build carries.
pub fn oci_labels(version: &str, revision: &str, created: &str) -> Vec<(String, String)> {
    [
        ("org.opencontainers.image.version", version),
        ("org.opencontainers.image.revision", revision),
        ("org.opencontainers.image.created", created),
        ("org.opencontainers.image.source", "crm-gdb"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `docker compose` of `project`, rooted at `dir` (where it finds `.env`).
pub fn compose(project: &str, dir: &str) -> Cmd {
    Cmd::new("docker").args([
        "compose",
        "--project-name",
        project,
        "--project-directory",
        dir,
    ])
}

pub fn push(image: &ImageRef) -> Cmd {
    Cmd::new("docker").arg("push").arg(image.to_string())
}

pub fn pull(image: &ImageRef) -> Cmd {
    Cmd::new("docker").arg("pull").arg(image.to_string())
}

/// Exits 0 when the image is in the local engine.
pub fn image_exists(image: &str) -> Cmd {
    Cmd::new("docker").args(["image", "inspect", "--format", "{{.Id}}", image])
}

/// Where Debian-like hosts keep their trusted CA bundle.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Runs `argv` in a throwaway container `name` of `image` with `host_dir` mounted as its working
/// directory, as the calling user so the files it writes stay ours. `ca_bundle` (the host's
/// trust store) is mounted read-only over the image's, so npm trusts what the host trusts:
/// behind a TLS-inspecting proxy the image's own bundle would reject the registry.
///
/// `--init` puts a tiny init (tini) as PID 1: the kernel drops a SIGTERM sent to a PID 1 that
/// has no handler, so without it composer (php) ignores the SIGTERM that `docker run` relays on
/// Ctrl-C and runs on after we have gone. The name lets [`remove_container`] find it anyway.
pub fn run_in(
    image: &ImageRef,
    name: &str,
    host_dir: &Path,
    user: Option<(u32, u32)>,
    ca_bundle: Option<&Path>,
    argv: &[&str],
) -> Cmd {
    let mut cmd = Cmd::new("docker")
        .args(["run", "--rm", "--init", "--name"])
        .arg(name);
    if let Some((uid, gid)) = user {
        cmd = cmd.arg("--user").arg(format!("{uid}:{gid}"));
    }
    if let Some(bundle) = ca_bundle {
        cmd = cmd
            .arg("--volume")
            .arg(format!("{}:{HOST_CA_BUNDLE}:ro", path(bundle)));
    }
    cmd.arg("--volume")
        .arg(format!("{}:/app", path(host_dir)))
        .args(["--workdir", "/app"])
        .arg(image.to_string())
        .args(argv.iter().copied())
}

/// Removes a container whatever its state, for cleanup after an interrupt.
pub fn remove_container(name: &str) -> Cmd {
    Cmd::new("docker").args(["rm", "--force", name])
}

/// The label on a stack's throwaway containers (`docker run --rm`: backups, release commands):
/// a `docker run` killed between create and start leaves its container Created, never removed
/// by `--rm`; the next deploy finds it by this label.
pub const THROWAWAY_LABEL: &str = "org.kiora.crm.throwaway";

/// `--label org.kiora.crm.throwaway=STACK`, for a throwaway container's `docker run`.
pub fn throwaway_label(stack: &str) -> [String; 2] {
    ["--label".into(), format!("{THROWAWAY_LABEL}={stack}")]
}

/// The ids of `stack`'s throwaway containers that were created and never started (a running or
/// exited one is removed by `--rm` when it ends).
pub fn unstarted_throwaways(stack: &str) -> Cmd {
    Cmd::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label={THROWAWAY_LABEL}={stack}"))
        .args(["--filter", "status=created"])
}

/// The user and group of this process, for `docker run --user` (Linux; elsewhere Docker
/// Desktop maps ownership itself).
pub fn current_user() -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self").ok()?;
    Some((meta.uid(), meta.gid()))
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_throwaways_are_found_by_the_stacks_label() {
        assert_eq!(
            throwaway_label("crm"),
            ["--label", "org.kiora.crm.throwaway=crm"]
        );
        assert_eq!(
            unstarted_throwaways("crm").argv(),
            [
                "docker",
                "ps",
                "--all",
                "--quiet",
                "--filter",
                "label=org.kiora.crm.throwaway=crm",
                "--filter",
                "status=created"
            ]
        );
    }

    #[test]
    fn summary_inspect_asks_for_id_size_and_digests() {
        assert_eq!(
            summary_inspect("x:1").argv(),
            [
                "docker",
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Size}}{{range .RepoDigests}} {{.}}{{end}}",
                "x:1"
            ]
        );
    }

    /// Through the engine's API or the CLI, the same answers (where an engine runs here).
    #[test]
    fn api_queries_answer_as_the_cli_does() {
        let runner = Runner::new(false, crate::progress::Verbosity::Quiet);
        if Engine::local().is_none() || check_engine(&runner).is_err() {
            return;
        }
        let missing = vec!["xtask-no-such-image:0".to_string()];
        assert_eq!(image_ids(&runner, &missing).unwrap(), None);
        assert_eq!(images_labelled(&runner, "xtask.no-such=1").unwrap(), "");
    }

    fn image() -> ImageRef {
        ImageRef {
            registry: "127.0.0.1:5000/kiora".into(),
            name: "crm-gdb_php".into(),
            tag: "1.4.0".into(),
        }
    }

    fn build() -> Build {
        Build {
            dockerfile: "/s/docker/app/Dockerfile".into(),
            target: Some("php".into()),
            context: "/s".into(),
            image: image(),
            build_args: vec![("BASE_IMAGE".into(), "r/b:0.5.0".into())],
            labels: vec![("org.opencontainers.image.version".into(), "1.4.0".into())],
            platforms: Vec::new(),
            inline_cache: false,
            cache_from: Vec::new(),
        }
    }

    #[test]
    fn buildx_build_loads_then_pushes_separately() {
        let cmd = build().command(Builder::Buildx);
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "buildx",
                "build",
                "--load",
                "--file",
                "/s/docker/app/Dockerfile",
                "--target",
                "php",
                "--tag",
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0",
                "--build-arg",
                "BASE_IMAGE=r/b:0.5.0",
                "--label",
                "org.opencontainers.image.version=1.4.0",
                "/s",
            ]
        );
        assert!(cmd.env.is_empty());
    }

    #[test]
    fn classic_build_turns_buildkit_off() {
        let cmd = build().command(Builder::Classic);
        assert_eq!(
            cmd.argv()[..4],
            ["docker", "build", "--file", "/s/docker/app/Dockerfile"]
        );
        assert_eq!(cmd.env, [("DOCKER_BUILDKIT".to_string(), "0".to_string())]);
    }

    #[test]
    fn one_platform_is_passed_through_and_several_push_from_buildx() {
        let one = Build {
            platforms: vec!["linux/amd64".into()],
            ..build()
        };
        assert_eq!(
            one.command(Builder::Buildx).argv()[..7],
            [
                "docker",
                "buildx",
                "build",
                "--load",
                "--platform",
                "linux/amd64",
                "--file"
            ]
        );
        assert_eq!(
            one.command(Builder::Classic).argv()[..5],
            ["docker", "build", "--platform", "linux/amd64", "--file"]
        );
        assert!(!one.pushes_itself(Builder::Buildx));
        let two = Build {
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            ..build()
        };
        assert_eq!(
            two.command(Builder::Buildx).argv()[..7],
            [
                "docker",
                "buildx",
                "build",
                "--push",
                "--platform",
                "linux/amd64,linux/arm64",
                "--file"
            ]
        );
        assert!(two.pushes_itself(Builder::Buildx));
        assert!(!two.pushes_itself(Builder::Classic));
    }

    #[test]
    fn buildx_builds_carry_their_cache_and_read_the_previous_release() {
        let cached = Build {
            inline_cache: true,
            cache_from: vec!["r/crm-gdb_php:1.3.0".into()],
            ..build()
        };
        let argv = cached.command(Builder::Buildx);
        let argv = argv.argv();
        assert_eq!(
            argv[argv.len() - 5..],
            [
                "--cache-to",
                "type=inline",
                "--cache-from",
                "type=registry,ref=r/crm-gdb_php:1.3.0",
                "/s"
            ]
        );
        assert!(!cached
            .command(Builder::Classic)
            .args
            .iter()
            .any(|a| a.contains("cache")));
    }

    #[test]
    fn remove_container_forces() {
        assert_eq!(
            remove_container("xtask-1-npm-ci").argv(),
            ["docker", "rm", "--force", "xtask-1-npm-ci"]
        );
    }

    #[test]
    fn push_pull_inspect() {
        assert_eq!(
            push(&image()).argv(),
            ["docker", "push", "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0"]
        );
        assert_eq!(
            pull(&image()).argv(),
            ["docker", "pull", "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0"]
        );
        assert_eq!(
            image_exists("x:1").argv(),
            ["docker", "image", "inspect", "--format", "{{.Id}}", "x:1"]
        );
    }

    #[test]
    fn run_in_mounts_the_directory_as_the_caller() {
        let cmd = run_in(
            &image(),
            "xtask-1-npm-ci",
            Path::new("/s/app"),
            Some((1000, 1000)),
            None,
            &["npm", "ci"],
        );
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--init",
                "--name",
                "xtask-1-npm-ci",
                "--user",
                "1000:1000",
                "--volume",
                "/s/app:/app",
                "--workdir",
                "/app",
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0",
                "npm",
                "ci",
            ]
        );
        let bundle = Some(Path::new(HOST_CA_BUNDLE));
        let cmd = run_in(
            &image(),
            "n",
            Path::new("/s/app"),
            None,
            bundle,
            &["npm", "ci"],
        );
        assert_eq!(
            cmd.argv()[6..8],
            [
                "--volume",
                "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"
            ]
        );
    }
}
