//! Several platforms under one tag (`--platform linux/amd64,linux/arm64`) with the default
//! `docker` buildx driver, which can build any platform QEMU emulates but keeps one platform per
//! tag in the engine: each platform is built on its own into a hidden helper tag
//! (`TAG__linux-arm64`), the helpers are pushed, then each tag's manifest list is assembled in
//! the registry from their manifests (the registry API on loopback, `docker buildx imagetools
//! create` elsewhere). Nothing is pushed before every build succeeded and no list is written
//! before every helper is in the registry, so an interrupted build publishes no tag.
//!
//! Also: the OS image of a foreign platform, made like the native one (debootstrap, here under
//! QEMU) and labelled with its architecture by a `FROM scratch` buildx build, since `docker
//! import --platform` on engine 20.10 records the engine's own architecture.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::build::push::push_all;
use crate::build::registry_api::{Manifest, Registry};
use crate::cmd::{Cmd, Runner};
use crate::ctx::Ctx;
use crate::json;
use crate::reference::ImageRef;

/// The media type of the list assembled here (Docker's, which every engine and registry reads).
pub const LIST_TYPE: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const SINGLE_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
];
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The hidden helper tag of `tag` for one platform: `1.4.0__linux-arm64` (`__` cannot start a
/// release tag people pick by hand, and sorts the helpers beside their release).
pub fn platform_tag(tag: &str, platform: &str) -> String {
    format!("{tag}__{}", platform.replace('/', "-"))
}

/// `image` under its helper tag for `platform`.
pub fn for_platform(image: &ImageRef, platform: &str) -> ImageRef {
    ImageRef {
        tag: platform_tag(&image.tag, platform),
        ..image.clone()
    }
}

/// The engine's own platform (`linux/amd64`): what it builds without emulation.
pub fn native(runner: &Runner) -> Result<String> {
    runner.query(&Cmd::new("docker").args([
        "version",
        "--format",
        "{{.Server.Os}}/{{.Server.Arch}}",
    ]))
}

/// The image a build for `platform` starts from: `image` itself for the engine's own platform
/// (the images every single-platform build uses), else its helper tag.
pub fn image_for(image: &str, platform: &str, native: &str) -> String {
    if platform == native {
        return image.to_string();
    }
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            format!("{name}:{}", platform_tag(tag, platform))
        }
        _ => format!("{image}:{}", platform_tag("latest", platform)),
    }
}

/// Debian's name of a platform's architecture.
fn debian_arch(platform: &str) -> Option<&'static str> {
    Some(match platform {
        "linux/amd64" => "amd64",
        "linux/arm64" | "linux/arm64/v8" => "arm64",
        "linux/arm/v7" => "armhf",
        "linux/386" => "i386",
        "linux/ppc64le" => "ppc64el",
        "linux/s390x" => "s390x",
        "linux/riscv64" => "riscv64",
        _ => return None,
    })
}

/// The Debian suite of an OS image such as `debian:bookworm-slim` (`bookworm`).
fn debian_suite(os_image: &str) -> Option<&str> {
    let (name, tag) = os_image.rsplit_once(':')?;
    if name != "debian" && !name.ends_with("/debian") {
        return None;
    }
    tag.split('-').next().filter(|suite| !suite.is_empty())
}

/// The commands that make the OS image `name` for `platform` from Debian packages in `dir`.
pub fn os_image_commands(
    dir: &Path,
    platform: &str,
    arch: &str,
    suite: &str,
    name: &str,
) -> [Cmd; 3] {
    let rootfs = dir.join("rootfs");
    let context = dir.join("context");
    [
        Cmd::new("debootstrap")
            .arg(format!("--arch={arch}"))
            .args(["--variant=minbase", suite])
            .arg(rootfs.display().to_string())
            .arg(DEBIAN_MIRROR),
        Cmd::new("tar")
            .arg("-C")
            .arg(rootfs.display().to_string())
            .arg("-cf")
            .arg(context.join("rootfs.tar").display().to_string())
            .arg("."),
        Cmd::new("docker")
            .args([
                "buildx",
                "build",
                "--load",
                "--platform",
                platform,
                "--tag",
                name,
            ])
            .arg(context.display().to_string()),
    ]
}

/// The OS image for `platform`: the configured one for the engine's own platform; for another,
/// its helper tag, made once from Debian packages (debootstrap under QEMU, ~2 min for arm64) and
/// then kept by the engine for every later build.
pub fn ensure_os_image(ctx: &Ctx, platform: &str, native: &str) -> Result<String> {
    let runner = &ctx.runner;
    let os_image = &ctx.config.os_image;
    let name = image_for(os_image, platform, native);
    if platform == native || runner.succeeds(&crate::docker::image_exists(&name))? {
        return Ok(name);
    }
    let (Some(arch), Some(suite)) = (debian_arch(platform), debian_suite(os_image)) else {
        bail!(
            "no {platform} OS image {name} in the local engine, and it cannot be made here (only Debian images of \
             known architectures are); load one with `docker load` and tag it {name}"
        );
    };
    if !runner.dry_run && crate::docker::current_user().is_some_and(|(uid, _)| uid != 0) {
        bail!("making the {platform} OS image {name} runs debootstrap, which needs root: run as root once (sudo), or load the image and tag it {name}");
    }
    runner.say(format!(
        "  {name}: making it from Debian {suite} packages for {arch} (debootstrap under emulation, ~2 min)"
    ));
    // Removed when this returns, on failure and on Ctrl-C (the runner stops the child first).
    let dir = tempfile::Builder::new()
        .prefix("xtask-os-image.")
        .tempdir()?;
    let [debootstrap, tar, build] = os_image_commands(dir.path(), platform, arch, suite, &name);
    runner
        .run(&debootstrap)
        .with_context(|| format!("debootstrap of {suite} for {arch} failed; is qemu-user-static registered (`sudo bash .ci/setup`)?"))?;
    if !runner.dry_run {
        let rootfs = dir.path().join("rootfs");
        // Lean like the official slim image: no apt lists or packages, docs, man pages, locales.
        for sub in [
            "var/lib/apt/lists",
            "var/cache/apt/archives",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ] {
            empty_dir(&rootfs.join(sub))?;
        }
        std::fs::create_dir_all(dir.path().join("context"))?;
        std::fs::write(
            dir.path().join("context/Dockerfile"),
            "FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n",
        )?;
    }
    runner.run(&tar)?;
    runner.run(&build)?;
    Ok(name)
}

/// Removes what `dir` holds (its files and subdirectories), keeping `dir`.
fn empty_dir(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// One image under one tag: its helper per platform.
#[derive(Clone, Debug)]
pub struct Published {
    pub image: ImageRef,
    pub parts: Vec<(String, ImageRef)>,
}

/// Pushes every helper, then writes each image's manifest list (only once every helper is in).
pub fn publish(ctx: &Ctx, images: &[Published]) -> Result<()> {
    let helpers: Vec<&ImageRef> = images
        .iter()
        .flat_map(|i| i.parts.iter().map(|(_, helper)| helper))
        .collect();
    push_all(ctx, &helpers)?;
    assemble_all(ctx, images)
}

/// Writes each image's manifest list from helpers already in the registry.
pub fn assemble_all(ctx: &Ctx, images: &[Published]) -> Result<()> {
    for published in images {
        crate::interrupt::check()?;
        assemble(ctx, published)?;
    }
    Ok(())
}

/// One manifest list, from the helpers' manifests as the registry has them; each helper's config
/// must name the platform it stands for (an image of the wrong architecture is refused).
fn assemble(ctx: &Ctx, published: &Published) -> Result<()> {
    let runner = &ctx.runner;
    let image = &published.image;
    let Some(api) = Registry::for_image(image) else {
        // A registry the HTTP client here does not speak to (TLS, tokens): buildx does it.
        return runner.run(&imagetools_create(published));
    };
    if runner.dry_run {
        let parts: Vec<String> = published
            .parts
            .iter()
            .map(|(p, h)| format!("{p}={h}"))
            .collect();
        crate::progress::print_line(
            true,
            &format!("PUT {LIST_TYPE} {image} <- {}", parts.join(" ")),
        );
        return Ok(());
    }
    let mut entries = Vec::new();
    for (platform, helper) in &published.parts {
        let manifest = api
            .manifest(helper)?
            .with_context(|| format!("{helper} is not in the registry"))?;
        if !SINGLE_TYPES.contains(&manifest.media_type.as_str()) {
            bail!(
                "{helper} is a {}, not a single-platform image",
                manifest.media_type
            );
        }
        let config = api
            .config(helper, &manifest)?
            .with_context(|| format!("{helper} has no config"))?;
        let found = config_platform(&config)?;
        if &found != platform {
            bail!(
                "{helper} was built for {platform} but its config says {found}; rebuild its base images for {platform}"
            );
        }
        entries.push(Entry {
            platform: platform.clone(),
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len(),
        });
    }
    let list = Manifest {
        media_type: LIST_TYPE.to_string(),
        bytes: list_json(&entries).into_bytes(),
        digest: String::new(),
    };
    let digest = api
        .put_manifest(image, &list)
        .with_context(|| format!("writing the manifest list of {image}"))?;
    runner.say(format!(
        "  {image}: manifest list {digest} ({})",
        published
            .parts
            .iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(())
}

/// `os/architecture[/variant]` of an image config.
pub fn config_platform(config: &str) -> Result<String> {
    let config = json::parse(config).context("an image config that is not JSON")?;
    let field = |key: &str| {
        config
            .get(key)
            .and_then(json::Json::as_str)
            .unwrap_or_default()
    };
    let (os, arch, variant) = (field("os"), field("architecture"), field("variant"));
    if os.is_empty() || arch.is_empty() {
        bail!("an image config without os and architecture");
    }
    Ok(match variant {
        "" => format!("{os}/{arch}"),
        v => format!("{os}/{arch}/{v}"),
    })
}

/// One entry of a manifest list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub platform: String,
    pub media_type: String,
    pub digest: String,
    pub size: usize,
}

/// The manifest list of `entries` (digests, media types and platforms need no JSON escaping).
pub fn list_json(entries: &[Entry]) -> String {
    let manifests: Vec<String> = entries
        .iter()
        .map(|e| {
            let mut parts = e.platform.splitn(3, '/');
            let (os, arch) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            let variant = parts
                .next()
                .map(|v| format!(",\"variant\":\"{v}\""))
                .unwrap_or_default();
            format!(
                "{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{},\"platform\":{{\"architecture\":\"{arch}\",\"os\":\"{os}\"{variant}}}}}",
                e.media_type, e.digest, e.size
            )
        })
        .collect();
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{LIST_TYPE}\",\"manifests\":[{}]}}",
        manifests.join(",")
    )
}

/// The list assembled by buildx from helpers already pushed (registries not on loopback).
pub fn imagetools_create(published: &Published) -> Cmd {
    let mut cmd = Cmd::new("docker")
        .args(["buildx", "imagetools", "create", "--tag"])
        .arg(published.image.to_string());
    for (_, helper) in &published.parts {
        cmd = cmd.arg(helper.to_string());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str) -> ImageRef {
        ImageRef {
            registry: "127.0.0.1:5000/kiora".into(),
            name: "crm-gdb_php".into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn helper_tags_are_hidden_beside_their_release() {
        assert_eq!(platform_tag("1.4.0", "linux/arm64"), "1.4.0__linux-arm64");
        assert_eq!(platform_tag("1.4.0", "linux/arm/v7"), "1.4.0__linux-arm-v7");
        assert_eq!(
            for_platform(&image("0.5.0"), "linux/arm64").to_string(),
            "127.0.0.1:5000/kiora/crm-gdb_php:0.5.0__linux-arm64"
        );
        crate::reference::check_release_tag(&platform_tag("1.4.0", "linux/arm64")).unwrap();
    }

    #[test]
    fn the_native_platform_keeps_its_images_and_others_get_helpers() {
        let n = "linux/amd64";
        assert_eq!(
            image_for("debian:bookworm-slim", n, n),
            "debian:bookworm-slim"
        );
        assert_eq!(
            image_for("debian:bookworm-slim", "linux/arm64", n),
            "debian:bookworm-slim__linux-arm64"
        );
        assert_eq!(
            image_for(
                "127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0",
                "linux/arm64",
                n
            ),
            "127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0__linux-arm64"
        );
        assert_eq!(
            image_for("localhost:5000/os", "linux/arm64", n),
            "localhost:5000/os:latest__linux-arm64"
        );
    }

    #[test]
    fn the_os_image_is_debootstrapped_for_its_architecture() {
        assert_eq!(debian_suite("debian:bookworm-slim"), Some("bookworm"));
        assert_eq!(debian_suite("ubuntu:24.04"), None);
        assert_eq!(debian_arch("linux/arm64"), Some("arm64"));
        assert_eq!(debian_arch("linux/arm/v7"), Some("armhf"));
        let [boot, tar, build] = os_image_commands(
            Path::new("/t"),
            "linux/arm64",
            "arm64",
            "bookworm",
            "debian:bookworm-slim__linux-arm64",
        );
        assert_eq!(
            boot.argv(),
            [
                "debootstrap",
                "--arch=arm64",
                "--variant=minbase",
                "bookworm",
                "/t/rootfs",
                DEBIAN_MIRROR
            ]
        );
        assert_eq!(
            tar.argv(),
            [
                "tar",
                "-C",
                "/t/rootfs",
                "-cf",
                "/t/context/rootfs.tar",
                "."
            ]
        );
        // Not `docker import --platform`: engine 20.10 would record amd64 in the config.
        assert_eq!(
            build.argv(),
            [
                "docker",
                "buildx",
                "build",
                "--load",
                "--platform",
                "linux/arm64",
                "--tag",
                "debian:bookworm-slim__linux-arm64",
                "/t/context"
            ]
        );
    }

    #[test]
    fn a_config_names_its_platform() {
        let config = r#"{"architecture":"arm64","os":"linux","variant":"v8","config":{}}"#;
        assert_eq!(config_platform(config).unwrap(), "linux/arm64/v8");
        assert_eq!(
            config_platform(r#"{"architecture":"amd64","os":"linux"}"#).unwrap(),
            "linux/amd64"
        );
        assert!(config_platform("{}").is_err());
    }

    #[test]
    fn the_list_names_each_platform_and_parses() {
        let entries = [
            Entry {
                platform: "linux/amd64".into(),
                media_type: SINGLE_TYPES[0].into(),
                digest: "sha256:aa".into(),
                size: 528,
            },
            Entry {
                platform: "linux/arm/v7".into(),
                media_type: SINGLE_TYPES[0].into(),
                digest: "sha256:bb".into(),
                size: 529,
            },
        ];
        let list = json::parse(&list_json(&entries)).unwrap();
        assert_eq!(
            list.get("mediaType").and_then(json::Json::as_str),
            Some(LIST_TYPE)
        );
        let manifests = list.get("manifests").unwrap().items();
        assert_eq!(manifests.len(), 2);
        let platform = manifests[1].get("platform").unwrap();
        assert_eq!(
            platform.get("architecture").and_then(json::Json::as_str),
            Some("arm")
        );
        assert_eq!(
            platform.get("variant").and_then(json::Json::as_str),
            Some("v7")
        );
        assert_eq!(
            manifests[0].get("size").and_then(json::Json::as_u64),
            Some(528)
        );
    }

    #[test]
    fn elsewhere_buildx_assembles_the_list() {
        let published = Published {
            image: image("1.4.0"),
            parts: vec![
                ("linux/amd64".into(), image("1.4.0__linux-amd64")),
                ("linux/arm64".into(), image("1.4.0__linux-arm64")),
            ],
        };
        assert_eq!(
            imagetools_create(&published).argv(),
            [
                "docker",
                "buildx",
                "imagetools",
                "create",
                "--tag",
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0",
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0__linux-amd64",
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0__linux-arm64"
            ]
        );
    }
}
