//! Hashed assets of past releases, carried by each nginx image.
//!
//! A page rendered by release A names A's hashed CSS/JS. On one host the edge serves them from a
//! shared volume during and after a switch; on a swarm no volume spans the nodes, so the nginx
//! image of a release also carries the hashed assets of the releases before it: build-app copies
//! them out of the previous release's nginx image (the one compose.yaml names, from the local
//! engine or pulled) into `past-assets/build/` of the staging directory, which
//! docker/nginx/Dockerfile puts under the web root's `build/`, below the release's own files.
//!
//! A runner whose dependency cache lacks the compiled assets (a CI runner starts empty) takes the
//! previous release's own ones when they were made from the same inputs ([`ASSETS_KEY_LABEL`]),
//! instead of running npm: from the local engine, or from the image's last layer in the
//! registry (the web root, a few KB), not from the whole image ([`take_compiled`]).
//!
//! Bounded: the label [`ASSETS_LABEL`] of each nginx image lists, newest first, the releases
//! whose assets it holds and their files (`TAG=FILE,FILE TAG=FILE`); a new image keeps its own and
//! those of the last [`KEEP_PAST`] releases with other assets. Reuse of an image of the same
//! inputs key is allowed only when it carries the previous release's assets ([`covers`]).

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::build::registry_api::{self, Registry};
use crate::cmd::{Cmd, Runner};
use crate::reference::ImageRef;

/// Label of the nginx image: the releases whose hashed assets it holds, newest (its own) first.
pub const ASSETS_LABEL: &str = "org.kiora.assets";
/// Label of the nginx image: the cache key of the inputs its own compiled assets were made from
/// (`build_cache::ASSETS_INPUTS` and the build image).
pub const ASSETS_KEY_LABEL: &str = "org.kiora.assets-key";
/// Past releases (with assets of their own) whose files a new nginx image keeps.
pub const KEEP_PAST: usize = 3;
/// In the staging directory: the past files, as `past-assets/build/...`.
pub const PAST_DIR: &str = "past-assets";
/// Where the nginx image holds the hashed assets.
const BUILD_DIR: &str = "/var/www/app/public/build";
/// Named after what it lists, never carried over: only the live release's is right.
const MANIFEST: &str = "manifest.json";

/// The hashed files (relative to `build/`) of one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub release: String,
    pub files: Vec<String>,
}

/// The previous release's nginx image, as found before the build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    pub image: ImageRef,
    /// Its label, parsed; `None`: an image made before the label existed.
    pub history: Option<Vec<Entry>>,
    /// Its [`ASSETS_KEY_LABEL`] (`None`: an image made before the label existed).
    pub assets_key: Option<String>,
    /// In the local engine (else in the registry: pulled before its files are copied).
    pub local: bool,
    /// In the registry: its layers' digests, bottom first (the last one holds the web root).
    pub layers: Vec<String>,
}

/// The entries of a label value; a malformed one is an error (the label is ours).
pub fn parse(label: &str) -> Result<Vec<Entry>> {
    label
        .split_whitespace()
        .map(|entry| {
            let (release, files) = entry
                .split_once('=')
                .with_context(|| format!("{ASSETS_LABEL}: no '=' in {entry:?}"))?;
            Ok(Entry {
                release: release.to_string(),
                files: files
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

pub fn render(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}={}", e.release, e.files.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every file the entries name.
fn carried(entries: &[Entry]) -> BTreeSet<&str> {
    entries
        .iter()
        .flat_map(|e| e.files.iter().map(String::as_str))
        .collect()
}

/// May an nginx image labelled `label` serve as the next release after `previous`? Only if it
/// carries every file of the previous release (whose pages are open in browsers); an unlabelled
/// previous image cannot say what it holds, so nothing is reused after it.
pub fn covers(label: Option<&str>, previous: Option<&Previous>) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let Some(own) = previous.history.as_ref().and_then(|h| h.first()) else {
        return false;
    };
    let entries = match label.map(parse) {
        Some(Ok(entries)) => entries,
        _ => return false,
    };
    let carried = carried(&entries);
    own.files.iter().all(|f| carried.contains(f.as_str()))
}

/// The past entries a new image keeps: newest first, those adding files not already held (by
/// `own` or a newer entry), at most [`KEEP_PAST`].
fn kept(own: &Entry, past: &[Entry]) -> Vec<Entry> {
    let mut held: BTreeSet<String> = own.files.iter().cloned().collect();
    let mut out = Vec::new();
    for entry in past {
        if out.len() == KEEP_PAST {
            break;
        }
        if entry.files.iter().all(|f| held.contains(f)) {
            continue;
        }
        held.extend(entry.files.iter().cloned());
        out.push(entry.clone());
    }
    out
}

/// A name the label can hold (no separator of its grammar).
fn listable(name: &str) -> bool {
    !name.is_empty() && !name.contains([' ', ',', '=', '\t', '\n'])
}

/// The hashed files under `dir` (relative, sorted), without the manifest.
pub fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(top: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                walk(top, &path, out)?;
            } else {
                let relative = path.strip_prefix(top).expect("under top");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.retain(|f| f != MANIFEST && listable(f));
    out.sort();
    Ok(out)
}

/// The label of the previous release's nginx image: in the local engine, else in the registry
/// (read through its API where one can be spoken to, else pulled when `pull`). `None`: no such
/// image anywhere we look (a first release).
pub fn find_previous(
    runner: &Runner,
    image: &ImageRef,
    registry: Option<&Registry>,
    pull: bool,
) -> Result<Option<Previous>> {
    let reference = image.to_string();
    let with = |label: Option<String>, assets_key: Option<String>, layers: Option<Vec<String>>| {
        let history = label
            .filter(|l| !l.is_empty())
            .map(|l| parse(&l))
            .transpose()?;
        anyhow::Ok(Some(Previous {
            image: image.clone(),
            history,
            assets_key: assets_key.filter(|k| !k.is_empty()),
            local: layers.is_none(),
            layers: layers.unwrap_or_default(),
        }))
    };
    let local = || -> Result<_> {
        match crate::docker::image_label(runner, &reference, ASSETS_LABEL)? {
            Some(label) => {
                let key = crate::docker::image_label(runner, &reference, ASSETS_KEY_LABEL)?;
                with(label, key.flatten(), None)
            }
            None => Ok(None),
        }
    };
    if let Some(found) = local()? {
        return Ok(Some(found));
    }
    let Some(registry) = registry else {
        if !pull || runner.dry_run {
            return Ok(None);
        }
        // A registry the docker CLI speaks to (TLS, tokens): the image comes into the engine.
        return match runner.query(&crate::docker::pull(image)) {
            Ok(_) => local(),
            Err(err) if err.is::<crate::interrupt::Interrupted>() => Err(err),
            Err(_) => {
                runner.say(format!(
                    "  previous release {image}: not in the engine, not pulled: no past assets carried"
                ));
                Ok(None)
            }
        };
    };
    // The config blob is read once for both labels (`None` for a multi-platform list).
    let found = registry
        .manifest(image)
        .and_then(|manifest| match manifest {
            Some(manifest) => Ok(Some((
                registry.config(image, &manifest)?,
                manifest.layers(),
            ))),
            None => Ok(None),
        });
    match found {
        Ok(Some((config, layers))) => {
            let label = |key| {
                config
                    .as_deref()
                    .and_then(|c| registry_api::config_label(c, key))
            };
            with(label(ASSETS_LABEL), label(ASSETS_KEY_LABEL), Some(layers))
        }
        Ok(None) => Ok(None),
        Err(err) if err.is::<crate::interrupt::Interrupted>() => Err(err),
        Err(_) => Ok(None),
    }
}

fn container_name() -> String {
    format!("xtask-{}-past-assets", std::process::id())
}

/// The commands that copy the build/ files of `image` into `dest`.
fn copy_commands(image: &str, dest: &Path) -> [Cmd; 2] {
    let name = container_name();
    [
        Cmd::new("docker").args(["create", "--name", &name, image]),
        Cmd::new("docker").args([
            "cp",
            &format!("{name}:{BUILD_DIR}/."),
            &dest.display().to_string(),
        ]),
    ]
}

/// Fills `STAGING/past-assets/build/` (always made, maybe empty) with the past files the new
/// nginx image keeps, and returns the value of its [`ASSETS_LABEL`]: `release`'s own files (the
/// compiled `app/public/build/`), then the kept past entries.
pub fn stage(
    runner: &Runner,
    staging: &Path,
    release: &str,
    previous: Option<&Previous>,
    cache: Option<&Path>,
) -> Result<String> {
    let dest = staging.join(PAST_DIR).join("build");
    if runner.dry_run {
        if let Some(previous) = previous {
            for cmd in copy_commands(&previous.image.to_string(), &dest) {
                runner.run(&cmd)?;
            }
            runner.run(&crate::docker::remove_container(&container_name()))?;
        }
        return Ok(format!("<assets of {release} and the releases before it>"));
    }
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let own = Entry {
        release: release.to_string(),
        files: files_under(&staging.join("app/public/build"))?,
    };
    let Some(previous) = previous else {
        return Ok(render(&[own]));
    };
    let cached = match (&previous.history, cache) {
        (Some(history), Some(cache)) => {
            let kept = kept(&own, history);
            from_cache(runner, cache, &carried(&kept), &dest)?
        }
        _ => false,
    };
    if !cached {
        copy_from_image(runner, previous, &dest)?;
    }
    let found = files_under(&dest)?;
    let past = match &previous.history {
        Some(history) => history.clone(),
        // Made before the label: all its files are its own.
        None => vec![Entry {
            release: previous.image.tag.clone(),
            files: found.clone(),
        }],
    };
    let kept = kept(&own, &past);
    let wanted = carried(&kept);
    // What it holds but no kept entry names (older releases, the manifest) goes.
    for file in files_under(&dest)?
        .iter()
        .filter(|f| !wanted.contains(f.as_str()))
        .chain(std::iter::once(&MANIFEST.to_string()))
    {
        let path = dest.join(file);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|f| !found.iter().any(|g| g == *f))
        .copied()
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} lacks files its {ASSETS_LABEL} label names ({}); rebuild that release with --rebuild",
            previous.image,
            missing.join(", ")
        );
    }
    let names: Vec<&str> = kept.iter().map(|e| e.release.as_str()).collect();
    runner.say(format!(
        "  past assets: {} file(s) of {} from {}",
        wanted.len(),
        if names.is_empty() {
            "no other release".to_string()
        } else {
            names.join(", ")
        },
        previous.image
    ));
    let mut entries = vec![own];
    entries.extend(kept);
    Ok(render(&entries))
}

/// Puts the previous release's own compiled assets (its hashed files and manifest) into `dest`
/// (the staging's `app/public/build`, absent) when its [`ASSETS_KEY_LABEL`] is `key`: they are
/// what npm would make. Read from the local engine, else from the image's last layer in the
/// registry. `false`: other inputs, or they could not be read (then `dest` is left absent and
/// npm runs); `scratch` is a directory of the staging where they are unpacked first.
pub fn take_compiled(
    runner: &Runner,
    previous: &Previous,
    registry: Option<&Registry>,
    key: &str,
    dest: &Path,
    scratch: &Path,
) -> Result<bool> {
    let own = previous.history.as_ref().and_then(|h| h.first());
    let (Some(own), true) = (own, previous.assets_key.as_deref() == Some(key)) else {
        return Ok(false);
    };
    let layer = match (previous.local, registry, previous.layers.last()) {
        (true, _, _) => None,
        (false, Some(registry), Some(layer)) => Some((registry, layer)),
        // Not readable here (a multi-platform list in the registry): npm runs.
        _ => return Ok(false),
    };
    std::fs::create_dir_all(scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let read = match layer {
        None => copy_from_image(runner, previous, scratch),
        Some((registry, layer)) => from_layer(runner, registry, &previous.image, layer, scratch),
    };
    let wanted: Vec<&str> = own
        .files
        .iter()
        .map(String::as_str)
        .chain([MANIFEST])
        .collect();
    let complete = match read {
        Ok(()) => wanted.iter().all(|f| scratch.join(f).is_file()),
        Err(err) if err.is::<crate::interrupt::Interrupted>() => return Err(err),
        Err(err) => {
            runner.trace(&format!("  {}: {err:#}", previous.image));
            false
        }
    };
    if complete {
        for file in &wanted {
            let target = dest.join(file);
            // rwxr-xr-x, as npm makes it, whatever this process's umask.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(target.parent().unwrap_or(dest))
                .with_context(|| format!("cannot create {}", dest.display()))?;
            std::fs::rename(scratch.join(file), &target)
                .with_context(|| format!("cannot move {file} into {}", dest.display()))?;
        }
        runner.say(format!(
            "  public/build/ from {}: its assets have the same inputs, npm skipped",
            previous.image
        ));
    }
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)
            .with_context(|| format!("cannot remove {}", scratch.display()))?;
    }
    Ok(complete)
}

/// Unpacks the hashed-assets directory of `image`'s layer `layer` (its web root) into `dest`.
fn from_layer(
    runner: &Runner,
    registry: &Registry,
    image: &ImageRef,
    layer: &str,
    dest: &Path,
) -> Result<()> {
    runner.trace(&format!(
        "$ GET /v2/.../blobs/{layer} ({image}'s last layer)"
    ));
    let blob = registry.blob(image, layer)?;
    runner.query(&layer_untar(dest).stdin(blob)).map(drop)
}

/// `tar` unpacking [`BUILD_DIR`] of a layer (a gzip tar on stdin) into `dest`, as its contents.
fn layer_untar(dest: &Path) -> Cmd {
    let member = BUILD_DIR.trim_start_matches('/');
    Cmd::new("tar")
        .args(["-xz", "-C"])
        .arg(dest.display().to_string())
        .arg(format!("--strip-components={}", member.split('/').count()))
        .arg(member)
}

/// Copies the build/ files of the previous release's image into `dest` (pulled first when it
/// is only in the registry), through a container that is created, read and removed.
fn copy_from_image(runner: &Runner, previous: &Previous, dest: &Path) -> Result<()> {
    if !previous.local {
        runner.run(&crate::docker::pull(&previous.image)).with_context(|| {
        format!(
            "cannot pull {} for its hashed assets; pull it by hand, or point compose.yaml at a release that exists",
            previous.image
        )
    })?;
    }
    let image = previous.image.to_string();
    let [create, copy] = copy_commands(&image, dest);
    let remove = crate::docker::remove_container(&container_name());
    let copied = match crate::docker::copy_out(
        runner,
        &[&create, &copy, &remove],
        (&container_name(), &image),
        (BUILD_DIR, dest),
    ) {
        Some(copied) => copied,
        None => {
            runner.query(&create)?;
            let copied = runner.query(&copy).map(drop);
            // Removed whatever the copy did (also after Ctrl-C).
            let _ = runner.cleanup(&remove);
            copied
        }
    };
    copied.with_context(|| format!("cannot copy the hashed assets of {}", previous.image))
}

/// Fills `dest` with the `wanted` files (relative to build/) from the compiled assets in the
/// dependency cache (`CACHE/assets/KEY/`, see `tools`), when every one of them is there: a
/// hashed name names its content (that is what lets browsers keep them a year), so a past
/// release's file compiled here is the file its image holds. No container of the previous
/// image is made (~0.2 s of the engine's work, ~1 s on a busy machine). `false`: one is
/// missing and nothing was copied (the image is read instead).
fn from_cache(runner: &Runner, cache: &Path, wanted: &BTreeSet<&str>, dest: &Path) -> Result<bool> {
    let Ok(entries) = std::fs::read_dir(cache.join("assets")) else {
        return Ok(false);
    };
    // Complete entries only (a partial one is a dot-directory until renamed into place).
    let dirs: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let mut sources = Vec::new();
    for file in wanted {
        match dirs.iter().map(|d| d.join(file)).find(|p| p.is_file()) {
            Some(source) => sources.push((source, dest.join(file))),
            None => return Ok(false),
        }
    }
    for (source, target) in &sources {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::copy(source, target)
            .with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
    }
    runner.trace(&format!(
        "  past assets: {} file(s) from the dependency cache ({}), the previous image not opened",
        sources.len(),
        cache.join("assets").display()
    ));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(release: &str, files: &[&str]) -> Entry {
        Entry {
            release: release.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn previous(label: Option<&str>) -> Previous {
        Previous {
            image: ImageRef {
                registry: "r".into(),
                name: "crm-gdb_nginx".into(),
                tag: "1.1.0".into(),
            },
            history: label.map(|l| parse(l).unwrap()),
            assets_key: None,
            local: true,
            layers: Vec::new(),
        }
    }

    #[test]
    fn a_layer_gives_its_hashed_assets_directory_as_its_contents() {
        assert_eq!(
            layer_untar(Path::new("/s/.previous-assets")).argv(),
            [
                "tar",
                "-xz",
                "-C",
                "/s/.previous-assets",
                "--strip-components=5",
                "var/www/app/public/build"
            ]
        );
    }

    #[test]
    fn compiled_assets_are_taken_only_from_the_same_inputs() {
        let runner = Runner::new(false, crate::progress::Verbosity::Quiet);
        let dir = tempfile::tempdir().unwrap();
        let (dest, scratch) = (dir.path().join("build"), dir.path().join("scratch"));
        let mut before = previous(Some("1.1.0=app-a.css"));
        // Unlabelled (an older image), then labelled with other inputs: nothing read, npm runs.
        for key in [None, Some("other".to_string())] {
            before.assets_key = key;
            let taken = take_compiled(&runner, &before, None, "k1", &dest, &scratch).unwrap();
            assert!(!taken && !dest.exists() && !scratch.exists());
        }
        // In the registry, with no API to read its layer: npm runs too.
        before.assets_key = Some("k1".into());
        before.local = false;
        let taken = take_compiled(&runner, &before, None, "k1", &dest, &scratch).unwrap();
        assert!(!taken && !dest.exists() && !scratch.exists());
    }

    #[test]
    fn the_label_round_trips() {
        let entries = vec![
            entry("1.2.0", &["app-b.css", "app-b.js"]),
            entry("1.1.0", &["app-a.css"]),
            entry("1.0.0", &[]),
        ];
        let text = render(&entries);
        assert_eq!(text, "1.2.0=app-b.css,app-b.js 1.1.0=app-a.css 1.0.0=");
        assert_eq!(parse(&text).unwrap(), entries);
        assert!(parse("1.0.0").is_err());
    }

    #[test]
    fn only_an_image_carrying_the_previous_release_assets_is_reused() {
        let prev = previous(Some("1.1.0=app-a.css,app-a.js 1.0.0=app-0.css"));
        // No previous release anywhere: any image of the same inputs will do.
        assert!(covers(None, None));
        // The same inputs as the previous release: its own assets.
        assert!(covers(Some("1.1.0=app-a.css,app-a.js"), Some(&prev)));
        assert!(covers(
            Some("1.3.0=app-c.css 1.1.0=app-a.css,app-a.js"),
            Some(&prev)
        ));
        // An older build of the same inputs, from before the previous release: not enough.
        assert!(!covers(Some("1.0.0=app-0.css"), Some(&prev)));
        assert!(!covers(None, Some(&prev)));
        assert!(!covers(Some("garbage"), Some(&prev)));
        // A previous image without the label cannot say what it serves.
        assert!(!covers(Some("1.1.0=app-a.css"), Some(&previous(None))));
    }

    #[test]
    fn the_last_releases_with_other_assets_are_kept() {
        let own = entry("1.5.0", &["e.css"]);
        let past = vec![
            entry("1.4.0", &["e.css"]), // same assets as this one: no slot
            entry("1.3.0", &["d.css"]),
            entry("1.2.0", &["c.css"]),
            entry("1.1.0", &["d.css"]), // already held
            entry("1.0.0", &["b.css"]),
            entry("0.9.0", &["a.css"]),
        ];
        let kept: Vec<String> = kept(&own, &past).into_iter().map(|e| e.release).collect();
        assert_eq!(kept, ["1.3.0", "1.2.0", "1.0.0"]);
        assert_eq!(KEEP_PAST, 3);
    }

    #[test]
    fn staged_files_skip_the_manifest_and_unlistable_names() {
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path();
        std::fs::create_dir_all(build.join("chunks")).unwrap();
        for file in ["app-x.css", "manifest.json", "chunks/c-1.js", "a b.css"] {
            std::fs::write(build.join(file), "x").unwrap();
        }
        assert_eq!(files_under(build).unwrap(), ["app-x.css", "chunks/c-1.js"]);
        assert!(files_under(&build.join("none")).unwrap().is_empty());
    }

    #[test]
    fn the_copy_commands() {
        let [create, copy] =
            copy_commands("r/crm-gdb_nginx:1.1.0", Path::new("/s/past-assets/build"));
        let name = container_name();
        assert_eq!(
            create.argv(),
            ["docker", "create", "--name", &name, "r/crm-gdb_nginx:1.1.0"]
        );
        assert_eq!(
            copy.argv(),
            [
                "docker",
                "cp",
                &format!("{name}:/var/www/app/public/build/."),
                "/s/past-assets/build"
            ]
        );
    }
}
