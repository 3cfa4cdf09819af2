//! `cargo xtask completions bash|zsh|fish`: a completion script for the task names and flags.
//!
//! Shells complete the first word typed, and `cargo` knows nothing of xtask's arguments, so the
//! script completes a command named `xtask`: define `xtask` as a function calling `cargo xtask`
//! (see the examples of `cargo xtask completions --help`).

use anyhow::Result;
use clap_complete::Shell;

/// The command name the scripts complete.
const NAME: &str = "xtask";

/// Writes the script for `shell` to stdout.
pub fn run(shell: Shell, cli: &mut clap::Command) -> Result<()> {
    clap_complete::generate(shell, cli, NAME, &mut std::io::stdout());
    Ok(())
}
