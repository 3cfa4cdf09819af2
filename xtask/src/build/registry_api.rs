//! The registry's own HTTP API (distribution v2), spoken directly where the docker CLI costs
//! more than the work: giving an existing manifest a new tag (GET it, PUT the same bytes under
//! the new tag: no layer is checked, pulled or pushed) and reading an image's labels from its
//! config blob (a few KB, no layer pulled), so a cold CI runner can find a release already built
//! from the same inputs.
//!
//! Plain HTTP over `std::net` (no TLS, no async): only for registries on loopback, which the
//! engine itself also reaches over plain HTTP. Elsewhere [`Registry::for_image`] says `None` and
//! callers keep the docker CLI (`docker tag` + `docker push`). Credentials: HTTP Basic from
//! `XTASK_REGISTRY_USER` / `XTASK_REGISTRY_PASSWORD` when set; a registry that wants a token is
//! left to the CLI too (any error here makes the caller fall back).

use anyhow::{bail, Context, Result};

use crate::http::{self, Request, Response};
use crate::reference::ImageRef;

/// Every manifest type a release can have: single-platform (Docker, OCI) and lists/indexes.
pub const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// A plain-HTTP registry on loopback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// `HOST:PORT`.
    pub host: String,
    /// `Basic ...`, from the environment.
    auth: Option<String>,
}

/// A manifest as the registry serves it: its bytes are re-sent as they are, so its digest stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    /// The config blob's digest (for a single-platform image: the image ID), if it has one.
    pub fn config_digest(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.bytes).ok()?;
        let config = text.find("\"config\"")?;
        json_string_after(&text[config..], "digest")
    }

    /// The layer digests of a single-platform manifest, bottom first (none for a list).
    pub fn layers(&self) -> Vec<String> {
        let Some(json) = std::str::from_utf8(&self.bytes)
            .ok()
            .and_then(|text| crate::json::parse(text).ok())
        else {
            return Vec::new();
        };
        json.get("layers")
            .map(|layers| {
                layers
                    .items()
                    .iter()
                    .filter_map(|layer| layer.get("digest")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Registry {
    /// The registry of `image` when it can be spoken to here: a loopback host with a port.
    pub fn for_image(image: &ImageRef) -> Option<Registry> {
        let host = image.host();
        let (name, port) = host.rsplit_once(':')?;
        crate::reference::parse_port(port)?;
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return None;
        }
        let auth = match (
            crate::build::login::env(crate::build::login::USER_ENV),
            crate::build::login::env(crate::build::login::PASSWORD_ENV),
        ) {
            (Some(user), Some(password)) => Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            )),
            _ => None,
        };
        Some(Registry {
            host: host.to_string(),
            auth,
        })
    }

    fn send(&self, request: Request) -> Result<Response> {
        let request = match &self.auth {
            Some(auth) => request.header("Authorization", auth),
            None => request,
        };
        http::request(&self.host, &request)
    }

    /// GET the manifest of `image` (`None`: the registry does not have it).
    pub fn manifest(&self, image: &ImageRef) -> Result<Option<Manifest>> {
        let answer = self.send(manifest_get(image))?;
        match answer.status {
            200 => Ok(Some(Manifest {
                media_type: answer
                    .header("content-type")
                    .context("a manifest without a Content-Type")?
                    .to_string(),
                digest: answer
                    .header("docker-content-digest")
                    .context("a manifest without a Docker-Content-Digest")?
                    .to_string(),
                bytes: answer.bytes,
            })),
            404 => Ok(None),
            status => bail!(
                "GET manifest of {image}: HTTP {status} {}",
                answer.body.trim()
            ),
        }
    }

    /// PUT `manifest` under `image`'s tag; returns the digest the registry gives it.
    pub fn put_manifest(&self, image: &ImageRef, manifest: &Manifest) -> Result<String> {
        let answer = self.send(manifest_put(image, manifest))?;
        if answer.status != 201 {
            bail!(
                "PUT manifest {image}: HTTP {} {}",
                answer.status,
                answer.body.trim()
            );
        }
        Ok(answer
            .header("docker-content-digest")
            .unwrap_or(&manifest.digest)
            .to_string())
    }

    /// The value of `label` on the config of `image` (`None`: no such image, a list, or no label).
    pub fn label(
        &self,
        image: &ImageRef,
        manifest: &Manifest,
        label: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .config(image, manifest)?
            .and_then(|config| config_label(&config, label)))
    }

    /// The config blob (JSON) of a single-platform `manifest` of `image` (`None`: a list).
    pub fn config(&self, image: &ImageRef, manifest: &Manifest) -> Result<Option<String>> {
        let Some(config) = manifest.config_digest() else {
            return Ok(None);
        };
        let bytes = self
            .blob(image, &config)
            .with_context(|| format!("reading the config of {image}"))?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A blob of `image`'s repository, whole (a layer: its compressed tar).
    pub fn blob(&self, image: &ImageRef, digest: &str) -> Result<Vec<u8>> {
        let answer = self.send(Request::get(&format!(
            "/v2/{}/blobs/{digest}",
            repository(image)
        )))?;
        if answer.status != 200 {
            bail!("GET blob {digest} of {image}: HTTP {}", answer.status);
        }
        Ok(answer.bytes)
    }

    /// The tags of `image`'s repository, as the registry lists them.
    pub fn tags(&self, image: &ImageRef) -> Result<Vec<String>> {
        let answer = self.send(Request::get(&format!(
            "/v2/{}/tags/list",
            repository(image)
        )))?;
        match answer.status {
            200 => Ok(json_strings_after(&answer.body, "tags")),
            404 => Ok(Vec::new()),
            status => bail!("GET tags of {image}: HTTP {status}"),
        }
    }
}

/// The value of `label` in an image config blob (JSON), if it has one.
pub fn config_label(config: &str, label: &str) -> Option<String> {
    let labels = config.find("\"Labels\"")?;
    json_string_after(&config[labels..], label)
}

/// `kiora/crm-gdb_php` of `127.0.0.1:5000/kiora/crm-gdb_php:1.4.0`.
pub fn repository(image: &ImageRef) -> String {
    match image.registry.split_once('/') {
        Some((_, namespace)) => format!("{namespace}/{}", image.name),
        None => image.name.clone(),
    }
}

pub fn manifest_get(image: &ImageRef) -> Request {
    Request::get(&format!(
        "/v2/{}/manifests/{}",
        repository(image),
        image.tag
    ))
    .header("Accept", MANIFEST_TYPES)
}

pub fn manifest_put(image: &ImageRef, manifest: &Manifest) -> Request {
    Request {
        method: "PUT",
        body: manifest.bytes.clone(),
        ..Request::get(&format!(
            "/v2/{}/manifests/{}",
            repository(image),
            image.tag
        ))
    }
    .header("Content-Type", &manifest.media_type)
}

/// The JSON string value of the first `"key"` in `text` (escapes `\"` and `\\` undone; the
/// values read here are digests and hex keys).
fn json_string_after(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    read_string(rest.strip_prefix('"')?).map(|(value, _)| value)
}

/// The strings of the JSON array value of the first `"key"` in `text`.
fn json_strings_after(text: &str, key: &str) -> Vec<String> {
    let Some(at) = text.find(&format!("\"{key}\"")) else {
        return Vec::new();
    };
    let Some(rest) = text[at + key.len() + 2..]
        .trim_start()
        .strip_prefix(':')
        .and_then(|r| r.trim_start().strip_prefix('['))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = rest;
    while let Some(next) = rest.trim_start().strip_prefix('"') {
        let Some((value, after)) = read_string(next) else {
            break;
        };
        out.push(value);
        rest = after.trim_start().strip_prefix(',').unwrap_or(after);
    }
    out
}

/// A JSON string body up to its closing quote, and what follows it.
fn read_string(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
        }
    }
    None
}

/// Standard base64 with padding (for one Basic auth header: no crate for that).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(registry: &str, tag: &str) -> ImageRef {
        ImageRef {
            registry: registry.into(),
            name: "crm-gdb_php".into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn only_loopback_registries_are_spoken_to() {
        let local = Registry::for_image(&image("127.0.0.1:5000/kiora", "1")).unwrap();
        assert_eq!(local.host, "127.0.0.1:5000");
        assert!(Registry::for_image(&image("localhost:5001", "1")).is_some());
        assert!(Registry::for_image(&image("registry.kiora.tech/kiora", "1")).is_none());
        assert!(Registry::for_image(&image("10.0.0.1:5000/kiora", "1")).is_none());
        assert!(Registry::for_image(&image("127.0.0.1/kiora", "1")).is_none());
    }

    #[test]
    fn a_retag_is_a_get_then_a_put_of_the_same_bytes() {
        let old = image("127.0.0.1:5000/kiora", "1.0");
        let get = String::from_utf8(manifest_get(&old).encode("127.0.0.1:5000")).unwrap();
        assert!(
            get.starts_with("GET /v2/kiora/crm-gdb_php/manifests/1.0 HTTP/1.0\r\n"),
            "{get}"
        );
        assert!(
            get.contains(&format!("\r\nAccept: {MANIFEST_TYPES}\r\n")),
            "{get}"
        );
        for wanted in [
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json",
        ] {
            assert!(MANIFEST_TYPES.contains(wanted));
        }
        let manifest = Manifest {
            media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
            bytes: b"{\"schemaVersion\": 2}".to_vec(),
            digest: "sha256:aa".into(),
        };
        let put = manifest_put(&image("127.0.0.1:5000/kiora", "2.0"), &manifest);
        assert_eq!(put.method, "PUT");
        assert_eq!(put.path, "/v2/kiora/crm-gdb_php/manifests/2.0");
        assert_eq!(put.body, manifest.bytes);
        assert_eq!(
            put.headers,
            [(
                "Content-Type".to_string(),
                "application/vnd.docker.distribution.manifest.v2+json".to_string()
            )]
        );
        assert_eq!(repository(&image("127.0.0.1:5000", "1")), "crm-gdb_php");
    }

    #[test]
    fn config_digest_and_labels_are_read_from_json() {
        let manifest = Manifest {
            media_type: String::new(),
            bytes: br#"{"schemaVersion":2,"config":{"mediaType":"x","size":7,"digest":"sha256:c0"},"layers":[{"digest":"sha256:l1"}]}"#.to_vec(),
            digest: String::new(),
        };
        assert_eq!(manifest.config_digest().as_deref(), Some("sha256:c0"));
        assert_eq!(manifest.layers(), ["sha256:l1"]);
        let config = r#"{"config":{"Labels":{"a":"b","org.kiora.build.inputs": "k\"1"}}}"#;
        assert_eq!(
            config_label(config, "org.kiora.build.inputs").as_deref(),
            Some("k\"1")
        );
        assert_eq!(config_label(config, "missing"), None);
        assert_eq!(config_label(r#"{"config":{}}"#, "a"), None);
        assert_eq!(
            json_strings_after(
                r#"{"name":"kiora/x","tags":["1.0", "1.0-supervisor"]}"#,
                "tags"
            ),
            ["1.0", "1.0-supervisor"]
        );
        assert!(json_strings_after(r#"{"tags":null}"#, "tags").is_empty());
    }

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }
}
