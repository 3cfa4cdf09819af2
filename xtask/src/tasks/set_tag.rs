//! `cargo xtask set-tag --tag x.y.z [--file compose.yaml]`: point the app images of a compose
//! file at another release, leaving every other byte of the file as it is.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::build::compose_tag::report;
use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::ctx::Ctx;
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Release tag to set.
    #[arg(long)]
    pub tag: ReleaseTag,
    /// Compose file to edit (relative to the project root).
    #[arg(long, default_value = "compose.yaml")]
    pub file: PathBuf,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let (tag, file) = (args.tag.as_str(), args.file.as_path());
    let _lock = (!ctx.runner.dry_run)
        .then(|| crate::build::tree_lock::acquire(&ctx.root, "set-tag"))
        .transpose()?;
    let path = ctx.root.join(file);
    let changes = if ctx.runner.dry_run {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let (_, changes) = compose_file::set_tag(&text, tag, &APP_IMAGES)
            .map_err(|err| anyhow::anyhow!("cannot set tag in {}: {err}", path.display()))?;
        changes
    } else {
        compose_file::set_tag_in_file(&path, tag, &APP_IMAGES)?
    };
    report(&path, &changes, &ctx.runner);
    Ok(())
}
