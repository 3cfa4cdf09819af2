//! `cargo xtask rollback [--to TAG] --dir PATH [--host ...]`: return the target to the previous
//! successful release from its history (or to TAG), with the same zero-downtime switch as
//! `deploy`. Fast: the images are already on the target, so nothing is pulled.

use anyhow::{bail, Result};

use crate::ctx::Ctx;
use crate::deploy::deployment::Deployment;
use crate::deploy::options::TargetOptions;
use crate::deploy::stack::Stack;
use crate::deploy::switch::{self, Strategy};
use crate::reference::check_release_tag;

/// Returns how long after the start the edge began sending traffic to the earlier release.
pub fn run(ctx: &Ctx, opts: &TargetOptions, to: Option<&str>) -> Result<std::time::Duration> {
    if let Some(tag) = to {
        check_release_tag(tag)?;
    }
    opts.target.check(&ctx.runner)?;
    let d = Deployment::new(&opts.target, &ctx.runner, &opts.stack);
    let stack = Stack::new(&d);
    let live = stack.live_release()?.and_then(|(_, tag)| tag);
    let tag = match to {
        Some(tag) => tag.to_string(),
        None => {
            let history = d.history()?;
            match previous_release(&history, live.as_deref()) {
                Some(tag) => tag,
                None => bail!(
                    "the history of {} names no earlier successful release; use --to TAG",
                    opts.target.describe()
                ),
            }
        }
    };
    if live.as_deref() == Some(tag.as_str()) {
        bail!(
            "{tag} is already live on {}; nothing to roll back to",
            opts.target.describe()
        );
    }
    switch::switch_release(ctx, opts, &tag, Strategy::Rolling, "rollback")
}

/// The last successful release before the live one: the newest `ok` line whose tag differs.
fn previous_release(
    history: &[crate::deploy::history::Entry],
    live: Option<&str>,
) -> Option<String> {
    history
        .iter()
        .rev()
        .filter(|e| e.succeeded())
        .map(|e| e.tag.clone())
        .find(|tag| Some(tag.as_str()) != live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::history::Entry;

    fn entry(tag: &str, result: &str) -> Entry {
        Entry {
            time: "t".into(),
            tag: tag.into(),
            revision: "r".into(),
            who: "w".into(),
            strategy: "rolling".into(),
            result: result.into(),
        }
    }

    #[test]
    fn previous_successful_release() {
        let history = [
            entry("1.0.0", "ok"),
            entry("1.1.0", "ok"),
            entry("1.2.0", "failed; rolled back"),
            entry("1.1.0", "ok"),
        ];
        assert_eq!(
            previous_release(&history, Some("1.1.0")).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(previous_release(&history[..1], Some("1.0.0")), None);
    }
}
