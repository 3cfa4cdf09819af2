//! Fault injection for end-to-end tests: an xtask running in the background whose stderr is
//! watched line by line (to signal it at a precise step), its child processes, a registry that
//! is stopped and started again on the same port and storage, a registry with password auth,
//! and base images published to the local engine only.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{http_get, wait_until, Registry};

/// `cargo xtask ARGS` started in the background in its own process group (like a job started
/// from a shell), against the scratch clone `root`, with TMPDIR at `tmp`.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: StderrReader,
    /// A copy of the write end of the xtask's stderr pipe, kept only when asked for (see
    /// [`Running::block_stderr`]): while it is open, the reader never sees the end of the pipe.
    writer: Option<std::io::PipeWriter>,
}

/// The thread that reads the xtask's stderr, and a way to hold it still.
struct StderrReader {
    fd: i32,
    pause: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
}

/// Lines made of this byte only are filler the test wrote itself (see [`Running::block_stderr`]).
const FILLER: u8 = b'~';

impl Running {
    pub fn start(
        root: &Path,
        tmp: &Path,
        registry: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        Running::spawn(root, tmp, registry, args, env, false)
    }

    /// [`Running::start`], keeping a copy of the write end of its stderr pipe for
    /// [`Running::block_stderr`].
    pub fn start_with_stderr_control(
        root: &Path,
        tmp: &Path,
        registry: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        Running::spawn(root, tmp, registry, args, env, true)
    }

    fn spawn(
        root: &Path,
        tmp: &Path,
        registry: &str,
        args: &[&str],
        env: &[(&str, &str)],
        keep_writer: bool,
    ) -> Running {
        let (read_end, write_end) = std::io::pipe().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        command
            .args(args)
            .env("XTASK_ROOT", root)
            .env("XTASK_REGISTRY", registry)
            .env("TMPDIR", tmp)
            .env("XTASK_CACHE_DIR", super::cache_dir(root))
            .stdin(Stdio::null())
            // Pushes print progress on stdout; nobody reads it, so it must not fill a pipe.
            .stdout(Stdio::null())
            .stderr(write_end.try_clone().unwrap())
            .process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        // The Command keeps its copy of the write end; it must go, or the pipe never ends.
        drop(command);
        let writer = keep_writer.then_some(write_end);
        let (send, lines) = channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = StderrReader {
            fd: read_end.as_raw_fd(),
            pause: Arc::new(AtomicBool::new(false)),
            paused: Arc::new(AtomicBool::new(false)),
        };
        let (keep, pause, paused) = (log.clone(), reader.pause.clone(), reader.paused.clone());
        std::thread::spawn(move || {
            let mut read_end = read_end;
            let mut pending: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 16384];
            loop {
                if pause.load(Ordering::SeqCst) {
                    paused.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                paused.store(false, Ordering::SeqCst);
                // Raw reads after poll(2), never a blocking read: a paused reader must not be
                // sitting in read(2), ready to take whatever comes next.
                let mut ready = libc::pollfd {
                    fd: read_end.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut ready, 1, 20) } <= 0 {
                    continue;
                }
                let n = match read_end.read(&mut chunk) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                if n == 0 && !pending.is_empty() {
                    pending.push(b'\n');
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = &line[..line.len() - 1];
                    if !line.is_empty() && line.iter().all(|&b| b == FILLER) {
                        continue;
                    }
                    let line = String::from_utf8_lossy(line).into_owned();
                    keep.lock().unwrap().push(line.clone());
                    let _ = send.send(line);
                }
                if n == 0 {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            log,
            reader,
            writer,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a stderr line for which `wanted` holds, and returns it; `None` if the process
    /// ended (or `limit` passed) first.
    pub fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Makes the xtask's stderr pipe hold only `room` more bytes, so that the xtask blocks in
    /// write(2) as soon as it writes more: a pause point that needs no test-only code in the
    /// xtask. Call it while the xtask writes nothing (e.g. its children are paused); its stderr
    /// stays unread until [`Running::unblock_stderr`]. Pipe pages are filled whole except the
    /// last, and a write that does not fit in the last page's room waits for a free page.
    pub fn block_stderr(&mut self, room: usize) {
        let writer = self
            .writer
            .take()
            .expect("started with start_with_stderr_control");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            self.reader.pause.store(true, Ordering::SeqCst);
            while !self.reader.paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(2));
            }
            // Quiet for a while: nothing the xtask (or a child) was still writing is on the way.
            std::thread::sleep(Duration::from_millis(300));
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int.
            assert_eq!(
                unsafe { libc::ioctl(self.reader.fd, libc::FIONREAD, &mut unread) },
                0
            );
            if unread == 0 {
                break;
            }
            assert!(Instant::now() < until, "the xtask kept writing on stderr");
            self.reader.pause.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: fcntl on a pipe we own.
        let capacity = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_GETPIPE_SZ) };
        assert!(capacity > 0, "F_GETPIPE_SZ");
        let mut filler = vec![FILLER; capacity as usize - room];
        *filler.last_mut().unwrap() = b'\n';
        // Non-blocking, so that a miscount fails the test instead of hanging it; through a new
        // open file description of the pipe (/proc/self/fd), since O_NONBLOCK on this one (a
        // dup of the xtask's fd 2) would make the xtask's own writes fail instead of block.
        let mut own = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/self/fd/{}", writer.as_raw_fd()))
            .unwrap();
        drop(writer);
        own.write_all(&filler)
            .expect("the filler fits in the empty pipe");
    }

    /// Lets the reader drain the stderr pipe again (the xtask's blocked write then completes).
    pub fn unblock_stderr(&self) {
        self.reader.pause.store(false, Ordering::SeqCst);
    }

    /// While the xtask's main thread is blocked in write(2) on its stderr (fd 2): how many bytes
    /// it is writing. From /proc/PID/syscall: "1 0x2 BUF COUNT ..." on x86_64 ("64 ..." on
    /// aarch64).
    pub fn blocked_writing_stderr(&self) -> Option<usize> {
        let number = if cfg!(target_arch = "aarch64") {
            "64"
        } else {
            "1"
        };
        let call = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid())).ok()?;
        let fields: Vec<&str> = call.split_whitespace().collect();
        match fields[..] {
            [n, "0x2", _, count, ..] if n == number => {
                usize::from_str_radix(count.trim_start_matches("0x"), 16).ok()
            }
            _ => None,
        }
    }

    /// Sends `signal` to the xtask process only (as `kill PID` or a service manager does).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Sends `signal` to the whole process group (as Ctrl-C in a terminal does).
    pub fn signal_group(&self, signal: i32) {
        // SAFETY: kill(2) on the process group our child leads.
        assert_eq!(unsafe { libc::kill(-(self.pid() as i32), signal) }, 0);
    }

    /// Waits for the exit, at most `limit`; kills it (and fails the test) if it hangs.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        self.writer = None;
        self.unblock_stderr();
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends at EOF; give it a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("xtask still running after {limit:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything written on stderr so far.
    pub fn stderr(&self) -> String {
        let mut text = self.log.lock().unwrap().join("\n");
        text.push('\n');
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.unblock_stderr();
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The descendants of `pid` (children, grandchildren...) as (pid, command line), from /proc.
pub fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rsplit_once(") ").map(|(_, after)| after) else {
            continue;
        };
        if let Some(ppid) = after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent {
                found.push((child, cmdline(child)));
                frontier.push(child);
            }
        }
    }
    found
}

/// The command line of `pid`, or "" once it is gone.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Processes whose command line mentions `needle` (e.g. a private TMPDIR), as `pid args` lines.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .map(|pid| (pid, cmdline(pid)))
        .filter(|(_, args)| args.contains(needle))
        .map(|(pid, args)| format!("{pid} {args}"))
        .collect()
}

/// Containers (running or not) matching a `docker ps` filter, e.g. `ancestor=IMAGE`.
pub fn containers(filter: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--format",
            "{{.Names}} {{.Image}} {{.Status}}",
            "--filter",
            filter,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Registry {
    /// Stops the registry process; its port and storage stay reserved for [`Registry::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        let dir = self._dir.path();
        self.child = spawn_registry(&dir.join("config.yml"), &dir.join("registry.log"));
        let port = self.port;
        wait_until(Duration::from_secs(20), || http_get(port, "/v2/").is_some());
    }

    /// A registry that wants `docker login` (htpasswd, bcrypt) as `user` / `password`.
    pub fn start_with_password(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        let made = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect(
                "`htpasswd` must be on PATH (apt-get install apache2-utils, or `bash .ci/setup`)",
            );
        assert!(made.status.success());
        std::fs::write(&htpasswd, made.stdout).unwrap();
        let port = super::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nauth: {{htpasswd: {{realm: xtask-test, path: {}}}}}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let child = spawn_registry(&config, &dir.path().join("registry.log"));
        // Without credentials it answers 401: it is up.
        wait_until(Duration::from_secs(20), || {
            http_get(port, "/v2/").is_some_and(|(status, _)| status == 401)
        });
        Registry {
            port,
            child,
            _dir: dir,
        }
    }
}

fn spawn_registry(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("`docker-registry` must be on PATH (apt-get install docker-registry, or `bash .ci/setup`)")
}

/// Builds the pinned base images into the local engine only, named after `prefix` (fast when
/// Docker's build cache has them already, e.g. from another test).
pub fn publish_base_locally(root: &Path, tmp: &Path, prefix: &str) {
    let out = super::xtask(
        root,
        tmp,
        prefix,
        &[
            "-q",
            "docker-publish",
            "--image",
            "php",
            "--tag",
            super::BASE_TAG,
            "--no-push",
        ],
    );
    assert!(out.status.success(), "docker-publish --no-push failed");
}

/// Removes, on drop, every local image named under `prefix` (a test's private registry).
pub struct ImagesUnder(pub String);

impl Drop for ImagesUnder {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])
            .output();
        let Ok(out) = out else { return };
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        let ours: Vec<&str> = listed
            .lines()
            .filter(|image| image.starts_with(self.0.as_str()))
            .collect();
        if !ours.is_empty() {
            let _ = Command::new("docker")
                .args(["image", "rm", "--force"])
                .args(&ours)
                .output();
        }
    }
}

/// Slow stand-ins for `docker` and `git`, put first on an xtask's PATH: the invocation whose
/// arguments contain a pattern pauses (see [`Pause`]) and says so with a `reached.PID` file;
/// every other invocation is the real tool (`exec` by absolute path). A pause point that puts no
/// test-only code in the xtask, and makes sure a signal lands while that command runs.
pub struct PausingTools {
    dir: tempfile::TempDir,
}

/// When a matching invocation pauses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pause {
    /// The first match pauses before the real tool starts, until it is signalled.
    Before,
    /// The first match (a `docker run --name NAME`) runs the real tool and reports once the
    /// container runs (`running`, else `finished`), then waits for it.
    During,
    /// Every match runs the real tool to its end, reports, then waits for [`PausingTools::go`].
    After,
}

const PAUSING_TOOL: &str = r#"#!/bin/bash
# Test stand-in (xtask/tests/common/faults.rs): pauses the invocation matching
# $XTASK_TEST_PAUSE, otherwise runs the real tool.
real=@REAL@
dir=$XTASK_TEST_PAUSE_DIR
if [ -z "$XTASK_TEST_PAUSE" ] || [[ " $* " != *"$XTASK_TEST_PAUSE"* ]]; then
    exec "$real" "$@"
fi
mode=$XTASK_TEST_PAUSE_MODE
# Before and During pause only the first match (mkdir is atomic).
if [ "$mode" != after ] && ! mkdir "$dir/claimed" 2>/dev/null; then
    exec "$real" "$@"
fi
child=
stop() {
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
case $mode in
before)
    echo before >"$dir/reached.$$"
    while :; do sleep 0.05; done
    ;;
during)
    # Async commands of a non-interactive shell ignore SIGINT: the trap passes signals on.
    "$real" "$@" &
    child=$!
    name=
    prev=
    for arg in "$@"; do
        [ "$prev" = --name ] && name=$arg
        prev=$arg
    done
    state=finished
    while kill -0 "$child" 2>/dev/null; do
        if [ "$("$real" inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then
            state=running
            break
        fi
        sleep 0.05
    done
    echo "$state" >"$dir/reached.$$"
    wait "$child"
    ;;
after)
    "$real" "$@" &
    child=$!
    wait "$child"
    status=$?
    child=
    echo finished >"$dir/reached.$$"
    until [ -e "$dir/go" ]; do sleep 0.05; done
    exit "$status"
    ;;
esac
"#;

impl PausingTools {
    pub fn new() -> PausingTools {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("xtask-pausing-tools.")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        for tool in ["docker", "git"] {
            let real = which(tool);
            let script = dir.path().join("bin").join(tool);
            std::fs::write(
                &script,
                PAUSING_TOOL.replace("@REAL@", &format!("'{}'", real.display())),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        PausingTools { dir }
    }

    fn markers(&self) -> PathBuf {
        self.dir.path().join("markers")
    }

    /// The environment for an xtask whose invocation matching `pattern` (a substring of
    /// ` ARGS `, e.g. ` push 127.0.0.1:5000/kiora/x:1 `) pauses as `mode` says. Forgets the
    /// markers of the previous run.
    pub fn env(&self, pattern: &str, mode: Pause) -> Vec<(String, String)> {
        let markers = self.markers();
        let _ = std::fs::remove_dir_all(&markers);
        std::fs::create_dir(&markers).unwrap();
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mode = match mode {
            Pause::Before => "before",
            Pause::During => "during",
            Pause::After => "after",
        };
        vec![
            ("PATH".into(), path),
            ("XTASK_TEST_PAUSE".into(), pattern.into()),
            ("XTASK_TEST_PAUSE_MODE".into(), mode.into()),
            ("XTASK_TEST_PAUSE_DIR".into(), markers.display().to_string()),
        ]
    }

    /// Waits until `count` matching invocations reported (at most `limit`, and no longer than
    /// the xtask lives); returns what each reported (`before`, `running`, `finished`).
    pub fn wait_reached(&self, run: &mut Running, count: usize, limit: Duration) -> Vec<String> {
        let until = Instant::now() + limit;
        loop {
            let mut reached: Vec<String> = std::fs::read_dir(self.markers())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("reached."))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if reached.len() >= count {
                reached.sort();
                return reached;
            }
            let ended = run.child.try_wait().unwrap();
            assert!(
                ended.is_none() && Instant::now() < until,
                "the pause point was not reached ({} of {count}; xtask {ended:?}):\n{}",
                reached.len(),
                run.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the invocations paused [`Pause::After`] exit.
    pub fn go(&self) {
        std::fs::write(self.markers().join("go"), "").unwrap();
    }
}

/// The absolute path of `tool` on PATH.
fn which(tool: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not on PATH"))
}
