//! HTTPS at the edge: the target's own certificate and key, served by the edge on port 443, plain
//! HTTP redirected, HSTS. Like maintenance mode, a file in the edge's conf volume (`tls.conf`,
//! included by edge.conf from crm-gdb_edge 0.4.0 on), a config check and a graceful reload.
//!
//! The files are paths ON THE TARGET (`tls:` of an environment, or `--tls-cert`/`--tls-key`).
//! A throwaway container of the edge's image, run by the target's engine, bind-mounts them
//! read-only and copies them into the conf volume (`tls/new/`); then `tls/live/` is replaced
//! by it (two renames), `nginx -t` checks the pair and `nginx -s reload` switches gracefully.
//! A pair nginx refuses (a key of another certificate, a file that is no PEM) puts the previous
//! one back: the edge keeps serving as before. So the key is read by the target's engine only:
//! it never crosses the ssh connection, is never read by xtask, never enters an image, and a
//! root-only key (certbot's) works. Copying, rather than mounting the files into the edge, also
//! means a renewal that replaces them by a rename or a new symlink (certbot) is seen: a bind
//! mount of a file keeps the inode it was started with.
//!
//! Renewal (and the ACME seam): whatever writes the two files, then runs `cargo xtask tls
//! reload`, which does the above. `status` reads the served certificate's expiry (`openssl x509`
//! in the edge) and warns under [`WARN_DAYS`] days.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::deployment::Deployment;
use crate::deploy::stack::{check_and_reload, write_in_edge, Stack};

const CONF: &str = "/etc/nginx/crm-edge/tls.conf";
const DIR: &str = "/etc/nginx/crm-edge/tls";
const LIVE: &str = "/etc/nginx/crm-edge/tls/live";
const NEW: &str = "/etc/nginx/crm-edge/tls/new";
const OLD: &str = "/etc/nginx/crm-edge/tls/old";
const CERT: &str = "fullchain.pem";
const KEY: &str = "privkey.pem";
/// Where the throwaway container sees the target's files.
const SOURCE: &str = "/xtask-tls";
/// The line of edge.conf (crm-gdb_edge 0.4.0 on) that includes [`CONF`].
const INCLUDE: &str = "include /etc/nginx/crm-edge/tls*.conf;";
const EDGE_CONF: &str = "/etc/nginx/conf.d/default.conf";
/// `status` warns when the certificate expires sooner than this.
pub const WARN_DAYS: i64 = 14;
/// HSTS lifetime: one year, without includeSubDomains or preload (the domain owner's choice).
const HSTS: &str = "max-age=31536000";

/// The certificate chain and its key: absolute paths on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}

impl TlsFiles {
    /// Checked: absolute paths, without the characters a `--mount` value cannot hold.
    pub fn new(cert: &str, key: &str) -> Result<TlsFiles> {
        for (what, path) in [("certificate", cert), ("key", key)] {
            if !path.starts_with('/') || path.contains([',', '"', '\n', '\0']) {
                bail!("invalid TLS {what} path {path:?}: an absolute path on the target, without ',' or '\"' (e.g. /srv/crm/tls/{})", if what == "key" { KEY } else { CERT });
            }
        }
        Ok(TlsFiles {
            cert: cert.to_string(),
            key: key.to_string(),
        })
    }
}

/// The server-level nginx snippet: 443 with the installed pair; plain HTTP answered with a
/// redirect to HTTPS, except the health checks (deploys verify through them) and the edge's
/// requests to itself (its healthcheck, maintenance's check of `/`); HSTS on HTTPS answers
/// (an empty value adds no header).
pub fn conf(https_port: u16) -> String {
    let authority = if https_port == 443 {
        "$host".to_string()
    } else {
        format!("$host:{https_port}")
    };
    format!(
        "# HTTPS at the edge: written by `cargo xtask deploy` and `tls reload`, removed by `tls off`.\n\
         listen 443 ssl;\n\
         ssl_certificate {LIVE}/{CERT};\n\
         ssl_certificate_key {LIVE}/{KEY};\n\
         ssl_protocols TLSv1.2 TLSv1.3;\n\
         ssl_session_cache shared:crm_tls:1m;\n\
         set $crm_plain_ok $https;\n\
         if ($remote_addr = 127.0.0.1) {{\n    set $crm_plain_ok on;\n}}\n\
         if ($uri ~ \"^/(health|nginx-health)$\") {{\n    set $crm_plain_ok on;\n}}\n\
         if ($crm_plain_ok != on) {{\n    return 301 https://{authority}$request_uri;\n}}\n\
         set $crm_hsts \"\";\n\
         if ($https = on) {{\n    set $crm_hsts \"{HSTS}\";\n}}\n\
         add_header Strict-Transport-Security $crm_hsts always;\n"
    )
}

/// Copies the target's files into `tls/new/` of the edge's conf volume: a container of the
/// edge's own image (`image`, already on the target), no network, the files bind-mounted
/// read-only (a missing file is an error, never an empty directory made in its place).
pub fn copy_commands(stack: &str, edge: &str, image: &str, files: &TlsFiles) -> [Cmd; 4] {
    let mount = |source: &str, name: &str| {
        format!("type=bind,source={source},target={SOURCE}/{name},readonly")
    };
    [
        Cmd::new("docker").args(["exec", edge, "rm", "-rf", NEW, OLD]),
        Cmd::new("docker").args(["exec", edge, "install", "-d", "-m", "0700", DIR, NEW]),
        Cmd::new("docker")
            .args(["run", "--rm", "--network", "none"])
            .args(crate::docker::throwaway_label(stack))
            .args(["--volumes-from", edge])
            .args(["--mount", &mount(&files.cert, CERT)])
            .args(["--mount", &mount(&files.key, KEY)])
            .args(["--entrypoint", "cp", image])
            .arg(format!("{SOURCE}/{CERT}"))
            .arg(format!("{SOURCE}/{KEY}"))
            .arg(format!("{NEW}/")),
        Cmd::new("docker").args(["exec", edge, "chmod", "0600", &format!("{NEW}/{KEY}")]),
    ]
}

/// `tls/live` aside (when there is one), `tls/new` in its place.
fn swap_commands(edge: &str, had_live: bool) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    if had_live {
        cmds.push(Cmd::new("docker").args(["exec", edge, "mv", LIVE, OLD]));
    }
    cmds.push(Cmd::new("docker").args(["exec", edge, "mv", NEW, LIVE]));
    cmds
}

/// Puts the previous pair back (or none) after nginx refused the new one.
fn restore_commands(edge: &str, had_live: bool) -> Vec<Cmd> {
    let mut cmds = vec![Cmd::new("docker").args(["exec", edge, "rm", "-rf", LIVE])];
    if had_live {
        cmds.push(Cmd::new("docker").args(["exec", edge, "mv", OLD, LIVE]));
    }
    cmds
}

/// Puts the previous pair and conf back after a failed install; a cleanup (also after Ctrl-C),
/// best effort: the first failure is what the caller reports.
fn restore(d: &Deployment, edge: &str, had_live: bool, old_conf: Option<&str>) {
    // The old pair is back only if it was moved aside (the swap may have failed before).
    let moved_aside = had_live && d.remote.succeeds(exists(edge, "-d", OLD)).unwrap_or(false);
    if !had_live || moved_aside {
        for cmd in restore_commands(edge, had_live) {
            let _ = d.remote.run(cmd);
        }
    }
    let _ = match old_conf {
        Some(text) => write_in_edge(edge, CONF, text.to_string())
            .into_iter()
            .try_for_each(|c| d.remote.run(c)),
        None => d
            .remote
            .run(Cmd::new("docker").args(["exec", edge, "rm", "-f", CONF])),
    };
    let _ = d
        .remote
        .run(Cmd::new("docker").args(["exec", edge, "rm", "-rf", NEW]));
}

/// Removes the conf, checks, reloads, then the files.
pub fn off_commands(edge: &str) -> Vec<Cmd> {
    let mut cmds = vec![Cmd::new("docker").args(["exec", edge, "rm", "-f", CONF])];
    cmds.extend(check_and_reload(edge));
    cmds.push(Cmd::new("docker").args(["exec", edge, "rm", "-rf", DIR]));
    cmds
}

fn exists(edge: &str, flag: &str, path: &str) -> Cmd {
    Cmd::new("docker").args(["exec", edge, "test", flag, path])
}

/// Subject and expiry of the installed certificate (the first of the chain).
fn expiry_query(edge: &str) -> Cmd {
    Cmd::new("docker").args([
        "exec",
        edge,
        "openssl",
        "x509",
        "-noout",
        "-subject",
        "-enddate",
        "-in",
        &format!("{LIVE}/{CERT}"),
    ])
}

/// The certificate the edge serves now, from inside it (its chain in PEM).
fn served_query(edge: &str) -> Cmd {
    Cmd::new("docker")
        .args(["exec", "-i", edge, "openssl", "s_client", "-connect"])
        .args(["127.0.0.1:443", "-servername", "localhost"])
        .stdin(Vec::new())
}

/// The first PEM certificate of `text`.
fn first_pem(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end_marker = "-----END CERTIFICATE-----";
    let end = text[start..].find(end_marker)? + start + end_marker.len();
    Some(&text[start..end])
}

/// The running edge, refused when it cannot serve HTTPS (an older image, or no port 443
/// published), with what to do.
fn edge_for_tls(d: &Deployment) -> Result<(String, u16)> {
    let stack = Stack::new(d);
    if d.remote.dry_run() {
        return Ok((stack.edge()?.unwrap_or_else(|| "EDGE".into()), 443));
    }
    let Some(edge) = stack.edge()? else {
        bail!(
            "no edge runs on {}: deploy a release first",
            d.target().describe()
        )
    };
    let recreate = format!(
        "recreate the edge (docker compose -p {}-edge --profile edge up -d edge: a few seconds without service)",
        d.stack
    );
    if !d
        .remote
        .succeeds(Cmd::new("docker").args(["exec", &edge, "grep", "-qF", INCLUDE, EDGE_CONF]))?
    {
        bail!(
            "the edge on {} predates HTTPS; put crm-gdb_edge:0.4.0 in its compose.yaml, then {recreate}",
            d.target().describe()
        );
    }
    let Some(port) = stack.published_port(443)? else {
        bail!(
            "the edge on {} publishes no port 443; add the HTTPS line of the edge's `ports:` (see compose.yaml) and HTTPS_PORT to its .env, then {recreate}",
            d.target().describe()
        );
    };
    Ok((edge, port))
}

/// Installs (or replaces) the certificate and key from the target's files and reloads the edge
/// gracefully. Anything refused leaves the edge serving as before.
pub fn install(d: &Deployment, files: &TlsFiles) -> Result<()> {
    let (edge, port) = edge_for_tls(d)?;
    let image = if d.remote.dry_run() {
        "EDGE_IMAGE".to_string()
    } else {
        d.remote
            .query(Cmd::new("docker").args(["inspect", "--format", "{{.Image}}", &edge]))?
    };
    for cmd in copy_commands(&d.stack, &edge, &image, files) {
        if let Err(err) = d.remote.run(cmd) {
            let _ = d
                .remote
                .cleanup(Cmd::new("docker").args(["exec", &edge, "rm", "-rf", NEW]));
            return Err(err).with_context(|| {
                format!(
                    "cannot copy {} and {} on {} into the edge (do both exist there?); the edge serves as before",
                    files.cert,
                    files.key,
                    d.target().describe()
                )
            });
        }
    }
    let had_live = !d.remote.dry_run() && d.remote.succeeds(exists(&edge, "-d", LIVE))?;
    let old_conf = if !d.remote.dry_run() && d.remote.succeeds(exists(&edge, "-f", CONF))? {
        Some(
            d.remote
                .query(Cmd::new("docker").args(["exec", &edge, "cat", CONF]))?
                + "\n",
        )
    } else {
        None
    };
    let mut cmds = swap_commands(&edge, had_live);
    cmds.extend(write_in_edge(&edge, CONF, conf(port)));
    cmds.extend(check_and_reload(&edge));
    for cmd in cmds {
        if let Err(err) = d.remote.run(cmd) {
            // nginx -t refused the pair (or a step failed): the previous state goes back.
            restore(&d.undoing(), &edge, had_live, old_conf.as_deref());
            return Err(err).context(format!(
                "the edge refused the certificate {} with the key {} (not a PEM pair that belongs together?); it serves as before",
                files.cert, files.key
            ));
        }
    }
    let _ = d
        .remote
        .cleanup(Cmd::new("docker").args(["exec", &edge, "rm", "-rf", OLD]));
    settle(d, &edge)
}

/// How long the edge's new workers may take to replace the old ones after a reload.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// `nginx -s reload` returns before the new workers answer: waits until the edge serves the
/// installed certificate, so it is in force when the command returns.
fn settle(d: &Deployment, edge: &str) -> Result<()> {
    if d.remote.dry_run() {
        return Ok(());
    }
    let installed = d.remote.query(Cmd::new("docker").args([
        "exec",
        edge,
        "cat",
        &format!("{LIVE}/{CERT}"),
    ]))?;
    let installed = first_pem(&installed)
        .context("the installed certificate file holds no PEM certificate")?
        .to_string();
    let start = Instant::now();
    loop {
        let served = d.remote.output(served_query(edge))?;
        if first_pem(&String::from_utf8_lossy(&served.stdout)) == Some(installed.as_str()) {
            return Ok(());
        }
        if start.elapsed() > SETTLE_LIMIT {
            d.remote.say(format!(
                "  warning: the edge does not serve the new certificate {}s after its reload",
                SETTLE_LIMIT.as_secs()
            ));
            return Ok(());
        }
        crate::interrupt::check()?;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops serving HTTPS (port 443 then refuses; plain HTTP is served again, without redirect).
pub fn off(d: &Deployment) -> Result<()> {
    let (edge, _) = edge_for_tls(d)?;
    for cmd in off_commands(&edge) {
        d.remote.run(cmd).context("turning HTTPS off failed")?;
    }
    Ok(())
}

/// HTTPS on a target, as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Serving this certificate (subject, expiry as Unix seconds).
    On {
        subject: String,
        not_after: i64,
    },
    Off,
    NoEdge,
    /// The running edge predates HTTPS.
    Unsupported,
}

pub fn state(d: &Deployment) -> Result<State> {
    let Some(edge) = Stack::new(d).edge()? else {
        return Ok(State::NoEdge);
    };
    if !d
        .remote
        .succeeds(Cmd::new("docker").args(["exec", &edge, "grep", "-qF", INCLUDE, EDGE_CONF]))?
    {
        return Ok(State::Unsupported);
    }
    if !d.remote.succeeds(exists(&edge, "-f", CONF))? {
        return Ok(State::Off);
    }
    let out = d.remote.query(expiry_query(&edge))?;
    let (subject, not_after) =
        parse_x509(&out).with_context(|| format!("cannot read openssl's answer {out:?}"))?;
    Ok(State::On { subject, not_after })
}

/// `tls: ...`, the line `status` prints; `now` in Unix seconds.
pub fn describe(state: &State, now: i64) -> String {
    match state {
        State::Off => "tls:      off (plain HTTP only)".into(),
        State::NoEdge => "tls:      off (no edge running)".into(),
        State::Unsupported => {
            "tls:      unavailable: the edge predates it (crm-gdb_edge 0.4.0 has it)".into()
        }
        State::On { subject, not_after } => {
            let left = not_after - now;
            let days = left.div_euclid(86_400);
            let when = crate::project::rfc3339(u64::try_from(*not_after).unwrap_or(0));
            if left <= 0 {
                format!("tls:      EXPIRED: the certificate ({subject}) expired {when}; renew it, then `cargo xtask tls reload`")
            } else if days < WARN_DAYS {
                format!("tls:      WARNING: the certificate ({subject}) expires {when}, in {days} day(s); renew it, then `cargo xtask tls reload`")
            } else {
                format!("tls:      on, certificate ({subject}) expires {when} (in {days} days)")
            }
        }
    }
}

/// The `tls` column of `status --env`: `off`, `expires 2027-03-01 (89 d)`, `WARNING: expires
/// ... (4 d)`, `EXPIRED ...`.
pub fn short(state: &State, now: i64) -> String {
    match state {
        State::Off | State::NoEdge => "off".into(),
        State::Unsupported => "unavailable (edge < 0.4.0)".into(),
        State::On { not_after, .. } => {
            let left = not_after - now;
            let days = left.div_euclid(86_400);
            let date: String = crate::project::rfc3339(u64::try_from(*not_after).unwrap_or(0))
                .chars()
                .take(10)
                .collect();
            if left <= 0 {
                format!("EXPIRED {date}")
            } else if days < WARN_DAYS {
                format!("WARNING: expires {date} ({days} d)")
            } else {
                format!("expires {date} ({days} d)")
            }
        }
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `subject=CN = crm.example` and `notAfter=Jan  2 03:04:05 2027 GMT` (openssl's lines) ->
/// (`CN = crm.example`, Unix seconds).
fn parse_x509(out: &str) -> Option<(String, i64)> {
    let subject = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("subject="))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let date = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("notAfter="))?;
    Some((subject, parse_openssl_date(date)?))
}

/// `Jan  2 03:04:05 2027 GMT` -> Unix seconds.
fn parse_openssl_date(text: &str) -> Option<i64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [month, day, time, year, "GMT"] = words.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days-from-civil (proleptic Gregorian), the inverse of project::rfc3339's.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_and_fit_a_mount() {
        assert!(TlsFiles::new("/srv/crm/tls/fullchain.pem", "/srv/crm/tls/privkey.pem").is_ok());
        for (cert, key) in [
            ("tls/fullchain.pem", "/k"),
            ("/c", "/a,readonly=false"),
            ("/c\n", "/k"),
            ("/c", "/k\"x"),
        ] {
            let e = TlsFiles::new(cert, key).unwrap_err().to_string();
            assert!(e.starts_with("invalid TLS "), "{e}");
        }
    }

    #[test]
    fn the_conf_serves_443_redirects_plain_http_and_sends_hsts() {
        let conf = conf(8443);
        assert!(conf.contains("listen 443 ssl;\n"));
        assert!(conf.contains("ssl_certificate /etc/nginx/crm-edge/tls/live/fullchain.pem;\n"));
        assert!(conf.contains("ssl_certificate_key /etc/nginx/crm-edge/tls/live/privkey.pem;\n"));
        assert!(conf.contains("return 301 https://$host:8443$request_uri;"));
        assert!(conf.contains("if ($uri ~ \"^/(health|nginx-health)$\")"));
        assert!(conf.contains("add_header Strict-Transport-Security $crm_hsts always;"));
        assert!(conf.contains("set $crm_hsts \"max-age=31536000\";"));
        assert!(super::conf(443).contains("return 301 https://$host$request_uri;"));
        // The temp file write_in_edge makes does not match edge.conf's include pattern.
        assert!(!"tls.conf.new".ends_with(".conf"));
    }

    #[test]
    fn the_files_are_copied_by_the_targets_engine_read_only() {
        let files =
            TlsFiles::new("/etc/letsencrypt/live/x/fullchain.pem", "/k/privkey.pem").unwrap();
        let [clear, dir, copy, chmod] = copy_commands("crm", "e1", "sha256:abc", &files);
        assert_eq!(
            clear.argv(),
            [
                "docker",
                "exec",
                "e1",
                "rm",
                "-rf",
                "/etc/nginx/crm-edge/tls/new",
                "/etc/nginx/crm-edge/tls/old"
            ]
        );
        assert_eq!(
            dir.argv(),
            [
                "docker",
                "exec",
                "e1",
                "install",
                "-d",
                "-m",
                "0700",
                "/etc/nginx/crm-edge/tls",
                "/etc/nginx/crm-edge/tls/new"
            ]
        );
        assert_eq!(
            copy.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--label",
                "org.kiora.crm.throwaway=crm",
                "--volumes-from",
                "e1",
                "--mount",
                "type=bind,source=/etc/letsencrypt/live/x/fullchain.pem,target=/xtask-tls/fullchain.pem,readonly",
                "--mount",
                "type=bind,source=/k/privkey.pem,target=/xtask-tls/privkey.pem,readonly",
                "--entrypoint",
                "cp",
                "sha256:abc",
                "/xtask-tls/fullchain.pem",
                "/xtask-tls/privkey.pem",
                "/etc/nginx/crm-edge/tls/new/"
            ]
        );
        assert!(
            copy.stdin.is_none(),
            "nothing of the key goes through xtask"
        );
        assert_eq!(
            chmod.argv(),
            [
                "docker",
                "exec",
                "e1",
                "chmod",
                "0600",
                "/etc/nginx/crm-edge/tls/new/privkey.pem"
            ]
        );
    }

    #[test]
    fn a_swap_keeps_the_old_pair_until_nginx_accepts_the_new_one() {
        let argv = |cmds: Vec<Cmd>| -> Vec<String> {
            cmds.iter().map(|c| c.argv()[3..].join(" ")).collect()
        };
        assert_eq!(
            argv(swap_commands("e1", true)),
            [
                "mv /etc/nginx/crm-edge/tls/live /etc/nginx/crm-edge/tls/old",
                "mv /etc/nginx/crm-edge/tls/new /etc/nginx/crm-edge/tls/live"
            ]
        );
        assert_eq!(
            argv(swap_commands("e1", false)),
            ["mv /etc/nginx/crm-edge/tls/new /etc/nginx/crm-edge/tls/live"]
        );
        assert_eq!(
            argv(restore_commands("e1", true)),
            [
                "rm -rf /etc/nginx/crm-edge/tls/live",
                "mv /etc/nginx/crm-edge/tls/old /etc/nginx/crm-edge/tls/live"
            ]
        );
        assert_eq!(
            argv(off_commands("e1")),
            [
                "rm -f /etc/nginx/crm-edge/tls.conf",
                "nginx -t -q",
                "nginx -s reload",
                "rm -rf /etc/nginx/crm-edge/tls"
            ]
        );
    }

    #[test]
    fn expiry_from_openssl_and_the_warning() {
        let out = "subject=CN = crm.test\nnotAfter=Jan  2 03:04:05 2027 GMT\n";
        let (subject, at) = parse_x509(out).unwrap();
        assert_eq!(subject, "CN = crm.test");
        assert_eq!(crate::project::rfc3339(at as u64), "2027-01-02T03:04:05Z");
        assert_eq!(
            parse_openssl_date("Feb 29 00:00:00 2028 GMT")
                .map(|s| crate::project::rfc3339(s as u64)),
            Some("2028-02-29T00:00:00Z".into())
        );
        assert_eq!(parse_openssl_date("Jan 2 03:04:05 2027 CET"), None);
        assert_eq!(parse_x509("notAfter=garbage"), None);
        let on = |days: i64| State::On {
            subject: "CN = crm.test".into(),
            not_after: 1_000_000_000 + days * 86_400 + 60,
        };
        let line = describe(&on(30), 1_000_000_000);
        assert!(
            line.starts_with("tls:      on, certificate (CN = crm.test) expires 2001-"),
            "{line}"
        );
        assert!(line.ends_with("(in 30 days)"), "{line}");
        let line = describe(&on(13), 1_000_000_000);
        assert!(
            line.contains("WARNING") && line.contains("in 13 day(s)"),
            "{line}"
        );
        assert!(describe(&on(14), 1_000_000_000).contains(" on, "));
        assert!(describe(&on(-1), 1_000_000_000).contains("EXPIRED"));
        assert_eq!(describe(&State::Off, 0), "tls:      off (plain HTTP only)");
        assert_eq!(short(&on(30), 1_000_000_000), "expires 2001-10-09 (30 d)");
        assert_eq!(
            short(&on(4), 1_000_000_000),
            "WARNING: expires 2001-09-13 (4 d)"
        );
        assert_eq!(short(&on(-2), 1_000_000_000), "EXPIRED 2001-09-07");
        assert_eq!(short(&State::NoEdge, 0), "off");
    }

    #[test]
    fn the_served_certificate_is_compared_as_pem() {
        let text = "x\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            first_pem(text),
            Some("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----")
        );
        assert_eq!(first_pem("no"), None);
        assert_eq!(
            served_query("e1").argv(),
            [
                "docker",
                "exec",
                "-i",
                "e1",
                "openssl",
                "s_client",
                "-connect",
                "127.0.0.1:443",
                "-servername",
                "localhost"
            ]
        );
    }

    #[test]
    fn the_edge_image_includes_what_we_probe_for() {
        let edge_conf = include_str!("../../../docker/edge/edge.conf");
        assert!(edge_conf.contains(INCLUDE));
        // Before maintenance: a plain HTTP request is redirected, not answered 503.
        assert!(edge_conf.find(INCLUDE) < edge_conf.find("maintenance*.conf"));
    }
}
