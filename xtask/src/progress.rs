//! Numbered step headers with durations: `[3/7] Installing production dependencies`.
//! Printed on stderr, so stdout stays clean for `--dry-run` command lists.
//!
//! When stderr is a terminal (and not under `-q` or `TERM=dumb`), a step running longer than a
//! second also gets a live status line, `\ [5/7] Building and pushing images  1m 04s`, redrawn
//! by a ticker thread below the output; children's output is passed on above it line by line
//! (`cmd::Runner::run`). Anywhere else (pipes, CI, log files) only plain lines are printed:
//! no escape codes. Nothing here uses color.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;

/// How much the runner prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Steps {
    total: usize,
    done: usize,
    verbosity: Verbosity,
    started: Instant,
    live: bool,
    timings: Vec<Timing>,
    /// `[web2] `: the host whose steps these are, when several run side by side.
    prefix: String,
}

/// How long one step took, for the final summary; `None` when it was skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub title: String,
    pub took: Option<Duration>,
}

impl Steps {
    pub fn new(total: usize, verbosity: Verbosity) -> Steps {
        Steps {
            total,
            done: 0,
            verbosity,
            started: Instant::now(),
            live: verbosity > Verbosity::Quiet && stderr_takes_live_line(),
            timings: Vec::new(),
            prefix: String::new(),
        }
    }

    /// Steps of one host among several running at once: every line starts with `[label] `, and
    /// there is no live status line (one line cannot show several hosts).
    pub fn prefixed(mut self, label: &str) -> Steps {
        self.prefix = format!("[{label}] ");
        self.live = false;
        self
    }

    /// Runs one step under a numbered header and reports how long it took, or that it failed.
    pub fn step<T>(&mut self, title: &str, body: impl FnOnce() -> Result<T>) -> Result<T> {
        self.done += 1;
        let (n, total) = (self.done, self.total);
        self.say(format!("[{n}/{total}] {title}"));
        let started = Instant::now();
        let result = {
            let _live = self
                .live
                .then(|| LiveStep::start(format!("[{n}/{total}] {title}")));
            body()
        };
        self.timings.push(Timing {
            title: title.to_string(),
            took: Some(started.elapsed()),
        });
        let took = seconds(started.elapsed());
        match &result {
            Ok(_) => self.say(format!("[{n}/{total}] done in {took}")),
            Err(_) => print_line(
                false,
                &format!("{}[{n}/{total}] failed after {took}", self.prefix),
            ),
        }
        result
    }

    /// Marks a step as skipped (e.g. pushes under `--no-push`), keeping the numbering honest.
    pub fn skip(&mut self, title: &str, why: &str) {
        self.done += 1;
        self.timings.push(Timing {
            title: title.to_string(),
            took: None,
        });
        self.say(format!(
            "[{}/{}] {title}: skipped ({why})",
            self.done, self.total
        ));
    }

    pub fn say(&self, line: impl AsRef<str>) {
        if self.verbosity > Verbosity::Quiet {
            print_line(false, &format!("{}{}", self.prefix, line.as_ref()));
        }
    }

    pub fn elapsed(&self) -> String {
        seconds(self.started.elapsed())
    }

    /// Every step so far, in order, with its duration.
    pub fn timings(&self) -> &[Timing] {
        &self.timings
    }
}

pub fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// True when stderr is a terminal that understands `\r` and `ESC[2K` (so not `TERM=dumb`).
pub fn stderr_takes_live_line() -> bool {
    std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// The steps being shown live; a stack, because `up` runs whole tasks inside its own steps.
struct Live {
    steps: Vec<(String, Instant)>,
    /// Whether a status line is on the screen now (it is the cursor's line, without a newline).
    drawn: bool,
}

static LIVE: Mutex<Live> = Mutex::new(Live {
    steps: Vec::new(),
    drawn: false,
});

fn live_state() -> MutexGuard<'static, Live> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// True while a live status line is shown; `cmd::Runner` then relays children's output.
pub fn live() -> bool {
    !live_state().steps.is_empty()
}

/// `text` without terminal escape sequences (CSI `ESC [ ... final`, e.g. compose's `ESC[2K` in
/// `logs`, which it writes even when not on a terminal), so logs we print stay plain text.
pub fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.clone().next() == Some('[') {
            chars.next();
            // Parameters and intermediates, up to the final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// `web1  | text`: a line of one host among several, the label padded to `width` (the longest
/// label's) so that every host's text starts in the same column.
pub fn host_line(label: &str, width: usize, text: &str) -> String {
    format!("{label:<width$} | {text}")
}

/// Prints one line on stdout or stderr, above the live status line if one is shown.
pub fn print_line(to_stdout: bool, line: &str) {
    let mut live = live_state();
    clear(&mut live);
    if to_stdout {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    } else {
        eprintln!("{line}");
    }
}

/// Passes a child's output on, line by line, above the live status line.
pub fn relay_lines(reader: impl Read, to_stdout: bool) {
    let mut reader = std::io::BufReader::new(reader);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&line);
        print_line(to_stdout, text.trim_end_matches(['\n', '\r']));
        line.clear();
    }
}

fn clear(live: &mut Live) {
    if live.drawn {
        eprint!("\r\x1b[2K");
        live.drawn = false;
    }
}

/// One step on the live stack; removed (and its line erased) when dropped, also on error.
struct LiveStep;

impl LiveStep {
    fn start(label: String) -> LiveStep {
        static TICKER: Once = Once::new();
        TICKER.call_once(|| {
            std::thread::spawn(|| {
                for frame in 0.. {
                    std::thread::sleep(Duration::from_millis(250));
                    draw(frame);
                }
            });
        });
        live_state().steps.push((label, Instant::now()));
        LiveStep
    }
}

impl Drop for LiveStep {
    fn drop(&mut self) {
        let mut live = live_state();
        live.steps.pop();
        clear(&mut live);
    }
}

/// Redraws the status line of the innermost step once it has run for a second.
fn draw(frame: usize) {
    let mut live = live_state();
    let Some((label, started)) = live.steps.last() else {
        return;
    };
    if started.elapsed() < Duration::from_secs(1) {
        return;
    }
    let line = status_line(label, started.elapsed(), frame);
    eprint!("\r\x1b[2K{line}");
    let _ = std::io::stderr().flush();
    live.drawn = true;
}

/// `| [5/7] Building and pushing images  1m 04s`, the label cut so the line fits 80 columns.
pub fn status_line(label: &str, took: Duration, frame: usize) -> String {
    const MAX: usize = 64;
    let spinner = ['|', '/', '-', '\\'][frame % 4];
    let label = if label.chars().count() > MAX {
        let cut: String = label.chars().take(MAX - 3).collect();
        format!("{cut}...")
    } else {
        label.to_string()
    };
    format!("{spinner} {label}  {}", clock(took))
}

/// `42s`, `1m 04s`: whole seconds, for the ticker.
pub fn clock(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=59 => format!("{secs}s"),
        _ => format!("{}m {:02}s", secs / 60, secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped_from_logs() {
        assert_eq!(
            strip_escapes("\x1b[2Kphp-1  | ready\n\x1b[1;31mred\x1b[0m x"),
            "php-1  | ready\nred x"
        );
        assert_eq!(strip_escapes("plain ü\n"), "plain ü\n");
        assert_eq!(strip_escapes("cut \x1b[2"), "cut ");
    }

    #[test]
    fn host_lines_line_up() {
        assert_eq!(host_line("web1", 9, "GET /"), "web1      | GET /");
        assert_eq!(host_line("10.0.0.12", 9, "x"), "10.0.0.12 | x");
        assert_eq!(host_line("w", 0, ""), "w | ");
    }

    #[test]
    fn status_line_has_a_spinner_the_label_and_the_time() {
        let line = status_line("[5/7] Building images", Duration::from_secs(64), 1);
        assert_eq!(line, "/ [5/7] Building images  1m 04s");
        let long = status_line(&"x".repeat(100), Duration::from_secs(5), 3);
        assert_eq!(long, format!("\\ {}...  5s", "x".repeat(61)));
        assert!(long.chars().count() < 80);
    }

    #[test]
    fn steps_record_their_timings_and_skips() {
        let mut steps = Steps::new(2, Verbosity::Quiet);
        steps.step("one", || Ok(())).unwrap();
        steps.skip("two", "not needed");
        let titles: Vec<(&str, bool)> = steps
            .timings()
            .iter()
            .map(|t| (t.title.as_str(), t.took.is_some()))
            .collect();
        assert_eq!(titles, [("one", true), ("two", false)]);
    }
}
