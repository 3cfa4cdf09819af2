//! `cargo xtask down`: stop what `cargo xtask up` started. The contacts volume is kept unless
//! `--volumes` is given.

use anyhow::Result;

use crate::tasks::{up, Ctx};

pub fn run(ctx: &Ctx, volumes: bool) -> Result<()> {
    let mut cmd = up::compose(&ctx.root).args(["down", "--remove-orphans"]);
    if volumes {
        cmd = cmd.arg("--volumes");
    }
    ctx.runner.run(&cmd)
}
