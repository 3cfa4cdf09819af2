//! What every task gets: the configuration, the command runner and the project root.

use std::path::PathBuf;

use crate::cmd::Runner;
use crate::config::Config;

/// What every task gets: the configuration, the command runner and the project root.
pub struct Ctx {
    pub config: Config,
    pub runner: Runner,
    pub root: PathBuf,
}
