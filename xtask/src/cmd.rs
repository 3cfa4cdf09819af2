//! Command lines as data, run in one place.
//!
//! Every external program the tasks use is described by a [`Cmd`] (program, arguments,
//! directory, environment, stdin) built by a pure function, so `--dry-run` can print it and
//! unit tests can assert the exact argument vector. [`Runner`] is the only place that starts
//! processes. Arguments are passed as an argument vector: nothing goes through a shell.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::interrupt;
use crate::progress::{self, Verbosity};

/// One external command, as data. `Debug` and `Display` never show the stdin bytes: they can be
/// a password (`docker login --password-stdin`).
#[derive(Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Bytes fed to the child's stdin (e.g. a rendered compose file for `-f -`).
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Cmd {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Program and arguments, for assertions.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }

    fn expression(&self) -> duct::Expression {
        self.expression_with(false)
    }

    /// With `terminal_stdin`, a child given no stdin bytes reads ours (an interactive shell).
    fn expression_with(&self, terminal_stdin: bool) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        // Secrets we were given stay ours; a child that needs one gets it on stdin. Innermost,
        // so it wins over everything below (duct applies the inner expression's setting last).
        for key in crate::secret::ENV_VARS {
            expr = expr.env_remove(key);
        }
        if let Some(dir) = &self.dir {
            expr = expr.dir(dir);
        }
        for (key, value) in &self.env {
            expr = expr.env(key, value);
        }
        match &self.stdin {
            Some(bytes) => expr.stdin_bytes(bytes.clone()),
            None if terminal_stdin => expr,
            // Children never read the terminal: a prompt would hang CI.
            None => expr.stdin_null(),
        }
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("dir", &self.dir)
            .field("env", &self.env)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .finish()
    }
}

/// Shell-quoted, copy-pasteable form: `(cd DIR && KEY=value program 'arg with space')`.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for (key, value) in &self.env {
            line.push_str(&format!("{key}={} ", quote(value)));
        }
        line.push_str(&quote(&self.program));
        for arg in &self.args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        if self.stdin.is_some() {
            line.push_str(" <<stdin");
        }
        match &self.dir {
            Some(dir) => write!(f, "(cd {} && {line})", quote(&dir.display().to_string())),
            None => f.write_str(&line),
        }
    }
}

/// Quotes for a POSIX shell only when needed, for display; never used to run anything.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%^".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command that exited non-zero, with its stderr ([`Runner::run_keeping_stderr`]). Shown as
/// the one line `` `program args...` failed (exit code N) ``; the stderr is for deciding.
#[derive(Debug)]
pub struct Failed {
    pub message: String,
    pub stderr: String,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failed {}

/// A command's own non-zero exit status, passed on as ours (`exec`): `main` exits with it and
/// prints nothing, since the command already said what it had to.
#[derive(Debug)]
pub struct Exited(pub i32);

impl fmt::Display for Exited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the command exited with status {}", self.0)
    }
}

impl std::error::Error for Exited {}

/// Runs [`Cmd`]s, or only prints them under `--dry-run`.
///
/// Actions (`run`) are printed and skipped in dry-run mode. Read-only queries (`query`,
/// `succeeds`) run in both modes, because the actions are computed from their answers.
#[derive(Clone, Copy, Debug)]
pub struct Runner {
    pub dry_run: bool,
    pub verbosity: Verbosity,
}

impl Runner {
    pub fn new(dry_run: bool, verbosity: Verbosity) -> Runner {
        Runner { dry_run, verbosity }
    }

    /// Runs an action with the child's output shown (captured and shown only on failure when quiet).
    pub fn run(&self, cmd: &Cmd) -> Result<()> {
        if self.dry_run {
            progress::print_line(true, &cmd.to_string());
            return Ok(());
        }
        self.echo(cmd);
        if let Some(output) = by_api(cmd, true) {
            let output = output?;
            let failed = !output.status.success();
            if self.verbosity > Verbosity::Quiet || failed {
                for text in [&output.stdout, &output.stderr] {
                    for line in String::from_utf8_lossy(text).lines() {
                        progress::print_line(false, line);
                    }
                }
            }
            if failed {
                bail!("`{}` failed ({})", short(cmd), describe(output.status));
            }
            return Ok(());
        }
        let expr = cmd.expression().unchecked();
        let output = if self.verbosity == Verbosity::Quiet {
            wait(cmd, expr.stderr_to_stdout().stdout_capture())?
        } else if progress::live() {
            relay(cmd, expr)?
        } else {
            wait(cmd, expr)?
        };
        if !output.status.success() {
            if self.verbosity == Verbosity::Quiet {
                eprint!("{}", String::from_utf8_lossy(&output.stdout));
            }
            bail!("`{}` failed ({})", short(cmd), describe(output.status));
        }
        Ok(())
    }

    /// [`Runner::run`], with the child's stderr kept (and shown once it ends) so that a failure
    /// is a [`Failed`] that says why: for a caller that decides by it, e.g. whether a push is
    /// worth retrying. For commands that write only errors there (`docker push`).
    pub fn run_keeping_stderr(&self, cmd: &Cmd) -> Result<()> {
        if self.dry_run {
            return self.run(cmd);
        }
        self.echo(cmd);
        let expr = cmd.expression().unchecked().stderr_capture();
        let quiet = self.verbosity == Verbosity::Quiet;
        let output = if quiet {
            wait(cmd, expr.stdout_capture())?
        } else if progress::live() {
            let (read, write) = std::io::pipe().context("cannot create a pipe")?;
            let relay = std::thread::spawn(move || progress::relay_lines(read, true));
            let output = wait(cmd, expr.stdout_file(write));
            // The pipe closes when the child exits; nothing of a push outlives it.
            let _ = relay.join();
            output?
        } else {
            wait(cmd, expr)?
        };
        let failed = !output.status.success();
        if quiet && failed {
            eprint!("{}", String::from_utf8_lossy(&output.stdout));
        }
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !quiet || failed {
            for line in stderr.lines() {
                progress::print_line(false, line);
            }
        }
        if failed {
            return Err(Failed {
                message: format!("`{}` failed ({})", short(cmd), describe(output.status)),
                stderr,
            }
            .into());
        }
        Ok(())
    }

    /// [`Runner::run`] for one host of several running side by side: the child's output is
    /// captured and printed afterwards, each line prefixed with `[label]`, so hosts' lines
    /// never interleave mid-line and always say whose they are.
    pub fn run_labelled(&self, cmd: &Cmd, label: &str) -> Result<()> {
        if self.dry_run {
            progress::print_line(true, &format!("[{label}] {cmd}"));
            return Ok(());
        }
        self.echo(cmd);
        let output = wait(
            cmd,
            cmd.expression()
                .unchecked()
                .stderr_to_stdout()
                .stdout_capture(),
        )?;
        if self.verbosity > Verbosity::Quiet || !output.status.success() {
            for line in progress::strip_escapes(&String::from_utf8_lossy(&output.stdout)).lines() {
                progress::print_line(false, &format!("[{label}] {line}"));
            }
        }
        if !output.status.success() {
            bail!("`{}` failed ({})", short(cmd), describe(output.status));
        }
        Ok(())
    }

    /// Runs a command attached to our stdout and stderr as they are (no capture, no relay: its
    /// output is the point, e.g. `logs -f`), and to our stdin with `terminal_stdin`. Returns its
    /// exit status; Ctrl-C stops it like any child and is reported as [`interrupt::Interrupted`].
    /// Under `--dry-run` it is printed and not run (status 0).
    pub fn attached(&self, cmd: &Cmd, terminal_stdin: bool) -> Result<i32> {
        if self.dry_run {
            progress::print_line(true, &cmd.to_string());
            return Ok(0);
        }
        self.echo(cmd);
        let output = wait(cmd, cmd.expression_with(terminal_stdin).unchecked())?;
        Ok(exit_code(output.status))
    }

    /// Runs several commands at once, one per host of a fleet (`logs -f` on each), and prints
    /// their output on our stdout as it comes, line by line, each line prefixed with its label
    /// (`web1  | ...`, labels padded to one width): lines of two hosts never mix within a line
    /// and always say whose they are. stdout and stderr of a child are merged (one stream per
    /// host). Returns each command's exit status, in order. Ctrl-C or SIGTERM stops every child
    /// (as [`Runner::run_parallel`]) and is reported as [`interrupt::Interrupted`]. Under
    /// `--dry-run` each is printed, prefixed, and none runs (status 0).
    pub fn stream_labelled(&self, cmds: &[(String, Cmd)]) -> Result<Vec<i32>> {
        let width = cmds
            .iter()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0);
        if self.dry_run {
            for (label, cmd) in cmds {
                progress::print_line(true, &progress::host_line(label, width, &cmd.to_string()));
            }
            return Ok(vec![0; cmds.len()]);
        }
        let results: Vec<Result<i32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = cmds
                .iter()
                .map(|(label, cmd)| scope.spawn(move || self.stream_one(label, width, cmd)))
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a command thread panicked")))
                })
                .collect()
        });
        // An interrupt is reported as such (main maps it to 128 + signal), whichever child saw it.
        if let Some(at) = results
            .iter()
            .position(|r| r.as_ref().is_err_and(|e| e.is::<interrupt::Interrupted>()))
        {
            let mut results = results;
            return Err(results.swap_remove(at).expect_err("an interrupt"));
        }
        results.into_iter().collect()
    }

    /// One child of [`Runner::stream_labelled`]: its merged output relayed with its label.
    fn stream_one(&self, label: &str, width: usize, cmd: &Cmd) -> Result<i32> {
        self.echo(cmd);
        let (read, write) = std::io::pipe().context("cannot create a pipe")?;
        let label = label.to_string();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(read);
            let mut line = Vec::new();
            while std::io::BufRead::read_until(&mut reader, b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line);
                // `\r`: a remote terminal (ssh -tt) ends lines with CR LF.
                let text = progress::strip_escapes(text.trim_end_matches(['\n', '\r']));
                progress::print_line(true, &progress::host_line(&label, width, &text));
                line.clear();
            }
            let _ = done.send(());
        });
        let output = wait(
            cmd,
            cmd.expression()
                .unchecked()
                .stderr_to_stdout()
                .stdout_file(write),
        );
        // The pipe closes when the child exits; a daemon it left behind could keep it open.
        let _ = finished.recv_timeout(Duration::from_secs(2));
        Ok(exit_code(output?.status))
    }

    /// Runs an action whose output a person must see as it comes (a release command): stdout
    /// and stderr merged, each line printed as it arrives with `prefix` in front (`[web2]   | `),
    /// so several hosts' lines stay apart. Under `-q` the output is shown only on failure.
    /// Returns the exit status (128 + signal when killed); the caller words the failure.
    /// Under `--dry-run` it is printed and not run (status 0).
    pub fn streamed(&self, cmd: &Cmd, prefix: &str) -> Result<i32> {
        if self.dry_run {
            progress::print_line(true, &cmd.to_string());
            return Ok(0);
        }
        self.echo(cmd);
        let expr = cmd.expression().unchecked().stderr_to_stdout();
        let output = if self.verbosity == Verbosity::Quiet {
            let output = wait(cmd, expr.stdout_capture())?;
            if !output.status.success() {
                for line in String::from_utf8_lossy(&output.stdout).lines() {
                    progress::print_line(false, &format!("{prefix}{line}"));
                }
            }
            output
        } else {
            let (read, write) = std::io::pipe().context("cannot create a pipe")?;
            let prefix = prefix.to_string();
            let relay = std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(read);
                let mut line = Vec::new();
                while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                    .is_ok_and(|n| n > 0)
                {
                    let text = progress::strip_escapes(&String::from_utf8_lossy(&line));
                    progress::print_line(
                        false,
                        &format!("{prefix}{}", text.trim_end_matches(['\n', '\r'])),
                    );
                    line.clear();
                }
            });
            let output = wait(cmd, expr.stdout_file(write));
            // The pipe closes when the child exits.
            let _ = relay.join();
            output?
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(match (output.status.code(), output.status.signal()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            _ => 1,
        })
    }

    /// Runs a read-only query (also in dry-run mode) and returns its trimmed stdout.
    pub fn query(&self, cmd: &Cmd) -> Result<String> {
        self.echo_read(cmd);
        captured(cmd, true, true)
    }

    /// Runs a read-only command (also in dry-run mode) and returns its status and output, for
    /// callers that explain failures themselves (e.g. ssh's "Host key verification failed").
    pub fn output(&self, cmd: &Cmd) -> Result<std::process::Output> {
        self.echo_read(cmd);
        read_only(cmd, true, || {
            wait(
                cmd,
                cmd.expression()
                    .unchecked()
                    .stdout_capture()
                    .stderr_capture(),
            )
        })
    }

    /// Runs a tidying-up action (release a lock, restore the running version) even after
    /// Ctrl-C: an interrupt stops the task's work, not its cleanup. Returns trimmed stdout.
    pub fn cleanup(&self, cmd: &Cmd) -> Result<String> {
        if self.dry_run {
            progress::print_line(true, &cmd.to_string());
            return Ok(String::new());
        }
        self.echo(cmd);
        if let Some(output) = by_api(cmd, false) {
            return checked(cmd, output?);
        }
        captured(cmd, false, false)
    }

    /// [`Runner::query`] that also runs after Ctrl-C: what a cleanup needs to know (e.g. which
    /// container is the edge, to point it back at the previous release).
    pub fn query_for_cleanup(&self, cmd: &Cmd) -> Result<String> {
        self.echo_read(cmd);
        captured(cmd, false, true)
    }

    /// [`Runner::succeeds`] that also runs after Ctrl-C, for cleanups.
    pub fn succeeds_for_cleanup(&self, cmd: &Cmd) -> Result<bool> {
        self.echo_read(cmd);
        let expr = cmd.expression().unchecked().stdout_null().stderr_null();
        Ok(read_only(cmd, false, || wait_for(cmd, expr, false))?
            .status
            .success())
    }

    /// Runs a read-only check and says whether it exited 0 (output discarded).
    pub fn succeeds(&self, cmd: &Cmd) -> Result<bool> {
        self.echo_read(cmd);
        let output = read_only(cmd, true, || {
            wait(
                cmd,
                cmd.expression().unchecked().stdout_null().stderr_null(),
            )
        })?;
        Ok(output.status.success())
    }

    /// Runs several sequences of actions at once: the commands of one sequence in order, the
    /// sequences side by side (e.g. `[[build php, build supervisor], [build nginx]]`). Each child
    /// is run by [`Runner::run`] on its own thread, so Ctrl-C or SIGTERM stops every running
    /// child (SIGTERM, then SIGKILL after the grace period). A failing sequence stops at its
    /// failing command; the others run to their end; every failure is reported, one per line.
    pub fn run_parallel(&self, sequences: &[Vec<Cmd>]) -> Result<()> {
        self.each_parallel(sequences, |cmd| self.run(cmd))
    }

    /// [`Runner::run_parallel`] with a caller-supplied way to run each command (e.g. with retries
    /// and a clearer message); sequences run side by side, each stops at its first error.
    pub fn each_parallel<F>(&self, sequences: &[Vec<Cmd>], run: F) -> Result<()>
    where
        F: Fn(&Cmd) -> Result<()> + Sync,
    {
        if self.dry_run {
            // Printed in a stable order: the plan reads the same every time.
            for cmd in sequences.iter().flatten() {
                run(cmd)?;
            }
            return Ok(());
        }
        let errors: Vec<anyhow::Error> = std::thread::scope(|scope| {
            let handles: Vec<_> = sequences
                .iter()
                .map(|sequence| {
                    let run = &run;
                    scope.spawn(move || sequence.iter().try_for_each(run))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|handle| match handle.join() {
                    Ok(result) => result.err(),
                    Err(_) => Some(anyhow::anyhow!("a command thread panicked")),
                })
                .collect()
        });
        // An interrupt is reported as such (main maps it to 128 + signal), not as N failures.
        let mut errors = errors;
        if let Some(at) = errors.iter().position(|e| e.is::<interrupt::Interrupted>()) {
            return Err(errors.swap_remove(at));
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.into_iter().next().expect("one error")),
            n => {
                let lines: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
                bail!("{n} commands failed: {}", lines.join("; "))
            }
        }
    }

    /// A line of progress on stderr, unless `-q`.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.verbosity > Verbosity::Quiet {
            progress::print_line(false, line.as_ref());
        }
    }

    /// `-v`: a line about work done without a command (e.g. a query over the engine's API).
    pub fn trace(&self, line: &str) {
        if self.verbosity >= Verbosity::Verbose {
            progress::print_line(false, line);
        }
    }

    /// [`Runner::echo`] of a read-only command, which the engine's API may answer.
    fn echo_read(&self, cmd: &Cmd) {
        if self.verbosity >= Verbosity::Verbose {
            let api = if crate::api_shortcut::applies(cmd) {
                "  (engine API)"
            } else {
                ""
            };
            progress::print_line(false, &format!("$ {cmd}{api}"));
        }
    }

    /// `-v`: every command, as `$ command`, before it runs.
    fn echo(&self, cmd: &Cmd) {
        if self.verbosity >= Verbosity::Verbose {
            let api = if crate::api_shortcut::acts(cmd) {
                "  (engine API)"
            } else {
                ""
            };
            progress::print_line(false, &format!("$ {cmd}{api}"));
        }
    }
}

/// Runs the child with its stdout and stderr passed on line by line above the live status line
/// (see `progress`) instead of writing over it.
fn relay(cmd: &Cmd, expr: duct::Expression) -> Result<std::process::Output> {
    let (out_read, out_write) = std::io::pipe().context("cannot create a pipe")?;
    let (err_read, err_write) = std::io::pipe().context("cannot create a pipe")?;
    let (done, finished) = std::sync::mpsc::channel();
    for (reader, to_stdout) in [(out_read, true), (err_read, false)] {
        let done = done.clone();
        std::thread::spawn(move || {
            progress::relay_lines(reader, to_stdout);
            let _ = done.send(());
        });
    }
    let output = wait(cmd, expr.stdout_file(out_write).stderr_file(err_write));
    // The pipes close when the child exits; a daemon it left behind could keep them open.
    for _ in 0..2 {
        let _ = finished.recv_timeout(Duration::from_secs(2));
    }
    output
}

/// A read-only command: answered by the engine's API where it can (`api_shortcut.rs`), else
/// run by `spawn`. Actions always run the CLI.
fn read_only(
    cmd: &Cmd,
    interruptible: bool,
    spawn: impl FnOnce() -> Result<std::process::Output>,
) -> Result<std::process::Output> {
    if interruptible {
        interrupt::check()?;
    }
    match crate::api_shortcut::answer(cmd) {
        Some(output) => output,
        None => spawn(),
    }
}

/// An action of an edge switch done through the engine's API (`api_shortcut::act`), if it is
/// one; `interruptible`: not begun after Ctrl-C, like a command.
fn by_api(cmd: &Cmd, interruptible: bool) -> Option<Result<std::process::Output>> {
    if interruptible {
        if let Err(err) = interrupt::check() {
            return Some(Err(err));
        }
    }
    crate::api_shortcut::act(cmd)
}

/// Trimmed stdout of a finished command, or an error quoting its stderr.
fn checked(cmd: &Cmd, output: std::process::Output) -> Result<String> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{}` failed ({}): {}",
            short(cmd),
            describe(output.status),
            stderr.trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string())
}

/// Runs `cmd` with its output captured; its trimmed stdout, or an error quoting its stderr.
/// `read_only`: a query, which the engine's API may answer.
fn captured(cmd: &Cmd, interruptible: bool, read_only_cmd: bool) -> Result<String> {
    let expr = cmd
        .expression()
        .unchecked()
        .stdout_capture()
        .stderr_capture();
    let output = if read_only_cmd {
        read_only(cmd, interruptible, || wait_for(cmd, expr, interruptible))?
    } else {
        wait_for(cmd, expr, interruptible)?
    };
    checked(cmd, output)
}

/// Starts the child and waits for it. When we are interrupted (Ctrl-C, SIGTERM), the child
/// gets SIGTERM first, which the docker CLI relays to its container and build, and SIGKILL only
/// if it is still there after a grace period: no `docker build`, `composer` or `npm` outlives us.
fn wait(cmd: &Cmd, expr: duct::Expression) -> Result<std::process::Output> {
    wait_for(cmd, expr, true)
}

/// [`wait`], or with `interruptible` false, a wait that ignores signals (for cleanup commands).
fn wait_for(
    cmd: &Cmd,
    expr: duct::Expression,
    interruptible: bool,
) -> Result<std::process::Output> {
    if interruptible {
        interrupt::check()?;
    }
    let handle = expr.start().map_err(|err| spawn_error(cmd, err))?;
    let (mut terminated_at, mut last_term) = (None, None::<std::time::Instant>);
    // Polled, so that a signal is seen: every 1 ms at first, then less often up to 20 ms. A
    // fixed 20 ms made each short command (`test -f`, `mv`, a local target's lock files)
    // cost ~20 ms, a few hundred ms over a deploy's critical path.
    let mut poll = Duration::from_millis(1);
    loop {
        if let Some(output) = handle
            .try_wait()
            .with_context(|| format!("waiting for `{}`", short(cmd)))?
        {
            if interruptible {
                interrupt::check()?;
            }
            return Ok(output.clone());
        }
        if interruptible && interrupt::requested() {
            // SIGTERM again every second: the docker CLI swallows one that comes while it is
            // starting a plugin (`docker buildx build` then runs to its end), and gives up on
            // its plugin at the third (seen in tests/interrupts.rs).
            if last_term.is_none_or(|at| at.elapsed() >= TERM_AGAIN) {
                for pid in handle.pids() {
                    // SAFETY: kill(2) has no memory effects; the pid is our own child's.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                last_term = Some(std::time::Instant::now());
            }
            let since = *terminated_at.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > TERM_GRACE {
                let _ = handle.kill();
                interrupt::check()?;
            }
        }
        std::thread::sleep(poll);
        poll = (poll * 2).min(Duration::from_millis(20));
    }
}

/// How long an interrupted child may take to stop by itself before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// How often an interrupted child is sent SIGTERM again during [`TERM_GRACE`].
const TERM_AGAIN: Duration = Duration::from_secs(1);

fn spawn_error(cmd: &Cmd, err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        let hint = match cmd.program.as_str() {
            "docker" => "install Docker (https://docs.docker.com/engine/install/) and make sure `docker info` works",
            "git" => "install git",
            "composer" | "npm" => "install it, or drop --host-tools to run it inside the build image",
            _ => "install it or check PATH",
        };
        anyhow::anyhow!("`{}` is not installed or not on PATH; {hint}", cmd.program)
    } else {
        anyhow::Error::new(err).context(format!("cannot start `{}`", short(cmd)))
    }
}

/// The first words of a command, for error messages that stay on one line.
fn short(cmd: &Cmd) -> String {
    let words: Vec<String> = cmd.argv().iter().take(3).map(|w| quote(w)).collect();
    let more = if cmd.args.len() > 2 { " ..." } else { "" };
    format!("{}{more}", words.join(" "))
}

/// A child's exit status as a shell reports it: its code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => 1,
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        let cmd = Cmd::new("docker")
            .args(["build", "--label", "a=b c", "it's", ""])
            .dir("/tmp/x y");
        assert_eq!(
            cmd.to_string(),
            r#"(cd '/tmp/x y' && docker build --label 'a=b c' 'it'\''s' '')"#
        );
    }

    #[test]
    fn hostile_values_stay_one_argument() {
        let cmd = Cmd::new("docker").arg("push").arg("x:$(rm -rf /); echo");
        assert_eq!(cmd.argv(), ["docker", "push", "x:$(rm -rf /); echo"]);
        assert_eq!(cmd.to_string(), "docker push 'x:$(rm -rf /); echo'");
    }

    #[test]
    fn runs_a_real_program_and_reports_failure() {
        let runner = Runner::new(false, Verbosity::Quiet);
        assert_eq!(
            runner
                .query(&Cmd::new("printf").arg("%s").arg("a b"))
                .unwrap(),
            "a b"
        );
        assert!(!runner.succeeds(&Cmd::new("false")).unwrap());
        let err = runner.run(&Cmd::new("false")).unwrap_err().to_string();
        assert_eq!(err, "`false` failed (exit code 1)");
        let err = runner
            .run(&Cmd::new("no-such-program-xyz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not installed or not on PATH"), "{err}");
    }

    #[test]
    fn parallel_sequences_run_side_by_side_and_report_every_failure() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let dir = tempfile::tempdir().unwrap();
        let mark = |name: &str| {
            Cmd::new("sh")
                .arg("-c")
                .arg(format!("sleep 0.4; touch {name}"))
                .dir(dir.path())
        };
        let started = std::time::Instant::now();
        let err = runner
            .run_parallel(&[
                vec![mark("a"), mark("b")],
                vec![mark("c")],
                vec![Cmd::new("false"), mark("never")],
            ])
            .unwrap_err()
            .to_string();
        let took = started.elapsed();
        assert_eq!(err, "`false` failed (exit code 1)");
        // a then b in order (0.8 s), c beside them: well under the 1.2 s of a serial run.
        assert!(took < Duration::from_millis(1100), "{took:?}");
        for name in ["a", "b", "c"] {
            assert!(dir.path().join(name).exists(), "{name} did not run");
        }
        assert!(!dir.path().join("never").exists(), "ran after a failure");

        let err = runner
            .run_parallel(&[
                vec![Cmd::new("false")],
                vec![Cmd::new("sh").args(["-c", "exit 3"])],
            ])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("2 commands failed: "), "{err}");
        assert!(err.contains("exit code 3"), "{err}");
        runner.run_parallel(&[]).unwrap();
    }

    #[test]
    fn a_failure_keeps_its_stderr() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let cmd = Cmd::new("sh").args(["-c", "echo out; echo 'denied: no' >&2; exit 3"]);
        let err = runner.run_keeping_stderr(&cmd).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("`sh -c ") && message.ends_with("` failed (exit code 3)"),
            "{message}"
        );
        let failed = err.downcast_ref::<Failed>().expect("a Failed");
        assert_eq!(failed.stderr, "denied: no\n");
        runner
            .run_keeping_stderr(&Cmd::new("sh").args(["-c", "echo fine >&2"]))
            .unwrap();
    }

    #[test]
    fn labelled_runs_fail_like_plain_ones() {
        let runner = Runner::new(false, Verbosity::Quiet);
        runner.run_labelled(&Cmd::new("true"), "web1").unwrap();
        let err = runner
            .run_labelled(&Cmd::new("sh").args(["-c", "echo oops; exit 3"]), "web1")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "`sh -c 'echo oops; exit 3'` failed (exit code 3)");
    }

    #[test]
    fn streamed_commands_give_their_status() {
        for verbosity in [Verbosity::Quiet, Verbosity::Normal] {
            let runner = Runner::new(false, verbosity);
            let cmd = Cmd::new("sh").args(["-c", "echo one; echo two >&2; exit 4"]);
            assert_eq!(runner.streamed(&cmd, "  | ").unwrap(), 4);
            assert_eq!(runner.streamed(&Cmd::new("true"), "  | ").unwrap(), 0);
        }
        let dry = Runner::new(true, Verbosity::Quiet);
        assert_eq!(dry.streamed(&Cmd::new("false"), "").unwrap(), 0);
    }

    #[test]
    fn dry_run_runs_no_action() {
        let runner = Runner::new(true, Verbosity::Normal);
        runner.run(&Cmd::new("false")).unwrap();
    }

    #[test]
    fn secrets_never_reach_a_child_environment() {
        let runner = Runner::new(false, Verbosity::Quiet);
        // Inherited variables are removed the same way; the e2e login test reads real children.
        let cmd = Cmd::new("sh")
            .args(["-c", "tr '\\0' '\\n' </proc/self/environ"])
            .env("XTASK_REGISTRY_PASSWORD", "s3cr3t")
            .env("OTHER", "kept");
        let environ = runner.query(&cmd).unwrap();
        assert!(environ.lines().any(|l| l == "OTHER=kept"), "{environ}");
        assert!(!environ.contains("XTASK_REGISTRY_PASSWORD"), "{environ}");
        assert!(!environ.contains("s3cr3t"), "{environ}");
    }

    #[test]
    fn attached_commands_pass_their_status_on() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let status = |script: &str| {
            runner
                .attached(&Cmd::new("sh").args(["-c", script]), false)
                .unwrap()
        };
        assert_eq!(status("exit 3"), 3);
        assert_eq!(status("true"), 0);
        assert_eq!(status("kill -TERM $$"), 128 + libc::SIGTERM);
        // Without terminal_stdin, the child's stdin is empty, never ours.
        assert_eq!(status("test \"$(cat)\" = ''"), 0);
        let dry = Runner::new(true, Verbosity::Quiet);
        assert_eq!(dry.attached(&Cmd::new("false"), true).unwrap(), 0);
    }

    #[test]
    fn streamed_commands_run_side_by_side_and_pass_their_status_on() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let started = std::time::Instant::now();
        let codes = runner
            .stream_labelled(&[
                (
                    "web1".into(),
                    Cmd::new("sh").args(["-c", "sleep 0.5; echo a"]),
                ),
                (
                    "web22".into(),
                    Cmd::new("sh").args(["-c", "sleep 0.5; echo b >&2; exit 3"]),
                ),
            ])
            .unwrap();
        assert_eq!(codes, [0, 3]);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "side by side: {:?}",
            started.elapsed()
        );
        let dry = Runner::new(true, Verbosity::Quiet);
        assert_eq!(
            dry.stream_labelled(&[("web1".into(), Cmd::new("false"))])
                .unwrap(),
            [0]
        );
    }

    #[test]
    fn stdin_bytes_reach_the_child() {
        let runner = Runner::new(false, Verbosity::Quiet);
        assert_eq!(
            runner.query(&Cmd::new("cat").stdin("hello")).unwrap(),
            "hello"
        );
    }
}

#[cfg(test)]
mod signal_tests;
