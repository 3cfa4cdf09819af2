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

use crate::build::base::ensure_base_images;
use crate::build::build_cache::{self, INPUTS_LABEL};
use crate::build::compose_tag::{self, check_compose_file};
use crate::build::multi_platform::{self, Published};
use crate::build::platform::Plan;
use crate::build::push::push_all;
use crate::build::registry_api::Registry;
use crate::build::registry_reuse;
use crate::build::release::{add_base_digest, platform_release_builds, release_builds};
use crate::build::reuse::{self, find_reusable, inputs_key};
use crate::build::staging::{self, Source};
use crate::build::tools::Tools;
use crate::build::{past_assets, platform, summary, tree_lock};
use crate::cmd::{Cmd, Runner};
use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::ctx::Ctx;
use crate::docker::{self, Builder};
use crate::progress::Steps;
use crate::project;
use crate::reference::{ImageRef, ReleaseTag};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Release tag, e.g. 1.4.0 (Docker tag grammar; `latest` is refused).
    #[arg(long)]
    pub tag: ReleaseTag,
    /// Build the working tree (tracked and untracked, not ignored files) instead of HEAD.
    #[arg(long)]
    pub allow_dirty: bool,
    /// Use the host's composer and npm instead of the pinned build image.
    #[arg(long)]
    pub host_tools: bool,
    /// Build and tag locally only: no push, compose.yaml untouched.
    #[arg(long)]
    pub no_push: bool,
    /// Compose file whose image references get the new tag.
    #[arg(long, default_value = "compose.yaml")]
    pub compose_file: PathBuf,
    /// Target platforms, e.g. linux/amd64,linux/arm64 (default: XTASK_PLATFORMS, else the engine's own).
    #[arg(long, value_delimiter = ',', value_parser = platform::parse)]
    pub platform: Vec<String>,
    /// Build even when local images were built from exactly the same inputs (default: re-tag them).
    #[arg(long)]
    pub rebuild: bool,
    /// Speak to the registry through the docker CLI only (pull, tag, push), even on loopback,
    /// where its HTTP API otherwise re-tags and reads labels without pulls.
    #[arg(long)]
    pub no_registry_api: bool,
    /// Where the dependency cache lives; None: the default (see `build_cache::cache_dir`).
    #[arg(skip)]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(ctx: &Ctx, opts: &Args) -> Result<()> {
    let push = !opts.no_push;
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
    let planned = if push {
        check_compose_file(&compose_path, &opts.tag)?
    } else {
        Vec::new()
    };
    docker::check_engine(runner)?;
    let builder = Builder::detect(runner)?;
    let platforms = config.platforms_or_default(&opts.platform).to_vec();
    let plan = platform::preflight(runner, builder, &platforms, push)?;
    let tools = Tools::new(config, opts.host_tools);
    if let Plan::PerPlatform { native } = &plan {
        let release = Release {
            source,
            revision: &revision,
            compose_path: &compose_path,
            planned: &planned,
            push,
        };
        return run_per_platform(
            ctx, opts, &release, builder, &plan, native, &platforms, &tools,
        );
    }
    let opts = &Args {
        platform: platforms,
        ..opts.clone()
    };

    let new_images = config.app_images(&opts.tag);
    let images: Vec<&ImageRef> = new_images.iter().collect();
    // The registry's own API, where it can be spoken to (loopback): re-tags without pushes.
    let api = if push && opts.platform.len() <= 1 && !opts.no_registry_api {
        Registry::for_image(&new_images[0])
    } else {
        None
    };
    let previous = previous_release(&compose_path);
    // The previous release's nginx image: its hashed assets go into the new one (past_assets).
    let previous_nginx = match previous.as_deref().filter(|p| *p != opts.tag.as_str()) {
        Some(p) => {
            past_assets::find_previous(runner, &config.app_images(p)[2], api.as_ref(), push)?
        }
        None => None,
    };
    let nginx_ok = |label: Option<&str>| past_assets::covers(label, previous_nginx.as_ref());

    // Images already built from exactly these inputs are re-tagged instead of rebuilt: the
    // local engine's first, else (a CI runner's empty engine) the registry's.
    let key = if opts.platform.len() <= 1 && !opts.rebuild {
        inputs_key(ctx, &tools, &opts.platform, source, builder)?
    } else {
        None
    };
    let previous_images = previous
        .as_deref()
        .map(|p| config.app_images(p).to_vec())
        .unwrap_or_default();
    let nginx_image_ok = |id: &str| -> Result<bool> {
        let label = docker::image_label(runner, id, past_assets::ASSETS_LABEL)?;
        let ok = nginx_ok(label.flatten().as_deref());
        if !ok {
            runner.say(format!(
                "  nginx image {id} has the same inputs but lacks the hashed assets of the previous release: not reused"
            ));
        }
        Ok(ok)
    };
    let cache = match &opts.cache_dir {
        _ if runner.dry_run => None,
        Some(dir) => Some(dir.clone()),
        None => build_cache::cache_dir(),
    };
    // A rebuild with no change: the previous release's images, three look-ups.
    let quick = match &key {
        Some(key) => reuse::previous_reusable(runner, key, &previous_images, nginx_image_ok)?,
        None => None,
    };

    let mut steps = Steps::new(7, runner.verbosity);
    steps.say(format!(
        "Building release {} of {} ({revision}) with {}",
        opts.tag,
        root.display(),
        builder.describe()
    ));
    if plan == Plan::OneCall {
        steps.say(format!("Platforms: {}", plan.describe(&opts.platform)));
    }
    let what = if source == Source::Head {
        "HEAD"
    } else {
        "the working tree"
    };
    let staging_title = format!("Staging {what} in a temporary directory");
    // Otherwise the images noted for this key in the cache (else, without the engine's API, a
    // listing of every image: seconds on a busy engine of 2000), then (a CI runner's empty
    // engine) the registry, are looked at while the source is staged, which a build needs and
    // a reuse then removes.
    let (reused, in_registry, staging) = std::thread::scope(|scope| -> Result<_> {
        let lookup = match (&quick, &key) {
            (None, Some(key)) => Some(scope.spawn(|| {
                // The images build-app noted for this key, else (no engine API) every image.
                let indexed = match cache.as_deref() {
                    Some(cache) => reuse::find_indexed(runner, cache, key, nginx_image_ok)?,
                    None => None,
                };
                let local = match indexed {
                    Some(found) => found,
                    None => find_reusable(runner, key, &[], nginx_image_ok)?,
                };
                if local.is_some() {
                    return Ok((local, None));
                }
                let Some(api) = &api else {
                    return Ok((None, None));
                };
                match registry_reuse::find_release(api, config, key, previous.as_deref(), nginx_ok)
                {
                    Ok(found) => Ok((None, found)),
                    Err(err) if err.is::<crate::interrupt::Interrupted>() => Err(err),
                    Err(err) => {
                        runner.say(format!("  cannot look in the registry ({err:#}): building"));
                        Ok((None, None))
                    }
                }
            })),
            _ => None,
        };
        let staging = match &quick {
            Some(_) => {
                steps.skip(&staging_title, "unchanged inputs: nothing to build");
                Ok(None)
            }
            None => steps
                .step(&staging_title, || staging::stage(runner, root, source))
                .map(Some),
        };
        let found = match lookup {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the lookup thread panicked"))),
            None => Ok((quick.clone(), None)),
        };
        // An interrupt is reported as such, whichever side saw it.
        let (found, staging) = match (found, staging) {
            (Err(err), _) | (_, Err(err)) if err.is::<crate::interrupt::Interrupted>() => {
                return Err(err)
            }
            (found, staging) => (found?, staging?),
        };
        Ok((found.0, found.1, staging))
    })?;

    steps.step(
        &format!("Checking base images (tag {})", config.base_tag),
        || match (&reused, &in_registry) {
            // The inputs key was read from their image IDs a moment ago.
            (Some(_), _) | (_, Some(_)) => {
                runner.say("  base images: in the local engine (their IDs are in the inputs key)");
                Ok(())
            }
            (None, None) => ensure_base_images(ctx, &tools),
        },
    )?;
    let title = if push {
        "Building and pushing images"
    } else {
        "Building images"
    };
    match (&reused, &in_registry, &staging) {
        (None, Some(tag), _) => {
            let api = api.as_ref().expect("found through the registry API");
            for title in ["Installing production dependencies", "Compiling assets"] {
                steps.skip(title, "unchanged inputs");
            }
            steps.step("Re-tagging the release in the registry", || {
                runner.say(format!(
                    "  unchanged inputs: {tag} in {} has the same inputs key; no build, no layer moved",
                    api.host
                ));
                registry_reuse::retag(runner, api, &config.app_images(tag), &images).map(drop)
            })?;
        }
        (Some(found), _, _) => {
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
                    tags.push((old.id.clone(), new.to_string()));
                }
                docker::tag_all(runner, &tags)?;
                if let (Some(cache), Some(key)) = (&cache, &key) {
                    reuse::record(cache, key, &tags);
                }
                if !push {
                    return Ok(());
                }
                // Pushed before under another tag: a new tag in the registry is enough.
                let pushed = match &api {
                    Some(api) => match registry_reuse::pushed_as(api, config, found, &images) {
                        Ok(Some(old)) => Some((api, old)),
                        Ok(None) => None,
                        Err(err) if err.is::<crate::interrupt::Interrupted>() => return Err(err),
                        Err(_) => None,
                    },
                    None => None,
                };
                match pushed {
                    Some((api, (old, manifests))) => {
                        registry_reuse::put_all(runner, api, &old, &images, &manifests).map(drop)
                    }
                    None => push_all(ctx, &images),
                }
            })?;
        }
        (None, None, None) => unreachable!("staged unless reused"),
        (None, None, Some(staging)) => {
            let app_dir = staging.path().join("app");
            let tool_id = tools.identity(runner);
            steps.step("Installing production dependencies", || {
                tools.install_vendor(runner, &app_dir, cache.as_deref(), &tool_id)
            })?;
            let (assets, assets_key) = steps.step("Compiling assets", || {
                compile_assets(
                    runner,
                    (&tools, &tool_id),
                    staging.path(),
                    opts.tag.as_str(),
                    previous_nginx.as_ref(),
                    (api.as_ref(), cache.as_deref()),
                )
            })?;

            // Computed before the lookups unless a base image was missing then (or --rebuild).
            let key = match &key {
                Some(key) => key.clone(),
                None => inputs_key(ctx, &tools, &opts.platform, source, builder)?
                    .unwrap_or_else(|| "<inputs key>".to_string()),
            };
            let labels = docker::oci_labels(&opts.tag, &revision, &project::now_rfc3339());
            let mut builds = release_builds(config, staging.path(), &opts.tag, &labels);
            for build in &mut builds {
                build.platforms = opts.platform.clone();
                build.labels.push((INPUTS_LABEL.to_string(), key.clone()));
                if build.image.name == crate::config::NGINX {
                    build
                        .labels
                        .extend(nginx_labels(&assets, assets_key.as_deref()));
                }
                add_base_digest(runner, build)?;
                if builder == Builder::Buildx && opts.platform.len() <= 1 {
                    // The cache travels inside the image; the previous release feeds this build
                    // (on a CI runner whose engine is empty, only the changed layers are built).
                    build.inline_cache = true;
                    // Only nginx takes the previous release as cache source: its costly layer
                    // (apt-get) is one small download; php's layers above the local base are
                    // the changed app itself, and importing its cache means fetching the base.
                    let nginx = build.image.name == crate::config::NGINX;
                    if let Some(previous) = previous
                        .as_deref()
                        .filter(|p| nginx && *p != opts.tag.as_str())
                    {
                        let same_image = ImageRef {
                            tag: previous_tag_of(&build.image.tag, opts.tag.as_str(), previous),
                            ..build.image.clone()
                        };
                        build.cache_from.push(same_image.to_string());
                    }
                }
            }
            steps.step(title, || {
                // All three side by side. supervisor is FROM php, but started at once BuildKit
                // (one solver in the engine) merges the stages they share: php's layers are
                // made once and are supervisor's too, ~0.5-0.9 s sooner than one after the other.
                let commands: Vec<Cmd> = builds.iter().map(|b| b.command(builder)).collect();
                let [php, supervisor, nginx] = <[Cmd; 3]>::try_from(commands)
                    .map_err(|_| anyhow::anyhow!("three release builds expected"))?;
                runner.each_parallel(&[vec![php], vec![supervisor], vec![nginx]], |cmd| {
                    runner
                        .run(cmd)
                        .with_context(|| format!("building {} failed", tagged(cmd)))
                })?;
                let refs: Vec<String> = images.iter().map(|i| i.to_string()).collect();
                if let (Some(cache), false, Some(ids)) = (
                    &cache,
                    runner.dry_run || key.starts_with('<'),
                    docker::image_ids(runner, &refs)?,
                ) {
                    let noted: Vec<(String, String)> = ids.into_iter().zip(refs).collect();
                    reuse::record(cache, &key, &noted);
                }
                if push && !builds.iter().any(|b| b.pushes_itself(builder)) {
                    push_all(ctx, &images)?;
                }
                Ok(())
            })?;
        }
    }

    let release = Release {
        source,
        revision: &revision,
        compose_path: &compose_path,
        planned: &planned,
        push,
    };
    finish(ctx, opts, &release, &mut steps, staging, &images)
}

/// What every path of a build-app shares, decided before the first build.
struct Release<'a> {
    source: Source,
    revision: &'a str,
    compose_path: &'a std::path::Path,
    planned: &'a [compose_file::Change],
    push: bool,
}

/// The last steps of every path: compose.yaml (only after everything was published), the
/// staging directory, the table.
fn finish(
    ctx: &Ctx,
    opts: &Args,
    release: &Release,
    steps: &mut Steps,
    staging: Option<staging::Staging>,
    images: &[&ImageRef],
) -> Result<()> {
    let (runner, push, compose_path) = (&ctx.runner, release.push, release.compose_path);
    if push {
        steps.step(&format!("Updating {}", opts.compose_file.display()), || {
            let changes = if runner.dry_run {
                release.planned.to_vec()
            } else {
                // A signal that came during the pushes must not be followed by a release.
                crate::interrupt::check()?;
                compose_file::set_tag_in_file(compose_path, &opts.tag, &APP_IMAGES)?
            };
            compose_tag::report(compose_path, &changes, runner);
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

    let verb = if push {
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
        for image in images {
            steps.say(format!("  {image}"));
        }
    }
    summary::show(runner, images, steps.timings());
    Ok(())
}

/// build-app with the docker driver and several platforms (`multi_platform`): composer and npm
/// once (vendor/ and the compiled assets are platform-independent), then each platform's three
/// images under helper tags (`TAG__linux-arm64`; the engine's own platform also under TAG), all
/// platforms side by side; pushed and listed under TAG only when every build succeeded. Reuse
/// is per platform: a platform whose three images of its inputs key are local is re-tagged,
/// not built; when every platform is, nothing is staged, installed or built.
#[allow(clippy::too_many_arguments)]
fn run_per_platform(
    ctx: &Ctx,
    opts: &Args,
    release: &Release,
    builder: Builder,
    plan: &Plan,
    native: &str,
    platforms: &[String],
    tools: &Tools,
) -> Result<()> {
    let (runner, config, root) = (&ctx.runner, &ctx.config, ctx.root.as_path());
    let (source, push) = (release.source, release.push);
    let tag = opts.tag.as_str();
    let helpers = |platform: &str| config.app_images(&multi_platform::platform_tag(tag, platform));
    let key_of =
        |platform: &str| reuse::inputs_key_for(ctx, tools, platform, native, source, builder);
    // The previous release's nginx image, as the engine keeps it (its own platform's; the
    // hashed assets are the same on every platform): they go into the new ones (past_assets).
    let previous = previous_release(release.compose_path);
    let previous_nginx = match previous.as_deref().filter(|p| *p != tag) {
        Some(p) => past_assets::find_previous(runner, &config.app_images(p)[2], None, push)?,
        None => None,
    };
    let nginx_ok = |id: &str| -> Result<bool> {
        let label = docker::image_label(runner, id, past_assets::ASSETS_LABEL)?;
        Ok(past_assets::covers(
            label.flatten().as_deref(),
            previous_nginx.as_ref(),
        ))
    };
    // Per platform: the images already built from its inputs, if all three are local.
    let mut found = Vec::new();
    for platform in platforms {
        found.push(match key_of(platform)? {
            Some(key) if !opts.rebuild => find_reusable(runner, &key, &[], nginx_ok)?,
            _ => None,
        });
    }
    // Every platform reused: nothing to stage, install or build.
    let reused: Option<Vec<_>> = found.iter().cloned().collect();

    let mut steps = Steps::new(7, runner.verbosity);
    steps.say(format!(
        "Building release {tag} of {} ({}) with {}",
        root.display(),
        release.revision,
        builder.describe()
    ));
    steps.say(format!("Platforms: {}", plan.describe(platforms)));
    let what = if source == Source::Head {
        "HEAD"
    } else {
        "the working tree"
    };
    let staging_title = format!("Staging {what} in a temporary directory");
    let staging = match &reused {
        Some(_) => {
            steps.skip(
                &staging_title,
                "unchanged inputs on every platform: nothing to build",
            );
            None
        }
        None => Some(steps.step(&staging_title, || staging::stage(runner, root, source))?),
    };
    let os_images = steps.step(
        &format!(
            "Checking base images (tag {}) for {}",
            config.base_tag,
            platforms.join(", ")
        ),
        || {
            if reused.is_none() {
                ensure_base_images(ctx, tools)?;
            }
            let mut os_images = Vec::new();
            for platform in platforms.iter().filter(|p| *p != native) {
                let base =
                    multi_platform::image_for(&config.php_base().to_string(), platform, native);
                if !runner.succeeds(&docker::image_exists(&base))? {
                    bail!(
                        "base image {base} ({platform}) is not in the local engine; build it with \
                         `cargo xtask docker-publish --image php --tag {} --platform {}`",
                        config.base_tag,
                        platforms.join(",")
                    );
                }
                runner.say(format!("  {base}: in the local engine"));
                if reused.is_none() {
                    os_images.push((
                        platform.clone(),
                        multi_platform::ensure_os_image(ctx, platform, native)?,
                    ));
                }
            }
            Ok(os_images)
        },
    )?;
    let title = if push {
        "Building and pushing images"
    } else {
        "Building images"
    };
    let mut published: Vec<Published> = config
        .app_images(tag)
        .into_iter()
        .map(|image| Published {
            image,
            parts: Vec::new(),
        })
        .collect();
    for platform in platforms {
        for (published, helper) in published.iter_mut().zip(helpers(platform)) {
            published.parts.push((platform.clone(), helper));
        }
    }
    // The engine's own platform also under the release's tags: up, test-image and a deploy to
    // this engine use them as after a single-platform build.
    let native_tags: Vec<Vec<Cmd>> = published
        .iter()
        .filter_map(|p| {
            let (_, helper) = p.parts.iter().find(|(platform, _)| platform == native)?;
            Some(vec![Cmd::new("docker").args([
                "tag",
                &helper.to_string(),
                &p.image.to_string(),
            ])])
        })
        .collect();
    match (&reused, &staging) {
        (Some(found), _) => {
            for title in ["Installing production dependencies", "Compiling assets"] {
                steps.skip(title, "unchanged inputs");
            }
            steps.step(title, || {
                let mut tags = Vec::new();
                for (platform, found) in platforms.iter().zip(found) {
                    for (old, new) in found.iter().zip(helpers(platform)) {
                        runner.say(format!(
                            "  unchanged inputs ({platform}): reusing {} (built as {})",
                            old.id, old.built_as
                        ));
                        tags.push(vec![Cmd::new("docker").args([
                            "tag",
                            &old.id,
                            &new.to_string(),
                        ])]);
                    }
                }
                runner.run_parallel(&tags)?;
                runner.run_parallel(&native_tags)?;
                if push {
                    multi_platform::publish(ctx, &published)?;
                }
                Ok(())
            })?;
        }
        (None, Some(staging)) => {
            let app_dir = staging.path().join("app");
            let cache = match &opts.cache_dir {
                _ if runner.dry_run => None,
                Some(dir) => Some(dir.clone()),
                None => build_cache::cache_dir(),
            };
            let tool_id = tools.identity(runner);
            steps.step(
                "Installing production dependencies (once, for every platform)",
                || tools.install_vendor(runner, &app_dir, cache.as_deref(), &tool_id),
            )?;
            let (assets, assets_key) =
                steps.step("Compiling assets (once, for every platform)", || {
                    compile_assets(
                        runner,
                        (tools, &tool_id),
                        staging.path(),
                        tag,
                        previous_nginx.as_ref(),
                        (None, cache.as_deref()),
                    )
                })?;
            let labels = docker::oci_labels(tag, release.revision, &project::now_rfc3339());
            let mut chains = Vec::new();
            let mut retags = Vec::new();
            for (platform, found) in platforms.iter().zip(&found) {
                // This platform's inputs did not change: its images get the new helper tags.
                if let Some(found) = found {
                    for (old, new) in found.iter().zip(helpers(platform)) {
                        runner.say(format!(
                            "  unchanged inputs ({platform}): reusing {} (built as {})",
                            old.id, old.built_as
                        ));
                        retags.push(vec![Cmd::new("docker").args([
                            "tag",
                            &old.id,
                            &new.to_string(),
                        ])]);
                    }
                    continue;
                }
                let key = key_of(platform)?.unwrap_or_else(|| "<inputs key>".to_string());
                let helper_tag = multi_platform::platform_tag(tag, platform);
                let os_image = os_images
                    .iter()
                    .find(|(p, _)| p == platform)
                    .map_or(config.os_image.clone(), |(_, image)| image.clone());
                let base =
                    multi_platform::image_for(&config.php_base().to_string(), platform, native);
                let mut builds = platform_release_builds(
                    config,
                    staging.path(),
                    (&helper_tag, platform),
                    (&base, &os_image),
                    &labels,
                );
                for build in &mut builds {
                    build.labels.push((INPUTS_LABEL.to_string(), key.clone()));
                    if build.image.name == crate::config::NGINX {
                        build
                            .labels
                            .extend(nginx_labels(&assets, assets_key.as_deref()));
                    }
                    add_base_digest(runner, build)?;
                }
                let commands: Vec<Cmd> = builds.iter().map(|b| b.command(builder)).collect();
                let [php, supervisor, nginx] = <[Cmd; 3]>::try_from(commands)
                    .map_err(|_| anyhow::anyhow!("three release builds expected"))?;
                chains.push(vec![php, supervisor]);
                chains.push(vec![nginx]);
            }
            steps.step(title, || {
                runner.run_parallel(&retags)?;
                // Every platform side by side; supervisor is FROM php, after it.
                runner.each_parallel(&chains, |cmd| {
                    runner
                        .run(cmd)
                        .with_context(|| format!("building {} failed", tagged(cmd)))
                })?;
                runner.run_parallel(&native_tags)?;
                // Nothing was pushed yet: a Ctrl-C during the builds published nothing.
                crate::interrupt::check()?;
                if push {
                    multi_platform::publish(ctx, &published)?;
                }
                Ok(())
            })?;
        }
        (None, None) => unreachable!("staged unless reused"),
    }
    // The helpers: each is one platform's image in the local engine (the lists are not).
    let images: Vec<&ImageRef> = published
        .iter()
        .flat_map(|p| p.parts.iter().map(|(_, h)| h))
        .collect();
    finish(ctx, opts, release, &mut steps, staging, &images)
}

/// The release the compose file points at now (the previous one), if it names one.
fn previous_release(compose: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(compose).ok()?;
    let references = compose_file::app_references(&text, &APP_IMAGES).ok()?;
    references.iter().find_map(|r| compose_file::release_of(r))
}

/// The tag of the previous release's image matching `tag` (`1.4.0-supervisor` -> `1.3.0-supervisor`).
fn previous_tag_of(tag: &str, release: &str, previous: &str) -> String {
    match tag.strip_prefix(release) {
        Some(suffix) => format!("{previous}{suffix}"),
        None => previous.to_string(),
    }
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

fn summarize(files: &[String]) -> String {
    let shown: Vec<&str> = files.iter().take(3).map(String::as_str).collect();
    match files.len() {
        n if n > 3 => format!("{} and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

/// Step [4/7]: the release's compiled assets (npm, else the dependency cache's or the previous
/// release's of the same inputs), then the past releases' files beside them. Returns the nginx
/// image's assets label and the key of the assets' inputs.
fn compile_assets(
    runner: &Runner,
    (tools, tool_id): (&Tools, &str),
    staging: &Path,
    tag: &str,
    previous: Option<&past_assets::Previous>,
    (registry, cache): (Option<&Registry>, Option<&Path>),
) -> Result<(String, Option<String>)> {
    let from_previous = |key: &str, output: &Path| match previous {
        Some(previous) => {
            let scratch = staging.join(".previous-assets");
            past_assets::take_compiled(runner, previous, registry, key, output, &scratch)
        }
        None => Ok(false),
    };
    let app_dir = staging.join("app");
    let key = tools.compile_assets(runner, &app_dir, cache, tool_id, &from_previous)?;
    let label = past_assets::stage(runner, staging, tag, previous, cache)?;
    Ok((label, key))
}

/// The nginx image's own labels: the hashed assets it carries, and the key of the inputs its
/// own were compiled from (none without a dependency cache).
fn nginx_labels(assets: &str, assets_key: Option<&str>) -> Vec<(String, String)> {
    let mut labels = vec![(past_assets::ASSETS_LABEL.to_string(), assets.to_string())];
    if let Some(key) = assets_key {
        labels.push((past_assets::ASSETS_KEY_LABEL.to_string(), key.to_string()));
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_command_errors_name_the_image() {
        let cmd = Cmd::new("docker").args(["build", "--tag", "r/crm-gdb_php:1", "/s"]);
        assert_eq!(tagged(&cmd), "r/crm-gdb_php:1");
    }

    #[test]
    fn the_previous_release_feeds_the_cache_of_the_same_image() {
        assert_eq!(previous_tag_of("1.4.0", "1.4.0", "1.3.0"), "1.3.0");
        assert_eq!(
            previous_tag_of("1.4.0-supervisor", "1.4.0", "1.3.0"),
            "1.3.0-supervisor"
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
