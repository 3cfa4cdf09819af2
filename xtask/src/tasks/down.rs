//! `cargo xtask down`: stop what `cargo xtask up` started. The contacts volume is kept unless
//! `--volumes` is given.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::local_stack::LocalStack;

pub fn run(ctx: &Ctx, volumes: bool, project: &str) -> Result<()> {
    let stack = LocalStack::new(&ctx.root, &ctx.config, &ctx.root, project, "dev", 0)?;
    stack.remove(&ctx.runner, volumes)
}
