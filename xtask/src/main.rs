//! `cargo xtask`: build, publish and deploy the CRM GDB PHP application.
//!
//! This file only parses arguments and dispatches; each task lives in `tasks/<name>.rs`.

mod build_cache;
mod cmd;
mod compose_file;
mod config;
mod deploy_lock;
mod deployment;
mod docker;
mod http;
mod interrupt;
mod local_stack;
mod lock;
mod platform;
mod probe;
mod progress;
mod project;
#[cfg(test)]
mod proptest_cases;
mod reconcile;
mod reference;
mod retry;
mod secret;
mod stack;
mod staging;
mod summary;
mod target;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

use cmd::{Runner, Verbosity};
use config::Config;
use tasks::{
    build_app, completions, docker_publish, doctor, down, login, set_tag, test_image, up, Ctx,
};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, publish and deploy the CRM GDB PHP application",
    after_help = "On a new machine, start with `cargo xtask doctor`. `cargo xtask TASK --help` shows each task's options and examples.",
    version
)]
#[command(arg_required_else_help = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    task: Task,
}

/// Where a deploy goes, shared by deploy, rollback, backup and status.
#[derive(Args)]
struct TargetArgs {
    /// Server as [user@]host[:port], reached with the system ssh (host keys checked); omit for this machine.
    #[arg(long)]
    host: Option<String>,
    /// Deploy directory on the target, holding compose.yaml and .env.
    #[arg(long)]
    dir: String,
    /// Stack name on the target (Compose projects STACK-blue, STACK-green, STACK-edge).
    #[arg(long, env = "XTASK_STACK", default_value = "crm")]
    stack: String,
    /// ssh config file for ssh -F (e.g. keys and known_hosts of a CI runner).
    #[arg(long, env = "XTASK_SSH_CONFIG")]
    ssh_config: Option<PathBuf>,
    /// Number of data backups kept on the target.
    #[arg(long, default_value_t = 5)]
    keep_backups: usize,
}

impl TargetArgs {
    fn options(self) -> Result<tasks::deploy::TargetOptions> {
        let valid = !self.stack.is_empty()
            && self
                .stack
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && self
                .stack
                .starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            anyhow::bail!("invalid --stack {:?}: lowercase letters, digits, '-' and '_' (a Compose project name)", self.stack);
        }
        Ok(tasks::deploy::TargetOptions {
            target: target::Target::new(self.host.as_deref(), &self.dir, self.ssh_config)?,
            lock_wait: None,
            stack: self.stack,
            keep_backups: self.keep_backups,
        })
    }
}

#[derive(Args)]
struct Global {
    /// Registry and namespace the images are named after and pushed to.
    #[arg(long, global = true, env = "XTASK_REGISTRY", default_value = config::DEFAULT_REGISTRY)]
    registry: String,
    /// Tag of the pinned php base and build images.
    #[arg(long, global = true, env = "XTASK_BASE_TAG", default_value = config::DEFAULT_BASE_TAG)]
    base_tag: String,
    /// OS image every image starts from.
    #[arg(long, global = true, env = "XTASK_OS_IMAGE", default_value = config::DEFAULT_OS_IMAGE)]
    os_image: String,
    /// Print the commands that would change something, in order, and run none of them.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Echo every command before running it.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Print only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Task {
    /// Build everything missing locally and run the app on 127.0.0.1 (needs only a Docker engine).
    #[command(after_help = "Examples:\n  cargo xtask up\n  cargo xtask up --port 8081")]
    Up {
        /// Tag given to the locally built release images.
        #[arg(long, default_value = "dev")]
        tag: String,
        /// Loopback port nginx is published on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Compose project name of the local stack.
        #[arg(long, env = "XTASK_LOCAL_PROJECT", default_value = tasks::up::PROJECT)]
        project_name: String,
    },
    /// Stop the stack started by `up`.
    #[command(after_help = "Example:\n  cargo xtask down --volumes")]
    Down {
        /// Also delete the contacts data volume.
        #[arg(long)]
        volumes: bool,
        /// Compose project name of the local stack.
        #[arg(long, env = "XTASK_LOCAL_PROJECT", default_value = tasks::up::PROJECT)]
        project_name: String,
    },
    /// Build and push the pinned base images (php base and php build).
    #[command(
        after_help = "Examples:\n  cargo xtask docker-publish --image php --tag 0.4.1\n  cargo xtask docker-publish --image php --tag 0.4.1 --platform linux/amd64,linux/arm64   (docker-container builder)"
    )]
    DockerPublish {
        /// Which base image family to publish.
        #[arg(long, value_enum)]
        image: docker_publish::BaseImage,
        /// Tag to publish, normally the pinned base tag.
        #[arg(long)]
        tag: String,
        /// Build and tag in the local engine only.
        #[arg(long)]
        no_push: bool,
        /// Target platforms, e.g. linux/amd64,linux/arm64 (default: the engine's own).
        #[arg(long, value_delimiter = ',', value_parser = platform::parse)]
        platform: Vec<String>,
    },
    /// Build the release images from a clean copy of the code, push them and update compose.yaml.
    #[command(
        after_help = "Examples:\n  cargo xtask build-app --tag 1.4.0\n  cargo xtask build-app --tag 1.4.0 --no-push --allow-dirty\n  cargo xtask build-app --tag 1.4.0 --dry-run\n  cargo xtask build-app --tag 1.4.0 --platform linux/amd64"
    )]
    BuildApp {
        /// Release tag, e.g. 1.4.0 (Docker tag grammar; `latest` is refused).
        #[arg(long)]
        tag: String,
        /// Build the working tree (tracked and untracked, not ignored files) instead of HEAD.
        #[arg(long)]
        allow_dirty: bool,
        /// Use the host's composer and npm instead of the pinned build image.
        #[arg(long)]
        host_tools: bool,
        /// Build and tag locally only: no push, compose.yaml untouched.
        #[arg(long)]
        no_push: bool,
        /// Compose file whose image references get the new tag.
        #[arg(long, default_value = "compose.yaml")]
        compose_file: PathBuf,
        /// Target platforms, e.g. linux/amd64,linux/arm64 (default: the engine's own).
        #[arg(long, value_delimiter = ',', value_parser = platform::parse)]
        platform: Vec<String>,
        /// Build even when local images were built from exactly the same inputs (default: re-tag them).
        #[arg(long)]
        rebuild: bool,
    },
    /// Point the app images of a compose file at another tag, changing nothing else.
    #[command(after_help = "Example:\n  cargo xtask set-tag --tag 1.4.0 --file compose.yaml")]
    SetTag {
        /// Release tag to set.
        #[arg(long)]
        tag: String,
        /// Compose file to edit (relative to the project root).
        #[arg(long, default_value = "compose.yaml")]
        file: PathBuf,
    },
    /// Run the release images as a throwaway stack and check health, pages and cached assets.
    #[command(
        after_help = "Examples:\n  cargo xtask test-image --tag 1.4.0\n  cargo xtask test-image --tag 1.4.0 --env-file prod.env"
    )]
    TestImage {
        /// Release tag to test (the images must be local or pullable).
        #[arg(long)]
        tag: String,
        /// Env file with the production settings (default: a fresh random APP_SECRET).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Log the Docker client in to the registry (password from XTASK_REGISTRY_PASSWORD or stdin).
    #[command(
        after_help = "Examples:\n  XTASK_REGISTRY_USER=ci XTASK_REGISTRY_PASSWORD=... cargo xtask login\n  printf %s \"$TOKEN\" | cargo xtask login --username ci --password-stdin\n\nbuild-app and docker-publish log in the same way before pushing when both variables are set."
    )]
    Login {
        /// Registry user name.
        #[arg(long, env = "XTASK_REGISTRY_USER")]
        username: Option<String>,
        /// Read the password from standard input instead of XTASK_REGISTRY_PASSWORD.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Deploy a release to a target (local dir or ssh), zero-downtime by default.
    #[command(
        after_help = "Examples:\n  cargo xtask deploy --tag 1.4.0 --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask deploy --tag 1.4.0 --dir /srv/crm --strategy recreate"
    )]
    Deploy {
        /// Release tag to deploy (must be in the registry).
        #[arg(long)]
        tag: String,
        /// rolling: new containers beside the old, switch once healthy; recreate: the seed's stop-and-start.
        #[arg(long, value_enum, default_value = "rolling")]
        strategy: tasks::deploy::Strategy,
        /// When another deploy holds the lock, wait for it this long (90s, 10m, 1h) instead of failing.
        #[arg(long, value_name = "DURATION", value_parser = deploy_lock::parse_wait)]
        lock_wait: Option<std::time::Duration>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Return the target to the previous successful release (or --to TAG), without downtime.
    #[command(
        after_help = "Examples:\n  cargo xtask rollback --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask rollback --to 1.3.0 --dir /srv/crm"
    )]
    Rollback {
        /// Release to return to (default: the previous successful one in the history).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Back up the target's data volume, or restore an archive (--restore).
    #[command(
        after_help = "Examples:\n  cargo xtask backup --dir /srv/crm\n  cargo xtask backup --dir /srv/crm --restore data-20261121T100000Z-1.4.0.tar.gz"
    )]
    Backup {
        /// Archive (a file name in the target's backups/) to restore.
        #[arg(long)]
        restore: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show the target's live release, containers' health, recent history and backups.
    #[command(
        after_help = "Example:\n  cargo xtask status --host deploy@web1.example.com --dir /srv/crm"
    )]
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show or release the target's deploy lock (a deploy takes over a dead holder's lock by itself).
    #[command(
        after_help = "Examples:\n  cargo xtask lock status --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask lock release --dir /srv/crm"
    )]
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// Measure failed requests and gaps under load for recreate, rolling, rollback and a broken release.
    #[command(after_help = "Example:\n  cargo xtask bench-deploy")]
    BenchDeploy,
    /// Time build-app against the seed's naive procedure (cold, warm, no change, staging, sizes).
    #[command(
        after_help = "Examples:\n  cargo xtask bench\n  cargo xtask bench --registry 127.0.0.1:5000/kiora\n\nWithout --registry (or XTASK_REGISTRY) it starts its own `docker-registry serve` on 127.0.0.1.\nIt prunes the engine's build cache (`docker builder prune -af`) for the cold build.\nWrites docs/benchmarks.md."
    )]
    Bench,
    /// Check this machine has what the tasks need, and say what to install when it has not.
    #[command(
        after_help = "Examples:\n  cargo xtask doctor\n  cargo xtask doctor --registry 127.0.0.1:5000/kiora"
    )]
    Doctor,
    /// Print a shell completion script (for a command `xtask` that runs `cargo xtask`).
    #[command(
        after_help = "Examples:\n  bash: xtask() { cargo xtask \"$@\"; }; source <(cargo xtask completions bash)\n  zsh:  xtask() { cargo xtask \"$@\"; }; source <(cargo xtask completions zsh)\n  fish: function xtask; cargo xtask $argv; end; cargo xtask completions fish | source"
    )]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum LockAction {
    /// Who holds the lock, when its lease was renewed, and whether the holder is alive.
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Remove the lock; refused while its holder is alive, unless --force.
    Release {
        /// Release it even though its holder looks alive.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn main() -> ExitCode {
    // No task: list them, as a usage error (clap would not when XTASK_* variables are set).
    if std::env::args_os().len() <= 1 {
        let _ = Cli::command().write_help(&mut std::io::stderr());
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            match err.downcast_ref::<interrupt::Interrupted>() {
                Some(interrupt::Interrupted(signal)) => ExitCode::from(128 + *signal as u8),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    interrupt::install()?;
    let g = cli.global;
    reference::check_registry(&g.registry)?;
    reference::check_tag(&g.base_tag)?;
    let verbosity = match (g.quiet, g.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let ctx = Ctx {
        config: Config {
            registry: g.registry,
            base_tag: g.base_tag,
            os_image: g.os_image,
        },
        runner: Runner::new(g.dry_run, verbosity),
        root: project::root()?,
    };
    match cli.task {
        Task::Up {
            tag,
            port,
            project_name,
        } => up::run(&ctx, &tag, port, &project_name),
        Task::Down {
            volumes,
            project_name,
        } => down::run(&ctx, volumes, &project_name),
        Task::DockerPublish {
            image,
            tag,
            no_push,
            platform,
        } => docker_publish::run(&ctx, image, &tag, !no_push, &platform),
        Task::BuildApp {
            tag,
            allow_dirty,
            host_tools,
            no_push,
            compose_file,
            platform,
            rebuild,
        } => build_app::run(
            &ctx,
            &build_app::Options {
                tag,
                allow_dirty,
                host_tools,
                push: !no_push,
                compose_file,
                platforms: platform,
                rebuild,
            },
        ),
        Task::SetTag { tag, file } => set_tag::run(&ctx, &tag, &file),
        Task::TestImage { tag, env_file } => test_image::run(&ctx, &tag, env_file.as_deref()),
        Task::Login {
            username,
            password_stdin,
        } => login::run(&ctx, username.as_deref(), password_stdin),
        Task::Deploy {
            tag,
            strategy,
            lock_wait,
            target,
        } => {
            let mut opts = target.options()?;
            opts.lock_wait = lock_wait;
            tasks::deploy::run(&ctx, &opts, &tag, strategy)
        }
        Task::Lock { action } => match action {
            LockAction::Status { target } => tasks::lock::status(&ctx, &target.options()?),
            LockAction::Release { force, target } => {
                tasks::lock::release(&ctx, &target.options()?, force)
            }
        },
        Task::Rollback { to, target } => {
            tasks::rollback::run(&ctx, &target.options()?, to.as_deref()).map(drop)
        }
        Task::Backup { restore, target } => {
            tasks::backup::run(&ctx, &target.options()?, restore.as_deref())
        }
        Task::Status { target } => tasks::status::run(&ctx, &target.options()?),
        Task::BenchDeploy => tasks::bench_deploy::run(&ctx),
        Task::Bench => tasks::bench::run(&ctx),
        Task::Doctor => doctor::run(&ctx),
        Task::Completions { shell } => completions::run(shell, &mut Cli::command()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
