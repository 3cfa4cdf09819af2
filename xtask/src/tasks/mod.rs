//! One module per task, each with one public `run` entry point. To add a task: write
//! `tasks/my_task.rs` with `pub fn run(ctx: &Ctx, ...) -> Result<()>`, add it below, and add a
//! variant to `Task` in `main.rs` that calls it.

use std::path::PathBuf;

use crate::cmd::Runner;
use crate::config::Config;

pub mod backup;
pub mod bench;
pub mod bench_deploy;
pub mod build_app;
pub mod completions;
pub mod deploy;
pub mod docker_publish;
pub mod doctor;
pub mod down;
pub mod lock;
pub mod login;
pub mod rollback;
pub mod set_tag;
pub mod status;
pub mod test_image;
pub mod up;

/// What every task gets: the configuration, the command runner and the project root.
pub struct Ctx {
    pub config: Config,
    pub runner: Runner,
    pub root: PathBuf,
}
