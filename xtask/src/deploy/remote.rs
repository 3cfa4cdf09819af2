//! A [`Runner`] bound to a [`Target`]: every command given to it runs there (through
//! [`Target::cmd`], so over ssh when the target is a server). A plain value (cloneable, `Send`),
//! so several targets can be driven side by side on threads.
//!
//! Its [`Mode`] says what `run` means: do the work, or put things back. Undoing runs each action
//! as a cleanup (also after Ctrl-C: putting the previous release back must happen), which
//! replaces an `if undoing { cleanup } else { run }` at every call.

use std::sync::Arc;

use anyhow::Result;

use crate::cmd::{Cmd, Runner};
use crate::deploy::target::Target;

/// What [`Remote::run`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Work: an action stops at Ctrl-C.
    Forward,
    /// Putting things back after a failure or Ctrl-C: every action runs as a cleanup.
    Undo,
}

#[derive(Clone, Debug)]
pub struct Remote {
    pub target: Target,
    pub runner: Runner,
    pub mode: Mode,
    /// Set when several targets run side by side: output lines are prefixed `[label] `.
    pub label: Option<Arc<str>>,
}

impl Remote {
    pub fn new(target: Target, runner: Runner) -> Remote {
        Remote {
            target,
            runner,
            mode: Mode::Forward,
            label: None,
        }
    }

    /// The same target, its output prefixed with `[label]` (one host of a fleet).
    pub fn labelled(&self, label: &str) -> Remote {
        Remote {
            label: Some(label.into()),
            ..self.clone()
        }
    }

    /// The same target, with every action run as a cleanup.
    pub fn undoing(&self) -> Remote {
        Remote {
            mode: Mode::Undo,
            ..self.clone()
        }
    }

    /// `cmd` as it runs on the target (wrapped in ssh for a server).
    pub fn cmd(&self, cmd: Cmd) -> Cmd {
        self.target.cmd(cmd)
    }

    /// An action on the target (a cleanup when undoing).
    pub fn run(&self, cmd: Cmd) -> Result<()> {
        let cmd = self.cmd(cmd);
        match (self.mode, &self.label) {
            (Mode::Forward, None) => self.runner.run(&cmd),
            (Mode::Forward, Some(label)) => self.runner.run_labelled(&cmd, label),
            (Mode::Undo, _) => self.runner.cleanup(&cmd).map(drop),
        }
    }

    /// A read-only query on the target: its trimmed stdout. When undoing it also runs after
    /// Ctrl-C (putting the edge back needs to find the edge).
    pub fn query(&self, cmd: Cmd) -> Result<String> {
        match self.mode {
            Mode::Forward => self.runner.query(&self.cmd(cmd)),
            Mode::Undo => self.runner.query_for_cleanup(&self.cmd(cmd)),
        }
    }

    /// A read-only check on the target: did it exit 0? (When undoing, also after Ctrl-C.)
    pub fn succeeds(&self, cmd: Cmd) -> Result<bool> {
        match self.mode {
            Mode::Forward => self.runner.succeeds(&self.cmd(cmd)),
            Mode::Undo => self.runner.succeeds_for_cleanup(&self.cmd(cmd)),
        }
    }

    /// A read-only command on the target, status and output, for callers that explain failures.
    pub fn output(&self, cmd: Cmd) -> Result<std::process::Output> {
        self.runner.output(&self.cmd(cmd))
    }

    /// A tidying-up action on the target, run even after Ctrl-C; its trimmed stdout.
    pub fn cleanup(&self, cmd: Cmd) -> Result<String> {
        self.runner.cleanup(&self.cmd(cmd))
    }

    /// An action whose output is shown as it comes, each line after `prefix` (and the host's
    /// label in a fleet); its exit status, for the caller to word a failure.
    pub fn streamed(&self, cmd: Cmd, prefix: &str) -> Result<i32> {
        let prefix = match &self.label {
            Some(label) => format!("[{label}] {prefix}"),
            None => prefix.to_string(),
        };
        self.runner.streamed(&self.cmd(cmd), &prefix)
    }

    pub fn dry_run(&self) -> bool {
        self.runner.dry_run
    }

    pub fn say(&self, line: impl AsRef<str>) {
        match &self.label {
            None => self.runner.say(line),
            Some(label) => self.runner.say(format!("[{label}] {}", line.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Verbosity;

    #[test]
    fn a_remote_is_a_value_threads_can_share() {
        fn send_and_clone<T: Send + Sync + Clone>() {}
        send_and_clone::<Remote>();
        let target = Target::new(Some("deploy@web1:2222"), "/srv/crm", None).unwrap();
        let remote = Remote::new(target, Runner::new(true, Verbosity::Quiet));
        assert_eq!(remote.undoing().mode, Mode::Undo);
        assert_eq!(remote.mode, Mode::Forward);
        let argv = remote.cmd(Cmd::new("ls")).argv().join(" ");
        assert!(
            argv.starts_with("ssh ") && argv.ends_with(" web1 -- ls"),
            "{argv}"
        );
    }
}
