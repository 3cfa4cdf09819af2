//! `cargo xtask bench-deploy --machines N --all`: the same releases on one host, on a fleet of N
//! machines and on a Docker Swarm of N machines, measured in one run (one build, one registry),
//! printed as one table with the same columns for all three, ~20 requests/s on each edge; each
//! part's own detailed table follows in docs/benchmarks-side-by-side.md.

use std::time::Duration;

use anyhow::Result;

use super::machines::{cores, write_doc, Pushed};
use super::{fleet, swarm, A, B, X};
use crate::ctx::Ctx;
use crate::probe::Load;

/// One row of the side-by-side table.
struct Line {
    target: String,
    scenario: String,
    took: Duration,
    /// One per edge probed (a lost node's edge: an empty load, shown `-`).
    loads: Vec<Load>,
    /// A fleet: from the failure to every machine back on one release; a swarm: from a node's
    /// loss to its replica running on a living node.
    recovered: Option<Duration>,
    outcome: String,
}

pub(super) fn run(ctx: &Ctx, quiet: &Ctx, machines: usize) -> Result<()> {
    // First, so that a missing root or a bad count stops the run before its long first part.
    let pushed = Pushed::start(quiet, machines, "--all", &[A, B, X])?;
    ctx.runner.say("Measuring on one host");
    let host = super::single_host(quiet)?;
    let fleet_rows = fleet::rows(ctx, quiet, &pushed, machines, A, B)?;
    let swarm_rows = swarm::rows(ctx, quiet, &pushed, machines, [A, B, X])?;
    drop(pushed);

    let mut lines: Vec<Line> = host
        .iter()
        .map(|r| Line {
            target: "one host".into(),
            scenario: r.scenario.to_string(),
            took: r.took,
            loads: vec![r.load.clone()],
            recovered: None,
            outcome: r.outcome.clone(),
        })
        .collect();
    lines.extend(fleet_rows.iter().map(|r| Line {
        target: format!("fleet of {machines}"),
        scenario: r.scenario.clone(),
        took: r.took,
        loads: r.loads.clone(),
        recovered: r.recovered,
        outcome: r.outcome.clone(),
    }));
    lines.extend(swarm_rows.iter().map(|r| {
        Line {
            target: format!("swarm of {machines}"),
            scenario: r
                .scenario
                .strip_prefix("swarm: ")
                .unwrap_or(&r.scenario)
                .to_string(),
            took: r.took,
            loads: r.loads.clone(),
            recovered: r.recovered,
            outcome: r.outcome.clone(),
        }
    }));
    let table = table(&lines);
    println!("{table}");
    let report = format!(
        "# Deploy benchmark: one host, a fleet, a swarm\n\n\
         `cargo xtask bench-deploy --machines {machines} --all`, {} on a {}-core machine, one run: the same releases \
         (A; B, other images of A; a broken one whose php health check always fails) on one host (a scratch target on \
         this machine), on a fleet of {machines} machines and on a Docker Swarm of {machines} machines (network \
         namespaces, each with its own Docker engine and sshd, reached over ssh; compose.yaml: php x2 and the \
         worker on the manager, nginx x2 spread, the edge on every node). A load probe of ~20 requests/s on each edge \
         (one host: `/`, `/health`, a hashed asset and a marker file; machines: `/`, `/health`).\n\n\
         \"failed/sent per edge\": one figure per edge probed (`-`: the edge of the node whose engine was stopped). \
         \"longest gap\": the longest time without a good answer on any edge. \"recovered\": a fleet, from the failure \
         to every machine serving one release again; a swarm, from a node's engine stopped to its nginx replica \
         running on a living node. Details of each part below.\n\n```\n{table}```\n\n\
         ## One host\n\n```\n{}```\n\n## Fleet of {machines}\n\n\"ratio\": wall time against one machine's deploy.\n\n\
         ```\n{}```\n\n## Swarm of {machines}\n\n```\n{}```\n",
        crate::project::now_rfc3339(),
        cores(),
        super::table(&host),
        fleet::table(&fleet_rows, machines),
        swarm::table(&swarm_rows, machines),
    );
    write_doc(ctx, "benchmarks-side-by-side.md", &report)
}

fn table(lines: &[Line]) -> String {
    let per_edge = |loads: &[Load]| -> String {
        loads
            .iter()
            .map(|l| match l.requests {
                0 => "-".to_string(),
                _ => format!("{}/{}", l.failed, l.requests),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = format!(
        "{:<11} {:<40} {:>9} {:>22} {:>11} {:>9}  {}\n",
        "target",
        "scenario",
        "duration",
        "failed/sent per edge",
        "longest gap",
        "recovered",
        "result"
    );
    for line in lines {
        let gap = line
            .loads
            .iter()
            .map(|l| l.longest_gap)
            .max()
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<11} {:<40} {:>8.1}s {:>22} {:>10.2}s {:>9}  {}\n",
            line.target,
            line.scenario,
            line.took.as_secs_f64(),
            per_edge(&line.loads),
            gap.as_secs_f64(),
            line.recovered
                .map(|r| format!("{:.1}s", r.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            line.outcome
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(failed: usize, requests: usize, gap_ms: u64) -> Load {
        Load {
            requests,
            failed,
            longest_gap: Duration::from_millis(gap_ms),
            releases: Vec::new(),
        }
    }

    #[test]
    fn one_table_same_columns_for_every_target() {
        let line = |target: &str, loads, recovered| Line {
            target: target.into(),
            scenario: "rolling update".into(),
            took: Duration::from_millis(7100),
            loads,
            recovered,
            outcome: "ok".into(),
        };
        let text = table(&[
            line("one host", vec![load(0, 182, 70)], None),
            line(
                "fleet of 3",
                vec![load(0, 1102, 80), load(1, 1101, 2150), load(0, 1105, 60)],
                Some(Duration::from_millis(2500)),
            ),
            line(
                "swarm of 3",
                vec![load(0, 318, 90), Load::default(), load(0, 318, 5100)],
                Some(Duration::from_millis(19_000)),
            ),
        ]);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("target") && rows[0].contains("failed/sent per edge"));
        assert!(
            rows[1].starts_with("one host")
                && rows[1].contains(" 0/182 ")
                && rows[1].contains("0.07s"),
            "{text}"
        );
        assert!(
            rows[2].contains("0/1102 1/1101 0/1105")
                && rows[2].contains("2.15s")
                && rows[2].contains("2.5s"),
            "{text}"
        );
        assert!(
            rows[3].contains("0/318 - 0/318")
                && rows[3].contains("5.10s")
                && rows[3].contains("19.0s"),
            "{text}"
        );
        // The same columns: the result starts at the same place on every row.
        let at: Vec<usize> = rows[1..].iter().map(|r| r.rfind("  ok").unwrap()).collect();
        assert!(at.iter().all(|a| *a == at[0]), "{text}");
    }
}
