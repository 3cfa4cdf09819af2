//! compose.yaml on a full disk, on a read-only file system, or read-only for its user: `set-tag`
//! fails with a one-line error that says why, and the file keeps its bytes (no temp file left).
//! Two writers on one tree at once: the second is refused, naming the first.
//!
//! The full and read-only file systems are small tmpfs mounts, which need root (or
//! CAP_SYS_ADMIN): without it these tests are skipped loudly, except under `CI=true`, where
//! they fail, since CI machines here are root (see ../shared/ENVIRONMENT.md) and must run them.
//! File modes mean nothing to root, so the permission case runs the xtask as `nobody` with
//! `setpriv` when the test runs as root.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::faults::Running;
use common::*;

/// The project's compose file, as the file under test.
fn compose_text() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose.yaml")).unwrap()
}

/// A tmpfs mounted on a fresh directory, unmounted on drop (even when the test fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(test: &str, options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(err) => err.to_string(),
                };
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{test}: cannot mount a tmpfs ({why}); CI runs as root and must run this test"
                );
                skip(
                    test,
                    &format!("cannot mount a tmpfs ({why}); run the tests as root"),
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the unmount must not fail because a failed test left something open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// `cargo xtask set-tag --tag 2.0.0` on the compose file in `root`.
fn set_tag(root: &Path) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    xtask(
        root,
        tmp.path(),
        "127.0.0.1:5000/kiora",
        &["set-tag", "--tag", "2.0.0"],
    )
}

/// The error: exactly one line on stderr, starting with `error:`.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: cannot set tag in "), "{err}");
    err
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn disk_full() {
    let Some(fs) = Tmpfs::mount("disk_full", "size=64k") else {
        return;
    };
    let original = compose_text();
    std::fs::write(fs.path().join("compose.yaml"), &original).unwrap();
    // Fill the rest of the file system.
    let mut filler = std::fs::File::create(fs.path().join("filler")).unwrap();
    let chunk = vec![b'x'; 4096];
    let full = loop {
        if let Err(err) = filler.write_all(&chunk).and_then(|_| filler.flush()) {
            break err;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    drop(filler);

    let err = one_line_error(&set_tag(fs.path()));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.ends_with(
            "the file is unchanged; free some space on its file system and run this again\n"
        ),
        "{err}"
    );
    assert_eq!(
        std::fs::read(fs.path().join("compose.yaml")).unwrap(),
        original
    );
    assert_eq!(
        names(fs.path()),
        ["compose.yaml", "filler"],
        "temp file left behind"
    );
}

#[test]
fn read_only_file_system() {
    let Some(fs) = Tmpfs::mount("read_only_file_system", "size=1m") else {
        return;
    };
    let original = compose_text();
    let file = fs.path().join("compose.yaml");
    std::fs::write(&file, &original).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(fs.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    fs.remount_read_only();

    let err = one_line_error(&set_tag(fs.path()));
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(err.contains("directory must be writable"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), original);
    assert_eq!(names(fs.path()), ["compose.yaml"]);
}

#[test]
fn read_only_file_and_directory_for_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let original = compose_text();
    let file = dir.path().join("compose.yaml");
    std::fs::write(&file, &original).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();

    let root_user = unsafe { libc::geteuid() } == 0;
    let mut command = if root_user {
        // Root ignores file modes: run as nobody, who can read but not write here.
        let mut command = Command::new("setpriv");
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_xtask"),
        ]);
        command
    } else {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
    };
    let out = command
        .args(["set-tag", "--tag", "2.0.0"])
        .env("XTASK_ROOT", dir.path())
        // nobody cannot write root's runtime directory: the lock goes to /tmp then.
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("{}", stderr(&out));
    let err = one_line_error(&out);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains("directory must be writable"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), original);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(names(dir.path()), ["compose.yaml"]);
}

/// Two set-tag (and a build-app) at once on one tree: the first holds the lock while it waits
/// to read compose.yaml, which is a named pipe here, so it waits as long as the test wants with
/// no test-only delay in the xtask. The others are refused; the file is whole afterwards.
#[test]
fn a_second_writer_is_refused_while_the_first_works() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let fifo = root.join("compose.yaml");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let tmp = tempfile::tempdir().unwrap();

    let mut first = Running::start(
        root,
        tmp.path(),
        "127.0.0.1:5000/kiora",
        &["set-tag", "--tag", "2.0.0"],
        &[],
    );
    wait_for_lock(first.pid());
    for args in [
        &["set-tag", "--tag", "3.0.0"][..],
        &["build-app", "--tag", "3.0.0"],
    ] {
        let out = xtask(root, tmp.path(), "127.0.0.1:5000/kiora", args);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        let holder = format!(
            "is busy: `set-tag` (pid {}) has been running since ",
            first.pid()
        );
        assert!(
            err.starts_with(&format!("error: {} ", root.display())) && err.contains(&holder),
            "{err}"
        );
    }

    // Let the first one read the file: it finishes, and releases the tree.
    let original = compose_text();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(&original)
        .unwrap();
    let status = first.wait(Duration::from_secs(30));
    assert!(status.success(), "{}", first.stderr());
    let expected = String::from_utf8(original)
        .unwrap()
        .replace(":1.0.0", ":2.0.0");
    assert_eq!(std::fs::read_to_string(&fifo).unwrap(), expected);
    let out = set_tag(root);
    assert!(out.status.success(), "the lock was not released");
    assert!(stderr(&out).contains("already at this tag"));
    assert_eq!(names(root), ["compose.yaml"]);
}

/// Waits until `pid` has its lock file open (`/proc/PID/fd/* -> .../xtask-HASH.lock`).
fn wait_for_lock(pid: u32) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if fds.iter().any(|target| {
            let name = target.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("xtask-") && name.ends_with(".lock")
        }) {
            return;
        }
        assert!(Instant::now() < until, "set-tag never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}
