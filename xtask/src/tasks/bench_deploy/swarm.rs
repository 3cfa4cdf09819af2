//! `cargo xtask bench-deploy --machines N --swarm`: the same releases on a Docker Swarm of N
//! machines (a testbed made and removed here, m1 the manager), compose.yaml deployed from
//! the manager over ssh, a load probe of ~20 requests/s on every node's edge. Rows: swarm's
//! rolling update A -> B, `rollback`, a broken release (its php health check always fails) that
//! swarm rolls back by itself, and a worker node's engine stopped: the time until its nginx
//! replica runs on a living node again. Writes `docs/benchmarks-swarm.md`; `--all` puts these rows
//! beside the others (`side_by_side.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::machines::{cores, on_testbed, write_doc, Pushed, EDGE_PORT};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::deploy::remote::Remote;
use crate::deploy::swarm::{self, Swarm};
use crate::deploy::target::Target;
use crate::deploy::testbed::{self, Layout, Name, BASE_DIR};
use crate::probe::{Load, Probe};
use crate::secret::Secret;

/// The testbed's name (the fleet bench uses "xbench").
const TESTBED: &str = "xbenchsw";

pub(super) struct Row {
    pub scenario: String,
    pub took: Duration,
    pub loads: Vec<Load>,
    /// For the node loss: until the lost node's replica ran on a living node.
    pub recovered: Option<Duration>,
    pub outcome: String,
}

/// `quiet` has built A, tagged B and built X in the local engine under the default registry.
pub(super) fn run(ctx: &Ctx, quiet: &Ctx, machines: usize, tags: [&str; 3]) -> Result<()> {
    let pushed = Pushed::start(quiet, machines, "a swarm bench", &tags)?;
    let rows = rows(ctx, quiet, &pushed, machines, tags)?;
    drop(pushed);
    let table = table(&rows, machines);
    println!("{table}");
    let report = format!(
        "# Swarm deploy benchmark\n\n`cargo xtask bench-deploy --machines {machines} --swarm`, {} on a {}-core machine: \
         a Docker Swarm of {machines} machines (network namespaces, each with its own engine; m1 the manager, reached \
         over ssh), compose.yaml (php x2, the worker and nginx x2 spread, PostgreSQL on the manager, the edge on every node), \
         a load probe of ~20 requests/s (`/`, `/health`) on every node's edge.\n\
         \"failed requests\": failed/sent per node. \"longest gap\": the longest time without a good answer on any node. \
         \"recovered\": from the engine's stop to the lost replica running on a living node.\n\
         Side by side with one host and a fleet: docs/benchmarks-side-by-side.md (`--all`).\n\n```\n{table}```\n",
        crate::project::now_rfc3339(),
        cores()
    );
    write_doc(ctx, "benchmarks-swarm.md", &report)
}

/// The swarm's rows, on a swarm of `machines` made and removed here, pulling from `pushed`.
pub(super) fn rows(
    ctx: &Ctx,
    quiet: &Ctx,
    pushed: &Pushed,
    machines: usize,
    tags: [&str; 3],
) -> Result<Vec<Row>> {
    let db = push_db(quiet, &pushed.config)?;
    let rows = on_testbed(
        ctx,
        quiet,
        pushed,
        (TESTBED, machines, true),
        |layout, name| scenarios(ctx, quiet, &pushed.config, layout, name, tags),
    );
    let _ = quiet.runner.cleanup(
        &crate::cmd::Cmd::new("docker")
            .args(["image", "rm", "--force"])
            .arg(&db),
    );
    rows
}

/// The stack's db image (pinned in compose.yaml), built when missing, pushed beside the
/// releases. Its pushed name.
fn push_db(quiet: &Ctx, pushed: &Config) -> Result<String> {
    let file = std::fs::read_to_string(quiet.root.join(swarm::STACK_FILE))?;
    let tag = crate::deploy::swarm_db::image_tag(&file)
        .context("compose.yaml names no crm-gdb_db image")?;
    let local = quiet.config.image(crate::config::DB, &tag);
    crate::build::base::ensure_db_image(quiet, &local.to_string())?;
    let remote = pushed.image(crate::config::DB, &tag);
    quiet.runner.run(&crate::cmd::Cmd::new("docker").args([
        "tag",
        &local.to_string(),
        &remote.to_string(),
    ]))?;
    let to_push = Ctx {
        config: pushed.clone(),
        runner: quiet.runner,
        root: quiet.root.clone(),
    };
    crate::build::push::push_all(&to_push, &[&remote])?;
    Ok(remote.to_string())
}

fn scenarios(
    ctx: &Ctx,
    quiet: &Ctx,
    pushed: &Config,
    layout: &Layout,
    name: &Name,
    [a, b, x]: [&str; 3],
) -> Result<Vec<Row>> {
    let machines = layout.all();
    let manager = &machines[0];
    let file_path = quiet.root.join(swarm::STACK_FILE);
    let swarm = Swarm {
        manager: Remote::new(
            Target::new(Some(&manager.ssh_target()), "/", Some(layout.ssh_config()))?,
            quiet.runner,
        ),
        stack: "bench".into(),
        registry: pushed.registry.clone(),
        file: std::fs::read_to_string(&file_path)
            .with_context(|| format!("cannot read {}", file_path.display()))?,
        http_port: Some(EDGE_PORT),
        timeout: swarm::TIMEOUT,
    };
    let secret = swarm::Secrets {
        app: Secret::new("bench-swarm-secret-0123456789"),
        db: Secret::new("bench-swarm-db-password-0123456789"),
    };
    let addrs: Vec<std::net::IpAddr> = machines.iter().map(|m| m.addr.into()).collect();
    let probes = |skip: Option<usize>| -> Vec<Option<Probe>> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                (Some(i) != skip).then(|| {
                    Probe::start_at(*addr, EDGE_PORT, vec!["/".into(), "/health".into()], None)
                })
            })
            .collect()
    };
    let stop = |probes: Vec<Option<Probe>>| -> Vec<Load> {
        probes
            .into_iter()
            .map(|p| p.map(Probe::stop).unwrap_or_default())
            .collect()
    };
    let measure = |scenario: &str, op: &dyn Fn() -> Result<()>| -> Row {
        ctx.runner.say(format!("Measuring: {scenario}"));
        let running = probes(None);
        std::thread::sleep(Duration::from_secs(1));
        let start = Instant::now();
        let result = op();
        let took = start.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        Row {
            scenario: scenario.into(),
            took,
            loads: stop(running),
            recovered: None,
            outcome: outcome(result),
        }
    };

    swarm
        .deploy(a, &secret)
        .context("the first deploy to the swarm failed")?;
    let mut rows = vec![measure("swarm: rolling update A -> B", &|| {
        swarm.deploy(b, &secret)
    })];
    rows.push(measure("swarm: rollback (to A)", &|| {
        swarm.rollback(None, &secret)
    }));
    rows.push(measure(
        "swarm: broken release, rolled back by swarm",
        &|| swarm.deploy(x, &secret),
    ));

    // A worker node running an nginx replica loses its engine; probes on the other nodes.
    let nginx = swarm.running_tasks("nginx")?;
    let victim = machines
        .iter()
        .skip(1)
        .position(|m| nginx.contains(&m.addr.to_string()))
        .map(|i| i + 1)
        .unwrap_or(machines.len() - 1);
    let lost = machines[victim].addr.to_string();
    let scenario = format!("swarm: engine of {} stopped", machines[victim].name);
    ctx.runner.say(format!("Measuring: {scenario}"));
    let running = probes(Some(victim));
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    testbed::stop_engine(
        &quiet.runner,
        Path::new(BASE_DIR),
        name,
        &machines[victim].name,
    )?;
    let mut recovered = None;
    while start.elapsed() < Duration::from_secs(120) {
        let now = swarm.running_tasks("nginx")?;
        if now.len() >= 2 && !now.contains(&lost) {
            recovered = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    rows.push(Row {
        scenario,
        took,
        loads: stop(running),
        recovered,
        outcome: if recovered.is_some() {
            "ok".into()
        } else {
            "replica not back within 120s".into()
        },
    });
    Ok(rows)
}

fn outcome(result: Result<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(err) => format!(
            "failed: {}",
            err.to_string().lines().next().unwrap_or_default()
        ),
    }
}

pub(super) fn table(rows: &[Row], machines: usize) -> String {
    let mut out = format!(
        "{:<44} {:>9} {:>20} {:>11} {:>10}  {}\n",
        "scenario", "wall time", "failed requests", "longest gap", "recovered", "result"
    );
    for row in rows {
        let failed: Vec<String> = (0..machines)
            .map(|i| match row.loads.get(i) {
                Some(l) if l.requests > 0 => format!("{}/{}", l.failed, l.requests),
                _ => "-".into(),
            })
            .collect();
        let gap = row
            .loads
            .iter()
            .map(|l| l.longest_gap)
            .max()
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<44} {:>8.1}s {:>20} {:>10.1}s {:>10}  {}\n",
            row.scenario,
            row.took.as_secs_f64(),
            failed.join(" "),
            gap.as_secs_f64(),
            row.recovered
                .map(|r| format!("{:.1}s", r.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            row.outcome
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_column_per_node_and_the_recovery() {
        let load = |failed, requests, gap| Load {
            requests,
            failed,
            longest_gap: Duration::from_millis(gap),
            releases: Vec::new(),
        };
        let rows = [
            Row {
                scenario: "swarm: rolling update A -> B".into(),
                took: Duration::from_secs(40),
                loads: vec![load(0, 800, 300), load(0, 790, 1200), load(0, 805, 200)],
                recovered: None,
                outcome: "ok".into(),
            },
            Row {
                scenario: "swarm: engine of m2 stopped".into(),
                took: Duration::from_secs(23),
                loads: vec![load(0, 400, 250), Load::default(), load(1, 401, 2100)],
                recovered: Some(Duration::from_millis(22_500)),
                outcome: "ok".into(),
            },
        ];
        let text = table(&rows, 3);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("scenario"));
        assert!(
            lines[1].contains("0/800 0/790 0/805") && lines[1].contains("1.2s"),
            "{text}"
        );
        assert!(
            lines[2].contains("0/400 - 1/401") && lines[2].contains("22.5s"),
            "{text}"
        );
    }
}
