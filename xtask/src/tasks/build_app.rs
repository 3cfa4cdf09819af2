//! `cargo xtask build-app --tag x.y.z`: build and publish a release of the application.
//!
//! 1. stage the committed HEAD (or, with `--allow-dirty`, the working tree) in a temporary
//!    directory, so the developer's tree and its dev dependencies are never touched;
//! 2. check the pinned base images are in the local engine, pull them if not;
//! 3. `composer install --no-dev` and 4. `npm ci && npm run build` in the staging directory,
//!    inside the pinned build image (or with the host's tools under `--host-tools`);
//! 5. build `crm-gdb_php:TAG`, `crm-gdb_php:TAG-supervisor` and `crm-gdb_nginx:TAG`, then push
//!    them (`--no-push` keeps them local);
//! 6. only after every push succeeded, point compose.yaml at TAG;
//! 7. remove the staging directory (also on failure and Ctrl-C).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::compose_file;
use crate::config::{Config, APP_IMAGES};
use crate::docker::{self, Build, Builder};
use crate::lock;
use crate::platform;
use crate::progress::Steps;
use crate::project;
use crate::reference::{check_release_tag, ImageRef};
use crate::staging::{self, Source};
use crate::summary;
use crate::tasks::{docker_publish::push_all, set_tag, Ctx};

pub struct Options {
    pub tag: String,
    pub allow_dirty: bool,
    pub host_tools: bool,
    pub push: bool,
    /// The compose file to update, relative to the project root.
    pub compose_file: PathBuf,
    /// `--platform`: empty for the engine's own (see `platform.rs`).
    pub platforms: Vec<String>,
}

pub fn run(ctx: &Ctx, opts: &Options) -> Result<()> {
    check_release_tag(&opts.tag)?;
    let (runner, config, root) = (&ctx.runner, &ctx.config, ctx.root.as_path());
    // A dry run changes nothing, so it may look while a real run works.
    let _lock = (!runner.dry_run)
        .then(|| lock::acquire(root, "build-app"))
        .transpose()?;

    // Everything that can be refused is refused before the first build starts.
    let dirty = project::dirty_files(runner, root)?;
    let source = match (opts.allow_dirty, dirty.is_empty()) {
        (true, _) => Source::WorkingTree,
        (false, true) => Source::Head,
        (false, false) => bail!(
            "uncommitted changes in the build inputs ({}): commit them to build HEAD, or pass --allow-dirty to build the working tree as it is",
            summarize(&dirty)
        ),
    };
    let mut revision = project::head_revision(runner, root)?;
    if source == Source::WorkingTree && !dirty.is_empty() {
        revision.push_str("-dirty");
    }
    let compose_path = root.join(&opts.compose_file);
    // What set-tag will change, computed now: refused early if it cannot, shown by --dry-run.
    let planned = if opts.push {
        check_compose_file(&compose_path, &opts.tag)?
    } else {
        Vec::new()
    };
    docker::check_engine(runner)?;
    let builder = Builder::detect(runner)?;
    platform::preflight(runner, builder, &opts.platforms, opts.push)?;

    let mut steps = Steps::new(7, runner.verbosity);
    steps.say(format!(
        "Building release {} of {} ({revision}) with {}",
        opts.tag,
        root.display(),
        builder.describe()
    ));
    let what = if source == Source::Head {
        "HEAD"
    } else {
        "the working tree"
    };
    let staging = steps.step(&format!("Staging {what} in a temporary directory"), || {
        staging::stage(runner, root, source)
    })?;
    let app_dir = staging.path().join("app");

    steps.step(
        &format!("Checking base images (tag {})", config.base_tag),
        || ensure_base_images(ctx, opts.host_tools),
    )?;
    steps.step("Installing production dependencies", || {
        run_tool(ctx, &app_dir, opts.host_tools, &COMPOSER_INSTALL)
    })?;
    steps.step("Compiling assets", || {
        run_tool(ctx, &app_dir, opts.host_tools, &NPM_CI)?;
        run_tool(ctx, &app_dir, opts.host_tools, &NPM_BUILD)
    })?;

    let labels = docker::oci_labels(&opts.tag, &revision, &project::now_rfc3339());
    let mut builds = release_builds(config, staging.path(), &opts.tag, &labels);
    for build in &mut builds {
        build.platforms = opts.platforms.clone();
        add_base_digest(runner, build)?;
    }
    let images: Vec<&ImageRef> = builds.iter().map(|b| &b.image).collect();
    let title = if opts.push {
        "Building and pushing images"
    } else {
        "Building images"
    };
    steps.step(title, || {
        for build in &builds {
            runner
                .run(&build.command(builder))
                .with_context(|| format!("building {} failed", build.image))?;
        }
        if opts.push && !builds.iter().any(|b| b.pushes_itself(builder)) {
            push_all(ctx, &images)?;
        }
        Ok(())
    })?;

    if opts.push {
        steps.step(&format!("Updating {}", opts.compose_file.display()), || {
            let changes = if runner.dry_run {
                planned.clone()
            } else {
                // A signal that came during the pushes must not be followed by a release.
                crate::interrupt::check()?;
                compose_file::set_tag_in_file(&compose_path, &opts.tag, &APP_IMAGES)?
            };
            set_tag::report(&compose_path, &changes, runner);
            Ok(())
        })?;
    } else {
        steps.skip(
            &format!("Updating {}", opts.compose_file.display()),
            "--no-push: nothing was published",
        );
    }
    steps.step("Removing the staging directory", || staging.remove())?;

    let verb = if opts.push {
        "built and pushed"
    } else {
        "built (local only)"
    };
    steps.say(format!(
        "Release {} {verb} in {}:",
        opts.tag,
        steps.elapsed()
    ));
    if runner.dry_run {
        for image in &images {
            steps.say(format!("  {image}"));
        }
    }
    summary::show(runner, &images, steps.timings());
    Ok(())
}

const COMPOSER_INSTALL: [&str; 6] = [
    "composer",
    "install",
    "--no-dev",
    "--optimize-autoloader",
    "--no-interaction",
    "--no-progress",
];
const NPM_CI: [&str; 4] = ["npm", "ci", "--no-audit", "--no-fund"];
const NPM_BUILD: [&str; 3] = ["npm", "run", "build"];

/// Runs [`tool`]; when it fails (Ctrl-C included) its container is removed, because after an
/// interrupt the docker client may have been killed while the container still ran.
fn run_tool(ctx: &Ctx, app_dir: &Path, host_tools: bool, argv: &[&str]) -> Result<()> {
    let result = ctx
        .runner
        .run(&tool(&ctx.config, app_dir, host_tools, argv));
    if result.is_err() && !host_tools {
        remove_tool_container(ctx, &tool_container(argv));
    }
    result
}

/// Removes a tool container, if there is one: usually it is gone already (`--rm`), and the
/// `rm` fails harmlessly. After Ctrl-C the docker client may have died with its request to
/// create the container still on the way: the engine then creates it just after our first
/// `rm`, and it stays "Created" for ever (never started, so `--rm` never applies). Seen in
/// tests/interrupts.rs; hence a few more tries within a second.
fn remove_tool_container(ctx: &Ctx, name: &str) {
    let remove = docker::remove_container(name);
    let _ = ctx.runner.cleanup(&remove);
    if crate::interrupt::requested() {
        for _ in 0..4 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let _ = ctx.runner.cleanup(&remove);
        }
    }
}

/// `xtask-<pid>-npm-ci`: unique to this run, and says what it is in `docker ps`.
fn tool_container(argv: &[&str]) -> String {
    let words: Vec<&str> = argv
        .iter()
        .copied()
        .filter(|w| !w.starts_with('-'))
        .collect();
    format!("xtask-{}-{}", std::process::id(), words.join("-"))
}

/// A composer/npm command in `app_dir`: inside the pinned build image, or with the host's tool.
fn tool(config: &Config, app_dir: &Path, host_tools: bool, argv: &[&str]) -> Cmd {
    if host_tools {
        Cmd::new(argv[0])
            .args(argv[1..].iter().copied())
            .dir(app_dir)
    } else {
        let ca_bundle = Path::new(docker::HOST_CA_BUNDLE);
        let ca_bundle = ca_bundle.is_file().then_some(ca_bundle);
        docker::run_in(
            &config.php_build(),
            &tool_container(argv),
            app_dir,
            docker::current_user(),
            ca_bundle,
            argv,
        )
    }
}

/// The three release images, built from the staging directory.
pub fn release_builds(
    config: &Config,
    staging: &Path,
    tag: &str,
    labels: &[(String, String)],
) -> Vec<Build> {
    let [php, supervisor, nginx] = config.app_images(tag);
    let app_dockerfile = staging.join("docker/app/Dockerfile");
    let with_base = |base: String| {
        let mut labels = labels.to_vec();
        labels.push(("org.opencontainers.image.base.name".into(), base));
        labels
    };
    let php_build = |target: &str, image: ImageRef| Build {
        dockerfile: app_dockerfile.clone(),
        target: Some(target.to_string()),
        context: staging.to_path_buf(),
        image,
        build_args: vec![("BASE_IMAGE".into(), config.php_base().to_string())],
        labels: with_base(config.php_base().to_string()),
        platforms: Vec::new(),
    };
    vec![
        php_build("php", php),
        php_build("supervisor", supervisor),
        Build {
            dockerfile: staging.join("docker/nginx/Dockerfile"),
            target: None,
            context: staging.to_path_buf(),
            image: nginx,
            build_args: vec![("OS_IMAGE".into(), config.os_image.clone())],
            labels: with_base(config.os_image.clone()),
            platforms: Vec::new(),
        },
    ]
}

const BASE_NAME_LABEL: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST_LABEL: &str = "org.opencontainers.image.base.digest";

/// Records which exact image the build starts from, next to its name: a tag can move.
fn add_base_digest(runner: &Runner, build: &mut Build) -> Result<()> {
    let Some((_, base)) = build.labels.iter().find(|(key, _)| key == BASE_NAME_LABEL) else {
        return Ok(());
    };
    let base = base.clone();
    let inspect = Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}{{range .RepoDigests}} {{.}}{{end}}",
        &base,
    ]);
    let digest = match runner.query(&inspect) {
        Ok(answer) => pick_digest(&base, &answer),
        // --dry-run: the base may not be pulled yet; the plan still shows where the value goes.
        Err(_) if runner.dry_run => format!("<digest of {base}>"),
        Err(err) => return Err(err.context(format!("cannot read the digest of base image {base}"))),
    };
    build.labels.push((BASE_DIGEST_LABEL.into(), digest));
    Ok(())
}

/// From `ID REPO@DIGEST...`: the registry digest of `image`'s own repository (what
/// `docker pull REPO@DIGEST` takes) when the engine knows one, else the local image ID (a base
/// built here and never pushed has no registry digest).
fn pick_digest(image: &str, answer: &str) -> String {
    let repository = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => image,
    };
    let mut words = answer.split_whitespace();
    let id = words.next().unwrap_or_default();
    words
        .filter_map(|word| word.split_once('@'))
        .find(|(repo, _)| *repo == repository)
        .map_or(id, |(_, digest)| digest)
        .to_string()
}

/// The pinned base images must be local, or pullable; otherwise point at `docker-publish`.
fn ensure_base_images(ctx: &Ctx, host_tools: bool) -> Result<()> {
    let config = &ctx.config;
    let mut needed = vec![config.php_base()];
    if !host_tools {
        needed.push(config.php_build());
    }
    for image in needed {
        if ctx
            .runner
            .succeeds(&docker::image_exists(&image.to_string()))?
        {
            ctx.runner.say(format!("  {image}: in the local engine"));
            continue;
        }
        ctx.runner.run(&docker::pull(&image)).map_err(|err| {
            // Ctrl-C during the pull is no reason to send the user to docker-publish.
            if err.is::<crate::interrupt::Interrupted>() {
                return err;
            }
            anyhow::anyhow!(
                "base image {image} is neither in the local engine nor pullable from {}; build and publish it with \
                 `cargo xtask docker-publish --image php --tag {}` (add --no-push to keep it local)",
                image.host(),
                config.base_tag
            )
        })?;
    }
    Ok(())
}

/// Refuses early (before any build) a compose file that `set-tag` could not update.
fn check_compose_file(path: &Path, tag: &str) -> Result<Vec<compose_file::Change>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {}; pass --compose-file to name the file to update",
            path.display()
        )
    })?;
    let (_, changes) = compose_file::set_tag(&text, tag, &APP_IMAGES)
        .map_err(|err| anyhow::anyhow!("cannot set tag in {}: {err}", path.display()))?;
    Ok(changes)
}

fn summarize(files: &[String]) -> String {
    let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
    match files.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        }
    }

    #[test]
    fn composer_and_npm_run_inside_the_pinned_build_image() {
        let cmd = tool(&config(), Path::new("/s/app"), false, &COMPOSER_INSTALL);
        let argv = cmd.argv();
        assert_eq!(argv[..3], ["docker", "run", "--rm"]);
        let name = format!("xtask-{}-composer-install", std::process::id());
        assert_eq!(argv[3..6], ["--init", "--name", &name]);
        let image = argv
            .iter()
            .position(|a| *a == "127.0.0.1:5000/kiora/crm-gdb_php_build:0.4.1")
            .unwrap();
        assert_eq!(argv[image - 3..image], ["/s/app:/app", "--workdir", "/app"]);
        assert_eq!(argv[image + 1..], COMPOSER_INSTALL);
    }

    #[test]
    fn host_tools_run_in_the_staging_directory() {
        let cmd = tool(&config(), Path::new("/s/app"), true, &NPM_BUILD);
        assert_eq!(cmd.argv(), ["npm", "run", "build"]);
        assert_eq!(cmd.dir.as_deref(), Some(Path::new("/s/app")));
    }

    #[test]
    fn three_release_images_from_the_pinned_base() {
        let labels = vec![(
            "org.opencontainers.image.version".to_string(),
            "1.4.0".to_string(),
        )];
        let builds = release_builds(&config(), Path::new("/s"), "1.4.0", &labels);
        let argv: Vec<Vec<String>> = builds
            .iter()
            .map(|b| {
                b.command(Builder::Buildx)
                    .argv()
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
            .collect();
        let expected = |file: &str, target: Option<&str>, tag: &str, arg: &str, base: &str| {
            let mut v = vec!["docker", "buildx", "build", "--load", "--file", file];
            if let Some(t) = target {
                v.extend(["--target", t]);
            }
            v.extend([
                "--tag",
                tag,
                "--build-arg",
                arg,
                "--label",
                "org.opencontainers.image.version=1.4.0",
                "--label",
                base,
                "/s",
            ]);
            v.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let base = "org.opencontainers.image.base.name=127.0.0.1:5000/kiora/crm-gdb_php_base:0.4.1";
        let base_arg = "BASE_IMAGE=127.0.0.1:5000/kiora/crm-gdb_php_base:0.4.1";
        assert_eq!(
            argv[0],
            expected(
                "/s/docker/app/Dockerfile",
                Some("php"),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0",
                base_arg,
                base
            )
        );
        assert_eq!(
            argv[1],
            expected(
                "/s/docker/app/Dockerfile",
                Some("supervisor"),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0-supervisor",
                base_arg,
                base
            )
        );
        assert_eq!(
            argv[2],
            expected(
                "/s/docker/nginx/Dockerfile",
                None,
                "127.0.0.1:5000/kiora/crm-gdb_nginx:1.4.0",
                "OS_IMAGE=debian:bookworm-slim",
                "org.opencontainers.image.base.name=debian:bookworm-slim"
            )
        );
    }

    #[test]
    fn base_digest_prefers_the_registry_digest_of_the_same_repository() {
        let image = "127.0.0.1:5000/kiora/crm-gdb_php_base:0.4.1";
        assert_eq!(pick_digest(image, "sha256:1d"), "sha256:1d");
        assert_eq!(
            pick_digest(
                image,
                "sha256:1d other/crm-gdb_php_base@sha256:aa 127.0.0.1:5000/kiora/crm-gdb_php_base@sha256:bb"
            ),
            "sha256:bb"
        );
        assert_eq!(
            pick_digest("debian:bookworm-slim", "sha256:1d debian@sha256:cc"),
            "sha256:cc"
        );
        assert_eq!(
            pick_digest("127.0.0.1:5000/x", "sha256:1d 127.0.0.1:5000/x@sha256:dd"),
            "sha256:dd"
        );
    }

    #[test]
    fn dirty_summary_stays_short() {
        let files: Vec<String> = (1..=5).map(|i| format!("app/f{i}.php")).collect();
        assert_eq!(
            summarize(&files),
            "app/f1.php, app/f2.php, app/f3.php and 2 more"
        );
    }
}
