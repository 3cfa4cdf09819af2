//! The runner after a real signal. The signal flag is process-wide, so each test re-runs itself
//! in a child copy of this test binary and raises the signal there; setting it here would
//! interrupt every other test running in parallel.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Cmd, Runner};
use crate::interrupt::{self, Interrupted};
use crate::progress::Verbosity;

const CHILD: &str = "XTASK_SIGNAL_TEST_CHILD";

/// In the parent: runs `test` alone in a child process and checks it passed there.
fn in_child(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    false
}

fn is_interrupted(err: &anyhow::Error, signal: i32) -> bool {
    matches!(err.downcast_ref::<Interrupted>(), Some(Interrupted(s)) if *s == signal)
}

#[test]
fn after_a_signal_only_cleanup_commands_run() {
    if !in_child("cmd::signal_tests::after_a_signal_only_cleanup_commands_run") {
        return;
    }
    interrupt::install().unwrap();
    // SAFETY: raise(3) on our own process; the handlers only set flags.
    unsafe { libc::raise(libc::SIGTERM) };
    assert!(interrupt::requested());
    let runner = Runner::new(false, Verbosity::Quiet);
    let err = runner.run(&Cmd::new("true")).unwrap_err();
    assert!(is_interrupted(&err, libc::SIGTERM), "{err:#}");
    assert!(runner.query(&Cmd::new("true")).is_err());
    // Cleanup still runs, and still reports its own failure.
    let cleaned = runner.cleanup(&Cmd::new("printf").arg("removed")).unwrap();
    assert_eq!(cleaned, "removed");
    let err = runner.cleanup(&Cmd::new("false")).unwrap_err();
    assert_eq!(err.to_string(), "`false` failed (exit code 1): ");
}

#[test]
fn a_signal_stops_the_running_child_at_once() {
    if !in_child("cmd::signal_tests::a_signal_stops_the_running_child_at_once") {
        return;
    }
    interrupt::install().unwrap();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGINT) };
    });
    let started = Instant::now();
    let runner = Runner::new(false, Verbosity::Quiet);
    let err = runner.run(&Cmd::new("sleep").arg("30")).unwrap_err();
    assert!(is_interrupted(&err, libc::SIGINT), "{err:#}");
    // `sleep` obeys the SIGTERM it is sent: no wait for the grace period, then SIGKILL.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_signal_stops_every_parallel_child() {
    if !in_child("cmd::signal_tests::a_signal_stops_every_parallel_child") {
        return;
    }
    interrupt::install().unwrap();
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGTERM) };
    });
    let started = Instant::now();
    let runner = Runner::new(false, Verbosity::Quiet);
    let sleep = || Cmd::new("sleep").arg("30");
    let err = runner
        .run_parallel(&[vec![sleep(), sleep()], vec![sleep()], vec![sleep()]])
        .unwrap_err();
    assert!(is_interrupted(&err, libc::SIGTERM), "{err:#}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
