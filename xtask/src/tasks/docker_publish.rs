//! `cargo xtask docker-publish --image php --tag 0.4.1`: build and push the pinned base images
//! (`crm-gdb_php_base`, the PHP-FPM runtime, and `crm-gdb_php_build`, the same plus composer
//! and node) that every release is built from. Rarely needed: the tag is pinned.

use anyhow::{Context, Result};

use crate::docker::{self, Build, Builder};
use crate::progress::Steps;
use crate::project;
use crate::reference::{check_release_tag, ImageRef};
use crate::retry;
use crate::tasks::Ctx;

/// The base image families this task can publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseImage {
    /// crm-gdb_php_base and crm-gdb_php_build, from docker/php/Dockerfile.
    Php,
    /// crm-gdb_edge, the proxy in front of the releases, from docker/edge/Dockerfile.
    Edge,
}

pub fn run(ctx: &Ctx, image: BaseImage, tag: &str, push: bool, platforms: &[String]) -> Result<()> {
    check_release_tag(tag)?;
    let runner = &ctx.runner;
    docker::check_engine(runner)?;
    let builder = Builder::detect(runner)?;
    crate::platform::preflight(runner, builder, platforms, push)?;
    let revision = project::head_revision(runner, &ctx.root).unwrap_or_else(|_| "unknown".into());
    let config = crate::config::Config {
        base_tag: tag.to_string(),
        ..ctx.config.clone()
    };
    let mut builds = base_builds(ctx, image, &config, &revision);
    for build in &mut builds {
        build.platforms = platforms.to_vec();
    }
    let mut steps = Steps::new(builds.len() + 1, runner.verbosity);
    steps.say(format!("Building with {}", builder.describe()));
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
    crate::summary::show(runner, &images, steps.timings());
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
    }
}

/// Pushes the images side by side, with a message that names the registry when one fails. A
/// push that failed transiently is retried with backoff (`retry.rs`): a registry restarting
/// mid-release is common; a refused login or an unknown host fails at once.
pub fn push_all(ctx: &Ctx, images: &[&ImageRef]) -> Result<()> {
    let backoff = retry::Backoff::for_pushes()?;
    if let Some(first) = images.first() {
        super::login::from_env_if_set(ctx, first.host())?;
    }
    let pushes: Vec<Vec<crate::cmd::Cmd>> = images.iter().map(|i| vec![docker::push(i)]).collect();
    ctx.runner.each_parallel(&pushes, |push| {
        let image = images
            .iter()
            .find(|i| push.args.last() == Some(&i.to_string()))
            .expect("a push of one of the images");
        retry::retry(&ctx.runner, &backoff, &format!("pushing {image}"), || {
            ctx.runner.run_keeping_stderr(push)
        })
        .with_context(|| {
            format!(
                "pushing {image} to {} failed; check the registry is reachable and you are logged in (`docker login {}`)",
                image.host(),
                image.host()
            )
        })
    })
}
