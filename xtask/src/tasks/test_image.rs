//! `cargo xtask test-image --tag x.y.z`: run the three release images (behind the edge) as a
//! throwaway Compose project with production settings, as the old Makefile's "test the image locally"
//! step, and check them through the published loopback port:
//! - every container becomes healthy;
//! - `/health` answers 200; `/` renders and names its hashed assets;
//! - a hashed asset is served with long-cache headers.
//!
//! Secrets come from an env file (`--env-file`, else a fresh random APP_SECRET), never from the
//! image. The containers' logs are printed when a check fails; containers, networks and volumes
//! are always removed. Exit 0 only when every check passed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::build::base::ensure_edge_image;
use crate::build::multi_platform;
use crate::cmd::Cmd;
use crate::ctx::Ctx;
use crate::deploy::local_stack::LocalStack;
use crate::http;
use crate::progress::Steps;
use crate::reference::ReleaseTag;
use crate::secret::Secret;

#[derive(clap::Args)]
pub struct Args {
    /// Release tag to test (the images must be local or pullable).
    #[arg(long)]
    pub tag: ReleaseTag,
    /// Env file with the production settings (default: a fresh random APP_SECRET).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Run the release's images of this platform, e.g. linux/arm64 under QEMU emulation (those
    /// a multi-platform build-app keeps under TAG__linux-arm64). Default: the engine's own.
    #[arg(long, value_parser = crate::build::platform::parse)]
    pub platform: Option<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let (release, env_file) = (args.tag.as_str(), args.env_file.as_deref());
    let runner = &ctx.runner;
    crate::docker::check_engine(runner)?;
    // Another platform's images are the helpers of a multi-platform build (its own tag).
    let native = match &args.platform {
        Some(_) => multi_platform::native(runner)?,
        None => String::new(),
    };
    let tag = match &args.platform {
        Some(platform) if *platform != native => multi_platform::platform_tag(release, platform),
        _ => release.to_string(),
    };
    let tag = tag.as_str();
    for image in ctx.config.app_images(tag) {
        let name = image.to_string();
        if !runner.succeeds(&crate::docker::image_exists(&name))?
            && runner.run(&crate::docker::pull(&image)).is_err()
        {
            let platform = args
                .platform
                .as_ref()
                .map(|p| format!(" --platform {p}"))
                .unwrap_or_default();
            bail!("{name} is neither in the local engine nor pullable; build it with `cargo xtask build-app --tag {release}{platform} --no-push`");
        }
        if let (Some(platform), false) = (&args.platform, runner.dry_run) {
            let found = runner.query(&Cmd::new("docker").args([
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}",
                &name,
            ]))?;
            if !platform.starts_with(&found) {
                bail!("{name} is a {found} image, not {platform}");
            }
        }
    }
    if let Some(platform) = args.platform.as_ref().filter(|p| **p != native) {
        runner.say(format!(
            "Running release {release} for {platform} under emulation ({native} engine): images {tag}"
        ));
    }
    let secrets = match env_file {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read the env file {}", path.display()))?,
        None => format!("APP_SECRET={}\n", Secret::random()?.expose()).into_bytes(),
    };
    // The project directory holds only the env file, so compose's `.env` is this one.
    let dir = tempfile::Builder::new()
        .prefix("xtask-test-image.")
        .tempdir()?;
    std::fs::write(dir.path().join(".env"), secrets)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let project = format!("crm-gdb-test-{}", std::process::id());
    let stack = LocalStack::new(&ctx.root, &ctx.config, dir.path(), &project, tag, port)?;
    if let Some(edge) = stack.edge_image() {
        ensure_edge_image(ctx, &edge)?;
    }
    if let Some(db) = stack.db_image() {
        crate::build::base::ensure_db_image(ctx, &db)?;
    }

    let mut steps = Steps::new(4, runner.verbosity);
    let checks =
        (|| {
            steps.step(
                &format!("Starting release {tag} as project {project} on 127.0.0.1:{port}"),
                || stack.up(runner),
            )?;
            if runner.dry_run {
                return Ok(());
            }
            steps.step("Checking /health", || expect_ok(port, "/health").map(drop))?;
            let asset = steps.step(
                "Checking that / renders and names its hashed assets",
                || {
                    let page = expect_ok(port, "/")?;
                    hashed_asset(&page.body).context("the page names no /build/ asset")
                },
            )?;
            steps.step(&format!("Checking {asset} is served with long-cache headers"), || {
            let response = expect_ok(port, &asset)?;
            let cache = response.header("cache-control").unwrap_or_default();
            if !cache.contains("max-age=31536000") {
                bail!("{asset} is served with Cache-Control {cache:?}, expected max-age=31536000");
            }
            Ok(())
        })
        })();
    if checks.is_err() && !runner.dry_run {
        eprintln!("--- logs of {project} ---\n{}", stack.logs(runner));
    }
    let removed = stack.remove(runner, true);
    checks.with_context(|| format!("release {tag} failed its local test"))?;
    removed.context("could not remove the test project")?;
    runner.say(format!(
        "Release {tag} passed: healthy, /health 200, / renders, hashed assets cached for a year"
    ));
    Ok(())
}

fn expect_ok(port: u16, path: &str) -> Result<http::Response> {
    http::wait_for_ok(port, path, Duration::from_secs(30))
}

/// The first `/build/...` asset a page links to.
fn hashed_asset(page: &str) -> Option<String> {
    let start = page.find("\"/build/")? + 1;
    let end = start + page[start..].find('"')?;
    Some(page[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_hashed_asset() {
        let page = r#"<!-- see /build/manifest.json --><link rel="stylesheet" href="/build/app-LUZSHBFR.css"><script src="/build/app-X.js">"#;
        assert_eq!(
            hashed_asset(page).as_deref(),
            Some("/build/app-LUZSHBFR.css")
        );
        assert_eq!(hashed_asset("<p>none</p>"), None);
    }
}
