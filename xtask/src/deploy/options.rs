//! Where a deploy goes, as given on the command line (`--host`, `--dir`, `--stack`, ...) or by
//! an environment of the deploy config (`--env`), and as checked: shared by the deploy side's
//! tasks (deploy, rollback, status, logs, exec, maintenance, prune; backup takes one target).
//! Precedence: flag (or its XTASK_ variable), then the environment, then the defaults of
//! `config.rs`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cmd::Runner;
use crate::config::{DEFAULT_KEEP_BACKUPS, DEFAULT_STACK, MIN_FREE_DISK};
use crate::deploy::environments;
use crate::deploy::fleet::Wave;
use crate::deploy::remote::Remote;
use crate::deploy::rollout::{Fleet, FleetHost};
use crate::deploy::swarm::{self, Swarm};
use crate::deploy::switch::Strategy;
use crate::deploy::target::Target;
use crate::deploy::tls::TlsFiles;

/// Where and how: shared by deploy, rollback, backup and status.
pub struct TargetOptions {
    pub target: Target,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge).
    pub stack: String,
    pub keep_backups: usize,
    /// HTTPS at the edge: the certificate and key on the target (`--tls-cert`/`--tls-key`).
    pub tls: Option<TlsFiles>,
}

/// Where a deploy goes, shared by deploy, rollback, backup and status: one target (`--host`,
/// `--dir`) or an environment of the deploy config (`--env`).
#[derive(Args)]
pub struct TargetArgs {
    /// Environment of the deploy config (deploy.yaml): its hosts, directory and defaults.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["host", "dir"])]
    env: Option<String>,
    /// The --host is a Docker Swarm manager: deploy compose.yaml there as a stack (no --dir).
    #[arg(long, requires = "host", conflicts_with_all = ["env", "dir"])]
    swarm: bool,
    /// The deploy environments file [default: deploy.yaml at the project root].
    #[arg(long, env = "XTASK_DEPLOY_CONFIG", value_name = "FILE")]
    deploy_config: Option<PathBuf>,
    /// Server as [user@]host[:port], reached with the system ssh (host keys checked); omit for this machine.
    #[arg(long)]
    host: Option<String>,
    /// Deploy directory on the target, holding compose.yaml and .env.
    #[arg(long, required_unless_present_any = ["env", "swarm"])]
    dir: Option<String>,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge) [default: crm].
    #[arg(long, env = "XTASK_STACK")]
    stack: Option<String>,
    /// ssh config file for ssh -F (e.g. keys and known_hosts of a CI runner).
    #[arg(long, env = "XTASK_SSH_CONFIG")]
    ssh_config: Option<PathBuf>,
    /// Number of data backups kept on the target [default: 5].
    #[arg(long)]
    keep_backups: Option<usize>,
    /// Refuse a target with less free space in its deploy directory, e.g. 2GiB [default: 1GiB].
    #[arg(long, env = "XTASK_MIN_FREE_DISK", value_parser = parse_size)]
    min_free_disk: Option<u64>,
    /// HTTPS at the edge: the certificate chain (PEM), a path ON THE TARGET [default: the environment's tls.cert].
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<String>,
    /// The certificate's private key (PEM), a path ON THE TARGET: read there by its engine only.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<String>,
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::deploy::environments::parse_size(text).map_err(|e| e.to_string())
}

impl TargetArgs {
    /// Checked: a valid stack name and target. One target only (backup): `--env` is refused.
    pub fn options(&self) -> Result<TargetOptions> {
        if let Some(env) = &self.env {
            bail!("--env {env}: this task works on one target; give --host and --dir of one host of the environment");
        }
        if self.swarm {
            bail!("--swarm: this task works on Compose targets (deploy, rollback, status and backup work on a swarm)");
        }
        let stack = self.stack.clone().unwrap_or_else(|| DEFAULT_STACK.into());
        check_stack(&stack)?;
        let dir = self.dir.as_deref().context("--dir is required")?;
        Ok(TargetOptions {
            target: Target::new(self.host.as_deref(), dir, self.ssh_config.clone())?,
            stack,
            keep_backups: self.keep_backups.unwrap_or(DEFAULT_KEEP_BACKUPS),
            tls: self.tls()?,
        })
    }

    /// `--keep-backups`, else the default (a swarm's dumps).
    pub fn keep_backups(&self) -> usize {
        self.keep_backups.unwrap_or(DEFAULT_KEEP_BACKUPS)
    }

    /// `--tls-cert` and `--tls-key` (clap makes them go together), checked.
    fn tls(&self) -> Result<Option<TlsFiles>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles::new(cert, key)?)),
            _ => Ok(None),
        }
    }

    /// The swarm of `--swarm --host MANAGER` or of an environment of kind swarm, with the file
    /// holding its APP_SECRET (if the environment names one); None for Compose targets.
    pub fn swarm(
        &self,
        root: &Path,
        registry: &str,
        runner: &Runner,
    ) -> Result<Option<(Swarm, Option<PathBuf>)>> {
        let (manager, stack, ssh_config, env_file) = match (&self.env, self.swarm) {
            (None, false) => return Ok(None),
            (None, true) => (
                self.host.clone().context("--swarm needs --host MANAGER")?,
                self.stack.clone(),
                self.ssh_config.clone(),
                None,
            ),
            (Some(name), _) => {
                let env = environments::load(&self.config_file(root), name)?;
                let Some(manager) = &env.manager else {
                    return Ok(None);
                };
                let spec = match manager.port {
                    Some(port) => format!("{}:{port}", manager.host),
                    None => manager.host.clone(),
                };
                let spec = match &manager.user {
                    Some(user) => format!("{user}@{spec}"),
                    None => spec,
                };
                (
                    spec,
                    self.stack.clone().or(env.stack.clone()),
                    self.ssh_config.clone().or(env.ssh_config.clone()),
                    env.env_file.clone(),
                )
            }
        };
        let stack = stack.unwrap_or_else(|| DEFAULT_STACK.into());
        check_stack(&stack)?;
        let file_path = root.join(swarm::STACK_FILE);
        let file = std::fs::read_to_string(&file_path).with_context(|| {
            format!("cannot read {} (the swarm stack file)", file_path.display())
        })?;
        let target = Target::new(Some(&manager), "/", ssh_config)?;
        Ok(Some((
            Swarm {
                manager: Remote::new(target, *runner),
                stack,
                registry: registry.to_string(),
                file,
                http_port: None,
                timeout: swarm::TIMEOUT,
            },
            env_file,
        )))
    }

    fn config_file(&self, root: &Path) -> PathBuf {
        self.deploy_config
            .clone()
            .unwrap_or_else(|| root.join(environments::DEFAULT_FILE))
    }

    /// The hosts and defaults of `--env` (from the deploy config; flags override it), or the one
    /// target of `--host`/`--dir` as a fleet of one. Every mistake is refused here, before
    /// anything connects.
    pub fn fleet(&self, root: &Path) -> Result<Fleet> {
        let Some(name) = &self.env else {
            let opts = self.options()?;
            let mut fleet = Fleet::one(&opts);
            fleet.min_free_disk = self.min_free_disk.unwrap_or(MIN_FREE_DISK);
            return Ok(fleet);
        };
        let env = environments::load(&self.config_file(root), name)?;
        if env.kind == environments::Kind::Swarm {
            bail!("environment {name} is a swarm: this task works on Compose hosts (deploy, rollback, status and backup work on a swarm)");
        }
        let stack = self
            .stack
            .clone()
            .or(env.stack.clone())
            .unwrap_or_else(|| DEFAULT_STACK.into());
        check_stack(&stack)?;
        let ssh_config = self.ssh_config.clone().or(env.ssh_config.clone());
        let hosts = env
            .hosts
            .iter()
            .map(|h| {
                let dir = h.dir.as_ref().or(env.dir.as_ref()).context("no dir")?;
                Ok(FleetHost {
                    label: environments::label(&h.ssh),
                    spec: h.spec.clone(),
                    target: Target::new(Some(&h.spec), dir, ssh_config.clone())?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fleet {
            env: Some(env.name.clone()),
            hosts,
            stack,
            keep_backups: self
                .keep_backups
                .or(env.keep_backups)
                .unwrap_or(DEFAULT_KEEP_BACKUPS),
            min_free_disk: self
                .min_free_disk
                .or(env.min_free_disk)
                .unwrap_or(MIN_FREE_DISK),
            canary: env.canary,
            canary_wait: env.canary_wait,
            lock_wait: None,
            wave: env.wave.unwrap_or(Wave::Hosts(1)),
            strategy: env
                .strategy
                .as_deref()
                .and_then(Strategy::parse)
                .unwrap_or(Strategy::Rolling),
            release_command: true,
            tls: self.tls()?.or(env.tls.clone()),
            traffic_canary: None,
        })
    }
}

/// One host of `--env` instead of every one (exec, logs): `--primary` or `--only HOST`.
#[derive(Args, Default)]
pub struct HostChoice {
    /// With --env: only the environment's first host (its primary).
    #[arg(long, conflicts_with = "only")]
    pub primary: bool,
    /// With --env: only this host of the environment (as deploy.yaml names it, e.g. web2).
    #[arg(long, value_name = "HOST", alias = "host-of-env")]
    pub only: Option<String>,
}

impl HostChoice {
    /// `fleet` narrowed to the chosen host, or whole when none was chosen.
    pub fn narrow(&self, fleet: Fleet) -> Result<Fleet> {
        if fleet.env.is_none() && (self.primary || self.only.is_some()) {
            bail!("--primary and --only choose one host of --env NAME; with --host/--dir there is one target already");
        }
        let at = match (&self.only, self.primary) {
            (Some(name), _) => fleet.host_index(name).context("--only")?,
            (None, true) => 0,
            (None, false) => return Ok(fleet),
        };
        let host = fleet.hosts[at].clone();
        Ok(Fleet {
            hosts: vec![host],
            canary: 0,
            ..fleet
        })
    }
}

/// A Compose project name prefix, as `--stack` or `stack:` gives it.
fn check_stack(stack: &str) -> Result<()> {
    environments::check_stack(stack).map_err(|_| {
        anyhow::anyhow!(
            "invalid --stack {stack:?}: lowercase letters, digits, '-' and '_' (a Compose project name)"
        )
    })
}

impl Fleet {
    /// One target as a fleet of one (`--host`/`--dir`, and the benchmarks).
    pub fn one(opts: &TargetOptions) -> Fleet {
        let label = match &opts.target.ssh {
            Some(ssh) => environments::label(ssh),
            None => "local".into(),
        };
        Fleet {
            env: None,
            hosts: vec![FleetHost {
                spec: label.clone(),
                label,
                target: opts.target.clone(),
            }],
            stack: opts.stack.clone(),
            keep_backups: opts.keep_backups,
            min_free_disk: MIN_FREE_DISK,
            canary: 0,
            canary_wait: None,
            lock_wait: None,
            wave: Wave::Hosts(1),
            strategy: Strategy::Rolling,
            release_command: true,
            tls: opts.tls.clone(),
            traffic_canary: None,
        }
    }

    /// The index of a host named as in the deploy config, by its label or host name.
    pub fn host_index(&self, name: &str) -> Result<usize> {
        let matches: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| {
                let h = &self.hosts[i];
                h.spec == name
                    || h.label == name
                    || h.target.ssh.as_ref().is_some_and(|s| s.host == name)
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            _ => {
                let names: Vec<&str> = self.hosts.iter().map(|h| h.label.as_str()).collect();
                bail!(
                    "{name:?} is not one host of the fleet ({})",
                    names.join(", ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        target: TargetArgs,
    }

    fn parse(args: &[&str]) -> Result<TargetArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.target)
    }

    const CONFIG: &str = "environments:\n  prod:\n    hosts: [deploy@web1, deploy@web2:2222]\n    dir: /srv/crm\n    stack: shop\n    keep_backups: 3\n    wave: 50%\n    canary: web2\n";

    #[test]
    fn env_conflicts_with_host_and_dir() {
        assert!(parse(&["--env", "prod", "--dir", "/srv"]).is_err());
        assert!(parse(&["--env", "prod", "--host", "web1"]).is_err());
        assert!(
            parse(&["--host", "web1"]).is_err(),
            "--dir is required without --env"
        );
        assert!(parse(&["--env", "prod"]).is_ok());
    }

    #[test]
    fn flags_override_the_environment_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy.yaml");
        std::fs::write(&file, CONFIG).unwrap();
        let f = file.to_str().unwrap();
        let fleet = parse(&["--env", "prod", "--deploy-config", f])
            .unwrap()
            .fleet(Path::new("/nowhere"))
            .unwrap();
        assert_eq!(fleet.env.as_deref(), Some("prod"));
        assert_eq!(
            (fleet.stack.as_str(), fleet.keep_backups, fleet.canary),
            ("shop", 3, 1)
        );
        assert_eq!(fleet.wave, Wave::Percent(50));
        assert_eq!(fleet.min_free_disk, MIN_FREE_DISK);
        let labels: Vec<&str> = fleet.hosts.iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["web1", "web2:2222"]);
        assert_eq!(
            fleet.hosts[1].target.describe(),
            "deploy@web2:2222:/srv/crm"
        );
        assert_eq!(fleet.host_index("web2").unwrap(), 1);
        assert!(fleet.host_index("web9").is_err());

        let fleet = parse(&[
            "--env",
            "prod",
            "--deploy-config",
            f,
            "--stack",
            "other",
            "--keep-backups",
            "9",
            "--min-free-disk",
            "2GiB",
        ])
        .unwrap()
        .fleet(Path::new("/nowhere"))
        .unwrap();
        assert_eq!((fleet.stack.as_str(), fleet.keep_backups), ("other", 9));
        assert_eq!(fleet.min_free_disk, 2 << 30);

        // The default file is deploy.yaml at the project root.
        std::fs::write(dir.path().join("deploy.yaml"), CONFIG).unwrap();
        let fleet = parse(&["--env", "prod"])
            .unwrap()
            .fleet(dir.path())
            .unwrap();
        assert_eq!(fleet.hosts.len(), 2);
        let e = parse(&["--env", "nope"])
            .unwrap()
            .fleet(dir.path())
            .unwrap_err();
        assert!(
            e.to_string().starts_with("unknown environment \"nope\""),
            "{e}"
        );
    }

    #[derive(Parser)]
    struct ChoiceCli {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        choice: HostChoice,
    }

    #[test]
    fn one_host_of_the_environment_can_be_chosen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("deploy.yaml");
        std::fs::write(&file, CONFIG).unwrap();
        let f = file.to_str().unwrap();
        let parse = |args: &[&str]| {
            ChoiceCli::try_parse_from(
                ["x", "--env", "prod", "--deploy-config", f]
                    .into_iter()
                    .chain(args.iter().copied()),
            )
        };
        let hosts = |args: &[&str]| -> Result<Vec<String>> {
            let cli = parse(args).unwrap();
            let fleet = cli.choice.narrow(cli.target.fleet(Path::new("/"))?)?;
            Ok(fleet.hosts.iter().map(|h| h.label.clone()).collect())
        };
        assert_eq!(hosts(&[]).unwrap(), ["web1", "web2:2222"]);
        assert_eq!(hosts(&["--primary"]).unwrap(), ["web1"]);
        assert_eq!(hosts(&["--only", "web2"]).unwrap(), ["web2:2222"]);
        assert_eq!(
            hosts(&["--host-of-env", "deploy@web2:2222"]).unwrap(),
            ["web2:2222"]
        );
        let err = hosts(&["--only", "web9"]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "--only: \"web9\" is not one host of the fleet (web1, web2:2222)"
        );
        assert!(parse(&["--primary", "--only", "web1"]).is_err());
        let cli = ChoiceCli::try_parse_from(["x", "--dir", "/srv", "--primary"]).unwrap();
        let err = cli
            .choice
            .narrow(cli.target.fleet(Path::new("/")).unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--primary and --only choose one host of --env"),
            "{err}"
        );
    }

    #[test]
    fn swarm_needs_a_manager_and_no_dir() {
        assert!(parse(&["--swarm"]).is_err(), "--swarm needs --host");
        assert!(parse(&["--swarm", "--host", "m", "--dir", "/srv"]).is_err());
        assert!(parse(&["--swarm", "--env", "prod"]).is_err());
        let args = parse(&["--swarm", "--host", "root@10.0.0.1"]).unwrap();
        let e = args.options().err().unwrap().to_string();
        assert!(
            e.starts_with("--swarm: this task works on Compose targets"),
            "{e}"
        );
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("compose.yaml"), "services: {}\n").unwrap();
        let runner = Runner::new(true, crate::progress::Verbosity::Quiet);
        let (swarm, env_file) = args
            .swarm(root.path(), "127.0.0.1:5000/kiora", &runner)
            .unwrap()
            .unwrap();
        assert_eq!(swarm.stack, "crm");
        assert_eq!(swarm.file, "services: {}\n");
        assert_eq!(swarm.manager.target.describe(), "root@10.0.0.1:/");
        assert!(env_file.is_none());
        let compose = parse(&["--dir", "/srv"]).unwrap();
        assert!(compose.swarm(root.path(), "r", &runner).unwrap().is_none());
    }

    #[test]
    fn one_target_is_a_fleet_of_one_with_the_defaults() {
        let fleet = parse(&["--dir", "/srv/crm"])
            .unwrap()
            .fleet(Path::new("/"))
            .unwrap();
        assert_eq!(fleet.hosts.len(), 1);
        assert_eq!((fleet.stack.as_str(), fleet.keep_backups), ("crm", 5));
        assert!(parse(&["--env", "prod"]).unwrap().options().is_err());
        let e = parse(&["--dir", "/srv", "--stack", "Bad"])
            .unwrap()
            .options()
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("invalid --stack \"Bad\""), "{e}");
    }
}
