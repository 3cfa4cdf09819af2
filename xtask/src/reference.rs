//! Docker tags, registries and image references: parsed and checked before any command runs.

use std::fmt;

use anyhow::{bail, Result};

/// `registry/name:tag`, e.g. `127.0.0.1:5000/kiora/crm-gdb_php:1.4.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub name: String,
    pub tag: String,
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.registry.is_empty() {
            write!(f, "{}:{}", self.name, self.tag)
        } else {
            write!(f, "{}/{}:{}", self.registry, self.name, self.tag)
        }
    }
}

impl ImageRef {
    /// The registry's host (with port), e.g. `127.0.0.1:5000`.
    pub fn host(&self) -> &str {
        registry_host(&self.registry)
    }
}

/// `127.0.0.1:5000` of `127.0.0.1:5000/kiora`.
pub fn registry_host(registry: &str) -> &str {
    registry.split('/').next().unwrap_or(registry)
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits and '-', none starting or
/// ending with '-' (so nothing that a command could read as an option).
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A TCP port: 1 to 65535.
pub fn parse_port(port: &str) -> Option<u16> {
    port.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok || tag.len() > 128 {
        bail!(
            "invalid tag {tag:?}: a Docker tag is 1 to 128 characters of letters, digits, '_', '.' and '-', \
             not starting with '.' or '-' (e.g. 1.4.0)"
        );
    }
    Ok(())
}

/// A tag for an image that gets deployed: Docker's grammar, and never `latest`, which moves.
pub fn check_release_tag(tag: &str) -> Result<()> {
    check_tag(tag)?;
    if tag.eq_ignore_ascii_case("latest") {
        bail!("tag \"latest\" is refused for releases: it moves, so a deploy or rollback could not name it; use a version such as 1.4.0");
    }
    Ok(())
}

/// A release tag, checked once where it enters (clap's value parser for `--tag`, `--to`):
/// Docker's grammar, and never `latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseTag(String);

impl ReleaseTag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ReleaseTag {
    type Err = Refused;

    fn from_str(tag: &str) -> Result<ReleaseTag, Refused> {
        check_release_tag(tag).map_err(|err| Refused(format!("{err:#}")))?;
        Ok(ReleaseTag(tag.to_string()))
    }
}

impl std::ops::Deref for ReleaseTag {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value refused by one of our parsers; `main` reports it like any other refusal (one line,
/// exit 1), not as a usage error.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A registry prefix such as `registry.kiora.tech/kiora` or `127.0.0.1:5000/kiora`:
/// a host with an optional port, then lowercase path components.
pub fn check_registry(registry: &str) -> Result<()> {
    let hint =
        "expected HOST[:PORT]/NAMESPACE such as registry.kiora.tech/kiora or 127.0.0.1:5000/kiora";
    let mut parts = registry.split('/');
    let host = parts.next().unwrap_or_default();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if !is_host_name(name) || port.is_some_and(|p| parse_port(p).is_none()) {
        bail!("invalid registry {registry:?}: bad host {host:?}; {hint}");
    }
    for component in parts {
        let ok = !component.is_empty()
            && component
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            && component.starts_with(|c: char| c.is_ascii_alphanumeric())
            && component.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            bail!("invalid registry {registry:?}: bad path component {component:?} (lowercase letters, digits, '.', '_', '-'); {hint}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_host_of_a_prefix() {
        assert_eq!(registry_host("127.0.0.1:5000/kiora"), "127.0.0.1:5000");
        assert_eq!(
            registry_host("registry.kiora.tech/kiora/x"),
            "registry.kiora.tech"
        );
        assert_eq!(registry_host("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn tags_follow_dockers_grammar() {
        for good in [
            "1.4.0",
            "0.4.1",
            "_x",
            "A-b_c.9",
            "1.4.0-supervisor",
            &"a".repeat(128),
        ] {
            check_tag(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            ".1",
            "-1",
            "1.4.0 ",
            "a/b",
            "a:b",
            "x;rm -rf /",
            "$(id)",
            "é",
            &"a".repeat(129),
        ] {
            let err = check_tag(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid tag"), "{bad}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn latest_is_refused_for_releases() {
        let err = check_release_tag("latest").unwrap_err().to_string();
        assert!(err.contains("\"latest\" is refused"), "{err}");
        check_release_tag("LATEST").unwrap_err();
        check_release_tag("latest-1").unwrap();
    }

    #[test]
    fn registries() {
        for good in [
            "registry.kiora.tech/kiora",
            "127.0.0.1:5000/kiora",
            "localhost:5000",
            "r.io/a/b-c",
        ] {
            check_registry(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            "/kiora",
            "r.io/Kiora",
            "r.io:99999/k",
            "r.io:/k",
            "r.io/k/",
            "r io/k",
            "r.io/k;rm",
            "-r.io/k",
        ] {
            assert!(
                check_registry(bad)
                    .unwrap_err()
                    .to_string()
                    .starts_with("invalid registry"),
                "{bad}"
            );
        }
    }

    #[test]
    fn reference_parts() {
        let image = ImageRef {
            registry: "127.0.0.1:5000/kiora".into(),
            name: "crm-gdb_php".into(),
            tag: "1.0.0".into(),
        };
        assert_eq!(image.to_string(), "127.0.0.1:5000/kiora/crm-gdb_php:1.0.0");
        assert_eq!(image.host(), "127.0.0.1:5000");
    }
}

#[cfg(test)]
mod props;
