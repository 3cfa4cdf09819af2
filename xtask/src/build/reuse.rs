//! Reuse of release images: images already built from exactly the same inputs (the inputs key
//! of `build_cache`, kept as an image label) are re-tagged instead of rebuilt.

use std::path::Path;

use anyhow::Result;

use crate::build::build_cache::{self, INPUTS_LABEL};
use crate::build::staging::Source;
use crate::build::tools::Tools;
use crate::cmd::Runner;
use crate::ctx::Ctx;
use crate::docker::Builder;
use crate::reference::ImageRef;

/// The three release images, in the order of [`release_builds`].
const ROLES: [&str; 3] = ["php", "supervisor", "nginx"];

/// An image already built from the same inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reusable {
    pub id: String,
    /// The reference it was built as (`<none>` if it lost its tag since).
    pub built_as: String,
}

/// The inputs key of this build (see `build_cache`), or `None` when a base image is not in the
/// local engine yet (nothing built from it can be there either).
pub fn inputs_key(
    ctx: &Ctx,
    tools: &Tools,
    platforms: &[String],
    source: Source,
    builder: Builder,
) -> Result<Option<String>> {
    let (base, os) = (
        ctx.config.php_base().to_string(),
        ctx.config.os_image.clone(),
    );
    key_of(ctx, tools, platforms, source, builder, base, os)
}

/// The inputs key of one platform of a per-platform build (`multi_platform`): the same as a
/// single-platform build of it (so either reuses the other's images), from that platform's base
/// and OS images.
pub fn inputs_key_for(
    ctx: &Ctx,
    tools: &Tools,
    platform: &str,
    native: &str,
    source: Source,
    builder: Builder,
) -> Result<Option<String>> {
    let for_platform =
        |image: &str| crate::build::multi_platform::image_for(image, platform, native);
    let base = for_platform(&ctx.config.php_base().to_string());
    let os = for_platform(&ctx.config.os_image);
    key_of(
        ctx,
        tools,
        &[platform.to_string()],
        source,
        builder,
        base,
        os,
    )
}

fn key_of(
    ctx: &Ctx,
    tools: &Tools,
    platforms: &[String],
    source: Source,
    builder: Builder,
    base: String,
    os: String,
) -> Result<Option<String>> {
    let runner = &ctx.runner;
    let mut entries = build_cache::source_entries(runner, &ctx.root, source == Source::Head)?;
    let mut bases = vec![("base".to_string(), base), ("os".to_string(), os)];
    if let Some(image) = tools.image() {
        bases.push(("tools".to_string(), image.to_string()));
    }
    let (names, images): (Vec<String>, Vec<String>) = bases.into_iter().unzip();
    match crate::docker::image_ids(runner, &images)? {
        Some(ids) => entries.extend(names.into_iter().zip(ids)),
        None => return Ok(None),
    }
    entries.extend(key_options(tools, builder, platforms));
    Ok(Some(build_cache::hash_text(
        runner,
        &build_cache::material(&entries),
    )?))
}

/// The options that change what gets built, as inputs-key entries.
fn key_options(tools: &Tools, builder: Builder, platforms: &[String]) -> Vec<(String, String)> {
    vec![
        (
            "tools-from".into(),
            if *tools == Tools::Host {
                "host"
            } else {
                "build-image"
            }
            .into(),
        ),
        ("builder".into(), format!("{builder:?}")),
        ("platforms".into(), platforms.join(",")),
    ]
}

/// The three images (php, supervisor, nginx) labelled with `key`, if all three are local; the
/// nginx image also passes `nginx_ok` (given its ID: it carries the right past assets, see
/// `past_assets::covers`). `previous`: the previous release's three images (empty: none), looked
/// at first.
pub fn find_reusable(
    runner: &Runner,
    key: &str,
    previous: &[ImageRef],
    nginx_ok: impl Fn(&str) -> Result<bool>,
) -> Result<Option<Vec<Reusable>>> {
    if let Some(found) = previous_reusable(runner, key, previous, &nginx_ok)? {
        return Ok(Some(found));
    }
    // One query for the three (over the engine's API where it can: this path is all about
    // the cost of starting docker CLIs).
    let answer = crate::docker::images_labelled(runner, &format!("{INPUTS_LABEL}={key}"))?;
    let mut found = Vec::new();
    for role in ROLES {
        let mut picked = None;
        for candidate in candidates(&answer, role) {
            if role != "nginx" || nginx_ok(&candidate.id)? {
                picked = Some(candidate);
                break;
            }
        }
        match picked {
            Some(reusable) => found.push(reusable),
            None => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// [`find_reusable`] among the previous release's three images only. A rebuild with no change
/// finds its images here: three look-ups of ~1 ms, where listing the images by label makes the
/// engine read every image it has (~0.3 s with 2000).
pub fn previous_reusable(
    runner: &Runner,
    key: &str,
    previous: &[ImageRef],
    nginx_ok: impl Fn(&str) -> Result<bool>,
) -> Result<Option<Vec<Reusable>>> {
    match previous_release(runner, key, previous)? {
        Some(found) if nginx_ok(&found[2].id)? => Ok(Some(found)),
        _ => Ok(None),
    }
}

/// The previous release's images (php, supervisor, nginx), when all three are local and carry
/// `key`; `None` too where the engine's API cannot be spoken to (the listing then decides).
fn previous_release(
    runner: &Runner,
    key: &str,
    previous: &[ImageRef],
) -> Result<Option<Vec<Reusable>>> {
    if previous.len() != ROLES.len() {
        return Ok(None);
    }
    let mut found = Vec::new();
    for (image, role) in previous.iter().zip(ROLES) {
        let reference = image.to_string();
        if role_of(&reference) != Some(role) {
            return Ok(None);
        }
        crate::interrupt::check()?;
        match crate::docker::image_id_label(runner, &reference, INPUTS_LABEL) {
            Some(Some((id, Some(label)))) if label == key => found.push(Reusable {
                id: short_id(&id),
                built_as: reference,
            }),
            _ => return Ok(None),
        }
    }
    Ok(Some(found))
}

/// Where build-app notes the images it made or reused for an inputs key, in the dependency
/// cache: `CACHE/images/KEY/refs`, lines `ID REFERENCE` (php, supervisor, nginx), newest set
/// first. A directory per key, as every cache entry (`cache_trim` may remove any of them).
fn index_file(cache: &Path, key: &str) -> std::path::PathBuf {
    cache.join(INDEX_KIND).join(key).join("refs")
}

/// The cache's kind of entry for [`index_file`].
const INDEX_KIND: &str = "images";
/// Sets of three kept per key (the same inputs built again: after a change of past assets).
const INDEX_SETS: usize = 4;

/// Notes that `images` (php, supervisor, nginx: `(ID, REFERENCE)`) carry `key`, so that a later
/// build-app finds them without listing the engine's images. A failure to note is no error (the
/// next build may build what it could have reused).
pub fn record(cache: &Path, key: &str, images: &[(String, String)]) {
    let file = index_file(cache, key);
    let old = std::fs::read_to_string(&file).unwrap_or_default();
    let new: String = images
        .iter()
        .map(|(id, reference)| format!("{} {reference}\n", short_id(id)))
        .collect();
    let mut text = new.clone();
    for set in sets(&old).into_iter().take(INDEX_SETS - 1) {
        let set: String = set.iter().map(|l| format!("{l}\n")).collect();
        if set != new {
            text.push_str(&set);
        }
    }
    let Some(dir) = file.parent() else { return };
    let partial = dir.join(format!(".refs-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&partial, text))
        .and_then(|()| std::fs::rename(&partial, &file));
    let _ = std::fs::remove_file(&partial);
}

/// The lines of an index file, three by three.
fn sets(text: &str) -> Vec<Vec<&str>> {
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(' ')).collect();
    lines
        .chunks(ROLES.len())
        .filter(|c| c.len() == ROLES.len())
        .map(<[&str]>::to_vec)
        .collect()
}

/// [`find_reusable`] through the index of the dependency cache (see [`record`]) instead of a
/// listing of every image of the engine (~0.3 s with 2000 images, seconds on a busy machine):
/// each noted image is looked up by ID and must still carry `key`. `None` where the engine's
/// API cannot be spoken to (the caller lists instead); images of these inputs that build-app
/// did not note (made with another cache, or by a multi-platform build) are not found: they
/// are built again, from BuildKit's cache.
pub fn find_indexed(
    runner: &Runner,
    cache: &Path,
    key: &str,
    nginx_ok: impl Fn(&str) -> Result<bool>,
) -> Result<Option<Option<Vec<Reusable>>>> {
    crate::docker_api::Engine::local()
        .filter(|_| !runner.dry_run)
        .map_or(Ok(None), |_| {
            let text = std::fs::read_to_string(index_file(cache, key)).unwrap_or_default();
            runner.trace(&format!(
                "  images of these inputs noted in {}: {}",
                index_file(cache, key).display(),
                sets(&text).len()
            ));
            'sets: for set in sets(&text) {
                let mut found = Vec::new();
                for line in set {
                    let (id, built_as) = line.split_once(' ').expect("a line with a space");
                    crate::interrupt::check()?;
                    match crate::docker::image_id_label(runner, id, INPUTS_LABEL) {
                        Some(Some((_, Some(label)))) if label == key => found.push(Reusable {
                            id: id.to_string(),
                            built_as: built_as.to_string(),
                        }),
                        Some(_) => continue 'sets,
                        // The API stopped answering: the listing decides.
                        None => return Ok(None),
                    }
                }
                if nginx_ok(&found[2].id)? {
                    return Ok(Some(Some(found)));
                }
            }
            Ok(Some(None))
        })
}

/// An image ID as `docker image ls` shows it (12 hex digits).
fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

/// Which release image `REPO:TAG` is: php, supervisor (`-supervisor` tag) or nginx.
fn role_of(reference: &str) -> Option<&'static str> {
    let (repository, tag) = reference.rsplit_once(':')?;
    let name = repository.rsplit('/').next().unwrap_or(repository);
    match name {
        crate::config::PHP if tag.ends_with(crate::config::SUPERVISOR_SUFFIX) => Some("supervisor"),
        crate::config::PHP => Some("php"),
        crate::config::NGINX => Some("nginx"),
        _ => None,
    }
}

/// From `ID REPO:TAG` lines of images of one inputs key: the images of `role` (an untagged
/// image cannot say which it is, so it is not picked), each once.
fn candidates<'a>(answer: &'a str, role: &'a str) -> impl Iterator<Item = Reusable> + 'a {
    let mut seen = Vec::new();
    answer
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(move |(_, reference)| role_of(reference) == Some(role))
        .filter(move |(id, _)| {
            let new = !seen.contains(id);
            seen.push(*id);
            new
        })
        .map(|(id, reference)| Reusable {
            id: id.to_string(),
            built_as: reference.to_string(),
        })
}

#[cfg(test)]
fn pick_reusable(answer: &str, role: &str) -> Option<Reusable> {
    candidates(answer, role).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`key_options`] of the build image's tools, or of the host's.
    fn key_options(
        host_tools: bool,
        builder: Builder,
        platforms: &[String],
    ) -> Vec<(String, String)> {
        let config = crate::config::Config::default();
        super::key_options(&Tools::new(&config, host_tools), builder, platforms)
    }

    #[test]
    fn reusable_images_are_told_apart_by_name() {
        assert_eq!(pick_reusable("", "php"), None);
        let answer = "1111 <none>:<none>\n\
                      2222 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0-supervisor\n\
                      3333 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0\n\
                      4444 crm-gdb_nginx:1.4.0\n\
                      5555 r/crm-gdb_php_base:0.5.0";
        let pick = |role| pick_reusable(answer, role).map(|r| (r.id, r.built_as));
        assert_eq!(
            pick("php"),
            Some((
                "3333".into(),
                "127.0.0.1:5000/kiora/crm-gdb_php:1.4.0".into()
            ))
        );
        assert_eq!(pick("supervisor").unwrap().0, "2222");
        assert_eq!(pick("nginx").unwrap().0, "4444");
        assert_eq!(pick_reusable("1111 <none>:<none>", "php"), None);
        assert_eq!(role_of("r/crm-gdb_php_build:0.5.0"), None);
    }

    #[test]
    fn the_index_keeps_the_newest_sets_of_a_key_once_each() {
        let cache = tempfile::tempdir().unwrap();
        let set = |n: u32| -> Vec<(String, String)> {
            ["php", "php-s", "nginx"]
                .iter()
                .map(|name| (format!("sha256:{n}{name}"), format!("r/{name}:{n}")))
                .collect()
        };
        for n in [1, 2, 1, 3, 4, 5] {
            record(cache.path(), "k", &set(n));
        }
        let text = std::fs::read_to_string(index_file(cache.path(), "k")).unwrap();
        let firsts: Vec<&str> = sets(&text).iter().map(|s| s[0]).collect();
        assert_eq!(
            firsts,
            [
                "5php r/php:5",
                "4php r/php:4",
                "3php r/php:3",
                "1php r/php:1"
            ]
        );
        assert!(sets("half a set\n").is_empty());
        // Nothing else is left in the entry's directory.
        let files = std::fs::read_dir(index_file(cache.path(), "k").parent().unwrap()).unwrap();
        assert_eq!(files.count(), 1);
    }

    #[test]
    fn build_options_are_part_of_the_inputs_key() {
        let plain = key_options(false, Builder::Buildx, &[]);
        assert_ne!(plain, key_options(true, Builder::Buildx, &[]));
        assert_ne!(plain, key_options(false, Builder::Classic, &[]));
        assert_ne!(
            plain,
            key_options(false, Builder::Buildx, &["linux/amd64".into()])
        );
        assert_eq!(plain, key_options(false, Builder::Buildx, &[]));
    }
}
