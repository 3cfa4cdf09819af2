//! `--platform linux/amd64,linux/arm64`: what one build call can produce on this machine,
//! decided before anything is built.
//!
//! One platform is passed to the builder as `--platform` when it can build it. Several need
//! buildx: a `docker-container` builder builds them in one call and pushes the result straight
//! to the registry (`--push`: it cannot load a multi-platform image into the engine); the
//! `docker` driver (the default, BuildKit inside the engine, whose image store holds one platform
//! per tag) builds one platform per call, and the list is assembled in the registry
//! (`multi_platform`). Platforms other than the engine's need QEMU registered with binfmt_misc.

use anyhow::{bail, Result};

use crate::cmd::{Cmd, Runner};
use crate::docker::Builder;

/// What `docker buildx inspect` says about the current builder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildxBuilder {
    pub name: String,
    pub driver: String,
    pub platforms: Vec<String>,
}

/// Reads `docker buildx inspect`: the first `Name:`, `Driver:` and `Platforms:` lines
/// (`linux/amd64*`: the star marks a platform set by hand).
pub fn parse_buildx_inspect(text: &str) -> BuildxBuilder {
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(key))
            .map(|value| value.trim().to_string())
            .unwrap_or_default()
    };
    let platforms = field("Platforms:")
        .split(',')
        .map(|p| p.trim().trim_end_matches('*').to_string())
        .filter(|p| !p.is_empty())
        .collect();
    BuildxBuilder {
        name: field("Name:"),
        driver: field("Driver:"),
        platforms,
    }
}

/// `OS/ARCH[/VARIANT]`, lowercase, e.g. `linux/amd64` or `linux/arm/v7`.
pub fn check_syntax(platform: &str) -> Result<()> {
    let parts: Vec<&str> = platform.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        bail!("invalid platform {platform:?}: expected OS/ARCH[/VARIANT] such as linux/amd64 or linux/arm64");
    }
    Ok(())
}

/// For clap: one `--platform` value, checked as it is parsed.
pub fn parse(platform: &str) -> Result<String> {
    check_syntax(platform)?;
    Ok(platform.to_string())
}

const CREATE: &str = "`docker buildx create --use --driver docker-container`";

/// How the requested platforms get built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// None or one platform: one build per image, as always.
    Single,
    /// Several, in one buildx call per image that pushes the list itself (docker-container driver).
    OneCall,
    /// Several, or one that is not the engine's: one build per platform under helper tags, the
    /// list assembled in the registry (docker driver). `native` is the engine's own platform.
    PerPlatform { native: String },
}

impl Plan {
    /// For the progress output: which path runs.
    pub fn describe(&self, platforms: &[String]) -> String {
        let list = platforms.join(", ");
        match self {
            Plan::Single => String::new(),
            Plan::OneCall => format!("{list} in one buildx call per image (docker-container builder), pushed by the build"),
            Plan::PerPlatform { native } => format!(
                "{list} one build per platform (docker driver; {native} native, the others under QEMU), \
                 each under a helper tag TAG__OS-ARCH, then one manifest list per tag assembled in the registry"
            ),
        }
    }
}

/// Refuses, in one line naming the builder and what to do, the platforms it cannot build in
/// one call, and says how the rest is built. `buildx` is the current builder (for `Builder::Buildx`), `engine` the engine's
/// own platform (for `Builder::Classic` and the `docker` driver).
pub fn check(
    requested: &[String],
    builder: Builder,
    buildx: Option<&BuildxBuilder>,
    engine: &str,
    push: bool,
) -> Result<Plan> {
    for platform in requested {
        check_syntax(platform)?;
    }
    let list = requested.join(",");
    let multi = requested.len() > 1;
    match (builder, buildx) {
        (_, _) if requested.is_empty() => {}
        (Builder::Classic, _) | (Builder::Buildx, None) if multi => bail!(
            "cannot build {list} in one call: the classic builder (no buildx plugin) builds one platform at a time; \
             install the buildx plugin and create a multi-platform builder ({CREATE}), or pass one platform"
        ),
        (Builder::Classic, _) | (Builder::Buildx, None) => {
            if list != engine {
                bail!(
                    "the classic builder builds only the engine's platform {engine}, not {list}; pass --platform {engine}, \
                     or install the buildx plugin with a builder for {list} ({CREATE})"
                );
            }
        }
        (Builder::Buildx, Some(info)) => {
            let name = &info.name;
            let driver = &info.driver;
            let missing: Vec<&str> = requested
                .iter()
                .filter(|p| !info.platforms.contains(p))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "the buildx builder `{name}` (driver `{driver}`) cannot build {}: it supports {}; add QEMU emulation \
                     (`apt-get install qemu-user-static` and register it with binfmt_misc: `sudo bash .ci/setup`) \
                     or use a builder that can ({CREATE})",
                    missing.join(","),
                    info.platforms.join(",")
                );
            }
            let foreign = requested.iter().any(|p| p != engine);
            if driver == "docker" && (multi || foreign) {
                // The engine's image store keeps one platform per tag: one build per platform,
                // and another platform's builds start FROM its own base images (helper tags).
                return Ok(Plan::PerPlatform {
                    native: engine.to_string(),
                });
            }
            if multi && !push {
                bail!(
                    "a multi-platform image ({list}) cannot be kept in the local engine by a `{driver}` builder: buildx pushes \
                     it straight to the registry, so drop --no-push or pass one platform"
                );
            }
            if multi {
                return Ok(Plan::OneCall);
            }
        }
    }
    Ok(Plan::Single)
}

/// Asks the engine (classic builder) or buildx (its current builder), then runs [`check`].
/// Nothing is asked when no platform was requested.
pub fn preflight(
    runner: &Runner,
    builder: Builder,
    requested: &[String],
    push: bool,
) -> Result<Plan> {
    if requested.is_empty() {
        return Ok(Plan::Single);
    }
    match builder {
        Builder::Buildx => {
            let text = runner.query(&Cmd::new("docker").args(["buildx", "inspect"]))?;
            let info = parse_buildx_inspect(&text);
            let engine = if info.driver == "docker" {
                crate::build::multi_platform::native(runner)?
            } else {
                String::new()
            };
            check(requested, builder, Some(&info), &engine, push)
        }
        Builder::Classic => {
            let engine = crate::build::multi_platform::native(runner)?;
            check(requested, builder, None, &engine, push)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_DRIVER: &str = "Name:   default
Driver: docker

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.8+unknown
Platforms:        linux/amd64, linux/386
";

    fn container_builder() -> BuildxBuilder {
        BuildxBuilder {
            name: "multi".into(),
            driver: "docker-container".into(),
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        }
    }

    fn platforms(list: &str) -> Vec<String> {
        list.split(',').map(String::from).collect()
    }

    #[test]
    fn reads_buildx_inspect() {
        assert_eq!(
            parse_buildx_inspect(DOCKER_DRIVER),
            BuildxBuilder {
                name: "default".into(),
                driver: "docker".into(),
                platforms: vec!["linux/amd64".into(), "linux/386".into()],
            }
        );
        let starred = parse_buildx_inspect("Platforms: linux/arm64*, linux/amd64");
        assert_eq!(starred.platforms, ["linux/arm64", "linux/amd64"]);
    }

    #[test]
    fn platform_syntax() {
        for good in ["linux/amd64", "linux/arm/v7", "linux/386"] {
            check_syntax(good).unwrap();
        }
        for bad in [
            "amd64",
            "linux/",
            "Linux/amd64",
            "linux/amd64/v2/x",
            "linux/amd 64",
        ] {
            let err = check_syntax(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid platform"), "{err}");
        }
    }

    #[test]
    fn the_docker_driver_builds_one_platform_per_call_when_qemu_is_there() {
        let both = platforms("linux/amd64,linux/arm64");
        let with_qemu =
            parse_buildx_inspect(&DOCKER_DRIVER.replace("linux/386", "linux/386, linux/arm64"));
        for push in [true, false] {
            assert_eq!(
                check(
                    &both,
                    Builder::Buildx,
                    Some(&with_qemu),
                    "linux/amd64",
                    push
                )
                .unwrap(),
                Plan::PerPlatform {
                    native: "linux/amd64".into()
                }
            );
        }
        // Without QEMU the builder lists no arm64: refused, naming what to install.
        let info = parse_buildx_inspect(DOCKER_DRIVER);
        let err = check(&both, Builder::Buildx, Some(&info), "linux/amd64", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot build linux/arm64"), "{err}");
        assert!(err.contains("qemu-user-static"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn one_supported_platform_passes_and_an_unsupported_one_is_refused() {
        let info = parse_buildx_inspect(DOCKER_DRIVER);
        let one = check(
            &platforms("linux/amd64"),
            Builder::Buildx,
            Some(&info),
            "linux/amd64",
            false,
        );
        assert_eq!(one.unwrap(), Plan::Single);
        let err = check(
            &platforms("linux/arm64"),
            Builder::Buildx,
            Some(&info),
            "",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot build linux/arm64"), "{err}");
        assert!(err.contains("supports linux/amd64,linux/386"), "{err}");
    }

    #[test]
    fn a_container_builder_builds_several_but_only_to_push() {
        let info = container_builder();
        let both = platforms("linux/amd64,linux/arm64");
        assert_eq!(
            check(&both, Builder::Buildx, Some(&info), "", true).unwrap(),
            Plan::OneCall
        );
        let err = check(&both, Builder::Buildx, Some(&info), "", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("drop --no-push"), "{err}");
    }

    #[test]
    fn the_classic_builder_builds_only_the_engines_platform() {
        check(&[], Builder::Classic, None, "linux/amd64", true).unwrap();
        check(
            &platforms("linux/amd64"),
            Builder::Classic,
            None,
            "linux/amd64",
            true,
        )
        .unwrap();
        let err = check(
            &platforms("linux/arm64"),
            Builder::Classic,
            None,
            "linux/amd64",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("only the engine's platform linux/amd64"),
            "{err}"
        );
        let err = check(
            &platforms("linux/amd64,linux/arm64"),
            Builder::Classic,
            None,
            "linux/amd64",
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("classic builder"), "{err}");
        assert!(err.contains("docker buildx create"), "{err}");
    }
}
