//! The deploy lock on a target: one deploy, rollback, backup or restore at a time. `mkdir` is
//! atomic, so the lock is a directory, `.deploy/lock/`, with an `owner` file naming who holds it
//! and since when; it is removed when the [`Lock`] guard drops, also after an error or Ctrl-C.

use anyhow::{bail, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::{who, Deployment};
use crate::deploy::remote::Remote;
use crate::project::now_rfc3339;

pub const LOCK_DIR: &str = ".deploy/lock";

impl Deployment {
    /// Takes the deploy lock, or refuses naming who holds it and since when.
    pub fn lock(&self, operation: &str) -> Result<Lock> {
        let lock = self.target().path(LOCK_DIR);
        self.remote
            .run(Cmd::new("mkdir").args(["-p", &self.target().path(".deploy")]))?;
        // mkdir is atomic: it fails when the lock exists. (Under --dry-run it is only printed.)
        let take = Cmd::new("mkdir").arg(&lock);
        let taken = if self.remote.dry_run() {
            self.remote.run(take).is_ok()
        } else {
            self.remote.output(take)?.status.success()
        };
        if !taken {
            let owner = self
                .read(&format!("{LOCK_DIR}/owner"))
                .unwrap_or_else(|_| "unknown".into());
            bail!(
                "another deploy holds the lock on {}: {owner}; wait for it, or if it died, remove {lock}",
                self.target().describe()
            );
        }
        let guard = Lock {
            remote: self.remote.undoing(),
            path: lock.clone(),
        };
        let owner = format!(
            "{operation} by {} (pid {}) since {}",
            who(),
            std::process::id(),
            now_rfc3339()
        );
        self.write_atomically(&format!("{LOCK_DIR}/owner"), owner.as_bytes())?;
        Ok(guard)
    }
}

/// Held while a deploy runs; released on drop, also after an error or Ctrl-C.
pub struct Lock {
    remote: Remote,
    path: String,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Err(err) = self
            .remote
            .cleanup(Cmd::new("rm").args(["-rf", &self.path]))
        {
            eprintln!("warning: could not release the deploy lock: {err:#}");
        }
    }
}
