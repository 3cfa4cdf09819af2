//! `cargo xtask docker-publish --image php --tag 0.4.1`: build and push the pinned base images
//! (`crm-gdb_php_base`, the PHP-FPM runtime, and `crm-gdb_php_build`, the same plus composer
//! and node) that every release is built from. Rarely needed: the tag is pinned.

use anyhow::Result;

use crate::build::base::{self, BaseImage};
use crate::ctx::Ctx;

pub fn run(ctx: &Ctx, image: BaseImage, tag: &str, push: bool, platforms: &[String]) -> Result<()> {
    base::publish(ctx, image, tag, push, platforms)
}
