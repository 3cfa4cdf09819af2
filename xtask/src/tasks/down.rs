//! `cargo xtask down`: stop what `cargo xtask up` started. The contacts volume is kept unless
//! `--volumes` is given.

use anyhow::Result;

use crate::tasks::{up, Ctx};

pub fn run(ctx: &Ctx, volumes: bool, project: &str) -> Result<()> {
    let mut cmd = up::compose(&ctx.root, project).args(["down", "--remove-orphans"]);
    if volumes {
        cmd = cmd.arg("--volumes");
    }
    ctx.runner.run(&cmd)
}
