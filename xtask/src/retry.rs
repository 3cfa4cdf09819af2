//! Bounded retries with exponential backoff, for what fails transiently: a push to a registry
//! that restarts, a dropped connection. Each retry is announced on one line; Ctrl-C is never
//! retried and also ends the wait between attempts.
//!
//! Only what another attempt can fix is retried: a refused or reset connection, a timeout, a
//! 5xx. `docker push` exits 1 for every kind of failure, so the kind is read from its stderr
//! (`cmd::Failed`); a refused login (401/403), an unknown host or anything unrecognised fails
//! at once, without the 1 + 2 + 4 s of backoff.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Runner;
use crate::interrupt::{self, Interrupted};

/// How many times a failed push is tried again (tests set it, e.g. 0 to fail fast).
pub const PUSH_RETRIES_ENV: &str = "XTASK_PUSH_RETRIES";
const DEFAULT_RETRIES: u32 = 3;
/// The longest retry count accepted, so a typo cannot make a push wait for hours.
const MAX_RETRIES: u32 = 10;

/// `retries` more attempts after the first, waiting `first`, then twice as long each time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub retries: u32,
    pub first: Duration,
}

impl Backoff {
    /// Pushes: 3 retries after 1 s, 2 s and 4 s, unless `XTASK_PUSH_RETRIES` says otherwise.
    pub fn for_pushes() -> Result<Backoff> {
        let retries = match std::env::var(PUSH_RETRIES_ENV) {
            Err(_) => DEFAULT_RETRIES,
            Ok(value) => parse_retries(&value)?,
        };
        Ok(Backoff {
            retries,
            first: Duration::from_secs(1),
        })
    }

    /// The waits before each retry: `first`, `2 * first`, `4 * first`...
    pub fn delays(&self) -> impl Iterator<Item = Duration> + '_ {
        (0..self.retries).map(|n| self.first * 2u32.pow(n))
    }
}

fn parse_retries(value: &str) -> Result<u32> {
    match value.trim().parse::<u32>() {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => bail!("invalid {PUSH_RETRIES_ENV}={value:?}: expected a number of retries from 0 to {MAX_RETRIES}"),
    }
}

/// Runs `attempt` until it succeeds, was interrupted, or `backoff` is used up; then returns its
/// last error. Each retry is announced with the error's first line; `what` names the operation
/// if a signal ends the wait (`pushing x:1`).
pub fn retry<T>(
    runner: &Runner,
    backoff: &Backoff,
    what: &str,
    mut attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut delays = backoff.delays().enumerate();
    loop {
        let err = match attempt() {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        if err.downcast_ref::<Interrupted>().is_some() {
            return Err(err);
        }
        if !is_transient(&err) {
            return Err(err);
        }
        let Some((n, delay)) = delays.next() else {
            let tries = backoff.retries + 1;
            return Err(err.context(format!(
                "gave up after {tries} attempt{}",
                if tries == 1 { "" } else { "s" }
            )));
        };
        let first_line = format!("{err:#}");
        let first_line = first_line.lines().next().unwrap_or_default();
        runner.say(format!(
            "{first_line}; retry {}/{} in {}s",
            n + 1,
            backoff.retries,
            delay.as_secs_f64()
        ));
        sleep(delay).with_context(|| format!("{what} was waiting to retry"))?;
    }
}

/// Whether `err` is a failure another attempt may not meet: judged from its message and, for a
/// command, its stderr. A sign of a failure for good (refused credentials, unknown host, bad
/// certificate) wins over a sign of a transient one.
fn is_transient(err: &anyhow::Error) -> bool {
    let mut text = format!("{err:#}");
    if let Some(failed) = err.downcast_ref::<crate::cmd::Failed>() {
        text.push('\n');
        text.push_str(&failed.stderr);
    }
    let lower = text.to_lowercase();
    const FOR_GOOD: [&str; 11] = [
        "unauthorized",
        // The client knows the registry wants a login and has none for it.
        "no basic auth credentials",
        "authentication required",
        "denied",
        "forbidden",
        "no such host",
        "x509",
        "certificate",
        "http response to https client",
        "name unknown",
        "invalid reference format",
    ];
    const TRANSIENT: [&str; 17] = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "timeout",
        "timed out",
        "deadline exceeded",
        "temporary failure",
        "try again",
        "server misbehaving",
        "network is unreachable",
        "no route to host",
        "too many requests",
        "internal server error",
        "bad gateway",
        "service unavailable",
        "gateway timeout",
        // The registry restarted and lost an upload in progress.
        "blob upload unknown",
    ];
    if FOR_GOOD.iter().any(|sign| lower.contains(sign)) {
        return false;
    }
    // `Put "...": EOF`, `unexpected EOF`: the server went away mid-request.
    TRANSIENT.iter().any(|sign| lower.contains(sign)) || text.contains("EOF") || has_5xx(&lower)
}

/// `... status: 503 ...`, `status code 502`: a server error, whatever its reason phrase.
fn has_5xx(lower: &str) -> bool {
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).any(|pair| {
        matches!(pair[0], "status" | "code")
            && pair[1].len() == 3
            && pair[1].starts_with('5')
            && pair[1].bytes().all(|b| b.is_ascii_digit())
    })
}

/// Sleeps, but returns `Err(Interrupted)` as soon as a signal arrives.
fn sleep(duration: Duration) -> Result<()> {
    let until = Instant::now() + duration;
    loop {
        interrupt::check()?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Verbosity;

    fn fast(retries: u32) -> Backoff {
        Backoff {
            retries,
            first: Duration::from_millis(1),
        }
    }

    #[test]
    fn delays_double() {
        let backoff = Backoff {
            retries: 3,
            first: Duration::from_secs(1),
        };
        let delays: Vec<u64> = backoff.delays().map(|d| d.as_secs()).collect();
        assert_eq!(delays, [1, 2, 4]);
        assert_eq!(fast(0).delays().count(), 0);
    }

    #[test]
    fn retries_until_success() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let mut calls = 0;
        let value = retry(&runner, &fast(3), "pushing x", || {
            calls += 1;
            if calls < 3 {
                bail!("connection refused")
            }
            Ok(calls)
        })
        .unwrap();
        assert_eq!((value, calls), (3, 3));
    }

    #[test]
    fn gives_up_after_the_last_retry_with_the_last_error() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let mut calls = 0;
        let err = retry(&runner, &fast(2), "pushing x", || -> Result<()> {
            calls += 1;
            bail!("connection refused #{calls}")
        })
        .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(
            format!("{err:#}"),
            "gave up after 3 attempts: connection refused #3"
        );
    }

    #[test]
    fn a_failure_for_good_is_not_retried() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let mut calls = 0;
        let err = retry(&runner, &fast(3), "pushing x", || -> Result<()> {
            calls += 1;
            Err(crate::cmd::Failed {
                message: "`docker push x` failed (exit code 1)".into(),
                stderr: "unauthorized: authentication required\n".into(),
            }
            .into())
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(format!("{err:#}"), "`docker push x` failed (exit code 1)");
    }

    #[test]
    fn transient_and_permanent_push_failures() {
        let push_failed = |stderr: &str| -> anyhow::Error {
            crate::cmd::Failed {
                message:
                    "`docker push 127.0.0.1:5000/kiora/crm-gdb_php:1.0.0` failed (exit code 1)"
                        .into(),
                stderr: stderr.into(),
            }
            .into()
        };
        for transient in [
            "Put \"http://127.0.0.1:5000/v2/kiora/x/blobs/uploads/\": dial tcp 127.0.0.1:5000: connect: connection refused",
            "read tcp 127.0.0.1:40000->127.0.0.1:5000: read: connection reset by peer",
            "Patch \"http://127.0.0.1:5000/v2/x/blobs/uploads/1\": EOF",
            "received unexpected HTTP status: 503 Service Unavailable",
            "received unexpected HTTP status: 599 Whatever",
            "net/http: TLS handshake timeout",
            "dial tcp: lookup registry.example on 127.0.0.53:53: server misbehaving",
            "toomanyrequests: too many requests",
            "blob upload unknown: blob upload unknown to registry",
        ] {
            assert!(is_transient(&push_failed(transient)), "{transient}");
        }
        for for_good in [
            "unauthorized: authentication required",
            "no basic auth credentials",
            "denied: requested access to the resource is denied",
            "received unexpected HTTP status: 403 Forbidden",
            "Get \"https://nosuch.invalid/v2/\": dial tcp: lookup nosuch.invalid on 127.0.0.53:53: no such host",
            "Get \"https://r:5000/v2/\": http: server gave HTTP response to HTTPS client",
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
            // Unrecognised: not retried blindly. Port 5000 is no 5xx status.
            "something else went wrong at 127.0.0.1:5000",
            "",
        ] {
            assert!(!is_transient(&push_failed(for_good)), "{for_good}");
        }
        // Errors that are not a command's: by their message.
        assert!(is_transient(&anyhow::anyhow!("connection refused")));
        assert!(!is_transient(&anyhow::anyhow!(
            "`docker` is not installed or not on PATH"
        )));
    }

    #[test]
    fn an_interrupt_is_never_retried() {
        let runner = Runner::new(false, Verbosity::Quiet);
        let mut calls = 0;
        let err = retry(&runner, &fast(3), "pushing x", || -> Result<()> {
            calls += 1;
            Err(Interrupted(libc::SIGINT).into())
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(err.downcast_ref::<Interrupted>().is_some());
    }

    #[test]
    fn retry_count_from_the_environment() {
        assert_eq!(parse_retries("0").unwrap(), 0);
        assert_eq!(parse_retries(" 5 ").unwrap(), 5);
        for bad in ["", "-1", "x", "11"] {
            let err = parse_retries(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid XTASK_PUSH_RETRIES="), "{err}");
        }
    }
}
