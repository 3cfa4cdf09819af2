//! `cargo xtask deploy --tag x.y.z --dir PATH [--host user@host[:port]]`: put a release in
//! production with Docker Compose, on this machine or over ssh.
//!
//! 1. check the target (reachable, host key known, directory and compose.yaml there);
//! 2. take the deploy lock (a second deploy is refused, naming who holds it and since when, or
//!    waits with `--lock-wait`; a dead deploy's lock is taken over and the target reconciled);
//! 3. pull the release on the target: the tag exists, before anything is stopped;
//! 4. back up the data volume (the last N archives are kept);
//! 5. switch: `rolling` (default) starts the release beside the live one, gates on health,
//!    points the edge at it and drains the old one; `recreate` is the old Makefile's procedure
//!    (stop, clear and copy the assets, start), with downtime;
//! 6. verify `/health` through the edge; on any failure (or Ctrl-C) put the previous release
//!    back, show the new containers' logs and exit non-zero;
//! 7. append to the target's history (time, tag, revision, who, strategy, result).
//!
//! `rollback` runs the same switch towards an earlier tag.

use anyhow::Result;

use crate::ctx::Ctx;
use crate::deploy::options::TargetArgs;
use crate::deploy::switch::{switch_release, Strategy};
use crate::reference::ReleaseTag;

#[derive(clap::Args)]
pub struct Args {
    /// Release tag to deploy (must be in the registry).
    #[arg(long)]
    pub tag: ReleaseTag,
    /// rolling: new containers beside the old, switch once healthy; recreate: the old Makefile's stop-and-start.
    #[arg(long, value_enum, default_value = "rolling")]
    pub strategy: Strategy,
    /// When another deploy holds the lock, wait for it this long (90s, 10m, 1h) instead of failing.
    #[arg(long, value_name = "DURATION", value_parser = crate::deploy::lock::parse_wait)]
    pub lock_wait: Option<std::time::Duration>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let mut opts = args.target.options()?;
    opts.lock_wait = args.lock_wait;
    switch_release(ctx, &opts, &args.tag, args.strategy, "deploy").map(drop)
}
