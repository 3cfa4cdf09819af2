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
//! variables are set (`build/login.rs`), which is all a CI job needs.

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::build::login::{env, login, Credentials, PASSWORD_ENV, USER_ENV};
use crate::ctx::Ctx;
use crate::reference::registry_host;
use crate::secret::Secret;

#[derive(clap::Args)]
pub struct Args {
    /// Registry user name.
    #[arg(long, env = "XTASK_REGISTRY_USER")]
    pub username: Option<String>,
    /// Read the password from standard input instead of XTASK_REGISTRY_PASSWORD.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let (username, password_stdin) = (args.username.as_deref(), args.password_stdin);
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
