//! `cargo xtask docker-publish --image php --tag 0.5.0`: build and push the pinned base images
//! (`crm-gdb_php_base`, the PHP-FPM runtime, and `crm-gdb_php_build`, the same plus composer
//! and node) that every release is built from. Rarely needed: the tag is pinned.

use anyhow::Result;

use crate::build::base::{self, BaseImage};
use crate::ctx::Ctx;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Which base image family to publish.
    #[arg(long, value_enum)]
    pub image: BaseImage,
    /// Tag to publish, normally the pinned base tag.
    #[arg(long)]
    pub tag: ReleaseTag,
    /// Build and tag in the local engine only.
    #[arg(long)]
    pub no_push: bool,
    /// Target platforms, e.g. linux/amd64,linux/arm64 (default: XTASK_PLATFORMS, else the engine's own).
    #[arg(long, value_delimiter = ',', value_parser = crate::build::platform::parse)]
    pub platform: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let platforms = ctx.config.platforms_or_default(&args.platform);
    let (image, tag, push) = (args.image, &args.tag, !args.no_push);
    base::publish(ctx, image, tag, push, platforms)
}
