//! The pinned base images (`crm-gdb_php_base`, the PHP-FPM runtime; `crm-gdb_php_build`, the
//! same plus composer and node; `crm-gdb_edge`, the proxy in front of the releases; `crm-gdb_db`,
//! the PostgreSQL server of a swarm stack): their build definitions, publishing them, and making
//! sure they are in the local engine.

use anyhow::Result;

use crate::build::multi_platform::{self, Published};
use crate::build::platform::{self, Plan};
use crate::build::push::push_all;
use crate::build::summary;
use crate::build::tools::Tools;
use crate::cmd::Cmd;
use crate::ctx::Ctx;
use crate::docker::{self, Build, Builder};
use crate::progress::Steps;
use crate::project;
use crate::reference::{check_release_tag, ImageRef};

/// The base image families this task can publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseImage {
    /// crm-gdb_php_base and crm-gdb_php_build, from docker/php/Dockerfile.
    Php,
    /// crm-gdb_edge, the proxy in front of the releases, from docker/edge/Dockerfile.
    Edge,
    /// crm-gdb_db, PostgreSQL from Debian's packages (a swarm stack's database), from
    /// docker/db/Dockerfile.
    Db,
}

/// Builds the base images of `image` at `tag` and pushes them (unless `push` is false), with
/// numbered steps and the final table.
pub fn publish(
    ctx: &Ctx,
    image: BaseImage,
    tag: &str,
    push: bool,
    platforms: &[String],
) -> Result<()> {
    check_release_tag(tag)?;
    let runner = &ctx.runner;
    docker::check_engine(runner)?;
    let builder = Builder::detect(runner)?;
    let plan = platform::preflight(runner, builder, platforms, push)?;
    let revision = project::head_revision(runner, &ctx.root).unwrap_or_else(|_| "unknown".into());
    let config = crate::config::Config {
        base_tag: tag.to_string(),
        ..ctx.config.clone()
    };
    if let Plan::PerPlatform { native } = &plan {
        let builds = base_builds(ctx, image, &config, &revision);
        return publish_per_platform(ctx, builder, &plan, native, builds, push, platforms);
    }
    let mut builds = base_builds(ctx, image, &config, &revision);
    for build in &mut builds {
        build.platforms = platforms.to_vec();
    }
    let mut steps = Steps::new(builds.len() + 1, runner.verbosity);
    steps.say(format!("Building with {}", builder.describe()));
    if plan == Plan::OneCall {
        steps.say(format!("Platforms: {}", plan.describe(platforms)));
    }
    for build in &builds {
        steps.step(&format!("Building {}", build.image), || {
            runner.run(&build.command(builder))
        })?;
    }
    let images: Vec<&ImageRef> = builds.iter().map(|b| &b.image).collect();
    if push && builds.iter().any(|b| b.pushes_itself(builder)) {
        steps.skip("Pushing", "pushed by the multi-platform build");
    } else if push {
        steps.step("Pushing", || push_all(ctx, &images))?;
    } else {
        steps.skip("Pushing", "--no-push: the images stay in the local engine");
    }
    steps.say(format!(
        "Published {} base image(s) in {}",
        images.len(),
        steps.elapsed()
    ));
    summary::show(runner, &images, steps.timings());
    Ok(())
}

/// [`publish`] with the docker driver and several platforms: the OS image of each platform
/// (made once, then kept by the engine), one build per image and platform under helper tags
/// (the engine's own platform also under the plain tags, which single-platform builds use),
/// then the helpers pushed and one manifest list per tag.
fn publish_per_platform(
    ctx: &Ctx,
    builder: Builder,
    plan: &Plan,
    native: &str,
    builds: Vec<Build>,
    push: bool,
    platforms: &[String],
) -> Result<()> {
    let runner = &ctx.runner;
    let mut steps = Steps::new(platforms.len() * (builds.len() + 1) + 1, runner.verbosity);
    steps.say(format!("Building with {}", builder.describe()));
    steps.say(format!("Platforms: {}", plan.describe(platforms)));
    let mut published: Vec<Published> = builds
        .iter()
        .map(|b| Published {
            image: b.image.clone(),
            parts: Vec::new(),
        })
        .collect();
    for platform in platforms {
        let os_image = steps.step(&format!("OS image for {platform}"), || {
            multi_platform::ensure_os_image(ctx, platform, native)
        })?;
        runner.say(format!("  {os_image}"));
        for (build, published) in builds.iter().zip(&mut published) {
            let mut build = build.clone();
            build.image = multi_platform::for_platform(&build.image, platform);
            build.platforms = vec![platform.clone()];
            for (key, value) in &mut build.build_args {
                if key == "OS_IMAGE" {
                    value.clone_from(&os_image);
                }
            }
            steps.step(&format!("Building {} ({platform})", build.image), || {
                runner.run(&build.command(builder))?;
                if platform == native {
                    runner.run(&Cmd::new("docker").args([
                        "tag",
                        &build.image.to_string(),
                        &published.image.to_string(),
                    ]))?;
                }
                Ok(())
            })?;
            published.parts.push((platform.clone(), build.image));
        }
    }
    if push {
        steps.step(
            "Pushing the platforms and writing the manifest lists",
            || multi_platform::publish(ctx, &published),
        )?;
    } else {
        steps.skip(
            "Pushing",
            "--no-push: each platform stays in the local engine under its helper tag",
        );
    }
    steps.say(format!(
        "Published {} base image(s) for {} in {}",
        published.len(),
        platforms.join(", "),
        steps.elapsed()
    ));
    let images: Vec<&ImageRef> = published
        .iter()
        .flat_map(|p| p.parts.iter().map(|(_, helper)| helper))
        .collect();
    summary::show(runner, &images, steps.timings());
    Ok(())
}

fn base_builds(
    ctx: &Ctx,
    image: BaseImage,
    config: &crate::config::Config,
    revision: &str,
) -> Vec<Build> {
    let labels = docker::oci_labels(&config.base_tag, revision, &project::now_rfc3339());
    let build = |dockerfile: std::path::PathBuf,
                 target: Option<&str>,
                 context: std::path::PathBuf,
                 image: ImageRef| Build {
        dockerfile,
        target: target.map(String::from),
        context,
        image,
        build_args: vec![("OS_IMAGE".into(), config.os_image.clone())],
        labels: labels.clone(),
        platforms: Vec::new(),
        inline_cache: false,
        cache_from: Vec::new(),
    };
    match image {
        BaseImage::Php => {
            let context = ctx.root.join("docker/php");
            vec![
                build(
                    context.join("Dockerfile"),
                    Some("base"),
                    context.clone(),
                    config.php_base(),
                ),
                build(
                    context.join("Dockerfile"),
                    Some("build"),
                    context.clone(),
                    config.php_build(),
                ),
            ]
        }
        // Its context is the project root: it shares nginx's healthcheck script.
        BaseImage::Edge => vec![build(
            ctx.root.join("docker/edge/Dockerfile"),
            None,
            ctx.root.clone(),
            config.image(crate::config::EDGE, &config.base_tag),
        )],
        BaseImage::Db => {
            let context = ctx.root.join("docker/db");
            vec![build(
                context.join("Dockerfile"),
                None,
                context,
                config.image(crate::config::DB, &config.base_tag),
            )]
        }
    }
}

/// The pinned base images must be local, or pullable; otherwise point at `docker-publish`.
pub fn ensure_base_images(ctx: &Ctx, tools: &Tools) -> Result<()> {
    let config = &ctx.config;
    let mut needed = vec![config.php_base()];
    needed.extend(tools.image().cloned());
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

/// The edge image: local, pulled, or (pinned like the base images) built from docker/edge.
pub fn ensure_edge_image(ctx: &Ctx, image: &str) -> Result<()> {
    ensure_pinned_image(ctx, BaseImage::Edge, "edge", image)
}

/// The db image: local, pulled, or (pinned like the edge) built from docker/db.
pub fn ensure_db_image(ctx: &Ctx, image: &str) -> Result<()> {
    ensure_pinned_image(ctx, BaseImage::Db, "db", image)
}

/// `image` (of `kind`, `docker-publish --image NAME`): local, pulled, or built at its tag.
fn ensure_pinned_image(ctx: &Ctx, kind: BaseImage, name: &str, image: &str) -> Result<()> {
    let runner = &ctx.runner;
    if runner.succeeds(&docker::image_exists(image))?
        || runner.succeeds(&Cmd::new("docker").args(["pull", image]))?
    {
        return Ok(());
    }
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
    runner.say(format!(
        "  {image} is neither local nor pullable: building it (docker-publish --image {name} --no-push)"
    ));
    publish(ctx, kind, tag, false, &[])
}
