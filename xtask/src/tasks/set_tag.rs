//! `cargo xtask set-tag --tag x.y.z [--file compose.yaml]`: point the app images of a compose
//! file at another release, leaving every other byte of the file as it is.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cmd::Runner;
use crate::compose_file::{self, Change};
use crate::config::APP_IMAGES;
use crate::ctx::Ctx;
use crate::reference::check_release_tag;

pub fn run(ctx: &Ctx, tag: &str, file: &Path) -> Result<()> {
    check_release_tag(tag)?;
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

/// One line per rewritten reference, e.g. `compose.yaml:12: .../crm-gdb_php:1.0.0 -> .../crm-gdb_php:1.4.0`.
pub fn report(path: &Path, changes: &[Change], runner: &Runner) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if changes.is_empty() {
        runner.say(format!("{name}: already at this tag, nothing to change"));
    }
    let verb = if runner.dry_run { "would set" } else { "set" };
    for change in changes {
        runner.say(format!(
            "{name}:{}: {verb} {} -> {}",
            change.line, change.old, change.new
        ));
    }
}
