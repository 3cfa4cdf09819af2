//! One writer per tree: `build-app` and `set-tag` hold an exclusive lock on the project root
//! while they run, so two of them at once cannot interleave their rewrites of compose.yaml (or
//! push one release while the other sets the tag). The second is refused with a one-line message
//! naming the holder; it does not wait, since a build takes minutes and the user should decide.
//!
//! The lock is `flock(2)` on a file outside the developer's tree (never dirty their checkout),
//! `$XDG_RUNTIME_DIR/xtask-<hash of the root>.lock`, or in `/tmp` without XDG_RUNTIME_DIR. Not
//! in `$TMPDIR`: two shells with different TMPDIRs must still see the same lock. The kernel
//! drops a flock when its process dies, even by SIGKILL, so a crash never leaves a stale lock;
//! the file itself is removed on release.

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
    acquire_in(&lock_dir(), root, task)
}

fn acquire_in(dir: &Path, root: &Path, task: &str) -> Result<TreeLock> {
    let path = dir.join(format!(
        "xtask-{:016x}.lock",
        fnv1a(root.as_os_str().as_encoded_bytes())
    ));
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Another user could have planted a symlink in /tmp.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| {
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

/// Per-user and in memory when the session has one; `/tmp` (same for every shell) otherwise.
fn lock_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
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
    fn fnv1a_is_the_reference_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
