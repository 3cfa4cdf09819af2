//! The Docker engine's HTTP API over its unix socket, where starting the docker CLI (50-100 ms
//! each) costs more than the answer: the engine's version, an image's ID, size and digests, the
//! images carrying a label, a container's state, the containers of a Compose project, and
//! `docker exec` of a short read-only command (a health probe). Image queries are called from
//! `docker.rs`; the container calls answer the read-only CLI commands `api_shortcut.rs`
//! recognizes, which stay `Cmd`s run by the `Runner` (so `--dry-run` and `-v` see them as
//! before). Actions stay docker commands, but for the few a build-app does many of where the
//! CLI's start is most of its cost (`docker tag`, and the create/copy/remove of a container to
//! read a directory of an image): `docker.rs` still builds their `Cmd`s for `--dry-run` and `-v`.
//!
//! Spoken only where it is certainly the engine the CLI would talk to: `DOCKER_HOST` unset (the
//! default socket) or `unix://PATH`, and no Docker context selected (`DOCKER_CONTEXT`, or
//! `currentContext` in the CLI's config.json). Elsewhere (tcp, ssh, contexts) [`Engine::local`]
//! says `None`, and any error here (no socket, no permission) makes the callers fall back to
//! the CLI, which then says what is wrong.

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

    /// The ID of image `name` and the value of its `label`: `None` when there is no such image.
    pub fn image_id_label(
        &self,
        name: &str,
        label: &str,
    ) -> Result<Option<(String, Option<String>)>> {
        let Some(json) = self.get_json(&image_path(name))? else {
            return Ok(None);
        };
        let id = json
            .get("Id")
            .and_then(Json::as_str)
            .context("an image without an Id")?
            .to_string();
        let value = json
            .get("Config")
            .and_then(|c| c.get("Labels"))
            .and_then(|l| l.get(label))
            .and_then(Json::as_str)
            .map(String::from);
        Ok(Some((id, value)))
    }

    /// `docker tag SOURCE REPOSITORY:TAG` (`POST /images/SOURCE/tag`): an action, one request
    /// instead of a CLI process (50-100 ms).
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let (repository, tag) = split_reference(target)
            .with_context(|| format!("{target}: not a REPOSITORY:TAG reference"))?;
        let path = format!(
            "/images/{}/tag?repo={}&tag={}",
            escape(source, b"/:@"),
            escape(repository, b""),
            escape(tag, b"")
        );
        let answer = self.call(&post(&path, String::new()), Duration::from_secs(10))?;
        match answer.status {
            200 | 201 => Ok(()),
            status => bail!(
                "POST /images/{source}/tag: HTTP {status} {}",
                message(&answer.body)
            ),
        }
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

/// What `docker exec` of a command printed, and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Engine {
    /// One request on the socket, answered within `timeout`.
    fn call(&self, request: &Request, timeout: Duration) -> Result<Response> {
        let stream = UnixStream::connect(&self.socket)
            .with_context(|| format!("cannot connect to {}", self.socket.display()))?;
        stream.set_read_timeout(Some(timeout))?;
        http::exchange(stream, "docker", request)
    }

    /// `GET /containers/ID/json` (`None`: no such container).
    pub fn container(&self, id: &str) -> Result<Option<Json>> {
        self.get_json(&format!("/containers/{}/json", escape(id, b"")))
    }

    /// The IDs of the containers (running or not) carrying every one of `labels` (`KEY=VALUE`),
    /// one-off ones (`compose run`) left out, as `docker compose ps --all --quiet` lists them.
    pub fn containers_labelled(&self, labels: &[String]) -> Result<Vec<String>> {
        let json = self.containers_with(labels, false)?;
        Ok(json
            .items()
            .iter()
            .filter(|c| {
                c.get("Labels")
                    .and_then(|l| l.get("com.docker.compose.oneoff"))
                    .and_then(Json::as_str)
                    != Some("True")
            })
            .filter_map(|c| Some(c.get("Id")?.as_str()?.to_string()))
            .collect())
    }

    /// The IDs of the running containers carrying every one of `labels` (`KEY=VALUE`), as
    /// `docker ps --quiet --filter label=... --filter status=running` prints them (short).
    pub fn running_labelled(&self, labels: &[String]) -> Result<Vec<String>> {
        let json = self.containers_with(labels, true)?;
        Ok(json
            .items()
            .iter()
            .filter_map(|c| Some(c.get("Id")?.as_str()?.chars().take(12).collect()))
            .collect())
    }

    /// `GET /containers/json` of the containers carrying every one of `labels`: the running
    /// ones, or all of them.
    fn containers_with(&self, labels: &[String], running: bool) -> Result<Json> {
        let status = if running {
            ",\"status\":[\"running\"]"
        } else {
            ""
        };
        let filters = format!("{{\"label\":{}{status}}}", json_array(labels));
        let all = if running { "" } else { "all=1&" };
        let path = format!("/containers/json?{all}filters={}", escape(&filters, b""));
        self.get_json(&path)?.context("GET /containers/json: 404")
    }

    /// `docker exec ID ARGV...` without a terminal or stdin: its output and exit code, or `None`
    /// when the container does not exist. A container that is not running answers as the CLI
    /// does: exit code 1 and the engine's message on stderr.
    pub fn exec(&self, id: &str, argv: &[String]) -> Result<Option<ExecOutput>> {
        let body = format!(
            "{{\"AttachStdout\":true,\"AttachStderr\":true,\"Cmd\":{}}}",
            json_array(argv)
        );
        let created = self.call(
            &post(&format!("/containers/{}/exec", escape(id, b"")), body),
            Duration::from_secs(10),
        )?;
        match created.status {
            201 => {}
            404 => return Ok(None),
            _ => {
                return Ok(Some(ExecOutput {
                    code: 1,
                    stdout: Vec::new(),
                    stderr: format!("Error response from daemon: {}\n", message(&created.body))
                        .into_bytes(),
                }))
            }
        }
        let exec = json::parse(&created.body)
            .ok()
            .and_then(|j| j.get("Id")?.as_str().map(String::from))
            .context("POST /containers/ID/exec: no Id")?;
        // The engine takes the connection over and streams the output until the command ends.
        let started = self.call(
            &post(
                &format!("/exec/{exec}/start"),
                "{\"Detach\":false,\"Tty\":false}".into(),
            ),
            EXEC_LIMIT,
        )?;
        if started.status != 200 {
            bail!(
                "POST /exec/ID/start: HTTP {} {}",
                started.status,
                started.body.trim()
            );
        }
        let (stdout, stderr) = demux(&started.bytes);
        // The stream ends with the command; its exit code is recorded a moment later (looked
        // at after 0, 1, 2, 4, 8, then every 10 ms).
        let mut pause = Duration::from_millis(1);
        for _ in 0..60 {
            let json = self
                .get_json(&format!("/exec/{exec}/json"))?
                .context("GET /exec/ID/json: 404")?;
            if json.get("Running") != Some(&Json::Bool(true)) {
                let code = match json.get("ExitCode") {
                    Some(Json::Number(n)) => n.parse().unwrap_or(1),
                    _ => 1,
                };
                return Ok(Some(ExecOutput {
                    code,
                    stdout,
                    stderr,
                }));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        bail!("docker exec in {id}: the command's output ended but it still runs")
    }
}

impl Engine {
    /// A file of a container, read through `GET /containers/ID/archive` (no process started in
    /// it): `Ok(None)` when there is no such file. `None` for the container itself missing.
    pub fn read_file(&self, id: &str, path: &str) -> Result<Option<Option<Vec<u8>>>> {
        let answer = self.call(
            &Request::get(&archive_path(id, path)),
            Duration::from_secs(10),
        )?;
        match answer.status {
            200 => Ok(Some(Some(
                untar_one(&answer.bytes).context("not the tar of one file")?,
            ))),
            404 if answer.body.contains("No such container") => Ok(None),
            404 => Ok(Some(None)),
            status => bail!(
                "GET /containers/ID/archive: HTTP {status} {}",
                answer.body.trim()
            ),
        }
    }
}

impl Engine {
    /// `docker create --name NAME IMAGE` (not started): the container's ID.
    pub fn create_container(&self, name: &str, image: &str) -> Result<String> {
        let body = format!("{{\"Image\":\"{}\"}}", json_escape(image));
        let path = format!("/containers/create?name={}", escape(name, b""));
        let answer = self.call(&post(&path, body), Duration::from_secs(30))?;
        if answer.status != 201 {
            bail!(
                "POST /containers/create: HTTP {} {}",
                answer.status,
                message(&answer.body)
            );
        }
        json::parse(&answer.body)
            .ok()
            .and_then(|j| j.get("Id")?.as_str().map(String::from))
            .context("POST /containers/create: no Id")
    }

    /// A directory of a container as a tar archive whose entries start with its last
    /// component (`GET /containers/ID/archive`).
    pub fn archive(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let answer = self.call(
            &Request::get(&archive_path(id, path)),
            Duration::from_secs(60),
        )?;
        match answer.status {
            200 => Ok(answer.bytes),
            status => bail!(
                "GET /containers/ID/archive: HTTP {status} {}",
                message(&answer.body)
            ),
        }
    }

    /// `docker rm --force ID`.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let request = Request {
            method: "DELETE",
            ..Request::get(&format!("/containers/{}?force=1", escape(id, b"")))
        };
        let answer = self.call(&request, Duration::from_secs(30))?;
        match answer.status {
            204 | 404 => Ok(()),
            status => bail!(
                "DELETE /containers/ID: HTTP {status} {}",
                message(&answer.body)
            ),
        }
    }

    /// Writes `bytes` to the file `path` of a container through `PUT /containers/ID/archive`
    /// (a tar of that one file, mode 0644, root's; no process started in it). `None` for the
    /// container missing. The engine extracts the file whole before it answers.
    pub fn write_file(&self, id: &str, path: &str, bytes: &[u8]) -> Result<Option<()>> {
        let (dir, name) = path
            .rsplit_once('/')
            .filter(|(_, name)| !name.is_empty())
            .with_context(|| format!("not a file path: {path}"))?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let request = Request {
            method: "PUT",
            body: tar_one(name, bytes).context("cannot make the tar of one file")?,
            ..Request::get(&archive_path(id, dir)).header("Content-Type", "application/x-tar")
        };
        let answer = self.call(&request, Duration::from_secs(10))?;
        match answer.status {
            200 => Ok(Some(())),
            404 if answer.body.contains("No such container") => Ok(None),
            status => bail!(
                "PUT /containers/ID/archive: HTTP {status} {}",
                message(&answer.body)
            ),
        }
    }
}

/// `/containers/ID/archive?path=PATH`: a container's files as tar, to read or to write.
fn archive_path(id: &str, path: &str) -> String {
    format!(
        "/containers/{}/archive?path={}",
        escape(id, b""),
        escape(path, b"")
    )
}

/// A tar archive of one regular file `name` (at most 99 bytes, no `/`) holding `bytes`.
fn tar_one(name: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    if name.len() > 99 || name.contains('/') {
        return None;
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], bytes.len() as u64);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    octal(&mut header[136..148], mtime);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as eight spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(bytes);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    Some(tar)
}

/// The content of the first entry of a tar archive, if it is a regular file.
fn untar_one(tar: &[u8]) -> Option<Vec<u8>> {
    let header = tar.get(..512)?;
    // Type flag: '0' or NUL for a regular file.
    if !matches!(header[156], b'0' | 0) {
        return None;
    }
    let size = std::str::from_utf8(&header[124..136])
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size, 8).ok()?;
    tar.get(512..512 + size).map(<[u8]>::to_vec)
}

/// How long a `docker exec` through the API may run (the shortcut is for short commands).
const EXEC_LIMIT: Duration = Duration::from_secs(120);

fn post(path: &str, body: String) -> Request {
    Request {
        method: "POST",
        body: body.into_bytes(),
        ..Request::get(path).header("Content-Type", "application/json")
    }
}

/// The `message` of an engine error answer, else the answer itself.
fn message(body: &str) -> String {
    json::parse(body)
        .ok()
        .and_then(|j| j.get("message")?.as_str().map(String::from))
        .unwrap_or_else(|| body.trim().to_string())
}

/// Splits the engine's multiplexed stream (8-byte frame headers: 1 stdout, 2 stderr, then a
/// big-endian length) into stdout and stderr.
fn demux(mut stream: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while stream.len() >= 8 {
        let len = u32::from_be_bytes([stream[4], stream[5], stream[6], stream[7]]) as usize;
        let end = (8 + len).min(stream.len());
        match stream[0] {
            2 => err.extend_from_slice(&stream[8..end]),
            _ => out.extend_from_slice(&stream[8..end]),
        }
        stream = &stream[end..];
    }
    (out, err)
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

/// `REPOSITORY:TAG` split at the tag's colon (a registry's port is no tag: no `/` after it).
fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let (repository, tag) = reference.rsplit_once(':')?;
    (!tag.contains('/') && !repository.is_empty() && !tag.is_empty()).then_some((repository, tag))
}

/// `/images/json?filters={"label":["LABEL"]}`, escaped.
fn images_path(label: &str) -> String {
    let filters = format!("{{\"label\":[\"{}\"]}}", json_escape(label));
    format!("/images/json?filters={}", escape(&filters, b""))
}

/// `["a","b"]`: a JSON array of strings.
fn json_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|item| format!("\"{}\"", json_escape(item)))
        .collect();
    format!("[{}]", quoted.join(","))
}

/// A string's JSON escaping (without the quotes).
fn json_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
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
    fn a_tag_is_split_from_its_repository_not_from_a_port() {
        assert_eq!(
            split_reference("127.0.0.1:5000/kiora/crm-gdb_php:1.4.0-supervisor"),
            Some(("127.0.0.1:5000/kiora/crm-gdb_php", "1.4.0-supervisor"))
        );
        assert_eq!(
            split_reference("crm-gdb_nginx:1"),
            Some(("crm-gdb_nginx", "1"))
        );
        assert_eq!(split_reference("127.0.0.1:5000/kiora/crm-gdb_php"), None);
        assert_eq!(split_reference("crm-gdb_php:"), None);
    }

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
    fn a_tar_of_one_file_reads_back() {
        let tar = tar_one("live.conf.new", b"set $crm_live \"x:80\";\n").unwrap();
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[..13], b"live.conf.new");
        assert_eq!(
            untar_one(&tar).as_deref(),
            Some(&b"set $crm_live \"x:80\";\n"[..])
        );
        // The checksum field holds the sum of the header's bytes (itself as spaces).
        let mut header = tar[..512].to_vec();
        let stored = std::str::from_utf8(&header[148..154]).unwrap().to_string();
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(&stored, 8).unwrap(), sum);
        assert!(tar_one("a/b", b"").is_none());
        assert!(tar_one(&"n".repeat(100), b"").is_none());
    }

    #[test]
    fn one_file_is_read_from_a_tar() {
        let mut tar = vec![0u8; 1024];
        tar[..8].copy_from_slice(b"live.con");
        tar[124..136].copy_from_slice(b"00000000005\0");
        tar[156] = b'0';
        tar[512..517].copy_from_slice(b"hello");
        assert_eq!(untar_one(&tar).unwrap(), b"hello");
        tar[156] = b'5';
        assert_eq!(untar_one(&tar), None, "a directory is no file");
        assert_eq!(untar_one(b"short"), None);
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
