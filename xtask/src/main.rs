//! `cargo xtask`: build, publish and deploy the CRM GDB PHP application.
//!
//! This file only parses arguments and dispatches; each task lives in `tasks/<name>.rs`.

mod api_shortcut;
mod build;
mod cmd;
mod compose_file;
mod config;
mod ctx;
mod deploy;
mod docker;
mod docker_api;
mod http;
mod interrupt;
mod json;
mod probe;
mod progress;
mod project;
#[cfg(test)]
mod proptest_cases;
mod reference;
mod retry;
mod secret;
mod ssh;
mod tasks;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};

use cmd::Runner;
use config::Config;
use ctx::Ctx;
use progress::Verbosity;
use tasks::{
    backup, bench, bench_deploy, build_app, completions, docker_publish, doctor, down, exec, lock,
    login, logs, maintenance, prune, rollback, set_tag, status, test_image, tls, up,
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
    /// Platforms build-app and docker-publish build when not given --platform (default: the engine's own).
    #[arg(long, global = true, env = "XTASK_PLATFORMS", value_delimiter = ',', value_parser = build::platform::parse)]
    platforms: Vec<String>,
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
    Up(up::Args),
    /// Stop the stack started by `up`.
    #[command(after_help = "Example:\n  cargo xtask down --volumes")]
    Down(down::Args),
    /// Build and push the pinned base images (php base and php build).
    #[command(
        after_help = "Examples:\n  cargo xtask docker-publish --image php --tag 0.5.0\n  cargo xtask docker-publish --image php --tag 0.5.0 --platform linux/amd64,linux/arm64   (docker-container builder)"
    )]
    DockerPublish(docker_publish::Args),
    /// Build the release images from a clean copy of the code, push them and update compose.yaml.
    #[command(
        after_help = "Examples:\n  cargo xtask build-app --tag 1.4.0\n  cargo xtask build-app --tag 1.4.0 --no-push --allow-dirty\n  cargo xtask build-app --tag 1.4.0 --dry-run\n  cargo xtask build-app --tag 1.4.0 --platform linux/amd64"
    )]
    BuildApp(build_app::Args),
    /// Point the app images of a compose file at another tag, changing nothing else.
    #[command(after_help = "Example:\n  cargo xtask set-tag --tag 1.4.0 --file compose.yaml")]
    SetTag(set_tag::Args),
    /// Run the release images as a throwaway stack and check health, pages and cached assets.
    #[command(
        after_help = "Examples:\n  cargo xtask test-image --tag 1.4.0\n  cargo xtask test-image --tag 1.4.0 --env-file prod.env"
    )]
    TestImage(test_image::Args),
    /// Log the Docker client in to the registry (password from XTASK_REGISTRY_PASSWORD or stdin).
    #[command(
        after_help = "Examples:\n  XTASK_REGISTRY_USER=ci XTASK_REGISTRY_PASSWORD=... cargo xtask login\n  printf %s \"$TOKEN\" | cargo xtask login --username ci --password-stdin\n\nbuild-app and docker-publish log in the same way before pushing when both variables are set."
    )]
    Login(login::Args),
    /// Deploy a release to a target (local dir or ssh), zero-downtime by default.
    #[command(
        after_help = "Examples:\n  cargo xtask deploy --tag 1.4.0 --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask deploy --tag 1.4.0 --dir /srv/crm --strategy recreate\n  cargo xtask deploy --tag 1.4.0 --dir /srv/crm --canary 10% --canary-wait 5m\n  cargo xtask deploy --dir /srv/crm --promote   (or --abort: a canary left by --canary-wait 0)\n\nBefore the switch it runs the release's command once (the label org.kiora.release-command of its php image: the database migrations); if that fails, nothing switches."
    )]
    Deploy(tasks::deploy::Args),
    /// Return the target to the previous successful release (or --to TAG), without downtime.
    #[command(
        after_help = "Examples:\n  cargo xtask rollback --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask rollback --to 1.3.0 --dir /srv/crm"
    )]
    Rollback(rollback::Args),
    /// Dump the target's database, or restore a dump (--restore).
    #[command(
        after_help = "Examples:\n  cargo xtask backup --dir /srv/crm\n  cargo xtask backup --dir /srv/crm --restore db-20261121T100000Z-manual.dump"
    )]
    Backup(backup::Args),
    /// Show the target's live release, containers' health, recent history and backups.
    #[command(
        after_help = "Example:\n  cargo xtask status --host deploy@web1.example.com --dir /srv/crm"
    )]
    Status(status::Args),
    /// Show or release the target's deploy lock (a deploy takes over a dead holder's lock by itself).
    #[command(
        after_help = "Examples:\n  cargo xtask lock status --host deploy@web1.example.com --dir /srv/crm\n  cargo xtask lock release --dir /srv/crm"
    )]
    Lock(lock::Args),
    /// Show the live release's logs on a target or every host of --env (per service or all; -f follows until Ctrl-C).
    #[command(
        after_help = "Examples:\n  cargo xtask logs --host deploy@web1.example.com --dir /srv/crm -f\n  cargo xtask logs --dir /srv/crm --service php --since 10m\n  cargo xtask logs --env production -f   (every host at once, each line prefixed with its host)"
    )]
    Logs(logs::Args),
    /// Run a command in the live php container (or --new: in a throwaway one of a release); its exit status is ours.
    #[command(
        after_help = "Examples:\n  cargo xtask exec --dir /srv/crm -- php bin/console cache:clear\n  cargo xtask exec --host deploy@web1.example.com --dir /srv/crm -i -- bash\n  cargo xtask exec --dir /srv/crm --new --tag 1.4.0 -- php -v\n  cargo xtask exec --env production -- php bin/console cache:clear   (every host in turn)\n  cargo xtask exec --env production --primary -i -- bash"
    )]
    Exec(exec::Args),
    /// Turn the edge's maintenance page on or off (503 with Retry-After; health checks still answer).
    #[command(
        after_help = "Examples:\n  cargo xtask maintenance on --dir /srv/crm --message 'Back at 14:00'\n  cargo xtask maintenance status --dir /srv/crm\n  cargo xtask maintenance off --dir /srv/crm\n  cargo xtask maintenance on --env production   (every host, or none)"
    )]
    Maintenance(maintenance::Args),
    /// HTTPS at the edge: install a renewed certificate and reload without a dropped request, turn it off, or show its expiry.
    #[command(
        after_help = "Examples:\n  cargo xtask tls reload --dir /srv/crm --tls-cert /srv/crm/tls/fullchain.pem --tls-key /srv/crm/tls/privkey.pem\n  cargo xtask tls reload --env production\n  cargo xtask tls status --env production"
    )]
    Tls(tls::Args),
    /// Remove what a target no longer needs: old release images, stopped containers, assets, backups; trim the build cache.
    #[command(
        after_help = "Examples:\n  cargo xtask prune --dir /srv/crm --dry-run\n  cargo xtask prune --host deploy@web1.example.com --dir /srv/crm --keep 3\n  cargo xtask prune --env production --dry-run"
    )]
    Prune(prune::Args),
    /// Measure failed requests and gaps under load for recreate, rolling, rollback and a broken release.
    #[command(
        after_help = "Examples:\n  cargo xtask bench-deploy\n  sudo cargo xtask bench-deploy --machines 3   (a testbed of 3 machines; writes docs/benchmarks-fleet.md)"
    )]
    BenchDeploy(bench_deploy::Args),
    /// Time build-app against the old Makefile procedure run with BuildKit (cold, CI cold runner, warm, no change, sizes).
    #[command(
        after_help = "Examples:\n  cargo xtask bench\n  cargo xtask bench --registry 127.0.0.1:5000/kiora\n\nWithout --registry (or XTASK_REGISTRY) it starts its own `docker-registry serve` on 127.0.0.1.\nIt prunes the engine's whole build cache (`docker builder prune -af`) for the cold builds:\nrun it where nothing else uses the engine.\nWrites docs/benchmarks.md (a run with --only does not).\n\n  cargo xtask bench --only same --runs 1   (one part: cold, ci, warm, same, staging, cargo, sizes)"
    )]
    Bench(bench::Args),
    /// Check this machine has what the tasks need, and say what to install when it has not.
    #[command(
        after_help = "Examples:\n  cargo xtask doctor\n  cargo xtask doctor --registry 127.0.0.1:5000/kiora"
    )]
    Doctor,
    /// Real, separate machines on this one (namespaces with their own engine and sshd) for fleet deploys.
    Testbed(tasks::testbed::TestbedArgs),
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

fn main() -> ExitCode {
    // No task: list them, as a usage error (clap would not when XTASK_* variables are set).
    if std::env::args_os().len() <= 1 {
        let _ = Cli::command().write_help(&mut std::io::stderr());
        return ExitCode::from(2);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // A value one of our types refused (a release tag) is reported like every other
            // refusal, in one line with exit 1; clap's own usage errors keep clap's form.
            let refused = std::error::Error::source(&err)
                .and_then(|source| source.downcast_ref::<reference::Refused>());
            match refused {
                Some(refused) => {
                    eprintln!("error: {refused}");
                    return ExitCode::FAILURE;
                }
                None => err.exit(),
            }
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `exec`: the command's own status is ours; it already said what it had to.
            if let Some(cmd::Exited(code)) = err.downcast_ref::<cmd::Exited>() {
                return ExitCode::from((*code).clamp(1, 255) as u8);
            }
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
            platforms: g.platforms,
        },
        runner: Runner::new(g.dry_run, verbosity),
        root: project::root()?,
    };
    let result = match cli.task {
        Task::Up(args) => up::run(&ctx, &args),
        Task::Down(args) => down::run(&ctx, &args),
        Task::DockerPublish(args) => docker_publish::run(&ctx, &args),
        Task::BuildApp(args) => build_app::run(&ctx, &args),
        Task::SetTag(args) => set_tag::run(&ctx, &args),
        Task::TestImage(args) => test_image::run(&ctx, &args),
        Task::Login(args) => login::run(&ctx, &args),
        Task::Deploy(args) => tasks::deploy::run(&ctx, &args),
        Task::Rollback(args) => rollback::run(&ctx, &args),
        Task::Backup(args) => backup::run(&ctx, &args),
        Task::Status(args) => status::run(&ctx, &args),
        Task::Lock(args) => lock::run(&ctx, &args),
        Task::Logs(args) => logs::run(&ctx, &args),
        Task::Exec(args) => exec::run(&ctx, &args),
        Task::Maintenance(args) => maintenance::run(&ctx, &args),
        Task::Tls(args) => tls::run(&ctx, &args),
        Task::Prune(args) => prune::run(&ctx, &args),
        Task::BenchDeploy(args) => bench_deploy::run(&ctx, &args),
        Task::Bench(args) => bench::run(&ctx, &args),
        Task::Doctor => doctor::run(&ctx),
        Task::Testbed(args) => tasks::testbed::run(&ctx, args),
        Task::Completions { shell } => completions::run(shell, &mut Cli::command()),
    };
    ssh::close_shared(&ctx.runner);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// Every module says what it is for: a file under src/ that does not start with a `//!`
    /// doc fails here (as rust-analyzer's tidy test does).
    #[test]
    fn every_module_has_a_doc() {
        fn walk(dir: &std::path::Path, missing: &mut Vec<String>, seen: &mut usize) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, missing, seen);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    *seen += 1;
                    let text = std::fs::read_to_string(&path).unwrap();
                    if !text.trim_start().starts_with("//!") {
                        missing.push(path.display().to_string());
                    }
                }
            }
        }
        let (mut missing, mut seen) = (Vec::new(), 0);
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut missing,
            &mut seen,
        );
        assert!(seen > 30, "only {seen} modules found");
        assert!(missing.is_empty(), "modules without a //! doc: {missing:?}");
    }
}
