//! The three release images (php, php-supervisor, nginx) as build definitions, and the digest
//! of the base image each starts from.

use std::path::Path;

use anyhow::Result;

use crate::cmd::Runner;
use crate::config::Config;
use crate::docker::Build;
use crate::reference::ImageRef;

/// The three release images, built from the staging directory.
pub fn release_builds(
    config: &Config,
    staging: &Path,
    tag: &str,
    labels: &[(String, String)],
) -> Vec<Build> {
    let [php, supervisor, nginx] = config.app_images(tag);
    let app_dockerfile = staging.join("docker/app/Dockerfile");
    let with_base = |base: String| {
        let mut labels = labels.to_vec();
        labels.push(("org.opencontainers.image.base.name".into(), base));
        labels
    };
    let php_build = |target: &str, image: ImageRef| Build {
        dockerfile: app_dockerfile.clone(),
        target: Some(target.to_string()),
        context: staging.to_path_buf(),
        image,
        build_args: vec![("BASE_IMAGE".into(), config.php_base().to_string())],
        labels: with_base(config.php_base().to_string()),
        platforms: Vec::new(),
        inline_cache: false,
        cache_from: Vec::new(),
    };
    vec![
        php_build("php", php),
        php_build("supervisor", supervisor),
        Build {
            dockerfile: staging.join("docker/nginx/Dockerfile"),
            target: None,
            context: staging.to_path_buf(),
            image: nginx,
            build_args: vec![("OS_IMAGE".into(), config.os_image.clone())],
            labels: with_base(config.os_image.clone()),
            platforms: Vec::new(),
            inline_cache: false,
            cache_from: Vec::new(),
        },
    ]
}

/// The three release images of one platform of a per-platform build (`multi_platform`):
/// named `helper_tag`, built for `platform` FROM that platform's `base` and `os` images.
pub fn platform_release_builds(
    config: &Config,
    staging: &Path,
    (helper_tag, platform): (&str, &str),
    (base, os): (&str, &str),
    labels: &[(String, String)],
) -> Vec<Build> {
    let mut builds = release_builds(config, staging, helper_tag, labels);
    let (plain_base, plain_os) = (config.php_base().to_string(), config.os_image.clone());
    for build in &mut builds {
        build.platforms = vec![platform.to_string()];
        for (_, value) in build.build_args.iter_mut().chain(build.labels.iter_mut()) {
            if *value == plain_base {
                *value = base.to_string();
            } else if *value == plain_os {
                *value = os.to_string();
            }
        }
    }
    builds
}

const BASE_NAME_LABEL: &str = "org.opencontainers.image.base.name";
const BASE_DIGEST_LABEL: &str = "org.opencontainers.image.base.digest";

/// Records which exact image the build starts from, next to its name: a tag can move.
pub fn add_base_digest(runner: &Runner, build: &mut Build) -> Result<()> {
    let Some((_, base)) = build.labels.iter().find(|(key, _)| key == BASE_NAME_LABEL) else {
        return Ok(());
    };
    let base = base.clone();
    // `ID SIZE REPO@DIGEST...`: the size is no `REPO@DIGEST`, so `pick_digest` passes over it.
    let digest = match crate::docker::image_summary(runner, &base) {
        Ok(answer) => pick_digest(&base, &answer),
        // --dry-run: the base may not be pulled yet; the plan still shows where the value goes.
        Err(_) if runner.dry_run => format!("<digest of {base}>"),
        Err(err) => return Err(err.context(format!("cannot read the digest of base image {base}"))),
    };
    build.labels.push((BASE_DIGEST_LABEL.into(), digest));
    Ok(())
}

/// From `ID REPO@DIGEST...`: the registry digest of `image`'s own repository (what
/// `docker pull REPO@DIGEST` takes) when the engine knows one, else the local image ID (a base
/// built here and never pushed has no registry digest).
fn pick_digest(image: &str, answer: &str) -> String {
    let repository = match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => image,
    };
    let mut words = answer.split_whitespace();
    let id = words.next().unwrap_or_default();
    words
        .filter_map(|word| word.split_once('@'))
        .find(|(repo, _)| *repo == repository)
        .map_or(id, |(_, digest)| digest)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Builder;

    fn config() -> Config {
        Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        }
    }

    #[test]
    fn three_release_images_from_the_pinned_base() {
        let labels = vec![(
            "org.opencontainers.image.version".to_string(),
            "1.4.0".to_string(),
        )];
        let builds = release_builds(&config(), Path::new("/s"), "1.4.0", &labels);
        let argv: Vec<Vec<String>> = builds
            .iter()
            .map(|b| {
                b.command(Builder::Buildx)
                    .argv()
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
            .collect();
        let expected = |file: &str, target: Option<&str>, tag: &str, arg: &str, base: &str| {
            let mut v = vec!["docker", "buildx", "build", "--load", "--file", file];
            if let Some(t) = target {
                v.extend(["--target", t]);
            }
            v.extend([
                "--tag",
                tag,
                "--build-arg",
                arg,
                "--label",
                "org.opencontainers.image.version=1.4.0",
                "--label",
                base,
                "/s",
            ]);
            v.into_iter().map(String::from).collect::<Vec<_>>()
        };
        let tag = crate::config::DEFAULT_BASE_TAG;
        let base = &format!(
            "org.opencontainers.image.base.name=127.0.0.1:5000/kiora/crm-gdb_php_base:{tag}"
        );
        let base_arg = &format!("BASE_IMAGE=127.0.0.1:5000/kiora/crm-gdb_php_base:{tag}");
        assert_eq!(
            argv[0],
            expected(
                "/s/docker/app/Dockerfile",
                Some("php"),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0",
                base_arg,
                base
            )
        );
        assert_eq!(
            argv[1],
            expected(
                "/s/docker/app/Dockerfile",
                Some("supervisor"),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0-supervisor",
                base_arg,
                base
            )
        );
        assert_eq!(
            argv[2],
            expected(
                "/s/docker/nginx/Dockerfile",
                None,
                "127.0.0.1:5000/kiora/crm-gdb_nginx:1.4.0",
                "OS_IMAGE=debian:bookworm-slim",
                "org.opencontainers.image.base.name=debian:bookworm-slim"
            )
        );
    }

    #[test]
    fn an_arm64_release_starts_from_the_arm64_base_images() {
        let builds = platform_release_builds(
            &config(),
            Path::new("/s"),
            ("1.4.0__linux-arm64", "linux/arm64"),
            (
                "127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0__linux-arm64",
                "debian:bookworm-slim__linux-arm64",
            ),
            &[],
        );
        let argv: Vec<String> = builds
            .iter()
            .map(|b| b.command(Builder::Buildx).argv().join(" "))
            .collect();
        assert_eq!(
            argv[1],
            "docker buildx build --load --platform linux/arm64 --file /s/docker/app/Dockerfile --target supervisor \
             --tag 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0__linux-arm64-supervisor \
             --build-arg BASE_IMAGE=127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0__linux-arm64 \
             --label org.opencontainers.image.base.name=127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0__linux-arm64 /s"
        );
        assert_eq!(
            argv[2],
            "docker buildx build --load --platform linux/arm64 --file /s/docker/nginx/Dockerfile \
             --tag 127.0.0.1:5000/kiora/crm-gdb_nginx:1.4.0__linux-arm64 \
             --build-arg OS_IMAGE=debian:bookworm-slim__linux-arm64 \
             --label org.opencontainers.image.base.name=debian:bookworm-slim__linux-arm64 /s"
        );
    }

    #[test]
    fn base_digest_prefers_the_registry_digest_of_the_same_repository() {
        let image = "127.0.0.1:5000/kiora/crm-gdb_php_base:0.5.0";
        assert_eq!(pick_digest(image, "sha256:1d"), "sha256:1d");
        assert_eq!(
            pick_digest(
                image,
                "sha256:1d other/crm-gdb_php_base@sha256:aa 127.0.0.1:5000/kiora/crm-gdb_php_base@sha256:bb"
            ),
            "sha256:bb"
        );
        assert_eq!(
            pick_digest("debian:bookworm-slim", "sha256:1d debian@sha256:cc"),
            "sha256:cc"
        );
        assert_eq!(
            pick_digest("127.0.0.1:5000/x", "sha256:1d 127.0.0.1:5000/x@sha256:dd"),
            "sha256:dd"
        );
    }
}
