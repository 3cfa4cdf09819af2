//! `cargo xtask bench-deploy --machines N`: a fleet deploy on real machines (a testbed of N
//! network namespaces, each with its own Docker engine and sshd, made and removed here), under a
//! load probe on every machine's edge. Measures the wall time of one machine's deploy, of the
//! fleet's in parallel (the canary, then every other host in one wave) and in waves of one,
//! the failed requests per machine, and, for a release that fails on the last machine only
//! (its `.env` breaks the data directory), the time from the failure to the whole fleet serving
//! one release again. Writes `docs/benchmarks-fleet.md`; `--all` puts these rows beside the
//! others (`side_by_side.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::machines::{cores, on_testbed, write_doc, Pushed, EDGE_PORT};
use crate::build::base::ensure_edge_image;
use crate::cmd::Cmd;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::deploy::fleet::Wave;
use crate::deploy::rollout::{self, Fleet, FleetHost};
use crate::deploy::switch::Strategy;
use crate::deploy::target::Target;
use crate::deploy::testbed::Layout;
use crate::probe::{Load, Probe};

pub(super) struct Row {
    pub scenario: String,
    pub took: Duration,
    pub loads: Vec<Load>,
    pub recovered: Option<Duration>,
    pub outcome: String,
}

/// The testbed's name.
const TESTBED: &str = "xbench";

/// `quiet` has built A and tagged B in the local engine under the default registry.
pub(super) fn run(ctx: &Ctx, quiet: &Ctx, machines: usize, a: &str, b: &str) -> Result<()> {
    let pushed = Pushed::start(quiet, machines, "a fleet", &[a, b])?;
    let rows = rows(ctx, quiet, &pushed, machines, a, b)?;
    drop(pushed);
    let table = table(&rows, machines);
    println!("{table}");
    let report = format!(
        "# Fleet deploy benchmark\n\n`cargo xtask bench-deploy --machines {machines}`, {} on a {}-core machine: \
         {machines} machines (network namespaces, each with its own Docker engine and sshd, reached over ssh), \
         a load probe of ~20 requests/s (`/`, `/health`) on every machine's edge.\n\
         \"ratio\": wall time against one machine's deploy. \"back on one release\": from the failure to every machine \
         serving its previous release again.\n\
         Side by side with one host and a swarm: docs/benchmarks-side-by-side.md (`--all`).\n\n```\n{table}```\n",
        crate::project::now_rfc3339(),
        cores()
    );
    write_doc(ctx, "benchmarks-fleet.md", &report)
}

/// The fleet's rows, on a testbed of `machines` made and removed here, pulling from `pushed`.
pub(super) fn rows(
    ctx: &Ctx,
    quiet: &Ctx,
    pushed: &Pushed,
    machines: usize,
    a: &str,
    b: &str,
) -> Result<Vec<Row>> {
    on_testbed(
        ctx,
        quiet,
        pushed,
        (TESTBED, machines, false),
        |layout, _| scenarios(ctx, quiet, &pushed.config, layout, a, b),
    )
}

/// Tags the local release images (and the edge) after the throwaway registry and pushes them
/// (retried like a release's pushes), so every machine pulls them as a server would. Returns
/// the names it tagged.
pub(super) fn push_releases(quiet: &Ctx, pushed: &Config, tags: &[&str]) -> Result<Vec<String>> {
    let mut images = Vec::new();
    for tag in tags {
        for (local, remote) in quiet
            .config
            .app_images(tag)
            .into_iter()
            .zip(pushed.app_images(tag))
        {
            images.push((local.to_string(), remote));
        }
    }
    let compose = crate::deploy::local_stack::render(&quiet.root, &quiet.config, tags[0])?;
    if let Some(edge) = crate::deploy::local_stack::edge_image(&compose) {
        ensure_edge_image(quiet, &edge)?;
        let tag = edge.rsplit(':').next().unwrap_or_default();
        images.push((edge.clone(), pushed.image(crate::config::EDGE, tag)));
    }
    // The database too (pinned like the edge): every machine runs its own.
    if let Some(db) = crate::deploy::local_stack::db_image(&compose) {
        crate::build::base::ensure_db_image(quiet, &db)?;
        let tag = db.rsplit(':').next().unwrap_or_default();
        images.push((db.clone(), pushed.image(crate::config::DB, tag)));
    }
    for (local, remote) in &images {
        quiet
            .runner
            .run(&Cmd::new("docker").args(["tag", local, &remote.to_string()]))?;
    }
    let to_push = Ctx {
        config: pushed.clone(),
        runner: quiet.runner,
        root: quiet.root.clone(),
    };
    // One tag after the other: B is A under another tag, and the same blobs pushed side by side
    // to a fresh registry race ("blob unknown to registry").
    for tag in tags {
        let refs: Vec<_> = images
            .iter()
            .map(|(_, remote)| remote)
            .filter(|r| {
                (r.tag == *tag || r.tag == format!("{tag}-supervisor"))
                    && r.name != crate::config::EDGE
                    && r.name != crate::config::DB
            })
            .collect();
        crate::build::push::push_all(&to_push, &refs)?;
    }
    let edge: Vec<_> = images
        .iter()
        .map(|(_, remote)| remote)
        .filter(|r| r.name == crate::config::EDGE || r.name == crate::config::DB)
        .collect();
    crate::build::push::push_all(&to_push, &edge)?;
    Ok(images
        .iter()
        .map(|(_, remote)| remote.to_string())
        .collect())
}

fn scenarios(
    ctx: &Ctx,
    quiet: &Ctx,
    pushed: &Config,
    layout: &Layout,
    a: &str,
    b: &str,
) -> Result<Vec<Row>> {
    let compose = crate::deploy::local_stack::render(&quiet.root, pushed, a)?;
    let mut hosts = Vec::new();
    for m in layout.all() {
        let dir = m.deploy_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("compose.yaml"), &compose)?;
        // Published on every address of the machine: its loopback (the deploy's own check) and
        // its address on the testbed's bridge (the probes).
        std::fs::write(
            dir.join(".env"),
            format!("APP_SECRET=bench\nHTTP_PORT={EDGE_PORT}\nHTTP_BIND=0.0.0.0\n"),
        )?;
        hosts.push(FleetHost {
            label: m.name.clone(),
            spec: m.ssh_target(),
            target: Target::new(
                Some(&m.ssh_target()),
                &dir.display().to_string(),
                Some(layout.ssh_config()),
            )?,
        });
    }
    let n = hosts.len();
    let fleet = |hosts: Vec<FleetHost>, wave: Wave| Fleet {
        env: (hosts.len() > 1).then(|| "bench".to_string()),
        hosts,
        stack: "bench".into(),
        keep_backups: 2,
        min_free_disk: crate::config::MIN_FREE_DISK,
        canary: 0,
        canary_wait: None,
        lock_wait: None,
        wave,
        strategy: Strategy::Rolling,
        release_command: true,
        tls: None,
        traffic_canary: None,
    };
    let addrs: Vec<std::net::IpAddr> = layout.all().iter().map(|m| m.addr.into()).collect();
    let runner = &quiet.runner;
    let measure = |scenario: String, fleet: &Fleet, tag: &str| -> Row {
        ctx.runner.say(format!("Measuring: {scenario}"));
        let probes: Vec<Probe> = fleet
            .hosts
            .iter()
            .map(|h| {
                let i = hosts.iter().position(|x| x.label == h.label).unwrap_or(0);
                Probe::start_at(
                    addrs[i],
                    EDGE_PORT,
                    vec!["/".into(), "/health".into()],
                    None,
                )
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        let rollout::Measured {
            result, recovered, ..
        } = rollout::deploy_measured(runner, fleet, tag, "deploy");
        let took = start.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        Row {
            scenario,
            took,
            loads: probes.into_iter().map(Probe::stop).collect(),
            recovered,
            outcome: match result {
                Ok(_) => "ok".into(),
                Err(err) => format!(
                    "failed: {}",
                    err.to_string().lines().next().unwrap_or_default()
                ),
            },
        }
    };

    let all = |wave| fleet(hosts.clone(), wave);
    let one = fleet(vec![hosts[0].clone()], Wave::Hosts(1));
    rollout::deploy(runner, &all(Wave::Hosts(n)), a, "deploy")
        .context("the first deploy of the fleet failed")?;
    let mut rows = vec![measure("1 machine".into(), &one, b)];
    rollout::deploy(runner, &one, a, "deploy").context("putting machine 1 back on A failed")?;
    rows.push(measure(
        format!("{n} machines: canary, then {} at once", n - 1),
        &all(Wave::Hosts(n)),
        b,
    ));
    rows.push(measure(
        format!("{n} machines: canary, then waves of 1"),
        &all(Wave::Hosts(1)),
        a,
    ));
    // A release that fails on the last machine only: its .env breaks the data directory.
    let env = Path::new(&hosts[n - 1].target.dir).join(".env");
    let good = std::fs::read_to_string(&env)?;
    std::fs::write(&env, format!("{good}APP_DATA_DIR=/nonexistent\n"))?;
    let failing = measure(
        format!("{n} machines, waves of 1, fails on the last"),
        &all(Wave::Hosts(1)),
        b,
    );
    std::fs::write(&env, good)?;
    rows.push(failing);
    Ok(rows)
}

pub(super) fn table(rows: &[Row], machines: usize) -> String {
    let one = rows.first().map(|r| r.took.as_secs_f64()).unwrap_or(1.0);
    let mut out = format!(
        "{:<44} {:>9} {:>6} {:>20} {:>20}  {}\n",
        "scenario", "wall time", "ratio", "failed requests", "back on one release", "result"
    );
    for row in rows {
        let failed: Vec<String> = (0..machines)
            .map(|i| {
                row.loads
                    .get(i)
                    .map(|l| format!("{}/{}", l.failed, l.requests))
                    .unwrap_or_else(|| "-".into())
            })
            .collect();
        out.push_str(&format!(
            "{:<44} {:>8.1}s {:>5.2}x {:>20} {:>20}  {}\n",
            row.scenario,
            row.took.as_secs_f64(),
            row.took.as_secs_f64() / one,
            failed.join(" "),
            row.recovered
                .map(|r| format!("{:.1}s", r.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            row.outcome
        ));
    }
    out
}
