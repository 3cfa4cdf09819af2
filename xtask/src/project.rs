//! Where the project is, and what git says about it. Only read-only git commands here, with
//! `--no-optional-locks` so not even git's index gets rewritten in the developer's tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{Cmd, Runner};

/// The paths of the repository that go into a build: the rest (xtask, docs) never does.
pub const BUILD_INPUTS: [&str; 3] = ["app", "docker", ".dockerignore"];

/// The project root: `XTASK_ROOT` when set (tests point it at a scratch clone), else the
/// directory above this crate.
pub fn root() -> Result<PathBuf> {
    let root = match std::env::var_os("XTASK_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    };
    root.canonicalize().with_context(|| {
        format!(
            "project root {} does not exist; check XTASK_ROOT",
            root.display()
        )
    })
}

pub fn git(root: &Path) -> Cmd {
    Cmd::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(root.display().to_string())
}

/// The commit being built.
pub fn head_revision(runner: &Runner, root: &Path) -> Result<String> {
    runner
        .query(&git(root).args(["rev-parse", "HEAD"]))
        .context("cannot read the git revision of HEAD; build-app builds a git checkout with at least one commit")
}

/// Uncommitted changes (modified, staged, untracked-not-ignored) among the build inputs.
pub fn dirty_files(runner: &Runner, root: &Path) -> Result<Vec<String>> {
    let out = runner.query(
        &git(root)
            .args(["status", "--porcelain", "--untracked-files=all", "--"])
            .args(BUILD_INPUTS),
    )?;
    Ok(out
        .lines()
        .map(|line| line.get(3..).unwrap_or(line).to_string())
        .collect())
}

/// Now, as RFC 3339 UTC (`2026-11-21T09:30:00Z`), for the `created` label; no date crate needed.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (proleptic Gregorian), shifted so the year starts in March.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_253_400), "2026-11-21T09:30:00Z");
    }
}
