//! `cargo xtask tls reload|off|status --dir PATH [--host ...] | --env NAME`: HTTPS at the edge.
//! `reload` copies the certificate and key from the target's own files (`--tls-cert`/`--tls-key`,
//! or the environment's `tls:`) into the edge and reloads it gracefully: what to run after a
//! renewal (a deploy does it too). `off` stops serving HTTPS; `status` prints the certificate's
//! expiry, with a warning under 14 days. With `--env`, host after host.

use anyhow::{Context, Result};

use crate::ctx::Ctx;
use crate::deploy::options::TargetArgs;
use crate::deploy::tls;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Install the certificate and key from the target's files and reload the edge without dropping a request (after a renewal).
    Reload {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop serving HTTPS: port 443 refuses, plain HTTP is served again.
    Off {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// The served certificate's subject and expiry; a warning under 14 days.
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let target = match &args.action {
        Action::Reload { target } | Action::Off { target } | Action::Status { target } => target,
    };
    let fleet = target.fleet(&ctx.root)?;
    let files = match &args.action {
        Action::Reload { .. } => Some(fleet.tls.clone().context(
            "no certificate to install: give --tls-cert and --tls-key (paths on the target), or `tls:` in the environment of deploy.yaml",
        )?),
        _ => None,
    };
    let several = fleet.hosts.len() > 1;
    for (d, host) in fleet.deployments(&ctx.runner).iter().zip(&fleet.hosts) {
        let label = if several {
            format!("[{}] ", host.label)
        } else {
            String::new()
        };
        let where_ = host.target.describe();
        host.target.check(&ctx.runner)?;
        match &args.action {
            Action::Reload { .. } => {
                // One operation at a time on a target: a deploy's switch also reloads the edge.
                let _lock = d.lock("tls reload")?;
                let files = files.as_ref().expect("checked above");
                tls::install(d, files).with_context(|| format!("on {where_}"))?;
                ctx.runner.say(format!(
                    "{label}the edge at {where_} serves {} over HTTPS",
                    files.cert
                ));
            }
            Action::Off { .. } => {
                let _lock = d.lock("tls off")?;
                tls::off(d).with_context(|| format!("on {where_}"))?;
                ctx.runner
                    .say(format!("{label}HTTPS is off at {where_}: plain HTTP only"));
            }
            Action::Status { .. } => {
                println!("{label}{}", tls::describe(&tls::state(d)?, tls::now()));
            }
        }
    }
    Ok(())
}
