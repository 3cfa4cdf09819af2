//! Where a deploy goes, as given on the command line (`--host`, `--dir`, `--stack`, ...) and
//! as checked: shared by deploy, rollback, backup and status.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::deploy::target::Target;

/// Where and how: shared by deploy, rollback, backup and status.
pub struct TargetOptions {
    pub target: Target,
    /// How long to wait for a live holder of the deploy lock (None: refuse at once).
    pub lock_wait: Option<std::time::Duration>,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge).
    pub stack: String,
    pub keep_backups: usize,
}

/// Where a deploy goes, shared by deploy, rollback, backup and status.
#[derive(Args)]
pub struct TargetArgs {
    /// Server as [user@]host[:port], reached with the system ssh (host keys checked); omit for this machine.
    #[arg(long)]
    host: Option<String>,
    /// Deploy directory on the target, holding compose.yaml and .env.
    #[arg(long)]
    dir: String,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge).
    #[arg(long, env = "XTASK_STACK", default_value = "crm")]
    stack: String,
    /// ssh config file for ssh -F (e.g. keys and known_hosts of a CI runner).
    #[arg(long, env = "XTASK_SSH_CONFIG")]
    ssh_config: Option<PathBuf>,
    /// Number of data backups kept on the target.
    #[arg(long, default_value_t = 5)]
    keep_backups: usize,
}

impl TargetArgs {
    /// Checked: a valid stack name and target.
    pub fn options(&self) -> Result<TargetOptions> {
        let valid = !self.stack.is_empty()
            && self
                .stack
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && self
                .stack
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            anyhow::bail!("invalid --stack {:?}: lowercase letters, digits, '-' and '_' (a Compose project name)", self.stack);
        }
        Ok(TargetOptions {
            target: Target::new(self.host.as_deref(), &self.dir, self.ssh_config.clone())?,
            lock_wait: None,
            stack: self.stack.clone(),
            keep_backups: self.keep_backups,
        })
    }
}
