//! A few read-only docker CLI commands that a deploy runs many times a second while it waits (a
//! health probe, a container's state, the containers of a Compose project, a file of the edge)
//! answered by the engine's API (`docker_api.rs`) instead of a new docker process: 1-20 ms
//! instead of 50-150 ms each (a probe's own run in the container is the same).
//!
//! The commands stay `Cmd`s built by the same pure functions and run by the same `Runner`
//! (`--dry-run`, `-v`, the error messages are unchanged); only [`answer`], called where the
//! runner would start a query's process (`Runner::query`, `succeeds`, `output`), recognizes an
//! exact argv shape and answers it with the output the CLI would have given. Actions start the
//! CLI, except the few of an edge switch ([`act`]: a file written, renamed, removed, nginx
//! reloaded), which are on the path of every deploy and rollback. Anything else (other flags,
//! stdin, a remote target's `ssh ...`, an engine that is not the local socket, `DOCKER_*` in
//! the command's environment) and any error before the engine did something goes to the CLI as
//! before.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Output};

use anyhow::Result;

use crate::cmd::Cmd;
use crate::docker_api::Engine;
use crate::json::Json;

/// `docker inspect --format` of a container's state, as a deploy's gate reads it: status,
/// health (`none` without a healthcheck), restarts, Compose service, then each word of the
/// healthcheck's test.
pub const STATE_FORMAT: &str = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}} {{index .Config.Labels \"com.docker.compose.service\"}}{{range $i, $a := .Config.Healthcheck.Test}} {{$a}}{{end}}";

/// `docker inspect --format` of a container's state, image and Compose service.
pub const STANDBY_FORMAT: &str =
    "{{.State.Status}} {{.Config.Image}} {{index .Config.Labels \"com.docker.compose.service\"}}";

/// `docker inspect --format` of a container's image.
pub const IMAGE_FORMAT: &str = "{{.Config.Image}}";

/// A command the API can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shortcut {
    /// `docker exec ID ARGV...`
    Exec { id: String, argv: Vec<String> },
    /// `docker compose --project-name P ... ps --all --quiet [SERVICE]`
    ComposePs {
        project: String,
        service: Option<String>,
    },
    /// `docker compose --project-name P ... --profile X port SERVICE PORT`
    ComposePort {
        project: String,
        service: String,
        port: String,
    },
    /// `docker inspect --format FORMAT ID...` with one of the formats above.
    Inspect { format: String, ids: Vec<String> },
    /// `docker image inspect --format {{.Id}} IMAGE`
    ImageId { image: String },
    /// `docker image inspect --format '{{index .Config.Labels "KEY"}}' IMAGE` (the release
    /// command and the revision a deploy reads).
    ImageLabel { image: String, label: String },
    /// `docker network inspect NAME` / `docker volume inspect NAME` (a check that it exists).
    Exists { kind: &'static str, name: String },
    /// `docker volume inspect --format {{.Name}} NAME...` (a check that all of them exist).
    Volumes { names: Vec<String> },
    /// `docker network inspect --format '{{index .Options "KEY"}}' NAME` (the edge network's
    /// address).
    NetworkOption { name: String, option: String },
    /// `docker ps --quiet --filter label=K=V... --filter status=running` (the db container).
    RunningLabelled { labels: Vec<String> },
}

/// The shortcut for `cmd`, if it is one of the shapes above (pure: unit-tested on argv).
pub fn parse(cmd: &Cmd) -> Option<Shortcut> {
    if cmd.program != "docker"
        || cmd.stdin.is_some()
        || cmd.env.iter().any(|(k, _)| k.starts_with("DOCKER_"))
    {
        return None;
    }
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    let plain = |word: &&str| !word.starts_with('-') && !word.is_empty();
    match args.as_slice() {
        ["exec", id, argv @ ..] if plain(id) && !argv.is_empty() => Some(Shortcut::Exec {
            id: id.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }),
        ["compose", "--project-name", project, "--project-directory", _, "--file", _, "ps", "--all", "--quiet", rest @ ..] =>
        {
            let service = match rest {
                [] => None,
                [service] if plain(service) => Some(service.to_string()),
                _ => return None,
            };
            Some(Shortcut::ComposePs {
                project: project.to_string(),
                service,
            })
        }
        ["compose", "--project-name", project, "--project-directory", _, "--file", _, "--profile", _, "port", service, port]
            if plain(service) && port.chars().all(|c| c.is_ascii_digit()) =>
        {
            Some(Shortcut::ComposePort {
                project: project.to_string(),
                service: service.to_string(),
                port: port.to_string(),
            })
        }
        ["inspect", "--format", format, ids @ ..]
            if [STATE_FORMAT, STANDBY_FORMAT, IMAGE_FORMAT].contains(format)
                && !ids.is_empty()
                && ids.iter().all(plain) =>
        {
            Some(Shortcut::Inspect {
                format: format.to_string(),
                ids: ids.iter().map(|i| i.to_string()).collect(),
            })
        }
        ["image", "inspect", "--format", "{{.Id}}", image] if plain(image) => {
            Some(Shortcut::ImageId {
                image: image.to_string(),
            })
        }
        ["image", "inspect", "--format", format, image] if plain(image) => {
            Some(Shortcut::ImageLabel {
                image: image.to_string(),
                label: indexed_key(format, ".Config.Labels")?,
            })
        }
        ["volume", "inspect", "--format", "{{.Name}}", names @ ..]
            if !names.is_empty() && names.iter().all(plain) =>
        {
            Some(Shortcut::Volumes {
                names: names.iter().map(|n| n.to_string()).collect(),
            })
        }
        ["network", "inspect", "--format", format, name] if plain(name) => {
            Some(Shortcut::NetworkOption {
                name: name.to_string(),
                option: indexed_key(format, ".Options")?,
            })
        }
        ["ps", "--quiet", filters @ .., "--filter", "status=running"] if !filters.is_empty() => {
            let labels = filters
                .chunks(2)
                .map(|pair| match pair {
                    ["--filter", filter] => filter
                        .strip_prefix("label=")
                        .filter(|l| l.contains('=') && !l.contains(',')),
                    _ => None,
                })
                .collect::<Option<Vec<&str>>>()?;
            Some(Shortcut::RunningLabelled {
                labels: labels.iter().map(|l| l.to_string()).collect(),
            })
        }
        [kind @ ("network" | "volume"), "inspect", name] if plain(name) => Some(Shortcut::Exists {
            kind: if *kind == "network" {
                "networks"
            } else {
                "volumes"
            },
            name: name.to_string(),
        }),
        _ => None,
    }
}

/// `KEY` of the format `{{index MAP "KEY"}}`, a key of plain characters.
fn indexed_key(format: &str, map: &str) -> Option<String> {
    let key = format
        .strip_prefix(&format!("{{{{index {map} \""))?
        .strip_suffix("\"}}")?;
    let simple = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    (!key.is_empty() && key.chars().all(simple)).then(|| key.to_string())
}

/// Whether `cmd` will be answered by the API (for `-v`).
pub fn applies(cmd: &Cmd) -> bool {
    parse(cmd).is_some() && Engine::local().is_some()
}

/// `cmd`'s output as the CLI would give it, from the engine's API; `None` when the CLI must run
/// it (not a shortcut, no local engine, or the engine could not be asked).
pub fn answer(cmd: &Cmd) -> Option<Result<Output>> {
    let shortcut = parse(cmd)?;
    let engine = Engine::local()?;
    match shortcut {
        // A file's presence or content: read from the container's filesystem, no process.
        Shortcut::Exec { id, argv } if file_read(&argv).is_some() => {
            let (test, path) = file_read(&argv)?;
            let file = match engine.read_file(&id, path) {
                Ok(Some(file)) => file,
                Ok(None) => return None,
                Err(err) if err.to_string().starts_with("cannot connect") => return None,
                Err(err) => return Some(Err(err)),
            };
            Some(Ok(match (file, test) {
                (Some(_), true) => output(0, Vec::new(), Vec::new()),
                (Some(bytes), false) => output(0, bytes, Vec::new()),
                (None, true) => output(1, Vec::new(), Vec::new()),
                (None, false) => output(
                    1,
                    Vec::new(),
                    format!("cat: {path}: No such file or directory\n").into_bytes(),
                ),
            }))
        }
        Shortcut::Exec { id, argv } => match engine.exec(&id, &argv) {
            Ok(Some(out)) => Some(Ok(output(out.code, out.stdout, out.stderr))),
            // No such container, or the socket failed before the command ran: the CLI says
            // what is wrong.
            Ok(None) => None,
            Err(err) if err.to_string().starts_with("cannot connect") => None,
            Err(err) => Some(Err(err)),
        },
        Shortcut::ComposePs { project, service } => {
            let mut labels = vec![format!("com.docker.compose.project={project}")];
            if let Some(service) = service {
                labels.push(format!("com.docker.compose.service={service}"));
            }
            let ids = engine.containers_labelled(&labels).ok()?;
            Some(Ok(lines(&ids)))
        }
        Shortcut::ComposePort {
            project,
            service,
            port,
        } => {
            let labels = [
                format!("com.docker.compose.project={project}"),
                format!("com.docker.compose.service={service}"),
            ];
            let ids = engine.containers_labelled(&labels).ok()?;
            let json = engine.container(ids.first()?).ok()??;
            // The first binding, as `compose port` prints it; none: the CLI says so.
            let binding = json
                .get("NetworkSettings")?
                .get("Ports")?
                .get(&format!("{port}/tcp"))?
                .items()
                .first()?
                .clone();
            let ip = binding.get("HostIp").and_then(Json::as_str).unwrap_or("");
            let host_port = binding.get("HostPort").and_then(Json::as_str)?;
            Some(Ok(lines(&[format!("{ip}:{host_port}")])))
        }
        Shortcut::Inspect { format, ids } => {
            let mut out = Vec::new();
            for id in &ids {
                // A missing container: the CLI's own error message.
                let json = engine.container(id).ok()??;
                out.push(render(&format, &json)?);
            }
            Some(Ok(lines(&out)))
        }
        Shortcut::ImageId { image } => {
            let info = engine.image(&image).ok()?;
            Some(Ok(match info {
                Some(info) => lines(&[info.id]),
                None => output(
                    1,
                    Vec::new(),
                    format!("Error: No such image: {image}\n").into_bytes(),
                ),
            }))
        }
        Shortcut::ImageLabel { image, label } => {
            let value = engine.image_label(&image, &label).ok()?;
            Some(Ok(match value {
                // The engine's CLI (20.10) prints an empty line for a label the image lacks.
                Some(value) => lines(&[value.unwrap_or_default()]),
                None => output(
                    1,
                    Vec::new(),
                    format!("Error: No such image: {image}\n").into_bytes(),
                ),
            }))
        }
        Shortcut::Volumes { names } => {
            // As the CLI: the names found, then an error for each missing one.
            let (mut found, mut errors) = (Vec::new(), String::new());
            for name in names {
                match engine.get(&format!("/volumes/{name}")).ok()?.status {
                    200 => found.push(name),
                    404 => errors.push_str(&format!(
                        "Error response from daemon: get {name}: no such volume\n"
                    )),
                    _ => return None,
                }
            }
            let listed = lines(&found);
            let code = if errors.is_empty() { 0 } else { 1 };
            Some(Ok(output(code, listed.stdout, errors.into_bytes())))
        }
        Shortcut::NetworkOption { name, option } => {
            let answer = engine.get(&format!("/networks/{name}")).ok()?;
            Some(Ok(match answer.status {
                200 => {
                    let json = crate::json::parse(&answer.body).ok()?;
                    // A missing option (or no options at all): the empty line the CLI prints.
                    let value = json
                        .get("Options")
                        .and_then(|o| o.get(&option))
                        .and_then(Json::as_str)
                        .unwrap_or("");
                    lines(&[value.to_string()])
                }
                // The CLI (20.10) prints an empty line before its error.
                404 => output(
                    1,
                    b"\n".to_vec(),
                    format!("Error response from daemon: network {name} not found\n").into_bytes(),
                ),
                _ => return None,
            }))
        }
        Shortcut::RunningLabelled { labels } => {
            let ids = engine.running_labelled(&labels).ok()?;
            Some(Ok(lines(&ids)))
        }
        Shortcut::Exists { kind, name } => {
            let answer = engine.get(&format!("/{kind}/{name}")).ok()?;
            Some(Ok(match answer.status {
                200 => output(0, answer.bytes, Vec::new()),
                404 => output(
                    1,
                    Vec::new(),
                    format!("Error: No such {kind}: {name}\n").into_bytes(),
                ),
                _ => return None,
            }))
        }
    }
}

/// An action a switch of the edge runs (each on a deploy's or a rollback's critical path, where
/// the CLI's start costs more than the work): the file write and rename of
/// [`crate::deploy::stack::write_in_edge`], the removal of the canary files and the graceful
/// reload (`nginx -s reload`: its exit status says whether the configuration was taken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `docker exec ID mv -f FROM TO`, `docker exec ID rm -f PATH...`,
    /// `docker exec ID nginx -s reload`
    Exec { id: String, argv: Vec<String> },
    /// `docker exec -i ID dd of=PATH status=none` with stdin: the file written whole.
    Write {
        id: String,
        path: String,
        bytes: Vec<u8>,
    },
}

/// The API form of the action `cmd`, if it is one of the shapes of [`Action`] (pure).
pub fn parse_action(cmd: &Cmd) -> Option<Action> {
    if cmd.program != "docker" || cmd.env.iter().any(|(k, _)| k.starts_with("DOCKER_")) {
        return None;
    }
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    let plain = |word: &&str| !word.starts_with('-') && !word.is_empty();
    let absolute = |p: &str| p.starts_with('/') && !p.split('/').any(|part| part == "..");
    let exec = |id: &str, argv: &[&str]| Action::Exec {
        id: id.to_string(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
    };
    match (args.as_slice(), &cmd.stdin) {
        (["exec", "-i", id, "dd", of, "status=none"], Some(bytes)) if plain(id) => {
            let path = of.strip_prefix("of=").filter(|p| absolute(p))?;
            Some(Action::Write {
                id: id.to_string(),
                path: path.to_string(),
                bytes: bytes.clone(),
            })
        }
        (["exec", id, argv @ ..], None) if plain(id) => match argv {
            ["mv", "-f", from, to] if absolute(from) && absolute(to) => Some(exec(id, argv)),
            ["rm", "-f", paths @ ..] if !paths.is_empty() && paths.iter().all(|p| absolute(p)) => {
                Some(exec(id, argv))
            }
            ["nginx", "-s", "reload"] => Some(exec(id, argv)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the action `cmd` will be done through the API (for `-v`).
pub fn acts(cmd: &Cmd) -> bool {
    parse_action(cmd).is_some() && Engine::local().is_some()
}

/// Does the action `cmd` through the engine's API and returns what the CLI would have given;
/// `None` when the CLI must run it (not such an action, no local engine, or the engine could
/// not be reached before anything was done).
pub fn act(cmd: &Cmd) -> Option<Result<Output>> {
    let action = parse_action(cmd)?;
    let engine = Engine::local()?;
    let unreachable = |err: &anyhow::Error| err.to_string().starts_with("cannot connect");
    match action {
        Action::Write { id, path, bytes } => match engine.write_file(&id, &path, &bytes) {
            Ok(Some(())) => Some(Ok(output(0, Vec::new(), Vec::new()))),
            Ok(None) => None,
            Err(err) if unreachable(&err) => None,
            Err(err) => Some(Err(err)),
        },
        Action::Exec { id, argv } => match engine.exec(&id, &argv) {
            Ok(Some(out)) => Some(Ok(output(out.code, out.stdout, out.stderr))),
            Ok(None) => None,
            Err(err) if unreachable(&err) => None,
            Err(err) => Some(Err(err)),
        },
    }
}

/// `test -f PATH` (true) or `cat PATH` (false) of one absolute path.
fn file_read(argv: &[String]) -> Option<(bool, &str)> {
    let absolute = |p: &str| p.starts_with('/') && !p.split('/').any(|part| part == "..");
    match argv {
        [test, flag, path] if test == "test" && flag == "-f" && absolute(path) => {
            Some((true, path.as_str()))
        }
        [cat, path] if cat == "cat" && absolute(path) => Some((false, path.as_str())),
        _ => None,
    }
}

/// One of the formats above, from `GET /containers/ID/json`.
fn render(format: &str, json: &Json) -> Option<String> {
    let text = |value: Option<&Json>| value.and_then(Json::as_str).unwrap_or("").to_string();
    let state = json.get("State")?;
    let config = json.get("Config")?;
    let service = text(
        config
            .get("Labels")
            .and_then(|l| l.get("com.docker.compose.service")),
    );
    let status = text(state.get("Status"));
    let image = text(config.get("Image"));
    if format == IMAGE_FORMAT {
        return Some(image);
    }
    if format == STANDBY_FORMAT {
        return Some(format!("{status} {image} {service}"));
    }
    let health = match state.get("Health") {
        Some(Json::Object(_)) => text(state.get("Health").and_then(|h| h.get("Status"))),
        _ => "none".to_string(),
    };
    let restarts = json.get("RestartCount").and_then(Json::as_u64).unwrap_or(0);
    let mut line = format!("{status} {health} {restarts} {service}");
    for word in config
        .get("Healthcheck")
        .and_then(|h| h.get("Test"))
        .map(Json::strings)
        .unwrap_or_default()
    {
        line.push(' ');
        line.push_str(word);
    }
    Some(line)
}

fn lines(items: &[String]) -> Output {
    let mut text = String::new();
    for item in items {
        text.push_str(item);
        text.push('\n');
    }
    output(0, text.into_bytes(), Vec::new())
}

fn output(code: i32, stdout: Vec<u8>, stderr: Vec<u8>) -> Output {
    Output {
        status: ExitStatus::from_raw((code & 0xff) << 8),
        stdout,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(args: &[&str]) -> Cmd {
        Cmd::new("docker").args(args.iter().copied())
    }

    #[test]
    fn only_exact_shapes_are_shortcuts() {
        assert_eq!(
            parse(&docker(&["exec", "c1", "nginx-healthcheck", "/health"])),
            Some(Shortcut::Exec {
                id: "c1".into(),
                argv: vec!["nginx-healthcheck".into(), "/health".into()]
            })
        );
        let label = "{{index .Config.Labels \"org.kiora.release-command\"}}";
        assert_eq!(
            parse(&docker(&["image", "inspect", "--format", label, "r/php:1"])),
            Some(Shortcut::ImageLabel {
                image: "r/php:1".into(),
                label: "org.kiora.release-command".into()
            })
        );
        for format in ["{{index .Config.Labels \"a b\"}}", "{{json .Config}}"] {
            assert_eq!(
                parse(&docker(&[
                    "image", "inspect", "--format", format, "r/php:1"
                ])),
                None
            );
        }
        // stdin, flags, a remote target, another engine: the CLI.
        assert_eq!(parse(&docker(&["exec", "-i", "c1", "dd"])), None);
        assert_eq!(parse(&docker(&["exec", "c1", "dd"]).stdin("x")), None);
        assert_eq!(parse(&docker(&["exec", "c1"])), None);
        assert_eq!(
            parse(&Cmd::new("ssh").args(["h", "--", "docker exec c1 true"])),
            None
        );
        assert_eq!(
            parse(&docker(&["exec", "c1", "true"]).env("DOCKER_HOST", "tcp://x:2375")),
            None
        );
        let compose = crate::docker::compose("crm-blue", "/srv/crm").args([
            "--file",
            "/srv/crm/compose.yaml",
            "ps",
            "--all",
            "--quiet",
        ]);
        assert_eq!(
            parse(&compose.clone().env("CRM_STACK", "crm")),
            Some(Shortcut::ComposePs {
                project: "crm-blue".into(),
                service: None
            })
        );
        assert_eq!(
            parse(&compose.clone().arg("nginx")),
            Some(Shortcut::ComposePs {
                project: "crm-blue".into(),
                service: Some("nginx".into())
            })
        );
        assert_eq!(parse(&compose.clone().args(["a", "b"])), None);
        let port = crate::docker::compose("crm-edge", "/srv/crm").args([
            "--file",
            "/srv/crm/compose.yaml",
            "--profile",
            "edge",
            "port",
            "edge",
            "80",
        ]);
        assert_eq!(
            parse(&port),
            Some(Shortcut::ComposePort {
                project: "crm-edge".into(),
                service: "edge".into(),
                port: "80".into()
            })
        );
        assert_eq!(
            parse(&docker(&["inspect", "--format", IMAGE_FORMAT, "c1", "c2"])),
            Some(Shortcut::Inspect {
                format: IMAGE_FORMAT.into(),
                ids: vec!["c1".into(), "c2".into()]
            })
        );
        assert_eq!(
            parse(&docker(&["inspect", "--format", "{{.Id}}", "c1"])),
            None
        );
        assert_eq!(
            parse(&crate::docker::image_exists("r/a:1")),
            Some(Shortcut::ImageId {
                image: "r/a:1".into()
            })
        );
        assert_eq!(
            parse(&docker(&["volume", "inspect", "crm_data"])),
            Some(Shortcut::Exists {
                kind: "volumes",
                name: "crm_data".into()
            })
        );
        assert_eq!(parse(&docker(&["volume", "create", "crm_data"])), None);
        assert_eq!(
            parse(&docker(&[
                "volume",
                "inspect",
                "--format",
                "{{.Name}}",
                "a",
                "b"
            ])),
            Some(Shortcut::Volumes {
                names: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            parse(&crate::deploy::stack::edge_network_binding("crm_edge")),
            Some(Shortcut::NetworkOption {
                name: "crm_edge".into(),
                option: "com.docker.network.bridge.host_binding_ipv4".into()
            })
        );
        assert_eq!(
            parse(&docker(&[
                "network",
                "inspect",
                "--format",
                "{{json .}}",
                "n"
            ])),
            None
        );
        assert_eq!(
            parse(&crate::deploy::backups::db_container_query("crm")),
            Some(Shortcut::RunningLabelled {
                labels: vec![
                    "com.docker.compose.project=crm-db".into(),
                    "com.docker.compose.service=db".into()
                ]
            })
        );
        for args in [
            &["ps", "--quiet", "--filter", "status=running"][..],
            &[
                "ps",
                "--quiet",
                "--filter",
                "name=x",
                "--filter",
                "status=running",
            ],
            &[
                "ps",
                "--quiet",
                "--all",
                "--filter",
                "label=a=b",
                "--filter",
                "status=running",
            ],
            &["ps", "--quiet", "--filter", "label=a=b"],
        ] {
            assert_eq!(parse(&docker(args)), None, "{args:?}");
        }
    }

    #[test]
    fn only_the_edge_switchs_actions_go_through_the_api() {
        let write = docker(&["exec", "-i", "e1", "dd", "of=/etc/x.new", "status=none"]);
        assert_eq!(
            parse_action(&write.clone().stdin("conf")),
            Some(Action::Write {
                id: "e1".into(),
                path: "/etc/x.new".into(),
                bytes: b"conf".to_vec()
            })
        );
        assert_eq!(parse_action(&write), None, "dd without stdin");
        let exec = |argv: &[&str]| Action::Exec {
            id: "e1".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        };
        for argv in [
            &["mv", "-f", "/etc/x.new", "/etc/x"][..],
            &["rm", "-f", "/etc/a", "/var/log/b"],
            &["nginx", "-s", "reload"],
        ] {
            let mut args = vec!["exec", "e1"];
            args.extend(argv);
            assert_eq!(parse_action(&docker(&args)), Some(exec(argv)), "{argv:?}");
        }
        for args in [
            &["exec", "e1", "mv", "/a", "/b"][..],
            &["exec", "e1", "rm", "-rf", "/a"],
            &["exec", "e1", "rm", "-f", "../a"],
            &["exec", "e1", "nginx", "-s", "stop"],
            &["exec", "e1", "nginx", "-s", "reload", "-c", "/x"],
            &["exec", "e1", "sh", "-c", "true"],
            &["exec", "-i", "e1", "dd", "of=rel", "status=none"],
            &["exec", "--user", "1", "e1", "nginx", "-s", "reload"],
            &["run", "e1", "nginx", "-s", "reload"],
        ] {
            assert_eq!(parse_action(&docker(args)), None, "{args:?}");
            assert_eq!(
                parse_action(&docker(args).stdin("x")),
                None,
                "{args:?} + stdin"
            );
        }
        assert_eq!(
            parse_action(&docker(&["exec", "e1", "rm", "-f", "/a"]).stdin("x")),
            None,
            "stdin an exec would not get"
        );
        assert_eq!(
            parse_action(&Cmd::new("ssh").args(["h", "docker", "exec", "e1", "nginx"])),
            None
        );
    }

    #[test]
    fn formats_render_like_the_cli() {
        let json = crate::json::parse(
            r#"{"State":{"Status":"running","Health":{"Status":"starting"}},"RestartCount":2,
                "Config":{"Image":"r/php:1","Labels":{"com.docker.compose.service":"php"},
                "Healthcheck":{"Test":["CMD","php","/hc.php"]}}}"#,
        )
        .unwrap();
        assert_eq!(
            render(STATE_FORMAT, &json).unwrap(),
            "running starting 2 php CMD php /hc.php"
        );
        assert_eq!(
            render(STANDBY_FORMAT, &json).unwrap(),
            "running r/php:1 php"
        );
        assert_eq!(render(IMAGE_FORMAT, &json).unwrap(), "r/php:1");
        let bare = crate::json::parse(
            r#"{"State":{"Status":"exited","Health":null},"RestartCount":0,"Config":{"Image":"i","Labels":{},"Healthcheck":null}}"#,
        )
        .unwrap();
        assert_eq!(render(STATE_FORMAT, &bare).unwrap(), "exited none 0 ");
    }

    /// The real engine, when there is one here: the shortcut answers as the CLI does.
    #[test]
    fn answers_like_the_cli_when_an_engine_runs() {
        if Engine::local().is_none() || !std::path::Path::new("/var/run/docker.sock").exists() {
            return;
        }
        let name = format!("xtask-shortcut-{}", std::process::id());
        let image = crate::config::Config::default().os_image;
        let started = std::process::Command::new("docker")
            .args(["run", "--detach", "--name", &name, "--network", "none"])
            .args(["--label", &format!("xtask-shortcut={name}")])
            .args(["--health-cmd", "true", "--health-interval", "1h", &image])
            .args(["sleep", "60"])
            .output()
            .unwrap();
        if !started.status.success() {
            return;
        }
        // Removed below whatever happens.
        let (volume, network) = (format!("{name}-v"), format!("{name}-n"));
        for args in [
            ["volume", "create", &volume],
            ["network", "create", &network],
        ] {
            let _ = std::process::Command::new("docker").args(args).output();
        }
        let result = std::panic::catch_unwind(|| {
            let cmd = docker(&["exec", &name, "sh", "-c", "echo out; echo err >&2; exit 3"]);
            let api = answer(&cmd).expect("answered").unwrap();
            assert_eq!(api.status.code(), Some(3));
            assert_eq!(api.stdout, b"out\n");
            assert_eq!(api.stderr, b"err\n");
            let cmd = docker(&["inspect", "--format", STATE_FORMAT, &name]);
            let cli = std::process::Command::new("docker")
                .args(&cmd.args)
                .output()
                .unwrap();
            let api = answer(&cmd).expect("answered").unwrap();
            assert_eq!(
                String::from_utf8_lossy(&api.stdout),
                String::from_utf8_lossy(&cli.stdout)
            );
            let cat = answer(&docker(&["exec", &name, "cat", "/etc/hostname"]))
                .unwrap()
                .unwrap();
            assert!(cat.status.success() && !cat.stdout.is_empty(), "{cat:?}");
            let test = |path: &str| {
                answer(&docker(&["exec", &name, "test", "-f", path]))
                    .unwrap()
                    .unwrap()
                    .status
                    .success()
            };
            assert!(test("/etc/hostname"));
            assert!(!test("/etc/xtask-no-such-file"));
            let missing = docker(&["image", "inspect", "--format", "{{.Id}}", "xtask-none:0"]);
            assert!(!answer(&missing).unwrap().unwrap().status.success());
            // A label the image has not (here: no labels at all), as the CLI says it.
            for label in [
                "org.kiora.release-command",
                "org.opencontainers.image.revision",
            ] {
                let format = format!("{{{{index .Config.Labels \"{label}\"}}}}");
                let cmd = docker(&["image", "inspect", "--format", &format, &image]);
                let cli = std::process::Command::new("docker")
                    .args(&cmd.args)
                    .output()
                    .unwrap();
                let api = answer(&cmd).expect("answered").unwrap();
                assert_eq!(api.stdout, cli.stdout, "{label}");
            }
            // The queries of a deploy's backup step, as the CLI prints them.
            let label = format!("xtask-shortcut={name}");
            for cmd in [
                docker(&["volume", "inspect", "--format", "{{.Name}}", &volume]),
                docker(&[
                    "volume",
                    "inspect",
                    "--format",
                    "{{.Name}}",
                    &volume,
                    "xtask-none",
                ]),
                crate::deploy::stack::edge_network_binding(&network),
                crate::deploy::stack::edge_network_binding("xtask-none"),
                docker(&[
                    "ps",
                    "--quiet",
                    "--filter",
                    &format!("label={label}"),
                    "--filter",
                    "status=running",
                ]),
                docker(&[
                    "ps",
                    "--quiet",
                    "--filter",
                    "label=xtask-none=1",
                    "--filter",
                    "status=running",
                ]),
            ] {
                let cli = std::process::Command::new("docker")
                    .args(&cmd.args)
                    .output()
                    .unwrap();
                let api = answer(&cmd).expect("answered").unwrap();
                assert_eq!(
                    (api.status.success(), &api.stdout),
                    (cli.status.success(), &cli.stdout),
                    "{:?}",
                    cmd.args
                );
            }
            // The edge switch's actions: written whole, renamed over, removed.
            let write = docker(&["exec", "-i", &name, "dd", "of=/tmp/f.new", "status=none"])
                .stdin("set $x 1;\n");
            assert!(act(&write).expect("done").unwrap().status.success());
            let mv = docker(&["exec", &name, "mv", "-f", "/tmp/f.new", "/tmp/f"]);
            assert!(act(&mv).expect("done").unwrap().status.success());
            let cat = answer(&docker(&["exec", &name, "cat", "/tmp/f"]))
                .unwrap()
                .unwrap();
            assert_eq!(cat.stdout, b"set $x 1;\n");
            assert!(!test("/tmp/f.new"));
            let rm = docker(&["exec", &name, "rm", "-f", "/tmp/f", "/tmp/none"]);
            assert!(act(&rm).expect("done").unwrap().status.success());
            assert!(!test("/tmp/f"));
        });
        for args in [
            ["rm", "--force", &name],
            ["volume", "rm", &volume],
            ["network", "rm", &network],
        ] {
            let _ = std::process::Command::new("docker").args(args).output();
        }
        result.unwrap();
    }
}
