//! One ssh connection per server for the whole of a task (OpenSSH connection sharing,
//! `ControlMaster`): the first command for a server opens the connection, the next ones open a
//! channel on it instead of a new connection, key exchange and login. A deploy runs dozens of
//! commands per server; on a quiet testbed machine, `ssh m1 true` took 0.30 s on a connection
//! of its own and 0.01 s on a shared one.
//!
//! The sockets belong to this process: named after its pid, in a directory only its user can
//! enter. [`close_shared`] closes them when the task ends; a process killed before leaves each
//! connection to close itself after [`config::SSH_SHARED_IDLE`] without a command.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cmd::{Cmd, Runner};
use crate::config;

/// The `ssh -o` options that share one connection per server among this process's commands;
/// none where no private socket directory can be had (then each command connects on its own,
/// as plain ssh does).
pub fn sharing_options() -> Vec<String> {
    match socket_dir() {
        Some(dir) => options_in(dir, std::process::id()),
        None => Vec::new(),
    }
}

/// Closes this process's shared connections (`ssh -O exit` on each socket), at the end of a
/// task, also after Ctrl-C. Output discarded: a connection that already ended is no error.
pub fn close_shared(runner: &Runner) {
    let Some(dir) = socket_dir() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let pid = std::process::id();
    for entry in entries.flatten() {
        if is_ours(&entry.file_name().to_string_lossy(), pid) {
            let _ = runner.succeeds_for_cleanup(&exit_command(&entry.path()));
        }
    }
}

/// Sockets are `PID-HASH` (`%C`: a hash of the local host, server, port and user).
fn options_in(dir: &Path, pid: u32) -> Vec<String> {
    [
        "ControlMaster=auto".to_string(),
        format!("ControlPath={}/{pid}-%C", dir.display()),
        format!("ControlPersist={}s", config::SSH_SHARED_IDLE.as_secs()),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_string(), option])
    .collect()
}

fn is_ours(socket: &str, pid: u32) -> bool {
    socket
        .strip_prefix(&format!("{pid}-"))
        .is_some_and(|hash| !hash.is_empty())
}

/// The host name is not used: the socket is given whole.
fn exit_command(socket: &Path) -> Cmd {
    Cmd::new("ssh")
        .arg("-o")
        .arg(format!("ControlPath={}", socket.display()))
        .args(["-O", "exit", "shared-connection"])
}

/// `$XDG_RUNTIME_DIR/xtask-ssh`, else `/tmp/xtask-ssh-UID` (not under TMPDIR: it outlives the
/// task, like tmux's), made on first use; None when it is not ours alone or its sockets' paths
/// would be too long for a Unix socket.
fn socket_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute());
        let dir = match runtime {
            Some(runtime) => runtime.join("xtask-ssh"),
            None => PathBuf::from(format!("/tmp/xtask-ssh-{}", uid()?)),
        };
        // A socket path has at most 107 bytes: the directory, "/", a pid, "-" and 40 hex digits.
        (dir.as_os_str().len() <= 50 && private_dir(&dir)).then_some(dir)
    })
    .as_deref()
}

#[cfg(unix)]
fn uid() -> Option<u32> {
    // SAFETY: getuid(2) cannot fail and has no side effects.
    Some(unsafe { libc::getuid() })
}

#[cfg(not(unix))]
fn uid() -> Option<u32> {
    None
}

/// Makes `dir` (0700) or accepts it as it is when it is a directory (not a link) of this user
/// that no one else may enter: another user's socket there could stand in for a server.
#[cfg(unix)]
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    match (std::fs::symlink_metadata(dir), uid()) {
        (Ok(meta), Some(uid)) => meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0,
        _ => false,
    }
}

#[cfg(not(unix))]
fn private_dir(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_socket_per_server_named_after_the_process() {
        let options = options_in(Path::new("/run/user/1000/xtask-ssh"), 4242);
        assert_eq!(
            options,
            [
                "-o",
                "ControlMaster=auto",
                "-o",
                "ControlPath=/run/user/1000/xtask-ssh/4242-%C",
                "-o",
                &format!("ControlPersist={}s", config::SSH_SHARED_IDLE.as_secs()),
            ]
        );
        assert!(is_ours("4242-0123abcd", 4242));
        assert!(!is_ours("42420-0123abcd", 4242));
        assert!(!is_ours("4242-", 4242));
        assert!(!is_ours("424-0123abcd", 4242));
        assert_eq!(
            exit_command(Path::new("/run/x/4242-ab")).argv(),
            [
                "ssh",
                "-o",
                "ControlPath=/run/x/4242-ab",
                "-O",
                "exit",
                "shared-connection"
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_a_private_directory_of_ours_holds_sockets() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let made = tmp.path().join("made");
        assert!(private_dir(&made), "made 0700");
        let mode = std::fs::metadata(&made).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!private_dir(&open), "others may enter");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&made, &link).unwrap();
        assert!(!private_dir(&link), "a link is refused");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(!private_dir(&file));
    }
}
