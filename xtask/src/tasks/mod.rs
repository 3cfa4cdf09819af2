//! One module per task: its clap `Args` and its `run`, nothing else public. What several tasks
//! share lives below, in `build/`, `deploy/` or the ground floor; nothing there calls a task.
//! To add a task: write `tasks/my_task.rs` with `#[derive(clap::Args)] pub struct Args` and
//! `pub fn run(ctx: &Ctx, args: &Args) -> Result<()>`, add it below, and add a variant
//! `MyTask(my_task::Args)` to `Task` in `main.rs` that calls it.

pub mod backup;
pub mod bench;
pub mod bench_deploy;
pub mod build_app;
pub mod completions;
pub mod deploy;
pub mod docker_publish;
pub mod doctor;
pub mod down;
pub mod exec;
pub mod lock;
pub mod login;
pub mod logs;
pub mod maintenance;
pub mod prune;
pub mod rollback;
pub mod set_tag;
pub mod status;
pub mod test_image;
pub mod testbed;
pub mod tls;
pub mod up;
