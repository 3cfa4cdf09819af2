//! `cargo xtask bench-deploy`: what users feel during a deploy, measured side by side in one run.
//!
//! Builds release A from the working tree (`build-app --no-push --allow-dirty`), makes B (the
//! same images under another tag) and X (A with a healthcheck that always fails), deploys A to a
//! scratch target on this machine, then runs each operation under a loopback load probe of ~20
//! requests/s (`/`, `/health` and a hashed asset) and prints failed requests, the longest gap
//! between good answers and the duration:
//!   deploy --strategy recreate (the old Makefile's way) | deploy --strategy rolling | rollback |
//!   a broken release, rolled back automatically.
//! Everything it starts is removed at the end. `--machines N` measures a fleet deploy on N real
//! machines instead (see `bench_deploy/fleet.rs`); `--machines N --swarm` on a Docker Swarm of N
//! machines (`bench_deploy/swarm.rs`); `--machines N --all` all three in one run, side by side
//! (`bench_deploy/side_by_side.rs`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::base::ensure_edge_image;
use crate::cmd::{Cmd, Runner};
use crate::ctx::Ctx;
use crate::deploy::options::TargetOptions;
use crate::deploy::rollout::{self, Fleet};
use crate::deploy::switch::Strategy;
use crate::deploy::target::Target;
use crate::probe::{Load, Probe};
use crate::progress::Verbosity;
use crate::tasks::build_app;

const A: &str = "bench-a";
const B: &str = "bench-b";
const X: &str = "bench-broken";

mod fleet;
mod machines;
mod side_by_side;
mod swarm;

#[derive(clap::Args)]
pub struct Args {
    /// Measure a fleet deploy on N real machines (a testbed made and removed here; needs root)
    /// instead of the one-machine scenarios.
    #[arg(long, value_name = "N")]
    pub machines: Option<usize>,
    /// With --machines: make the machines a Docker Swarm and measure swarm's rolling update,
    /// rollbacks and a node loss (compose.yaml).
    #[arg(long, requires = "machines")]
    pub swarm: bool,
    /// With --machines: one host, a fleet and a swarm in one run, side by side in one table
    /// (written to docs/benchmarks-side-by-side.md).
    #[arg(long, requires = "machines", conflicts_with = "swarm")]
    pub all: bool,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    if ctx.runner.dry_run {
        bail!("bench-deploy measures real deploys; it has no --dry-run");
    }
    crate::docker::check_engine(&ctx.runner)?;
    let say = |line: String| ctx.runner.say(line);
    say(format!("Building release {A} from the working tree"));
    let quiet = Ctx {
        config: ctx.config.clone(),
        runner: Runner::new(false, Verbosity::Quiet),
        root: ctx.root.clone(),
    };
    let build = build_app::Args {
        tag: A.parse()?,
        allow_dirty: true,
        host_tools: false,
        no_push: true,
        compose_file: "compose.yaml".into(),
        platform: Vec::new(),
        rebuild: false,
        no_registry_api: false,
        cache_dir: None,
    };
    build_app::run(&quiet, &build)?;
    make_variants(&quiet)?;
    if let (Some(machines), true) = (args.machines, args.all) {
        let result = side_by_side::run(ctx, &quiet, machines);
        remove_images(&quiet);
        return result;
    }
    if let (Some(machines), true) = (args.machines, args.swarm) {
        let result = swarm::run(ctx, &quiet, machines, [A, B, X]);
        remove_images(&quiet);
        return result;
    }
    if let Some(machines) = args.machines {
        let result = fleet::run(ctx, &quiet, machines, A, B);
        remove_images(&quiet);
        return result;
    }

    let load = load_average();
    // `-v`: the scenarios' deploys echo their commands (where a deploy's time goes); the
    // build and the variants above stay quiet.
    let verbose = Ctx {
        config: ctx.config.clone(),
        runner: Runner::new(false, Verbosity::Verbose),
        root: ctx.root.clone(),
    };
    let scenarios = if ctx.runner.verbosity == Verbosity::Verbose {
        &verbose
    } else {
        &quiet
    };
    let result = single_host(scenarios);
    remove_images(&quiet);
    let rows = result?;
    let table = table(&rows);
    println!("{table}");
    machines::write_doc(
        ctx,
        "benchmarks-deploy.md",
        &single_host_report(&table, &load),
    )
}

/// The one-host rows: a scratch target on this machine, removed after the scenarios.
fn single_host(quiet: &Ctx) -> Result<Vec<Row>> {
    let dir = tempfile::Builder::new()
        .prefix("xtask-bench-deploy.")
        .tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let compose = crate::deploy::local_stack::render(&quiet.root, &quiet.config, A)?;
    if let Some(edge) = crate::deploy::local_stack::edge_image(&compose) {
        ensure_edge_image(quiet, &edge)?;
    }
    if let Some(db) = crate::deploy::local_stack::db_image(&compose) {
        crate::build::base::ensure_db_image(quiet, &db)?;
    }
    std::fs::write(dir.path().join("compose.yaml"), compose)?;
    std::fs::write(
        dir.path().join(".env"),
        format!("APP_SECRET=bench\nHTTP_PORT={port}\n"),
    )?;
    let opts = TargetOptions {
        target: Target::new(None, &dir.path().display().to_string(), None)?,
        stack: format!("bench{}", std::process::id()),
        keep_backups: 2,
        tls: None,
    };
    let result = scenarios(quiet, &opts, port);
    remove_stack(&quiet.runner, &opts.stack);
    result
}

/// The machine's load average (1, 5, 15 min): on a shared machine it explains the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn single_host_report(table: &str, load: &str) -> String {
    format!(
        "# Deploy benchmark\n\n`cargo xtask bench-deploy`, {} on a {}-core machine, load probe ~20 requests/s on loopback\n\
         (`/`, `/health` and a hashed asset, and every other request a marker file naming the release\n\
         that answered). From the start of the command: \"switched at\": when the edge's reload onto\n\
         the new release returned; \"served at\": the first answer of the release the operation puts\n\
         live, as the probe saw it; \"failed at\": when a failed deploy saw its failure (the rest of\n\
         its duration is putting the previous release back). Load average when it started: {load}.\n\n```\n{table}```\n",
        crate::project::now_rfc3339(),
        machines::cores()
    )
}

struct Row {
    scenario: &'static str,
    load: Load,
    took: Duration,
    /// When the edge began sending traffic to the new release (None: it never did).
    switched: Option<Duration>,
    /// When the probe first got an answer of the release the operation puts live.
    served: Option<Duration>,
    /// When a failed operation saw its failure (from its start; the rest was putting back).
    failed_at: Option<Duration>,
    outcome: String,
}

/// A static file of each release's nginx naming its release (added by [`make_variants`]), so the
/// probe sees which release answers.
const MARKER: &str = "/bench-release.txt";

fn scenarios(ctx: &Ctx, opts: &TargetOptions, port: u16) -> Result<Vec<Row>> {
    let deploy = |tag: &str, strategy: Strategy| {
        let fleet = Fleet {
            strategy,
            ..Fleet::one(opts)
        };
        rollout::deploy_measured(&ctx.runner, &fleet, tag, "deploy")
    };
    deploy(A, Strategy::Rolling)
        .result
        .context("the first deploy failed")?;
    let page = crate::http::get(port, "/")?.body;
    let asset = page
        .split("\"/build/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|a| format!("/build/{a}"));
    let paths: Vec<String> = ["/".to_string(), "/health".to_string()]
        .into_iter()
        .chain(asset)
        .collect();
    type Op<'a> = &'a dyn Fn() -> rollout::Measured;
    let measure = |scenario: &'static str, release: &str, op: Op| {
        ctx.runner.say(format!("Measuring: {scenario}"));
        let probe = Probe::start(port, paths.clone(), Some(MARKER.to_string()));
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        let rollout::Measured {
            result,
            failed_after,
            ..
        } = op();
        let took = start.elapsed();
        let (switched, outcome) = match result {
            Ok(at) => (Some(at), "ok".to_string()),
            Err(err) => (
                None,
                format!(
                    "failed: {}",
                    err.to_string().lines().next().unwrap_or_default()
                ),
            ),
        };
        std::thread::sleep(Duration::from_secs(1));
        let load = probe.stop();
        Row {
            scenario,
            served: load.first_served(release, start),
            failed_at: failed_after,
            load,
            took,
            switched,
            outcome,
        }
    };
    Ok(vec![
        measure("deploy --strategy recreate (Makefile)", B, &|| {
            deploy(B, Strategy::Recreate)
        }),
        measure("deploy --strategy rolling", A, &|| {
            deploy(A, Strategy::Rolling)
        }),
        // Back to B, the release before A.
        measure("rollback", B, &|| rollout::Measured {
            result: rollout::rollback(&ctx.runner, &Fleet::one(opts), None),
            recovered: None,
            failed_after: None,
        }),
        measure("broken release, auto rollback", X, &|| {
            deploy(X, Strategy::Rolling)
        }),
    ])
}

/// B: A's images under another tag. X: A with a php healthcheck that always fails, built from
/// a Dockerfile given on stdin (no context needed). Each one's nginx gets [`MARKER`], naming it.
fn make_variants(ctx: &Ctx) -> Result<()> {
    let config = &ctx.config;
    for (a, b) in config.app_images(A).iter().zip(config.app_images(B).iter()) {
        ctx.runner
            .run(&Cmd::new("docker").args(["tag", &a.to_string(), &b.to_string()]))?;
    }
    let [php_a, supervisor_a, nginx_a] = config.app_images(A);
    let [php_x, supervisor_x, nginx_x] = config.app_images(X);
    // Without A's inputs label: else build-app (and `up`) would reuse this broken image as A.
    let unlabel = format!("LABEL {}=\"\"\n", crate::build::build_cache::INPUTS_LABEL);
    let build = |tag: String, dockerfile: String| {
        ctx.runner.run(
            &Cmd::new("docker")
                .args(["build", "--quiet", "--network", "none", "--tag", &tag, "-"])
                .env("DOCKER_BUILDKIT", "0")
                .stdin(dockerfile),
        )
    };
    build(
        php_x.to_string(),
        format!("FROM {php_a}\nHEALTHCHECK --interval=10s --retries=3 CMD [\"false\"]\n{unlabel}"),
    )?;
    ctx.runner.run(&Cmd::new("docker").args([
        "tag",
        &supervisor_a.to_string(),
        &supervisor_x.to_string(),
    ]))?;
    // A's nginx as build-app made it keeps a tag of its own (removed at the end with the others),
    // so that replacing bench-a leaves no untagged image behind.
    let original = original_nginx(&nginx_a.to_string());
    ctx.runner
        .run(&Cmd::new("docker").args(["tag", &nginx_a.to_string(), &original]))?;
    let [.., nginx_b] = config.app_images(B);
    for (tag, nginx) in [(X, nginx_x), (B, nginx_b), (A, nginx_a)] {
        build(
            nginx.to_string(),
            format!(
                "FROM {original}\nRUN printf '%s\\n' {tag} > /var/www/app/public{MARKER}\n{unlabel}"
            ),
        )?;
    }
    Ok(())
}

fn original_nginx(nginx_a: &str) -> String {
    format!("{nginx_a}-orig")
}

/// The local images of A, B and X.
fn remove_images(quiet: &Ctx) {
    for tag in [A, B, X] {
        let mut images: Vec<String> = quiet
            .config
            .app_images(tag)
            .iter()
            .map(ToString::to_string)
            .collect();
        if tag == A {
            images.push(original_nginx(&images[2]));
        }
        let _ = quiet.runner.cleanup(
            &Cmd::new("docker")
                .args(["image", "rm", "--force"])
                .args(images),
        );
    }
}

fn remove_stack(runner: &Runner, stack: &str) {
    for color in ["blue", "green", "edge", "db"] {
        let label = format!("label=com.docker.compose.project={stack}-{color}");
        if let Ok(ids) =
            runner.cleanup(&Cmd::new("docker").args(["ps", "--all", "--quiet", "--filter", &label]))
        {
            let ids: Vec<&str> = ids.lines().collect();
            if !ids.is_empty() {
                let _ = runner.cleanup(&Cmd::new("docker").args(["rm", "--force"]).args(ids));
            }
        }
    }
    let volumes = ["data", "assets", "edge-conf", "db"].map(|v| format!("{stack}_{v}"));
    let _ = runner.cleanup(
        &Cmd::new("docker")
            .args(["volume", "rm", "--force"])
            .args(volumes),
    );
    // Each Compose project made a PROJECT_default network too: the engine has ~30 address
    // pools, and leftovers make later networks fail.
    for network in [
        "_edge",
        "_db",
        "-blue_default",
        "-green_default",
        "-edge_default",
        "-db_default",
    ] {
        let _ = runner.cleanup(&Cmd::new("docker").args([
            "network",
            "rm",
            &format!("{stack}{network}"),
        ]));
    }
}

fn table(rows: &[Row]) -> String {
    let secs = |d: Option<Duration>, none: &str| {
        d.map(|s| format!("{:.1}s", s.as_secs_f64()))
            .unwrap_or_else(|| none.into())
    };
    let mut out = format!(
        "{:<36} {:>8} {:>7} {:>12} {:>12} {:>10} {:>11} {:>9}  {}\n",
        "scenario",
        "requests",
        "failed",
        "longest gap",
        "switched at",
        "served at",
        "failed at",
        "duration",
        "result"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<36} {:>8} {:>7} {:>11.2}s {:>12} {:>10} {:>11} {:>8.1}s  {}\n",
            row.scenario,
            row.load.requests,
            row.load.failed,
            row.load.longest_gap.as_secs_f64(),
            secs(row.switched, "never"),
            secs(row.served, "never"),
            secs(row.failed_at, "-"),
            row.took.as_secs_f64(),
            row.outcome
        ));
    }
    out
}
