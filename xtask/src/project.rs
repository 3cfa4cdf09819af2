//! Where the project is, and what git says about it. Only read-only git commands here, with
//! `--no-optional-locks` so not even git's index gets rewritten in the developer's tree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner};

/// The paths of the repository that go into a build: the rest (xtask, docs) never does.
pub const BUILD_INPUTS: [&str; 3] = ["app", "docker", ".dockerignore"];

/// The project root: `XTASK_ROOT` when set (tests point it at a scratch clone), else the
/// checkout `cargo xtask` runs in (cargo sets `CARGO_MANIFEST_DIR` for the program it runs),
/// else, for the binary started by hand, the checkout it was built from.
///
/// Two checkouts sharing one `CARGO_TARGET_DIR` share one `target/debug/xtask`, and cargo can
/// find the other checkout's build fresh: its code must not run on this tree. `XTASK_CHECKOUT`
/// (`.cargo/config.toml`, `[env]`) is compiled in, and cargo rebuilds when its value changes;
/// a cargo that does not track it gets a refusal naming the fix.
pub fn root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XTASK_ROOT") {
        return canonical(PathBuf::from(dir), "check XTASK_ROOT");
    }
    let built = built_from();
    match running_in() {
        None => canonical(built, "rebuild it with `cargo xtask`"),
        Some(here) => {
            let here = canonical(here, "run `cargo xtask` inside a checkout of this project")?;
            check_built_here(built.canonicalize().ok().as_deref(), &built, &here)?;
            Ok(here)
        }
    }
}

/// The checkout whose code this binary is.
fn built_from() -> PathBuf {
    match option_env!("XTASK_CHECKOUT") {
        Some(dir) => PathBuf::from(dir),
        // Built without the repository's .cargo/config.toml (e.g. `--manifest-path` from outside).
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
    }
}

/// The checkout `cargo run` (`cargo xtask`) started us in, from the variables cargo sets for
/// the program it runs; None when started otherwise.
fn running_in() -> Option<PathBuf> {
    if std::env::var_os("CARGO_PKG_NAME").as_deref() != Some("xtask".as_ref()) {
        return None;
    }
    std::env::var_os("CARGO_MANIFEST_DIR").map(|dir| PathBuf::from(dir).join(".."))
}

/// Refuses, in one line with the fix, a binary built from another checkout than `here`.
fn check_built_here(built: Option<&Path>, built_raw: &Path, here: &Path) -> Result<()> {
    if built == Some(here) {
        return Ok(());
    }
    let built = built.unwrap_or(built_raw);
    bail!(
        "this xtask binary was built from {}, not from {} (two checkouts share one CARGO_TARGET_DIR and cargo reused the other's build); rebuild it here: `touch {}` and run the command again, or give each checkout its own CARGO_TARGET_DIR",
        built.display(),
        here.display(),
        here.join("xtask/src/main.rs").display()
    )
}

fn canonical(root: PathBuf, hint: &str) -> Result<PathBuf> {
    root.canonicalize()
        .with_context(|| format!("project root {} does not exist; {hint}", root.display()))
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

/// Unix seconds as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
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
    fn a_binary_of_another_checkout_is_refused_with_the_fix() {
        let here = Path::new("/work/b");
        check_built_here(Some(here), here, here).unwrap();
        let err = check_built_here(Some(Path::new("/work/a")), Path::new("/work/a"), here)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("this xtask binary was built from /work/a, not from /work/b "),
            "{err}"
        );
        assert!(err.contains("`touch /work/b/xtask/src/main.rs`"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        // The checkout it was built from is gone: refused too, naming it as compiled in.
        let err = check_built_here(None, Path::new("/gone/xtask/.."), here)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built from /gone/xtask/.., not from /work/b"),
            "{err}"
        );
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_253_400), "2026-11-21T09:30:00Z");
    }
}
