//! Numbered step headers with durations: `[3/7] Installing production dependencies`.
//! Printed on stderr, so stdout stays clean for `--dry-run` command lists.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cmd::Verbosity;

pub struct Steps {
    total: usize,
    done: usize,
    verbosity: Verbosity,
    started: Instant,
}

impl Steps {
    pub fn new(total: usize, verbosity: Verbosity) -> Steps {
        Steps {
            total,
            done: 0,
            verbosity,
            started: Instant::now(),
        }
    }

    /// Runs one step under a numbered header and reports how long it took, or that it failed.
    pub fn step<T>(&mut self, title: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
        self.done += 1;
        let (n, total) = (self.done, self.total);
        self.say(format!("[{n}/{total}] {title}"));
        let started = Instant::now();
        let result = body();
        let took = seconds(started.elapsed());
        match &result {
            Ok(_) => self.say(format!("[{n}/{total}] done in {took}")),
            Err(_) => eprintln!("[{n}/{total}] failed after {took}"),
        }
        result
    }

    /// Marks a step as skipped (e.g. pushes under `--no-push`), keeping the numbering honest.
    pub fn skip(&mut self, title: &str, why: &str) {
        self.done += 1;
        self.say(format!(
            "[{}/{}] {title}: skipped ({why})",
            self.done, self.total
        ));
    }

    pub fn say(&self, line: impl AsRef<str>) {
        if self.verbosity > Verbosity::Quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    pub fn elapsed(&self) -> String {
        seconds(self.started.elapsed())
    }
}

pub fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}
