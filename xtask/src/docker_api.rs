//! The Docker engine's HTTP API over its unix socket, for read-only queries where starting the
//! docker CLI (50-100 ms each) costs more than the answer: the engine's version, an image's ID,
//! size and digests, the images carrying a label. Nothing here changes anything: commands that
//! do stay `Cmd`s run by the `Runner` (`docker.rs`).
//!
//! Spoken only where it is certainly the engine the CLI would talk to: `DOCKER_HOST` unset (the
//! default socket) or `unix://PATH`, and no Docker context selected (`DOCKER_CONTEXT`, or
//! `currentContext` in the CLI's config.json). Elsewhere (tcp, ssh, contexts) [`Engine::local`]
//! says `None`, and any error here (no socket, no permission) makes the callers in `docker.rs`
//! fall back to the CLI, which then says what is wrong.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::http::{self, Request, Response};
use crate::json::{self, Json};

const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The local engine, reached on its unix socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Engine {
    pub socket: PathBuf,
}

/// What `GET /images/NAME/json` says of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub size: u64,
    /// `REPOSITORY@sha256:...`, one per registry repository it was pushed to or pulled from.
    pub repo_digests: Vec<String>,
}

/// One image of `GET /images/json`: its ID and every `REPOSITORY:TAG` it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedImage {
    pub id: String,
    pub tags: Vec<String>,
}

impl Engine {
    /// The engine of this process's environment, when the API may be spoken to directly.
    pub fn local() -> Option<Engine> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let config = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| Path::new(&home).join(".docker")))
            .and_then(|dir| std::fs::read_to_string(dir.join("config.json")).ok());
        let socket = socket_for(
            env("DOCKER_HOST").as_deref(),
            env("DOCKER_CONTEXT").as_deref(),
            config.as_deref(),
        )?;
        Some(Engine { socket })
    }

    /// `GET path` on the socket.
    pub fn get(&self, path: &str) -> Result<Response> {
        let stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        // The engine ignores the host; HTTP/1.0 wants one all the same.
        http::exchange(stream, "docker", &Request::get(path))
    }

    fn get_json(&self, path: &str) -> Result<Option<Json>> {
        let answer = self.get(path)?;
        match answer.status {
            200 => json::parse(&answer.body)
                .map(Some)
                .with_context(|| format!("GET {path}: not the JSON expected")),
            404 => Ok(None),
            status => bail!("GET {path}: HTTP {status} {}", answer.body.trim()),
        }
    }

    /// The engine's version (`docker version --format {{.Server.Version}}`).
    pub fn version(&self) -> Result<String> {
        let json = self.get_json("/version")?.context("GET /version: 404")?;
        json.get("Version")
            .and_then(Json::as_str)
            .map(String::from)
            .context("GET /version: no Version")
    }

    /// `docker image inspect NAME` (`None`: no such image).
    pub fn image(&self, name: &str) -> Result<Option<ImageInfo>> {
        let Some(json) = self.get_json(&image_path(name))? else {
            return Ok(None);
        };
        Ok(Some(ImageInfo {
            id: json
                .get("Id")
                .and_then(Json::as_str)
                .context("an image without an Id")?
                .to_string(),
            size: json.get("Size").and_then(Json::as_u64).unwrap_or(0),
            repo_digests: json
                .get("RepoDigests")
                .map(|d| d.strings().into_iter().map(String::from).collect())
                .unwrap_or_default(),
        }))
    }

    /// The value of `label` on image `name`: `None` when there is no such image, `Some(None)`
    /// when it has no such label.
    pub fn image_label(&self, name: &str, label: &str) -> Result<Option<Option<String>>> {
        let Some(json) = self.get_json(&image_path(name))? else {
            return Ok(None);
        };
        Ok(Some(
            json.get("Config")
                .and_then(|c| c.get("Labels"))
                .and_then(|l| l.get(label))
                .and_then(Json::as_str)
                .map(String::from),
        ))
    }

    /// `docker image ls --filter label=LABEL`: the images carrying `label` (`KEY` or `KEY=VALUE`).
    pub fn images_labelled(&self, label: &str) -> Result<Vec<ListedImage>> {
        let json = self
            .get_json(&images_path(label))?
            .context("GET /images/json: 404")?;
        Ok(json
            .items()
            .iter()
            .filter_map(|image| {
                Some(ListedImage {
                    id: image.get("Id")?.as_str()?.to_string(),
                    tags: image
                        .get("RepoTags")
                        .map(|t| t.strings().into_iter().map(String::from).collect())
                        .unwrap_or_default(),
                })
            })
            .collect())
    }
}

/// The socket to speak to, from `DOCKER_HOST`, `DOCKER_CONTEXT` and the CLI's config.json; `None`
/// where the CLI would go elsewhere than a local unix socket.
fn socket_for(host: Option<&str>, context: Option<&str>, config: Option<&str>) -> Option<PathBuf> {
    if context.is_some_and(|c| c != "default") {
        return None;
    }
    match host {
        // DOCKER_HOST wins over the config's context.
        Some(host) => host.strip_prefix("unix://").map(PathBuf::from),
        None => {
            let current = config
                .and_then(|text| json::parse(text).ok())
                .and_then(|json| json.get("currentContext")?.as_str().map(String::from));
            match current.as_deref() {
                Some(context) if !context.is_empty() && context != "default" => None,
                _ => Some(PathBuf::from(DEFAULT_SOCKET)),
            }
        }
    }
}

/// `/images/NAME/json`, the name escaped where a path needs it (`/` and `:` stay: the engine's
/// route takes the rest of the path as the name).
fn image_path(name: &str) -> String {
    format!("/images/{}/json", escape(name, b"/:@"))
}

/// `/images/json?filters={"label":["LABEL"]}`, escaped.
fn images_path(label: &str) -> String {
    let filters = format!("{{\"label\":[\"{}\"]}}", json_escape(label));
    format!("/images/json?filters={}", escape(&filters, b""))
}

fn json_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Percent-encodes every byte but unreserved ones and `keep`.
fn escape(text: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_unix_socket_is_spoken_to() {
        let default = Some(PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(socket_for(None, None, None), default);
        assert_eq!(
            socket_for(Some("unix:///tmp/m1/sock"), None, None),
            Some(PathBuf::from("/tmp/m1/sock"))
        );
        assert_eq!(socket_for(Some("tcp://10.0.0.1:2375"), None, None), None);
        assert_eq!(socket_for(Some("ssh://me@host"), None, None), None);
        assert_eq!(socket_for(None, Some("remote"), None), None);
        assert_eq!(socket_for(None, Some("default"), None), default);
        let context = r#"{"auths":{},"currentContext":"prod"}"#;
        assert_eq!(socket_for(None, None, Some(context)), None);
        // DOCKER_HOST overrides the config's context, as the CLI does.
        assert_eq!(
            socket_for(Some("unix:///s"), None, Some(context)),
            Some(PathBuf::from("/s"))
        );
        assert_eq!(
            socket_for(None, None, Some(r#"{"currentContext":"default"}"#)),
            default
        );
        assert_eq!(socket_for(None, None, Some("not json")), default);
    }

    #[test]
    fn paths_are_escaped_for_the_engine() {
        assert_eq!(
            image_path("127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0"),
            "/images/127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0/json"
        );
        assert_eq!(image_path("a b?"), "/images/a%20b%3F/json");
        assert_eq!(
            images_path("org.kiora.build.inputs=ab12"),
            "/images/json?filters=%7B%22label%22%3A%5B%22org.kiora.build.inputs%3Dab12%22%5D%7D"
        );
    }

    /// The real engine, when there is one here (the e2e tests cover the paths that use it).
    #[test]
    fn answers_like_the_cli_when_an_engine_runs() {
        let Some(engine) = Engine::local() else {
            return;
        };
        let Ok(version) = engine.version() else {
            return;
        };
        let cli = std::process::Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
            .unwrap();
        assert_eq!(version, String::from_utf8_lossy(&cli.stdout).trim());
        // The OS image (every build starts from it; the shared engine keeps it): the same ID
        // and size as `docker image inspect` says.
        let name = crate::config::Config::default().os_image;
        let cli = std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}} {{.Size}}", &name])
            .output()
            .unwrap();
        if cli.status.success() {
            let info = engine.image(&name).unwrap().expect("an image the CLI sees");
            assert_eq!(
                format!("{} {}", info.id, info.size),
                String::from_utf8_lossy(&cli.stdout).trim(),
                "{name}"
            );
        }
        assert_eq!(engine.image("xtask-no-such-image:0").unwrap(), None);
        assert!(engine
            .images_labelled("xtask.no-such-label=1")
            .unwrap()
            .is_empty());
    }
}
