//! The runtime settings (`.env`, with APP_SECRET) of the stack `cargo xtask up` runs.
//!
//! Without APP_SECRET the app disables its contact form, so the first `up` of a project makes a
//! random one and later runs reuse it (a new secret would void the forms open in a browser).
//! It lives in the user's state directory, `$XDG_STATE_HOME/xtask/<project>/.env`, else
//! `~/.local/state/xtask/<project>/.env` (mode 0600): outside the tree, so it never reaches a
//! build context or an image. That directory is the Compose project directory, where compose
//! reads `.env` for the containers (compose.yaml's `env_file`): the value is never on a command
//! line. A developer's own `.env` at the root of the tree still wins, as compose.yaml says.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::Runner;
use crate::secret::Secret;

/// The Compose project directory of `up`'s stack: the tree when it has its own `.env`, else the
/// state directory of `project`, whose `.env` is made (with a fresh APP_SECRET) if missing.
/// Under `--dry-run` nothing is written.
pub fn project_dir(root: &Path, project: &str, runner: &Runner) -> Result<PathBuf> {
    if root.join(".env").is_file() {
        runner.say("  runtime settings (APP_SECRET) from .env in the tree");
        return Ok(root.to_path_buf());
    }
    let dir = state_dir(project)?;
    let file = dir.join(".env");
    if file.is_file() {
        return Ok(dir);
    }
    if runner.dry_run {
        runner.say(format!(
            "  would make {} with a new random APP_SECRET",
            file.display()
        ));
        return Ok(dir);
    }
    let secret = Secret::random().context("cannot make a random APP_SECRET")?;
    write_new(&dir, &file, &secret)
        .with_context(|| format!("cannot write the local APP_SECRET to {}; check that directory is writable, or set XDG_STATE_HOME", file.display()))?;
    runner.say(format!(
        "  made a random APP_SECRET for the contact form, kept in {}",
        file.display()
    ));
    Ok(dir)
}

/// The database password's file of `project`'s stack, in its state directory (made by the
/// stack's first `up`): outside the tree even when the tree's own `.env` is used.
pub fn db_password_file(project: &str) -> Result<PathBuf> {
    Ok(state_dir(project)?.join("db_password"))
}

/// `$XDG_STATE_HOME/xtask/<project>`, else `~/.local/state/xtask/<project>`.
fn state_dir(project: &str) -> Result<PathBuf> {
    check_project_name(project)?;
    let env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = env("XDG_STATE_HOME")
        .or_else(|| env("HOME").map(|home| home.join(".local/state")))
        .context("neither XDG_STATE_HOME nor HOME is set: nowhere to keep the local APP_SECRET")?;
    Ok(base.join("xtask").join(project))
}

/// Compose's rule for project names; it also keeps the name one plain path component.
fn check_project_name(project: &str) -> Result<()> {
    let mut chars = project.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!("invalid project name {project:?}: lowercase letters, digits, `-` and `_`, starting with a letter or digit");
    }
    Ok(())
}

/// Writes `file` (0600, in a 0700 directory) whole or not at all: a temporary file renamed into
/// place, never over an existing one (a concurrent `up` may have made it first; then that one is
/// used).
fn write_new(dir: &Path, file: &Path, secret: &Secret) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // NamedTempFile is created with mode 0600.
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    writeln!(
        temp,
        "# Made by `cargo xtask up`: the app's runtime settings for this project, never in an image.\n\
         # Signs the contact form's CSRF token. Delete this file for a new one.\n\
         APP_SECRET={}",
        secret.expose() // written to its own 0600 file, the one place it is needed
    )?;
    temp.as_file().sync_all()?;
    if let Err(err) = temp.persist_noclobber(file) {
        if !file.is_file() {
            return Err(err.error.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Verbosity;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn made_once_private_and_reused() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("xtask/crm-local");
        let file = dir.join(".env");
        write_new(&dir, &file, &Secret::new("first")).unwrap();
        let first = std::fs::read_to_string(&file).unwrap();
        assert!(first.contains("\nAPP_SECRET=first\n"), "{first}");
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        // A second writer (a concurrent up) keeps the first secret.
        write_new(&dir, &file, &Secret::new("second")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "temp file left"
        );
    }

    #[test]
    fn the_trees_own_env_wins() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(".env"), "APP_SECRET=mine-mine-mine-mine\n").unwrap();
        let runner = Runner::new(true, Verbosity::Quiet);
        assert_eq!(
            project_dir(root.path(), "crm-local", &runner).unwrap(),
            root.path()
        );
    }

    #[test]
    fn project_names_are_one_path_component() {
        for good in ["crm-gdb-local", "a", "0_x-y"] {
            check_project_name(good).unwrap();
        }
        for bad in ["", "../x", "a/b", "Crm", "-x", "_x", "a b", "."] {
            let err = check_project_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid project name"), "{err}");
        }
    }
}
