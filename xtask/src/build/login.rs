//! Logging the Docker client in to a registry. The password reaches `docker login
//! --password-stdin` through its stdin only: never a command line (`ps`), and it is a
//! [`Secret`], redacted from every message, `-v` and `--dry-run` included.
//!
//! `build-app` and `docker-publish` log in before their pushes when `XTASK_REGISTRY_USER` and
//! `XTASK_REGISTRY_PASSWORD` are both set ([`from_env_if_set`]), which is all a CI job needs.

use anyhow::{anyhow, bail, Result};

use crate::cmd::Cmd;
use crate::ctx::Ctx;
use crate::interrupt::Interrupted;
use crate::secret::Secret;

pub const USER_ENV: &str = "XTASK_REGISTRY_USER";
pub const PASSWORD_ENV: &str = crate::secret::REGISTRY_PASSWORD_ENV;

pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Logs in to `host` before pushes when `XTASK_REGISTRY_USER` and `XTASK_REGISTRY_PASSWORD` are
/// both set; does nothing when neither is (the Docker client may be logged in already).
pub fn from_env_if_set(ctx: &Ctx, host: &str) -> Result<()> {
    match (env(USER_ENV), env(PASSWORD_ENV)) {
        (None, None) => Ok(()),
        (Some(username), Some(password)) => login(
            ctx,
            host,
            &Credentials {
                username,
                password: Secret::new(password),
            },
        ),
        (Some(_), None) => bail!("{USER_ENV} is set but {PASSWORD_ENV} is not: set both to log in before pushing, or neither"),
        (None, Some(_)) => bail!("{PASSWORD_ENV} is set but {USER_ENV} is not: set both to log in before pushing, or neither"),
    }
}

/// `docker login --username=USER --password-stdin HOST`, the password as stdin bytes. The
/// `=` form keeps a user name starting with `-` from being read as an option.
pub fn login_command(host: &str, credentials: &Credentials) -> Cmd {
    Cmd::new("docker")
        .arg("login")
        .arg(format!("--username={}", credentials.username))
        .args(["--password-stdin", host])
        // The one place the password is used: the child's stdin, never its arguments.
        .stdin(credentials.password.expose())
}

pub fn login(ctx: &Ctx, host: &str, credentials: &Credentials) -> Result<()> {
    let result = ctx.runner.run(&login_command(host, credentials));
    result.map_err(|err| {
        if err.downcast_ref::<Interrupted>().is_some() {
            return err;
        }
        let message = format!(
            "login to {host} as {} failed: {err:#}; check {USER_ENV} and {PASSWORD_ENV} (or --password-stdin)",
            credentials.username
        );
        anyhow!(credentials.password.redact(&message))
    })?;
    if !ctx.runner.dry_run {
        ctx.runner
            .say(format!("Logged in to {host} as {}", credentials.username));
    }
    Ok(())
}

/// An environment variable, unset when empty (`VAR= cargo xtask ...` means "not set").
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            username: "ci".into(),
            password: Secret::new("s3cr3t-pw"),
        }
    }

    #[test]
    fn the_password_goes_to_stdin_only() {
        let cmd = login_command("127.0.0.1:5000", &credentials());
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "login",
                "--username=ci",
                "--password-stdin",
                "127.0.0.1:5000"
            ]
        );
        assert_eq!(cmd.stdin.as_deref(), Some(&b"s3cr3t-pw"[..]));
        // What --dry-run and -v print, and what a debug print shows.
        assert_eq!(
            cmd.to_string(),
            "docker login --username=ci --password-stdin 127.0.0.1:5000 <<stdin"
        );
        assert!(!format!("{cmd:?}").contains("s3cr3t"), "{cmd:?}");
        assert!(!format!("{:?}", credentials().password).contains("s3cr3t"));
    }
}
