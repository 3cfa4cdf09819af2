//! A value that must never be printed: passwords and tokens. Its `Debug` and `Display` print
//! `[REDACTED]`, so it cannot leak through a log line, `--dry-run`, `-v` or a panic message;
//! the value itself goes only where it is needed, e.g. a child's stdin (`Cmd::stdin`).

use std::fmt;

/// The registry password, when a CI job gives it in the environment (`login.rs`).
pub const REGISTRY_PASSWORD_ENV: &str = "XTASK_REGISTRY_PASSWORD";

/// A swarm's APP_SECRET and database password, when not in the environment's env file
/// (`deploy::swarm`).
pub const APP_SECRET_ENV: &str = "XTASK_APP_SECRET";
pub const DB_PASSWORD_ENV: &str = "XTASK_DB_PASSWORD";

/// Variables holding secrets: read by xtask itself, removed from the environment of every
/// child (`Cmd`), where anything could read them (`/proc/PID/environ`, a build log, a crash
/// report). The one child that needs the password gets it on its stdin.
pub const ENV_VARS: [&str; 3] = [REGISTRY_PASSWORD_ENV, APP_SECRET_ENV, DB_PASSWORD_ENV];

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// 32 random bytes from the kernel, hex-encoded: a fresh APP_SECRET.
    pub fn random() -> std::io::Result<Secret> {
        use std::io::Read;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Secret(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The value itself, for the one place that needs it (name the reason at the call).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every occurrence of the value replaced by `[REDACTED]`: for error messages
    /// built from a child's output, which we do not control.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, "[REDACTED]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "[REDACTED]");
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([REDACTED])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn random_secrets_differ() {
        let (a, b) = (Secret::random().unwrap(), Secret::random().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn redacts_every_occurrence() {
        let secret = Secret::new("p4ss");
        assert_eq!(
            secret.redact("login p4ss failed: bad p4ss\n"),
            "login [REDACTED] failed: bad [REDACTED]\n"
        );
        assert_eq!(Secret::new("").redact("text"), "text");
    }
}
