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
    if !d.remote.succeeds(supported_probe(&edge))? {
        let image = d
            .remote
            .query(Cmd::new("docker").args(["inspect", "--format", "{{.Config.Image}}", &edge]))
            .unwrap_or_default();
        bail!(
            "the edge on {} ({image}) predates maintenance mode; put crm-gdb_edge:0.2.0 in its compose.yaml and recreate the edge (docker compose -p {}-edge --profile edge up -d edge: a few seconds without service)",
            d.target().describe(),
            d.stack
        );
    }
    Ok(edge)
}

pub fn state(d: &Deployment) -> Result<State> {
    let Some(edge) = Stack::new(d).edge()? else {
        return Ok(State::NoEdge);
    };
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

/// Does `/` answer 200 through the edge? (Its image's healthcheck script, with a path.)
fn front_page_probe(edge: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "nginx-healthcheck", "/"])
}

#[cfg(test)]
mod tests {
    use super::*;

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
