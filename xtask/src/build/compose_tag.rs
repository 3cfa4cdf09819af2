//! Pointing a compose file at a release: the change planned before a build (refused early when
//! it cannot be made) and the one-line-per-reference report of what was, or would be, changed.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cmd::Runner;
use crate::compose_file::{self, Change};
use crate::config::APP_IMAGES;

/// Refuses early (before any build) a compose file that `set-tag` could not update.
pub fn check_compose_file(path: &Path, tag: &str) -> Result<Vec<compose_file::Change>> {
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
