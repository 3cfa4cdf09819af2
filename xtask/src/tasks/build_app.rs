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

use crate::build::build_cache::{self, INPUTS_LABEL};
use crate::build::platform;
use crate::build::staging::{self, Source};
use crate::build::summary;
use crate::build::tree_lock;
use crate::cmd::{Cmd, Runner};
use crate::compose_file;
use crate::config::{Config, APP_IMAGES};
use crate::ctx::Ctx;
use crate::docker::{self, Build, Builder};
use crate::progress::Steps;
use crate::project;
use crate::reference::{check_release_tag, ImageRef};
use crate::tasks::{docker_publish::push_all, set_tag};

pub struct Options {
    pub tag: String,
    pub allow_dirty: bool,
    pub host_tools: bool,
    pub push: bool,
    /// The compose file to update, relative to the project root.
    pub compose_file: PathBuf,
    /// `--platform`: empty for the engine's own (see `platform.rs`).
    pub platforms: Vec<String>,
    /// `--rebuild`: build even when images of the same inputs key are in the local engine.
    pub rebuild: bool,
}

pub fn run(ctx: &Ctx, opts: &Options) -> Result<()> {
    check_release_tag(&opts.tag)?;
    let (runner, config, root) = (&ctx.runner, &ctx.config, ctx.root.as_path());
    // A dry run changes nothing, so it may look while a real run works.
    let _lock = (!runner.dry_run)
        .then(|| tree_lock::acquire(root, "build-app"))
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

    // Images already built from exactly these inputs are re-tagged instead of rebuilt.
    let reused = if opts.platforms.len() <= 1 && !opts.rebuild {
        let key = inputs_key(ctx, opts, source, builder)?;
        match key {
            Some(key) => find_reusable(runner, &key)?,
            None => None,
        }
    } else {
        None
    };

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
    let staging_title = format!("Staging {what} in a temporary directory");
    let staging = match &reused {
        Some(_) => {
            steps.skip(&staging_title, "unchanged inputs: nothing to build");
            None
        }
        None => Some(steps.step(&staging_title, || staging::stage(runner, root, source))?),
    };

    steps.step(
        &format!("Checking base images (tag {})", config.base_tag),
        || match &reused {
            // The inputs key was read from their image IDs a moment ago.
            Some(_) => {
                runner.say("  base images: in the local engine (their IDs are in the inputs key)");
                Ok(())
            }
            None => ensure_base_images(ctx, opts.host_tools),
        },
    )?;
    let new_images = config.app_images(&opts.tag);
    let images: Vec<&ImageRef> = new_images.iter().collect();
    let title = if opts.push {
        "Building and pushing images"
    } else {
        "Building images"
    };
    match (&reused, &staging) {
        (Some(found), _) => {
            for title in ["Installing production dependencies", "Compiling assets"] {
                steps.skip(title, "unchanged inputs");
            }
            steps.step(title, || {
                let mut tags = Vec::new();
                for (old, new) in found.iter().zip(&images) {
                    runner.say(format!(
                        "  unchanged inputs: reusing {} (built as {})",
                        old.id, old.built_as
                    ));
                    tags.push(vec![Cmd::new("docker").args([
                        "tag",
                        &old.id,
                        &new.to_string(),
                    ])]);
                }
                runner.run_parallel(&tags)?;
                if opts.push {
                    push_all(ctx, &images)?;
                }
                Ok(())
            })?;
        }
        (None, Some(staging)) => {
            let app_dir = staging.path().join("app");
            let cache = (!runner.dry_run).then(build_cache::cache_dir).flatten();
            let tool_id = tool_identity(ctx, opts.host_tools);
            steps.step("Installing production dependencies", || {
                install_vendor(ctx, &app_dir, opts.host_tools, cache.as_deref(), &tool_id)
            })?;
            steps.step("Compiling assets", || {
                compile_assets(ctx, &app_dir, opts.host_tools, cache.as_deref(), &tool_id)
            })?;

            let key = inputs_key(ctx, opts, source, builder)?
                .unwrap_or_else(|| "<inputs key>".to_string());
            let labels = docker::oci_labels(&opts.tag, &revision, &project::now_rfc3339());
            let mut builds = release_builds(config, staging.path(), &opts.tag, &labels);
            for build in &mut builds {
                build.platforms = opts.platforms.clone();
                build.labels.push((INPUTS_LABEL.to_string(), key.clone()));
                add_base_digest(runner, build)?;
            }
            steps.step(title, || {
                // supervisor is FROM php: after it; nginx is independent: beside them.
                let commands: Vec<Cmd> = builds.iter().map(|b| b.command(builder)).collect();
                let [php, supervisor, nginx] = <[Cmd; 3]>::try_from(commands)
                    .map_err(|_| anyhow::anyhow!("three release builds expected"))?;
                runner.each_parallel(&[vec![php, supervisor], vec![nginx]], |cmd| {
                    runner
                        .run(cmd)
                        .with_context(|| format!("building {} failed", tagged(cmd)))
                })?;
                if opts.push && !builds.iter().any(|b| b.pushes_itself(builder)) {
                    push_all(ctx, &images)?;
                }
                Ok(())
            })?;
        }
        (None, None) => unreachable!("staged whenever nothing is reused"),
    }

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
    match staging {
        Some(staging) => steps.step("Removing the staging directory", || staging.remove())?,
        None => steps.skip("Removing the staging directory", "nothing was staged"),
    }

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
const COMPOSER_DUMP: [&str; 5] = [
    "composer",
    "dump-autoload",
    "--optimize",
    "--no-dev",
    "--no-interaction",
];
const NPM_CI: [&str; 4] = ["npm", "ci", "--no-audit", "--no-fund"];
const NPM_BUILD: [&str; 3] = ["npm", "run", "build"];

/// The three release images, in the order of [`release_builds`].
const ROLES: [&str; 3] = ["php", "supervisor", "nginx"];

/// An image already built from the same inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reusable {
    pub id: String,
    /// The reference it was built as (`<none>` if it lost its tag since).
    pub built_as: String,
}

/// The inputs key of this build (see `build_cache`), or `None` when a base image is not in the
/// local engine yet (nothing built from it can be there either).
fn inputs_key(
    ctx: &Ctx,
    opts: &Options,
    source: Source,
    builder: Builder,
) -> Result<Option<String>> {
    let runner = &ctx.runner;
    let mut entries = build_cache::source_entries(runner, &ctx.root, source == Source::Head)?;
    let mut bases = vec![
        ("base".to_string(), ctx.config.php_base().to_string()),
        ("os".to_string(), ctx.config.os_image.clone()),
    ];
    if !opts.host_tools {
        bases.push(("tools".to_string(), ctx.config.php_build().to_string()));
    }
    // One `docker image inspect` for all of them: it fails if one is missing.
    let (names, images): (Vec<String>, Vec<String>) = bases.into_iter().unzip();
    let inspect = Cmd::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .args(images);
    match runner.query(&inspect) {
        Ok(ids) if ids.lines().count() == names.len() => {
            entries.extend(names.into_iter().zip(ids.lines().map(String::from)));
        }
        Err(err) if err.is::<crate::interrupt::Interrupted>() => return Err(err),
        _ => return Ok(None),
    }
    entries.extend(key_options(opts.host_tools, builder, &opts.platforms));
    Ok(Some(build_cache::hash_text(
        runner,
        &build_cache::material(&entries),
    )?))
}

/// The options that change what gets built, as inputs-key entries.
fn key_options(host_tools: bool, builder: Builder, platforms: &[String]) -> Vec<(String, String)> {
    vec![
        (
            "tools-from".into(),
            if host_tools { "host" } else { "build-image" }.into(),
        ),
        ("builder".into(), format!("{builder:?}")),
        ("platforms".into(), platforms.join(",")),
    ]
}

/// The three images (php, supervisor, nginx) labelled with `key`, if all three are local.
fn find_reusable(runner: &Runner, key: &str) -> Result<Option<Vec<Reusable>>> {
    // One query for the three (a docker call costs ~50 ms; this path is all about those).
    let answer = runner.query(&Cmd::new("docker").args([
        "image",
        "ls",
        "--filter",
        &format!("label={INPUTS_LABEL}={key}"),
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
    ]))?;
    Ok(ROLES
        .iter()
        .map(|role| pick_reusable(&answer, role))
        .collect())
}

/// Which release image `REPO:TAG` is: php, supervisor (`-supervisor` tag) or nginx.
fn role_of(reference: &str) -> Option<&'static str> {
    let (repository, tag) = reference.rsplit_once(':')?;
    let name = repository.rsplit('/').next().unwrap_or(repository);
    match name {
        crate::config::PHP if tag.ends_with(crate::config::SUPERVISOR_SUFFIX) => Some("supervisor"),
        crate::config::PHP => Some("php"),
        crate::config::NGINX => Some("nginx"),
        _ => None,
    }
}

/// From `ID REPO:TAG` lines of images of one inputs key: the image of `role` (an untagged
/// image cannot say which it is, so it is not picked).
fn pick_reusable(answer: &str, role: &str) -> Option<Reusable> {
    answer
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(_, reference)| role_of(reference) == Some(role))
        .map(|(id, reference)| Reusable {
            id: id.to_string(),
            built_as: reference.to_string(),
        })
}

/// The `--tag` value of a build command, for error messages.
fn tagged(cmd: &Cmd) -> String {
    cmd.args
        .iter()
        .skip_while(|a| *a != "--tag")
        .nth(1)
        .cloned()
        .unwrap_or_else(|| cmd.program.clone())
}

/// What makes vendor/ and public/build/: the build image's ID, or the host's own tools.
fn tool_identity(ctx: &Ctx, host_tools: bool) -> String {
    if host_tools {
        return "host-tools".into();
    }
    ctx.runner
        .query(&docker::image_exists(&ctx.config.php_build().to_string()))
        .unwrap_or_else(|_| ctx.config.php_build().to_string())
}

/// `composer install --no-dev`, or, when the cache has the vendor/ of the same composer.json,
/// composer.lock and path packages, a copy of it and `composer dump-autoload` (the classmap
/// depends on src/).
fn install_vendor(
    ctx: &Ctx,
    app_dir: &Path,
    host_tools: bool,
    cache: Option<&Path>,
    tool_id: &str,
) -> Result<()> {
    let Some(cache) = cache else {
        return run_tool(ctx, app_dir, host_tools, &COMPOSER_INSTALL);
    };
    let key =
        build_cache::dependency_key(&ctx.runner, app_dir, &build_cache::VENDOR_INPUTS, tool_id)?;
    let entry = build_cache::Entry::new(cache, "vendor", &key);
    let vendor = app_dir.join("vendor");
    if entry.hit() {
        ctx.runner.say(format!(
            "  vendor/ from the cache ({}): composer.json and composer.lock unchanged",
            entry.path.display()
        ));
        entry.restore(&ctx.runner, &vendor)?;
        return run_tool(ctx, app_dir, host_tools, &COMPOSER_DUMP);
    }
    run_tool(ctx, app_dir, host_tools, &COMPOSER_INSTALL)?;
    entry.store(&ctx.runner, &vendor)
}

/// `npm ci && npm run build`, or nothing but a copy when the cache has the public/build/ of the
/// same package files, build script and assets/.
fn compile_assets(
    ctx: &Ctx,
    app_dir: &Path,
    host_tools: bool,
    cache: Option<&Path>,
    tool_id: &str,
) -> Result<()> {
    let npm = || {
        run_tool(ctx, app_dir, host_tools, &NPM_CI)?;
        run_tool(ctx, app_dir, host_tools, &NPM_BUILD)
    };
    let Some(cache) = cache else {
        return npm();
    };
    let key =
        build_cache::dependency_key(&ctx.runner, app_dir, &build_cache::ASSETS_INPUTS, tool_id)?;
    let entry = build_cache::Entry::new(cache, "assets", &key);
    let output = app_dir.join("public/build");
    if entry.hit() {
        ctx.runner.say(format!(
            "  public/build/ from the cache ({}): assets unchanged, npm skipped",
            entry.path.display()
        ));
        if output.exists() {
            std::fs::remove_dir_all(&output)?;
        }
        return entry.restore(&ctx.runner, &output);
    }
    npm()?;
    // node_modules/ is never part of a release: the build context's .dockerignore drops it,
    // and the staging directory goes away with it.
    entry.store(&ctx.runner, &output)
}

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
    fn reusable_images_are_told_apart_by_name() {
        assert_eq!(pick_reusable("", "php"), None);
        let answer = "1111 <none>:<none>\n\
                      2222 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0-supervisor\n\
                      3333 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0\n\
                      4444 crm-gdb_nginx:1.4.0\n\
                      5555 r/crm-gdb_php_base:0.4.1";
        let pick = |role| pick_reusable(answer, role).map(|r| (r.id, r.built_as));
        assert_eq!(
            pick("php"),
            Some((
                "3333".into(),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0".into()
            ))
        );
        assert_eq!(pick("supervisor").unwrap().0, "2222");
        assert_eq!(pick("nginx").unwrap().0, "4444");
        assert_eq!(pick_reusable("1111 <none>:<none>", "php"), None);
        assert_eq!(role_of("r/crm-gdb_php_build:0.4.1"), None);
    }

    #[test]
    fn build_options_are_part_of_the_inputs_key() {
        let plain = key_options(false, Builder::Buildx, &[]);
        assert_ne!(plain, key_options(true, Builder::Buildx, &[]));
        assert_ne!(plain, key_options(false, Builder::Classic, &[]));
        assert_ne!(
            plain,
            key_options(false, Builder::Buildx, &["linux/amd64".into()])
        );
        assert_eq!(plain, key_options(false, Builder::Buildx, &[]));
    }

    #[test]
    fn build_command_errors_name_the_image() {
        let cmd = Cmd::new("docker").args(["build", "--tag", "r/crm-gdb_php:1", "/s"]);
        assert_eq!(tagged(&cmd), "r/crm-gdb_php:1");
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
