//! A private copy of the build inputs in a temporary directory, so composer and npm never touch
//! the developer's tree (its dev `vendor/` and `node_modules/` stay as they are).
//!
//! The directory is removed when [`Staging`] is dropped: on success, on error and after Ctrl-C
//! (the signal handler turns the signal into an error, so the drop runs).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::project::{git, BUILD_INPUTS};

/// Which state of the tree gets built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Exactly the committed `HEAD`.
    Head,
    /// The working tree: tracked files as they are now, plus untracked files git does not ignore.
    WorkingTree,
}

pub struct Staging {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Staging {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now (instead of at drop) so a failure to remove is reported.
    pub fn remove(mut self) -> Result<()> {
        match self.dir.take() {
            Some(dir) => dir.close().with_context(|| {
                format!("cannot remove staging directory {}", self.path.display())
            }),
            None => Ok(()),
        }
    }
}

/// Names that never leave the developer's tree, whatever git says: dev dependencies, git, and
/// secrets (`.env`, SSH keys: an untracked `app/.ssh/` reached the php image with --allow-dirty,
/// found by tests/image_hygiene.rs).
pub fn is_excluded(relative: &Path) -> bool {
    relative.components().any(|part| {
        let name = part.as_os_str().to_string_lossy();
        matches!(
            name.as_ref(),
            "vendor" | "node_modules" | ".git" | ".ssh" | "authorized_keys"
        ) || is_ssh_private_key(&name)
            || name == ".env"
            || (name.starts_with(".env.") && name != ".env.example")
    })
}

/// The default names `ssh-keygen` gives private keys.
fn is_ssh_private_key(name: &str) -> bool {
    [
        "id_rsa",
        "id_dsa",
        "id_ecdsa",
        "id_ed25519",
        "id_ecdsa_sk",
        "id_ed25519_sk",
    ]
    .contains(&name)
}

/// Copies the build inputs into a fresh temporary directory.
pub fn stage(runner: &Runner, root: &Path, source: Source) -> Result<Staging> {
    if runner.dry_run {
        let path = std::env::temp_dir().join("xtask-staging.XXXXXX");
        if source == Source::Head {
            for cmd in archive_commands(root, &path) {
                runner.run(&cmd)?;
            }
        } else {
            println!(
                "# copy the working tree's tracked and untracked files of {} into {}",
                BUILD_INPUTS.join(", "),
                path.display()
            );
        }
        return Ok(Staging { dir: None, path });
    }
    let dir = tempfile::Builder::new()
        .prefix("xtask-staging.")
        .tempdir()
        .context(
            "cannot create a staging directory in the temp dir; check TMPDIR and free space",
        )?;
    let path = dir.path().to_path_buf();
    let staging = Staging {
        dir: Some(dir),
        path,
    };
    match source {
        Source::Head => {
            for cmd in archive_commands(root, staging.path()) {
                runner.run(&cmd)?;
            }
            std::fs::remove_file(staging.path().join(".source.tar"))?;
            scrub(staging.path(), staging.path())?;
        }
        Source::WorkingTree => copy_working_tree(runner, root, staging.path())?,
    }
    Ok(staging)
}

/// `git archive HEAD` of the build inputs, unpacked into `dest`.
fn archive_commands(root: &Path, dest: &Path) -> [Cmd; 2] {
    let tar = dest.join(".source.tar").display().to_string();
    [
        git(root)
            .args(["archive", "--format=tar", "--output", &tar, "HEAD", "--"])
            .args(BUILD_INPUTS),
        Cmd::new("tar").args(["-xf", &tar, "-C", &dest.display().to_string()]),
    ]
}

/// The files `--allow-dirty` stages: tracked and untracked-not-ignored files of the build
/// inputs that exist, minus the names that never leave the tree; relative to `root`.
pub fn working_tree_files(runner: &Runner, root: &Path) -> Result<Vec<String>> {
    let listed = runner.query(
        &git(root)
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
            ])
            .args(BUILD_INPUTS),
    )?;
    Ok(listed
        .split('\0')
        .filter(|p| !p.is_empty())
        // A tracked file deleted in the working tree is simply not part of the build.
        .filter(|p| !is_excluded(Path::new(p)) && std::fs::symlink_metadata(root.join(p)).is_ok())
        .map(String::from)
        .collect())
}

fn copy_working_tree(runner: &Runner, root: &Path, dest: &Path) -> Result<()> {
    for relative in working_tree_files(runner, root)? {
        let relative = Path::new(&relative);
        let from = root.join(relative);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        let to = dest.join(relative);
        std::fs::create_dir_all(to.parent().expect("a listed file has a parent"))?;
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else {
            std::fs::copy(&from, &to).with_context(|| {
                format!("cannot copy {} to the staging directory", from.display())
            })?;
        }
    }
    Ok(())
}

/// Removes excluded names that were committed by mistake.
fn scrub(top: &Path, dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let relative = path.strip_prefix(top).expect("inside the staging dir");
        if is_excluded(relative) {
            crate::progress::print_line(
                false,
                &format!(
                    "warning: {} is committed but never goes into a build; left out",
                    relative.display()
                ),
            );
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        } else if entry.file_type()?.is_dir() {
            scrub(top, &path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_copied() {
        for path in [
            "app/vendor/autoload.php",
            "app/node_modules/x",
            ".git/config",
            "app/.env",
            "app/.env.local",
            "vendor",
            "app/.ssh/config",
            "app/id_rsa",
            "app/keys/id_ed25519",
            "docker/authorized_keys",
        ] {
            assert!(is_excluded(Path::new(path)), "{path}");
        }
        for path in [
            "app/src/Vendor.php",
            "app/.env.example",
            "app/public/index.php",
            "docker/php/Dockerfile",
            "app/vendors.txt",
            "app/src/id_rsa.php",
            "app/id_rsa.pub",
        ] {
            assert!(!is_excluded(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn archive_command_lines() {
        let [archive, untar] = archive_commands(Path::new("/repo"), Path::new("/tmp/s"));
        assert_eq!(
            archive.argv(),
            [
                "git",
                "--no-optional-locks",
                "-C",
                "/repo",
                "archive",
                "--format=tar",
                "--output",
                "/tmp/s/.source.tar",
                "HEAD",
                "--",
                "app",
                "docker",
                ".dockerignore"
            ]
        );
        assert_eq!(
            untar.argv(),
            ["tar", "-xf", "/tmp/s/.source.tar", "-C", "/tmp/s"]
        );
    }
}
