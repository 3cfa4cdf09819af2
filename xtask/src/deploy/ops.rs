//! Operating the live release of a target: its logs, and one-off commands in its php container
//! or in a throwaway container of a release. The commands are built here as argument vectors;
//! over ssh they are quoted once by [`crate::deploy::target::Target::cmd`], never joined into a
//! shell string here.

use std::str::FromStr;

use anyhow::{bail, Context, Result};

use crate::cmd::Cmd;
use crate::deploy::db;
use crate::deploy::deployment::Deployment;
use crate::deploy::stack::{Color, Stack};

/// A service of the stack whose logs can be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Php,
    Worker,
    Nginx,
    /// The edge proxy (its own Compose project, shared by every release).
    Edge,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Php => "php",
            Service::Worker => "worker",
            Service::Nginx => "nginx",
            Service::Edge => "edge",
        }
    }
}

/// `--since`: what `docker logs --since` takes (`10m`, `2h30m`, an RFC 3339 time, a Unix
/// time), checked once so nothing else reaches the engine's parser or an option slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since(String);

impl Since {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Since {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Since, String> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || ":.+-".contains(c));
        if ok {
            Ok(Since(s.to_string()))
        } else {
            Err(format!("invalid --since {s:?}: a duration such as 10m or 2h30m, an RFC 3339 time (2026-12-01T10:00:00Z) or a Unix time"))
        }
    }
}

/// What to show of the logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub since: Option<Since>,
    pub tail: Option<u32>,
}

/// `docker compose ... logs` of a project (`compose` names it), for `services` (all when empty).
pub fn logs_command(compose: Cmd, options: &LogOptions, services: &[&str]) -> Cmd {
    let mut cmd = compose.args(["logs", "--no-color"]);
    if options.follow {
        cmd = cmd.arg("--follow");
    }
    if let Some(Since(since)) = &options.since {
        cmd = cmd.args(["--since", since]);
    }
    if let Some(tail) = options.tail {
        cmd = cmd.args(["--tail", &tail.to_string()]);
    }
    cmd.args(services.iter().copied())
}

/// The logs command for `services` of the live release (`live` color) or, for `edge`, of the
/// edge project. Mixing the edge with release services would need two followed streams; refused.
pub fn logs_for(
    stack: &Stack,
    stack_name: &str,
    live: Color,
    services: &[Service],
    options: &LogOptions,
) -> Result<Cmd> {
    let edge = services.contains(&Service::Edge);
    if edge && services.len() > 1 {
        bail!("--service edge cannot be mixed with the release's services (the edge is its own Compose project); ask for it alone");
    }
    let (project, names): (String, Vec<&str>) = if edge {
        (format!("{stack_name}-edge"), vec!["edge"])
    } else {
        (
            stack.project(live),
            services.iter().map(|s| s.name()).collect(),
        )
    };
    let mut compose = stack.compose(&project);
    if edge {
        compose = compose.args(["--profile", "edge"]);
    }
    Ok(logs_command(compose, options, &names))
}

/// The command that shows the logs of `services` of the live release of `d`, as it runs there
/// (over ssh for a server). Refused when nothing is deployed there.
pub fn live_logs(d: &Deployment, services: &[Service], options: &LogOptions) -> Result<Cmd> {
    let stack = Stack::new(d);
    let Some(live) = stack.live()? else {
        bail!(
            "nothing is deployed on {} yet: no logs to show",
            d.target().describe()
        )
    };
    Ok(d.remote
        .cmd(logs_for(&stack, &d.stack, live, services, options)?))
}

/// `cmd` (ssh to a server) with a remote terminal forced (`-tt`) and ssh's own notices off
/// ("Connection to ... closed"). When we stop following, the connection ends and the remote
/// terminal hangs up, which ends the remote `docker compose logs --follow` (SIGHUP); without a
/// terminal it would live on until it next writes. A local command is unchanged.
pub fn hanging_up_with_us(cmd: Cmd) -> Cmd {
    if cmd.program != "ssh" {
        return cmd;
    }
    let mut cmd = cmd;
    cmd.args
        .splice(0..0, ["-tt", "-o", "LogLevel=ERROR"].map(String::from));
    cmd
}

/// How a one-off command is attached: `-i` keeps stdin open, `-t` gives it a terminal (only
/// when ours is one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attach {
    pub interactive: bool,
    pub tty: bool,
}

impl Attach {
    fn flags(self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.interactive {
            flags.push("--interactive");
        }
        if self.tty {
            flags.push("--tty");
        }
        flags
    }
}

/// `docker exec` of `argv` in a running container.
pub fn exec_command(container: &str, argv: &[String], attach: Attach) -> Cmd {
    Cmd::new("docker")
        .arg("exec")
        .args(attach.flags())
        .arg(container)
        .args(argv.iter().cloned())
}

/// Where the data volume is mounted in the php images (compose.yaml's `x-php`).
pub const DATA_PATH: &str = "/var/www/app/var/data";

/// A throwaway container of `image` running `argv` with what the release's php container gets:
/// the target's `.env` (when there is one), the data volume, and the database (its network,
/// the variables that reach it, the password file mounted). Named, so a leftover can be found;
/// removed when it ends (`--rm`); labelled with the stack (see
/// [`crate::docker::THROWAWAY_LABEL`]).
pub fn run_new_command(
    d: &Deployment,
    image: &str,
    env_file: Option<&str>,
    name: &str,
    argv: &[String],
    attach: Attach,
) -> Cmd {
    let mut cmd = Cmd::new("docker")
        .args(["run", "--rm", "--name", name])
        .args(crate::docker::throwaway_label(&d.stack))
        .args(attach.flags());
    if let Some(env_file) = env_file {
        cmd = cmd.args(["--env-file", env_file]);
    }
    cmd.arg("--volume")
        .arg(format!("{}:{DATA_PATH}", d.data_volume()))
        .args(["--network", &db::network(&d.stack)])
        .args(db::env_args(&db::CLIENT_ENV))
        .args(db::password_file_args(&d.target().path(db::PASSWORD_FILE)))
        .arg(image)
        .args(argv.iter().cloned())
}

/// `cmd` as run on the target with a terminal: ssh gets `-t` (one allocated remote terminal),
/// a local command is unchanged.
pub fn with_remote_tty(cmd: Cmd) -> Cmd {
    if cmd.program != "ssh" {
        return cmd;
    }
    let mut cmd = cmd;
    cmd.args.insert(0, "-t".into());
    cmd
}

/// The php image of release `tag` as the target's compose.yaml names it (same registry).
pub fn php_image_of(compose_yaml: &str, tag: &str) -> Result<String> {
    let (text, _) = crate::compose_file::set_tag(compose_yaml, tag, &crate::config::APP_IMAGES)
        .map_err(|err| anyhow::anyhow!("cannot read the target's compose.yaml: {err}"))?;
    crate::compose_file::app_references(&text, &[crate::config::PHP])
        .ok()
        .and_then(|images| {
            images
                .into_iter()
                .find(|i| !i.ends_with(crate::config::SUPERVISOR_SUFFIX))
        })
        .context("the target's compose.yaml names no crm-gdb_php image")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Runner;
    use crate::deploy::target::Target;
    use crate::progress::Verbosity;

    fn deployment() -> Deployment {
        let target = Target::new(None, "/srv/crm", None).unwrap();
        Deployment::new(&target, &Runner::new(true, Verbosity::Quiet), "crm")
    }

    #[test]
    fn logs_of_the_live_release_or_the_edge() {
        let d = deployment();
        let stack = Stack::new(&d);
        let options = LogOptions {
            follow: true,
            since: Some("10m".parse().unwrap()),
            tail: Some(50),
        };
        let cmd = logs_for(&stack, "crm", Color::Green, &[Service::Php], &options).unwrap();
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "compose",
                "--project-name",
                "crm-green",
                "--project-directory",
                "/srv/crm",
                "--file",
                "/srv/crm/compose.yaml",
                "logs",
                "--no-color",
                "--follow",
                "--since",
                "10m",
                "--tail",
                "50",
                "php"
            ]
        );
        assert_eq!(
            cmd.env,
            [
                (
                    "CRM_DB_PASSWORD_FILE".to_string(),
                    "/srv/crm/.deploy/secrets/db_password".to_string()
                ),
                ("CRM_DB_BACKUPS".to_string(), "/srv/crm/backups".to_string()),
                ("CRM_STACK".to_string(), "crm".to_string())
            ]
        );
        let all = logs_for(&stack, "crm", Color::Blue, &[], &LogOptions::default()).unwrap();
        assert_eq!(
            &all.argv()[2..4],
            ["--project-name", "crm-blue"],
            "{:?}",
            all.argv()
        );
        assert_eq!(all.argv().last(), Some(&"--no-color"));
        let edge = logs_for(&stack, "crm", Color::Blue, &[Service::Edge], &options).unwrap();
        assert_eq!(&edge.argv()[3], &"crm-edge");
        assert!(edge.argv().ends_with(&["50", "edge"]));
        assert!(edge.args.windows(2).any(|w| w == ["--profile", "edge"]));
        let mixed = logs_for(
            &stack,
            "crm",
            Color::Blue,
            &[Service::Edge, Service::Php],
            &options,
        );
        assert!(mixed.unwrap_err().to_string().contains("alone"));
    }

    #[test]
    fn a_followed_remote_command_hangs_up_with_us() {
        let target = Target::new(Some("deploy@web1"), "/srv/crm", None).unwrap();
        let cmd = hanging_up_with_us(target.cmd(Cmd::new("docker").args(["logs", "-f", "c1"])));
        assert_eq!(
            &cmd.argv()[..5],
            ["ssh", "-tt", "-o", "LogLevel=ERROR", "-o"],
            "{:?}",
            cmd.argv()
        );
        assert_eq!(cmd.args.last().unwrap(), "docker logs -f c1");
        let local = Cmd::new("docker").args(["logs", "-f", "c1"]);
        assert_eq!(hanging_up_with_us(local.clone()), local);
    }

    #[test]
    fn since_is_checked() {
        for good in [
            "10m",
            "2h30m",
            "2026-12-01T10:00:00Z",
            "1764583200",
            "2026-12-01T10:00:00+01:00",
        ] {
            assert!(good.parse::<Since>().is_ok(), "{good}");
        }
        for bad in ["", "-1", "--follow", "10m; rm", "$(id)", "m10"] {
            assert!(
                bad.parse::<Since>()
                    .unwrap_err()
                    .starts_with("invalid --since"),
                "{bad}"
            );
        }
    }

    #[test]
    fn exec_keeps_every_argument_whole() {
        let argv: Vec<String> = ["php", "-r", "echo 1; rm -rf /;", "$(id)"]
            .map(String::from)
            .to_vec();
        let cmd = exec_command("c1", &argv, Attach::default());
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "exec",
                "c1",
                "php",
                "-r",
                "echo 1; rm -rf /;",
                "$(id)"
            ]
        );
        let attach = Attach {
            interactive: true,
            tty: true,
        };
        assert_eq!(
            exec_command("c1", &argv[..1], attach).argv(),
            ["docker", "exec", "--interactive", "--tty", "c1", "php"]
        );
        // Over ssh: one remote string, each word quoted once.
        let target = Target::new(Some("deploy@web1"), "/srv/crm", None).unwrap();
        let remote = with_remote_tty(target.cmd(exec_command("c1", &argv, Attach::default())));
        assert_eq!(remote.args[0], "-t");
        assert_eq!(
            remote.args.last().unwrap(),
            "docker exec c1 php -r 'echo 1; rm -rf /;' '$(id)'"
        );
        let local = Cmd::new("docker").arg("ps");
        assert_eq!(with_remote_tty(local.clone()), local);
    }

    #[test]
    fn a_new_container_gets_the_env_the_data_and_the_database() {
        let d = deployment();
        let argv = vec!["php".to_string(), "-v".to_string()];
        let cmd = run_new_command(
            &d,
            "r/crm-gdb_php:1.2.0",
            Some("/srv/crm/.env"),
            "crm-exec-42",
            &argv,
            Attach::default(),
        );
        assert_eq!(
            cmd.argv(),
            [
                "docker",
                "run",
                "--rm",
                "--name",
                "crm-exec-42",
                "--label",
                "org.kiora.crm.throwaway=crm",
                "--env-file",
                "/srv/crm/.env",
                "--volume",
                "crm_data:/var/www/app/var/data",
                "--network",
                "crm_db",
                "--env",
                "DB_HOST=db",
                "--env",
                "DB_NAME=crm",
                "--env",
                "DB_USER=crm",
                "--volume",
                "/srv/crm/.deploy/secrets/db_password:/run/secrets/db_password:ro",
                "--env",
                "DB_PASSWORD_FILE=/run/secrets/db_password",
                "r/crm-gdb_php:1.2.0",
                "php",
                "-v"
            ]
        );
        let bare = run_new_command(&d, "i", None, "n", &argv, Attach::default());
        assert!(!bare.args.contains(&"--env-file".to_string()));
    }

    #[test]
    fn the_php_image_of_a_release_comes_from_the_target_compose_file() {
        let yaml = "services:\n  php:\n    image: r.example/k/crm-gdb_php:1.0.0\n  worker:\n    image: r.example/k/crm-gdb_php:1.0.0-supervisor\n  nginx:\n    image: r.example/k/crm-gdb_nginx:1.0.0\n";
        assert_eq!(
            php_image_of(yaml, "1.2.0").unwrap(),
            "r.example/k/crm-gdb_php:1.2.0"
        );
    }
}
