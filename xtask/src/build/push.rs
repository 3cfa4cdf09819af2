//! Pushing images to the registry: side by side, retried with backoff, logged in first when
//! the CI's credentials are in the environment.

use anyhow::{Context, Result};

use crate::ctx::Ctx;
use crate::docker;
use crate::reference::ImageRef;
use crate::retry;

/// Pushes the images side by side, with a message that names the registry when one fails. A
/// push that failed transiently is retried with backoff (`retry.rs`): a registry restarting
/// mid-release is common; a refused login or an unknown host fails at once.
pub fn push_all(ctx: &Ctx, images: &[&ImageRef]) -> Result<()> {
    let backoff = retry::Backoff::for_pushes()?;
    if let Some(first) = images.first() {
        crate::build::login::from_env_if_set(ctx, first.host())?;
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
