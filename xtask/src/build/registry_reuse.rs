//! Reuse of release images through the registry itself (see `registry_api`): a new tag for
//! images that did not change is a manifest copied under that tag, not a `docker push` (which
//! checks every layer); and a runner whose engine is empty (CI) finds a release of the same
//! inputs key in the registry and re-tags it there: no build, no layer moved.

use anyhow::Result;

use crate::build::build_cache::INPUTS_LABEL;
use crate::build::past_assets::ASSETS_LABEL;
use crate::build::registry_api::{Manifest, Registry};
use crate::build::reuse::Reusable;
use crate::cmd::Runner;
use crate::config::Config;
use crate::reference::ImageRef;

/// How many tags of the php repository are looked at for the inputs key, beyond the previous
/// release (two small GETs each; a registry keeps many releases).
const MAX_CANDIDATES: usize = 50;
/// How many tags are looked at side by side (loopback round trips that only wait).
const PARALLEL_CANDIDATES: usize = 8;

/// Copies each manifest of `from` under the tag of the matching `to` image. Reads first, then
/// writes: a missing manifest changes nothing. Returns the digests given to the new tags.
pub fn retag(
    runner: &Runner,
    registry: &Registry,
    from: &[ImageRef],
    to: &[&ImageRef],
) -> Result<Vec<String>> {
    let manifests = side_by_side(from, |image| match registry.manifest(image)? {
        Some(manifest) => Ok(manifest),
        None => anyhow::bail!("the registry has no {image}"),
    })?;
    put_all(runner, registry, from, to, &manifests)
}

/// PUTs each manifest (read from the matching `from` image) under the tag of its `to` image,
/// side by side (a round trip each; the three are independent). Returns their digests.
pub fn put_all(
    runner: &Runner,
    registry: &Registry,
    from: &[ImageRef],
    to: &[&ImageRef],
    manifests: &[Manifest],
) -> Result<Vec<String>> {
    if runner.dry_run {
        for (old, new) in from.iter().zip(to) {
            runner.say(format!(
                "PUT http://{}/v2/{}/manifests/{} (the manifest of {old})",
                registry.host,
                crate::build::registry_api::repository(new),
                new.tag
            ));
        }
        return Ok(manifests.iter().map(|m| m.digest.clone()).collect());
    }
    let pairs: Vec<(&&ImageRef, &Manifest)> = to.iter().zip(manifests).collect();
    let digests = side_by_side(&pairs, |(new, manifest)| {
        registry.put_manifest(new, manifest)
    })?;
    for ((old, new), manifest) in from.iter().zip(to).zip(manifests) {
        runner.say(format!(
            "  re-tagged in the registry: {old} -> {new} ({})",
            manifest.digest
        ));
    }
    Ok(digests)
}

/// `call` on each item, each on its own thread (registry round trips wait, they do not work):
/// the answers in order, or the first error.
fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    call: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let call = &call;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || call(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a registry thread panicked")))
            })
            .collect()
    })
}

/// The images locally reused, as pushed, with their manifests: each `built_as` reference when
/// it names the same registry and repository and the registry's manifest has the local image's
/// ID as its config. `None` when one of them cannot be shown to be in the registry.
pub fn pushed_as(
    registry: &Registry,
    config: &Config,
    found: &[Reusable],
    new: &[&ImageRef],
) -> Result<Option<(Vec<ImageRef>, Vec<Manifest>)>> {
    let mut olds = Vec::new();
    for (reusable, new) in found.iter().zip(new) {
        let prefix = format!("{}/{}:", config.registry, new.name);
        let Some(tag) = reusable.built_as.strip_prefix(&prefix) else {
            return Ok(None);
        };
        olds.push(ImageRef {
            tag: tag.to_string(),
            ..(*new).clone()
        });
    }
    let manifests = side_by_side(&olds, |old| registry.manifest(old))?;
    let mut out = Vec::new();
    for (manifest, reusable) in manifests.into_iter().zip(found) {
        match manifest {
            Some(m)
                if m.config_digest()
                    .is_some_and(|c| same_image(&c, &reusable.id)) =>
            {
                out.push(m)
            }
            _ => return Ok(None),
        }
    }
    Ok(Some((olds, out)))
}

/// A config digest `sha256:<64 hex>` against an image ID, full or short (`docker image ls`).
fn same_image(config_digest: &str, id: &str) -> bool {
    let hex = config_digest
        .strip_prefix("sha256:")
        .unwrap_or(config_digest);
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.len() >= 12 && hex.starts_with(id)
}

/// A release tag whose three images in the registry all carry the inputs key `key`: the
/// previous release first (`previous`, from the compose file), then the php repository's tags.
pub fn find_release(
    registry: &Registry,
    config: &Config,
    key: &str,
    previous: Option<&str>,
    nginx_ok: impl Fn(Option<&str>) -> bool + Sync,
) -> Result<Option<String>> {
    let probe = config.app_images("x")[0].clone();
    let mut candidates: Vec<String> = previous.into_iter().map(String::from).collect();
    let listed = registry.tags(&probe)?;
    candidates.extend(
        listed
            .into_iter()
            .filter(|t| !t.ends_with(crate::config::SUPERVISOR_SUFFIX))
            .take(MAX_CANDIDATES),
    );
    let mut seen: Vec<String> = Vec::new();
    candidates.retain(|tag| {
        let new = !seen.contains(tag);
        seen.push(tag.clone());
        new
    });
    let holds = |tag: &String| -> Result<bool> {
        for image in config.app_images(tag) {
            if !has_key(registry, &image, key)? {
                return Ok(false);
            }
            if image.name == crate::config::NGINX {
                let manifest = registry.manifest(&image)?;
                let label = match &manifest {
                    Some(m) => registry.label(&image, m, ASSETS_LABEL)?,
                    None => None,
                };
                return Ok(nginx_ok(label.as_deref()));
            }
        }
        Ok(true)
    };
    // The previous release alone first (the likely one), then the others a few at a time: each
    // is a few round trips that only wait; the first in order that holds the key wins.
    let (first, rest) = candidates.split_at(candidates.len().min(1));
    for chunk in std::iter::once(first).chain(rest.chunks(PARALLEL_CANDIDATES)) {
        let answers = side_by_side(chunk, holds)?;
        if let Some((tag, _)) = chunk.iter().zip(answers).find(|(_, ok)| *ok) {
            return Ok(Some(tag.clone()));
        }
    }
    Ok(None)
}

fn has_key(registry: &Registry, image: &ImageRef, key: &str) -> Result<bool> {
    let Some(manifest): Option<Manifest> = registry.manifest(image)? else {
        return Ok(false);
    };
    Ok(registry.label(image, &manifest, INPUTS_LABEL)?.as_deref() == Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_digest_is_the_image_id() {
        let digest = format!("sha256:{}", "ab12".repeat(16));
        assert!(same_image(&digest, "ab12ab12ab12"));
        assert!(same_image(&digest, &digest));
        assert!(!same_image(&digest, "ab12ab12ab13"));
        assert!(!same_image(&digest, "ab"));
    }
}
