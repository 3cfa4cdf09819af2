//! One writer per tree: `build-app` and `set-tag` hold an exclusive lock on the project root
//! while they run, so two of them at once cannot interleave their rewrites of compose.yaml (or
//! push one release while the other sets the tag). The second is refused with a one-line message
//! naming the holder; it does not wait, since a build takes minutes and the user should decide.
//!
//! The lock is `flock(2)` on `xtask-tree.lock` in the tree's git directory (`.git`, or the
//! worktree's own git dir): never a file of the developer's checkout, and the one place every
//! run on that tree finds, whatever its user, `$XDG_RUNTIME_DIR` or `$TMPDIR` (sudo, cron and a
//! login shell alike). A tree that is not a git checkout uses `/tmp/xtask-<hash of the
//! root>.lock`. The kernel drops a flock when its process dies, even by SIGKILL, so a crash
//! never leaves a stale lock; the file itself is removed on release.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Held while a task changes the tree; released when dropped.
#[derive(Debug)]
pub struct TreeLock {
    path: PathBuf,
    _file: File,
}

impl Drop for TreeLock {
    fn drop(&mut self) {
        // Removed while still locked (the file closes after this body): whoever opened it
        // meanwhile sees it is gone once they get the lock, and starts again (see `acquire`).
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Locks `root` (already canonical) for `task`, or refuses if another xtask holds it.
pub fn acquire(root: &Path, task: &str) -> Result<TreeLock> {
    acquire_at(lock_path(root), root, task)
}

#[cfg(test)]
fn acquire_in(dir: &Path, root: &Path, task: &str) -> Result<TreeLock> {
    acquire_at(dir.join(hashed_name(root)), root, task)
}

fn acquire_at(path: PathBuf, root: &Path, task: &str) -> Result<TreeLock> {
    loop {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Readable by all: a run as another user (sudo) can still name the holder.
            .mode(0o644)
            // Another user could have planted a symlink in /tmp.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        // A file of another user (a run under sudo): a live holder is named below; one that
        // died left it behind, and read-only is enough to take the lock and then remove it.
        let read_only =
            matches!(&opened, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied);
        let opened = match opened {
            Err(_) if read_only => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path),
            other => other,
        };
        let file = opened.with_context(|| {
            format!(
                "cannot open the lock file {}; check that directory is writable",
                path.display()
            )
        })?;
        // SAFETY: flock(2) on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "another xtask (just starting)".to_string(),
                holder => holder.to_string(),
            };
            bail!(
                "{} is busy: {holder}; wait for it to finish, or stop it (lock: {})",
                root.display(),
                path.display()
            );
        }
        // The previous holder may have removed the file between our open and our lock: then we
        // hold a file no one else can see, so start again with whatever the path is now.
        let same_file = std::fs::metadata(&path).is_ok_and(|now| {
            file.metadata()
                .is_ok_and(|ours| (ours.dev(), ours.ino()) == (now.dev(), now.ino()))
        });
        if !same_file {
            continue;
        }
        if read_only {
            std::fs::remove_file(&path).with_context(|| {
                format!(
                    "{} holds a lock file of another user that no process holds; remove it",
                    path.display()
                )
            })?;
            continue;
        }
        let mut file = file;
        file.set_len(0)?;
        writeln!(
            file,
            "`{task}` (pid {}) has been running since {}",
            std::process::id(),
            crate::project::now_rfc3339()
        )?;
        return Ok(TreeLock { path, _file: file });
    }
}

/// `xtask-tree.lock` in the git directory of `root`, where every run on the tree finds it; for a
/// tree that is not a git checkout, a file in `/tmp` named after the root (the same for every
/// shell and user, unlike `$TMPDIR` or `$XDG_RUNTIME_DIR`).
fn lock_path(root: &Path) -> PathBuf {
    match git_dir(root) {
        Some(dir) => dir.join("xtask-tree.lock"),
        None => Path::new("/tmp").join(hashed_name(root)),
    }
}

/// `root/.git`, or the directory a `.git` file points at (`gitdir: ...`, in a worktree or a
/// submodule): read from the file, no git process needed to take a lock.
fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    let meta = std::fs::symlink_metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let dir = text.strip_prefix("gitdir:")?.trim();
    let dir = root.join(dir);
    dir.is_dir().then_some(dir)
}

fn hashed_name(root: &Path) -> String {
    format!(
        "xtask-{:016x}.lock",
        fnv1a(root.as_os_str().as_encoded_bytes())
    )
}

/// FNV-1a, 64 bits: stable across Rust versions (unlike `DefaultHasher`), so two xtask builds
/// agree on the lock file of a root.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let locks = tempfile::tempdir().unwrap();
        let root = Path::new("/work/some tree");
        let first = acquire_in(locks.path(), root, "build-app").unwrap();
        let err = acquire_in(locks.path(), root, "set-tag")
            .unwrap_err()
            .to_string();
        let pid = format!(
            "`build-app` (pid {}) has been running since 20",
            std::process::id()
        );
        assert!(err.starts_with("/work/some tree is busy: "), "{err}");
        assert!(err.contains(&pid), "{err}");
        assert!(err.contains("wait for it to finish"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");

        // Another tree is independent.
        let other = acquire_in(locks.path(), Path::new("/work/other"), "set-tag").unwrap();
        drop(other);

        // Released on drop, and the file is gone with it.
        drop(first);
        assert!(std::fs::read_dir(locks.path()).unwrap().next().is_none());
        let again = acquire_in(locks.path(), root, "set-tag").unwrap();
        assert_eq!(std::fs::read_dir(locks.path()).unwrap().count(), 1);
        drop(again);
    }

    #[test]
    fn a_file_left_by_a_dead_holder_is_no_lock() {
        let locks = tempfile::tempdir().unwrap();
        let root = Path::new("/work/crashed");
        let path = locks
            .path()
            .join(format!("xtask-{:016x}.lock", fnv1a(b"/work/crashed")));
        std::fs::write(&path, "`build-app` (pid 1) has been running since 2000\n").unwrap();
        let lock = acquire_in(locks.path(), root, "set-tag").unwrap();
        let holder = std::fs::read_to_string(&path).unwrap();
        assert!(holder.starts_with("`set-tag` (pid "), "{holder}");
        drop(lock);
    }

    #[test]
    fn planted_symlinks_are_not_followed() {
        let locks = tempfile::tempdir().unwrap();
        let victim = locks.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let path = locks
            .path()
            .join(format!("xtask-{:016x}.lock", fnv1a(b"/r")));
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = acquire_in(locks.path(), Path::new("/r"), "set-tag").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot open the lock file"),
            "{err:#}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn the_lock_lives_in_the_git_dir_of_the_tree() {
        let trees = tempfile::tempdir().unwrap();
        let (repo, worktree, plain) = (
            trees.path().join("repo"),
            trees.path().join("wt"),
            trees.path().join("plain"),
        );
        std::fs::create_dir_all(repo.join(".git/worktrees/wt")).unwrap();
        std::fs::create_dir_all(&worktree).unwrap();
        std::fs::create_dir_all(&plain).unwrap();
        // What `git worktree add` writes: a .git file pointing at the worktree's own git dir.
        std::fs::write(worktree.join(".git"), "gitdir: ../repo/.git/worktrees/wt\n").unwrap();
        assert_eq!(lock_path(&repo), repo.join(".git/xtask-tree.lock"));
        assert_eq!(
            lock_path(&worktree),
            worktree.join("../repo/.git/worktrees/wt/xtask-tree.lock")
        );
        assert_eq!(
            lock_path(&plain),
            Path::new("/tmp").join(hashed_name(&plain))
        );

        // Whatever the caller's environment: two runs on the tree take the same lock, and the
        // file goes with the last holder.
        let first = acquire(&worktree, "build-app").unwrap();
        assert!(repo.join(".git/worktrees/wt/xtask-tree.lock").is_file());
        let err = acquire(&worktree, "set-tag").unwrap_err().to_string();
        assert!(err.contains("is busy: `build-app` (pid "), "{err}");
        drop(first);
        assert!(!repo.join(".git/worktrees/wt/xtask-tree.lock").exists());
        assert_eq!(
            std::fs::read_dir(&worktree).unwrap().count(),
            1,
            "only .git"
        );
    }

    #[test]
    fn fnv1a_is_the_reference_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
