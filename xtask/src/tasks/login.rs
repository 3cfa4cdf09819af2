//! `cargo xtask login`: log the Docker client in to the registry the images are pushed to (the
//! host of `--registry`), so that `build-app` and `docker-publish` can push.
//!
//! The user name comes from `--username` or `XTASK_REGISTRY_USER`; the password from
//! `XTASK_REGISTRY_PASSWORD`, or from our standard input with `--password-stdin`. The password
//! reaches `docker login --password-stdin` through its stdin only: never a command line (`ps`),
//! nor the environment of any child (`Cmd` removes it), and it is a [`Secret`], redacted from
//! every message, `-v` and `--dry-run` included.
//!
//! `build-app` and `docker-publish` log in the same way before their pushes when both
//! variables are set ([`from_env_if_set`]), which is all a CI job needs.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};

use crate::cmd::Cmd;
use crate::interrupt::Interrupted;
use crate::secret::Secret;
use crate::tasks::Ctx;

pub const USER_ENV: &str = "XTASK_REGISTRY_USER";
pub const PASSWORD_ENV: &str = crate::secret::REGISTRY_PASSWORD_ENV;

pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

pub fn run(ctx: &Ctx, username: Option<&str>, password_stdin: bool) -> Result<()> {
    let username = username
        .filter(|u| !u.is_empty())
        .with_context(|| format!("no registry user: pass --username or set {USER_ENV}"))?;
    let password = if password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the password from standard input")?;
        // `echo "$PASSWORD" |` adds a newline that is not part of the password.
        let password = input.strip_suffix('\n').unwrap_or(&input);
        Secret::new(password.strip_suffix('\r').unwrap_or(password))
    } else {
        env(PASSWORD_ENV).map(Secret::new).with_context(|| {
            format!(
                "no registry password: set {PASSWORD_ENV}, or pass --password-stdin and pipe it in"
            )
        })?
    };
    if password.is_empty() {
        bail!("the registry password is empty; pipe it to --password-stdin or set {PASSWORD_ENV}");
    }
    let host = registry_host(&ctx.config.registry);
    login(
        ctx,
        host,
        &Credentials {
            username: username.to_string(),
            password,
        },
    )
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

fn login(ctx: &Ctx, host: &str, credentials: &Credentials) -> Result<()> {
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

/// `127.0.0.1:5000` of `127.0.0.1:5000/kiora`.
fn registry_host(registry: &str) -> &str {
    registry.split('/').next().unwrap_or(registry)
}

/// An environment variable, unset when empty (`VAR= cargo xtask ...` means "not set").
fn env(name: &str) -> Option<String> {
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

    #[test]
    fn registry_host_of_a_prefix() {
        assert_eq!(registry_host("127.0.0.1:5000/kiora"), "127.0.0.1:5000");
        assert_eq!(
            registry_host("registry.kiora.tech/kiora/x"),
            "registry.kiora.tech"
        );
        assert_eq!(registry_host("localhost:5000"), "localhost:5000");
    }
}
