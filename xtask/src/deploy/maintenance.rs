//! Maintenance mode at the edge: like the live switch, a file in the edge's conf volume
//! (`maintenance.conf`, included by edge.conf from crm-gdb_edge 0.2.0 on), a config check and a
//! graceful reload. While it is there every request gets a 503 page with `Retry-After`, except
//! the health checks: `/health` still reaches the live release (deploys verify through it) and
//! the edge's own `/nginx-health` still answers 200. The page is a file beside it; the message
//! is HTML-escaped into the page and never enters nginx's configuration.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::deploy::stack::{check_and_reload, write_in_edge, Stack};

const CONF: &str = "/etc/nginx/crm-edge/maintenance.conf";
const PAGE: &str = "/etc/nginx/crm-edge/maintenance.html";
/// The line of edge.conf (crm-gdb_edge 0.2.0 on) that includes [`CONF`]; an edge without it
/// (0.1.0) cannot serve the page, and is refused rather than silently ignored.
const INCLUDE: &str = "include /etc/nginx/crm-edge/maintenance*.conf;";
const EDGE_CONF: &str = "/etc/nginx/conf.d/default.conf";

pub const DEFAULT_MESSAGE: &str = "The service is down for maintenance. Please try again shortly.";

/// Maintenance mode on a target, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    On,
    Off,
    /// No edge runs (nothing deployed yet).
    NoEdge,
    /// The running edge predates maintenance mode.
    Unsupported,
}

impl State {
    pub fn describe(&self) -> &'static str {
        match self {
            State::On => "ON (the edge answers 503 except health checks)",
            State::Off => "off",
            State::NoEdge => "off (no edge running)",
            State::Unsupported => "unavailable: the edge predates it (crm-gdb_edge 0.2.0 has it)",
        }
    }
}

/// `text` with the five HTML-special characters escaped.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The 503 page.
pub fn page(message: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Down for maintenance</title>\n</head>\n<body>\n<h1>Down for maintenance</h1>\n<p>{}</p>\n</body>\n</html>\n",
        escape_html(message)
    )
}

/// The server-level nginx snippet: every URI but the health checks returns 503, answered by
/// the page with `Retry-After` (a named location: an internal redirect to it does not run the
/// server-level `if` again).
pub fn conf(retry_after: u32) -> String {
    format!(
        "# Maintenance mode: written by `cargo xtask maintenance on`, removed by `maintenance off`.\n\
         # Health checks still answer: /health (through to the live release) and /nginx-health.\n\
         error_page 503 @crm_maintenance;\n\
         if ($uri !~ \"^/(health|nginx-health)$\") {{\n    return 503;\n}}\n\
         location @crm_maintenance {{\n\
         \x20   root /etc/nginx/crm-edge;\n\
         \x20   add_header Retry-After {retry_after} always;\n\
         \x20   add_header Cache-Control \"no-store\" always;\n\
         \x20   try_files /maintenance.html =503;\n\
         }}\n"
    )
}

/// The page first (the conf names it), then the conf, the config check and the graceful reload.
pub fn on_commands(edge: &str, message: &str, retry_after: u32) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = write_in_edge(edge, PAGE, page(message)).into();
    cmds.extend(write_in_edge(edge, CONF, conf(retry_after)));
    cmds.extend(check_and_reload(edge));
    cmds
}

/// The conf goes, the config check and the graceful reload; then the page.
pub fn off_commands(edge: &str) -> Vec<Cmd> {
    let mut cmds = vec![Cmd::new("docker").args(["exec", edge, "rm", "-f", CONF])];
    cmds.extend(check_and_reload(edge));
    cmds.push(Cmd::new("docker").args(["exec", edge, "rm", "-f", PAGE]));
    cmds
}

/// Does the edge's configuration include the maintenance file?
fn supported_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "grep", "-qF", INCLUDE, EDGE_CONF])
}

fn on_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "test", "-f", CONF])
}

/// The running edge, refused when it cannot serve the maintenance page.
fn edge_for_maintenance(d: &Deployment) -> Result<String> {
    let stack = Stack::new(d);
    let Some(edge) = stack.edge()? else {
        bail!(
            "no edge runs on {}: deploy a release first",
            d.target().describe()
        )
    };
    if !running(d, &edge)? {
        bail!(
            "the edge on {} is stopped; start it (docker compose -p {}-edge --profile edge up -d edge) or deploy again",
            d.target().describe(),
            d.stack
        );
    }
    if !d.remote.succeeds(supported_probe(&edge))? {
        let image = d
            .remote
            .query(Cmd::new("docker").args(["inspect", "--format", "{{.Config.Image}}", &edge]))
            .unwrap_or_default();
        bail!(
            "the edge on {} ({image}) predates maintenance mode; put crm-gdb_edge:0.4.0 in its compose.yaml and recreate the edge (docker compose -p {}-edge --profile edge up -d edge: a few seconds without service)",
            d.target().describe(),
            d.stack
        );
    }
    Ok(edge)
}

/// Is the edge container running (not merely there, stopped)?
fn running(d: &Deployment, edge: &str) -> Result<bool> {
    let state = d.remote.query(Cmd::new("docker").args([
        "inspect",
        "--format",
        "{{.State.Running}}",
        edge,
    ]))?;
    Ok(state == "true")
}

pub fn state(d: &Deployment) -> Result<State> {
    let Some(edge) = Stack::new(d).edge()? else {
        return Ok(State::NoEdge);
    };
    if !running(d, &edge)? {
        return Ok(State::NoEdge);
    }
    if !d.remote.succeeds(supported_probe(&edge))? {
        return Ok(State::Unsupported);
    }
    Ok(if d.remote.succeeds(on_probe(&edge))? {
        State::On
    } else {
        State::Off
    })
}

/// `maintenance: STATE`, the line `status` and `maintenance status` print.
pub fn status_line(d: &Deployment) -> Result<String> {
    Ok(format!("maintenance: {}", state(d)?.describe()))
}

/// Turns maintenance mode on (again: a new message replaces the old one). A configuration the
/// edge refuses is removed before the error is reported: the edge keeps serving as before.
pub fn on(d: &Deployment, message: &str, retry_after: u32) -> Result<()> {
    let edge = edge_for_maintenance(d)?;
    for cmd in on_commands(&edge, message, retry_after) {
        if let Err(err) = d.remote.run(cmd) {
            let _ = d
                .remote
                .cleanup(Cmd::new("docker").args(["exec", &edge, "rm", "-f", CONF]));
            return Err(err)
                .context("turning maintenance mode on failed; the edge serves as before");
        }
    }
    settle(d, &edge, false)
}

pub fn off(d: &Deployment) -> Result<()> {
    let edge = edge_for_maintenance(d)?;
    for cmd in off_commands(&edge) {
        d.remote
            .run(cmd)
            .context("turning maintenance mode off failed")?;
    }
    settle(d, &edge, true)
}

/// How long the edge's new workers may take to replace the old ones after a reload.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// `nginx -s reload` returns before the new workers answer: waits until `/` through the edge
/// answers 200 (`ok`) or not, so the mode is in force when the command returns. A live release
/// that does not answer 200 leaves a warning, not an error (the edge did reload).
fn settle(d: &Deployment, edge: &str, ok: bool) -> Result<()> {
    if d.remote.dry_run() {
        return Ok(());
    }
    let start = Instant::now();
    while d.remote.succeeds(front_page_probe(edge))? != ok {
        if start.elapsed() > SETTLE_LIMIT {
            d.remote.say(format!(
                "  warning: / through the edge still answers {} after {}s",
                if ok { "non-200" } else { "200" },
                SETTLE_LIMIT.as_secs()
            ));
            return Ok(());
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// What `maintenance on|off` does to a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    On { message: String, retry_after: u32 },
    Off,
}

impl Change {
    pub fn name(&self) -> &'static str {
        match self {
            Change::On { .. } => "on",
            Change::Off => "off",
        }
    }

    pub fn apply(&self, d: &Deployment) -> Result<()> {
        match self {
            Change::On {
                message,
                retry_after,
            } => on(d, message, *retry_after),
            Change::Off => off(d),
        }
    }
}

/// A host's maintenance files as they were before a fleet change, to put them back exactly
/// (message and Retry-After included) when another host fails. `conf: None`: it was off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub conf: Option<String>,
    pub page: Option<String>,
}

/// The edge's maintenance files now (a file that is not there: None).
fn save(d: &Deployment, edge: &str) -> Result<Saved> {
    let read = |path: &str| -> Result<Option<String>> {
        let out = d
            .remote
            .output(Cmd::new("docker").args(["exec", edge, "cat", path]))?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    Ok(Saved {
        conf: read(CONF)?,
        page: read(PAGE)?,
    })
}

/// The commands that put `saved` back in the edge (it was on): page, conf, check and reload.
/// Off (`conf: None`) is [`off_commands`].
pub fn restore_commands(edge: &str, saved: &Saved) -> Vec<Cmd> {
    let Some(conf) = &saved.conf else {
        return off_commands(edge);
    };
    let mut cmds = Vec::new();
    if let Some(page) = &saved.page {
        cmds.extend(write_in_edge(edge, PAGE, page.clone()));
    }
    cmds.extend(write_in_edge(edge, CONF, conf.clone()));
    cmds.extend(check_and_reload(edge));
    cmds
}

/// Puts a host back as [`save`] found it; run as a cleanup (also after Ctrl-C).
fn restore(d: &Deployment, saved: &Saved) -> Result<()> {
    let d = d.undoing();
    let Some(edge) = Stack::new(&d).edge()? else {
        bail!("no edge runs there any more")
    };
    for cmd in restore_commands(&edge, saved) {
        d.remote.run(cmd)?;
    }
    settle(&d, &edge, saved.conf.is_none())
}

/// Runs `f(i, host i)` for every host at once; results in the hosts' order.
fn each_host<T: Send>(
    hosts: &[(String, Deployment)],
    f: impl Fn(usize, &Deployment) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, (_, d))| scope.spawn(move || f(i, d)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a host's thread panicked")))
            })
            .collect()
    })
}

/// The error to report among `results`: an interrupt first (it stays one: exit 130).
fn first_error<T>(results: Vec<Result<T>>) -> Option<anyhow::Error> {
    let mut errors: Vec<anyhow::Error> = results.into_iter().filter_map(Result::err).collect();
    let at = errors
        .iter()
        .position(|e| e.is::<crate::interrupt::Interrupted>())
        .unwrap_or(0);
    (!errors.is_empty()).then(|| errors.swap_remove(at))
}

/// `web1: why; web2: why`, for the hosts whose result is an error.
fn failures<T>(hosts: &[(String, Deployment)], results: &[Result<T>]) -> Vec<String> {
    hosts
        .iter()
        .zip(results)
        .filter_map(|((label, _), r)| {
            r.as_ref()
                .err()
                .map(|e| format!("{label}: {}", crate::deploy::fleet::one_line(e)))
        })
        .collect()
}

/// Every host of a fleet (`label`, deployment) to the same maintenance state, or every host back
/// as it was. First every host is asked (edge running and able to serve the page, files as they
/// are): one that cannot be used refuses the whole change, before anything changes. Then every
/// host changes at once; if one fails (or Ctrl-C), every host is put back as it was, and the
/// error names the host that failed, and any that could not be put back.
pub fn change_fleet(hosts: &[(String, Deployment)], change: &Change) -> Result<()> {
    let asked = each_host(hosts, |_, d| {
        d.target().check(&d.remote.runner)?;
        let edge = edge_for_maintenance(d)?;
        save(d, &edge)
    });
    let refused = failures(hosts, &asked);
    if !refused.is_empty() {
        let err = first_error(asked).expect("a failure");
        let message = format!(
            "maintenance {} refused: {}; nothing was changed",
            change.name(),
            refused.join("; ")
        );
        // The causes are in the message already; an interrupt keeps its type (exit 130).
        if err.is::<crate::interrupt::Interrupted>() {
            return Err(err.context(message));
        }
        bail!("{message}");
    }
    let saved: Vec<Saved> = asked.into_iter().map(|r| r.expect("checked")).collect();
    let results = each_host(hosts, |_, d| change.apply(d));
    let failed = failures(hosts, &results);
    if failed.is_empty() {
        return Ok(());
    }
    let put_back = each_host(hosts, |i, d| restore(d, &saved[i]));
    let not_back = failures(hosts, &put_back);
    let state = if not_back.is_empty() {
        "every host is back as it was".to_string()
    } else {
        format!(
            "putting it back FAILED on {}: check with `cargo xtask maintenance status`",
            not_back.join("; ")
        )
    };
    // The hosts by name here; the first failure's cause follows (`{:#}`), the others' too when
    // there are several.
    let names: Vec<&str> = failed
        .iter()
        .map(|f| f.split_once(": ").map_or(f.as_str(), |(name, _)| name))
        .collect();
    let others = if failed.len() > 1 {
        format!(" ({})", failed.join("; "))
    } else {
        String::new()
    };
    let err = first_error(results).expect("a failure");
    Err(err.context(format!(
        "maintenance {} failed on {}{others}; {state}",
        change.name(),
        names.join(", ")
    )))
}

/// Every host's maintenance state, asked at once.
pub fn fleet_states(hosts: &[(String, Deployment)]) -> Vec<Result<State>> {
    each_host(hosts, |_, d| {
        d.target().check(&d.remote.runner)?;
        state(d)
    })
}

/// Does `/` answer 200 through the edge? (Its image's healthcheck script, with a path.)
fn front_page_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "nginx-healthcheck", "/"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_put_back_as_it_was() {
        let argv =
            |cmds: Vec<Cmd>| -> Vec<String> { cmds.iter().map(|c| c.argv().join(" ")).collect() };
        // It was off: off again.
        assert_eq!(
            argv(restore_commands("e1", &Saved::default())),
            argv(off_commands("e1"))
        );
        // It was on: its own page and conf back (message, Retry-After), checked, reloaded.
        let saved = Saved {
            conf: Some(conf(42)),
            page: Some(page("old message")),
        };
        let cmds = restore_commands("e1", &saved);
        assert_eq!(
            argv(cmds.clone()),
            [
                format!("docker exec -i e1 dd of={PAGE}.new status=none"),
                format!("docker exec e1 mv -f {PAGE}.new {PAGE}"),
                format!("docker exec -i e1 dd of={CONF}.new status=none"),
                format!("docker exec e1 mv -f {CONF}.new {CONF}"),
                "docker exec e1 nginx -t -q".to_string(),
                "docker exec e1 nginx -s reload".to_string(),
            ]
        );
        assert_eq!(
            cmds[0].stdin.as_deref(),
            Some(page("old message").as_bytes())
        );
        assert_eq!(cmds[2].stdin.as_deref(), Some(conf(42).as_bytes()));
    }

    #[test]
    fn the_message_is_escaped_into_the_page() {
        let page = page("<script>alert('x')</script> & \"more\"");
        assert!(page.contains(
            "<p>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;</p>"
        ));
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn the_conf_spares_the_health_checks() {
        let conf = conf(120);
        assert!(conf.contains("if ($uri !~ \"^/(health|nginx-health)$\") {\n    return 503;\n}"));
        assert!(conf.contains("add_header Retry-After 120 always;"));
        assert!(conf.contains("error_page 503 @crm_maintenance;"));
        // Nothing the user typed reaches the configuration.
        assert!(!conf.contains("<p>"));
    }

    #[test]
    fn on_writes_page_then_conf_then_checks_and_reloads() {
        let cmds = on_commands("e1", "back soon", 60);
        let argv: Vec<Vec<&str>> = cmds.iter().map(|c| c.argv()).collect();
        assert_eq!(
            argv,
            [
                vec![
                    "docker",
                    "exec",
                    "-i",
                    "e1",
                    "dd",
                    "of=/etc/nginx/crm-edge/maintenance.html.new",
                    "status=none"
                ],
                vec![
                    "docker",
                    "exec",
                    "e1",
                    "mv",
                    "-f",
                    "/etc/nginx/crm-edge/maintenance.html.new",
                    "/etc/nginx/crm-edge/maintenance.html"
                ],
                vec![
                    "docker",
                    "exec",
                    "-i",
                    "e1",
                    "dd",
                    "of=/etc/nginx/crm-edge/maintenance.conf.new",
                    "status=none"
                ],
                vec![
                    "docker",
                    "exec",
                    "e1",
                    "mv",
                    "-f",
                    "/etc/nginx/crm-edge/maintenance.conf.new",
                    "/etc/nginx/crm-edge/maintenance.conf"
                ],
                vec!["docker", "exec", "e1", "nginx", "-t", "-q"],
                vec!["docker", "exec", "e1", "nginx", "-s", "reload"],
            ]
        );
        assert_eq!(cmds[0].stdin.as_deref(), Some(page("back soon").as_bytes()));
        assert_eq!(cmds[2].stdin.as_deref(), Some(conf(60).as_bytes()));
        // The temp file does not match the edge's include pattern (maintenance*.conf).
        assert!(!"maintenance.conf.new".ends_with(".conf"));
    }

    #[test]
    fn off_removes_the_conf_reloads_then_removes_the_page() {
        let cmds = off_commands("e1");
        let argv: Vec<Vec<&str>> = cmds.iter().map(|c| c.argv()).collect();
        assert_eq!(
            argv,
            [
                vec![
                    "docker",
                    "exec",
                    "e1",
                    "rm",
                    "-f",
                    "/etc/nginx/crm-edge/maintenance.conf"
                ],
                vec!["docker", "exec", "e1", "nginx", "-t", "-q"],
                vec!["docker", "exec", "e1", "nginx", "-s", "reload"],
                vec![
                    "docker",
                    "exec",
                    "e1",
                    "rm",
                    "-f",
                    "/etc/nginx/crm-edge/maintenance.html"
                ],
            ]
        );
    }

    #[test]
    fn the_front_page_is_probed_from_inside_the_edge() {
        assert_eq!(
            front_page_probe("e1").argv(),
            ["docker", "exec", "e1", "nginx-healthcheck", "/"]
        );
    }

    #[test]
    fn the_edge_image_includes_what_we_probe_for() {
        let edge_conf = include_str!("../../../docker/edge/edge.conf");
        assert!(edge_conf.contains(INCLUDE));
        assert_eq!(
            supported_probe("e1").argv(),
            ["docker", "exec", "e1", "grep", "-qF", INCLUDE, EDGE_CONF]
        );
    }
}
