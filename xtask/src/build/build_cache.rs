//! What makes a rebuild fast: fingerprints of the build inputs and a cache outside the tree.
//!
//! - The inputs key of a release: the git trees of `app`, `docker` and `.dockerignore` at HEAD
//!   (or, with `--allow-dirty`, the content of every file that would be staged), the image IDs
//!   of the base images, the builder and the platforms. `build-app` writes it on each image as
//!   the label [`INPUTS_LABEL`]; images already carrying the same key are re-tagged, not rebuilt.
//! - The dependency cache (`$XTASK_CACHE_DIR`, else `$XDG_CACHE_HOME/xtask`, else
//!   `~/.cache/xtask`): the production `vendor/` keyed by composer.json, composer.lock and the
//!   path packages, and the compiled `public/build/` keyed by package.json, package-lock.json,
//!   build.mjs and `assets/`, both also keyed by the tool that made them (the build image ID).
//!
//! Every hash is git's (`git hash-object`, SHA-1 or whatever git uses): stable across xtask
//! versions and machines, and no hashing crate to build.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cmd::{Cmd, Runner};
use crate::project::{git, BUILD_INPUTS};

/// Label holding `<role>-<inputs key>` on each release image (role: php, supervisor, nginx).
pub const INPUTS_LABEL: &str = "org.kiora.build.inputs";

/// Bump when what goes into a key changes meaning: old keys then simply stop matching.
const KEY_VERSION: &str = "xtask-build-inputs-v1";

/// The text a key is the hash of: one `name value` line per input, sorted, so the order in
/// which inputs are listed never matters.
pub fn material(entries: &[(String, String)]) -> String {
    let mut lines: Vec<String> = entries.iter().map(|(k, v)| format!("{k} {v}")).collect();
    lines.sort();
    lines.dedup();
    let mut text = format!("{KEY_VERSION}\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The git hash of `text`.
pub fn hash_text(runner: &Runner, text: &str) -> Result<String> {
    runner
        .query(
            &Cmd::new("git")
                .args(["hash-object", "--no-filters", "--stdin"])
                .stdin(text.as_bytes().to_vec()),
        )
        .context("cannot hash the build inputs with `git hash-object`")
}

/// `(relative path, git blob hash)` of each file of `relatives` under `dir`.
pub fn hash_files(
    runner: &Runner,
    dir: &Path,
    relatives: &[String],
) -> Result<Vec<(String, String)>> {
    if relatives.is_empty() {
        return Ok(Vec::new());
    }
    let mut paths = relatives.join("\n");
    paths.push('\n');
    let out = runner.query(
        &Cmd::new("git")
            .args(["hash-object", "--no-filters", "--stdin-paths"])
            .dir(dir)
            .stdin(paths),
    )?;
    let hashes: Vec<&str> = out.lines().collect();
    anyhow::ensure!(
        hashes.len() == relatives.len(),
        "`git hash-object` answered {} hashes for {} files",
        hashes.len(),
        relatives.len()
    );
    Ok(relatives
        .iter()
        .cloned()
        .zip(hashes.into_iter().map(String::from))
        .collect())
}

/// Every regular file under `dir/relative` (a file or a directory), as paths relative to `dir`,
/// sorted; symlinks are listed with their target. Missing: nothing.
pub fn files_under(dir: &Path, relative: &str) -> Vec<String> {
    fn walk(dir: &Path, relative: &Path, out: &mut Vec<String>) {
        let path = dir.join(relative);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        if meta.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                return;
            };
            for entry in entries.flatten() {
                walk(dir, &relative.join(entry.file_name()), out);
            }
        } else {
            out.push(relative.display().to_string());
        }
    }
    let mut out = Vec::new();
    walk(dir, Path::new(relative), &mut out);
    out.sort();
    out
}

/// What the production `vendor/` depends on, relative to the app directory.
pub const VENDOR_INPUTS: [&str; 3] = ["composer.json", "composer.lock", "packages"];
/// What the compiled `public/build/` depends on, relative to the app directory.
pub const ASSETS_INPUTS: [&str; 4] = ["package.json", "package-lock.json", "build.mjs", "assets"];

/// The cache key of what `inputs` (files and directories of `app_dir`) produce with `tool`.
pub fn dependency_key(
    runner: &Runner,
    app_dir: &Path,
    inputs: &[&str],
    tool: &str,
) -> Result<String> {
    let files: Vec<String> = inputs
        .iter()
        .flat_map(|i| files_under(app_dir, i))
        .collect();
    let mut entries = hash_files(runner, app_dir, &files)?;
    entries.push(("tool".into(), tool.to_string()));
    hash_text(runner, &material(&entries))
}

/// The content of the build inputs, as `(name, hash)` lines for the inputs key: at HEAD the git
/// trees (`git rev-parse HEAD:app ...`), else the hash of every file the staging would copy.
pub fn source_entries(runner: &Runner, root: &Path, head: bool) -> Result<Vec<(String, String)>> {
    if head {
        let specs: Vec<String> = BUILD_INPUTS.iter().map(|p| format!("HEAD:{p}")).collect();
        let out = runner.query(&git(root).arg("rev-parse").args(&specs))?;
        return Ok(BUILD_INPUTS
            .iter()
            .map(|p| p.to_string())
            .zip(out.lines().map(String::from))
            .collect());
    }
    let files = crate::build::staging::working_tree_files(runner, root)?;
    hash_files(runner, root, &files)
}

/// Where the dependency cache lives: `XTASK_CACHE_DIR`, `$XDG_CACHE_HOME/xtask`, `~/.cache/xtask`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XTASK_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("xtask")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/xtask")))
}

/// One kind of cached output (`vendor`, `assets`) under one key.
pub struct CacheEntry {
    pub path: PathBuf,
}

impl CacheEntry {
    pub fn new(cache: &Path, kind: &str, key: &str) -> CacheEntry {
        CacheEntry {
            path: cache.join(kind).join(key),
        }
    }

    /// True when a complete copy is there (entries appear by rename only).
    pub fn hit(&self) -> bool {
        self.path.is_dir()
    }

    /// Copies the cached directory to `dest` (which must not exist yet).
    pub fn restore(&self, runner: &Runner, dest: &Path) -> Result<()> {
        runner.run(&copy(&self.path, dest))
    }

    /// Stores a copy of `src`: copied beside the entry, then renamed into place, so a reader
    /// (or a run interrupted half-way) never sees half an entry. A failure to store is a
    /// warning: the build goes on without the cache.
    pub fn store(&self, runner: &Runner, src: &Path) -> Result<()> {
        if runner.dry_run || self.hit() {
            return Ok(());
        }
        let parent = self.path.parent().expect("an entry has a parent");
        let partial = parent.join(format!(
            ".partial-{}-{}",
            std::process::id(),
            self.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let result = std::fs::create_dir_all(parent)
            .map_err(anyhow::Error::from)
            .and_then(|()| runner.run(&copy(src, &partial)))
            .and_then(|()| {
                std::fs::rename(&partial, &self.path).or_else(|err| {
                    // Another build stored the same key meanwhile: theirs is as good.
                    if self.hit() {
                        Ok(())
                    } else {
                        Err(err.into())
                    }
                })
            });
        let _ = std::fs::remove_dir_all(&partial);
        match result {
            Err(err) if err.is::<crate::interrupt::Interrupted>() => Err(err),
            Err(err) => {
                runner.say(format!(
                    "  warning: cannot store {} in the cache ({err:#}); going on without",
                    self.path.display()
                ));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

/// `cp -a FROM TO`: a directory copied with its modes and times.
fn copy(from: &Path, to: &Path) -> Cmd {
    Cmd::new("cp")
        .arg("-a")
        .arg(from.display().to_string())
        .arg(to.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Verbosity;

    fn runner() -> Runner {
        Runner::new(false, Verbosity::Quiet)
    }

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn material_ignores_order_and_repeats() {
        let a = material(&entries(&[("app", "1"), ("base", "sha256:2")]));
        let b = material(&entries(&[
            ("base", "sha256:2"),
            ("app", "1"),
            ("app", "1"),
        ]));
        assert_eq!(a, b);
        assert_eq!(a, "xtask-build-inputs-v1\napp 1\nbase sha256:2\n");
        let c = material(&entries(&[("app", "1"), ("base", "sha256:3")]));
        assert_ne!(a, c);
    }

    #[test]
    fn hash_text_is_gits_blob_hash() {
        // `printf 'hello\n' | git hash-object --stdin`
        let hash = hash_text(&runner(), "hello\n").unwrap();
        assert!(
            hash == "ce013625030ba8dba906f756967f9e9ca394464a" || hash.len() == 64,
            "{hash}"
        );
    }

    fn write(dir: &Path, relative: &str, content: &str) {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn dependency_keys_change_with_their_inputs_only() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path();
        for (file, content) in [
            ("composer.json", "{}"),
            ("composer.lock", "{\"packages\":[]}"),
            ("packages/tool/composer.json", "{}"),
            ("package.json", "{}"),
            ("package-lock.json", "{}"),
            ("build.mjs", "build()"),
            ("assets/app.css", "body{}"),
            ("src/Contact.php", "<?php"),
            ("public/index.php", "<?php"),
        ] {
            write(app, file, content);
        }
        let keys = |tool: &str| {
            (
                dependency_key(&runner(), app, &VENDOR_INPUTS, tool).unwrap(),
                dependency_key(&runner(), app, &ASSETS_INPUTS, tool).unwrap(),
            )
        };
        let (vendor, assets) = keys("sha256:build");
        assert_ne!(vendor, assets);
        assert_eq!(keys("sha256:build"), (vendor.clone(), assets.clone()));

        // Code changes touch neither key.
        write(app, "src/Contact.php", "<?php // changed");
        write(app, "public/index.php", "<?php // changed");
        write(app, "src/New.php", "<?php");
        assert_eq!(keys("sha256:build"), (vendor.clone(), assets.clone()));

        // Another build image: both change.
        let (v, a) = keys("sha256:other");
        assert_ne!(v, vendor);
        assert_ne!(a, assets);

        // composer.lock or a path package: only vendor.
        write(app, "composer.lock", "{\"packages\":[1]}");
        let (v, a) = keys("sha256:build");
        assert_ne!(v, vendor);
        assert_eq!(a, assets);
        write(app, "packages/tool/src/X.php", "<?php");
        let (v2, _) = keys("sha256:build");
        assert_ne!(v2, v);

        // An asset, the lock file or the build script: only assets.
        let (vendor, _) = keys("sha256:build");
        for (file, content) in [
            ("assets/app.css", "body{color:red}"),
            ("package-lock.json", "{\"v\":2}"),
            ("build.mjs", "build(1)"),
        ] {
            let (_, before) = keys("sha256:build");
            write(app, file, content);
            let (v, a) = keys("sha256:build");
            assert_eq!(v, vendor, "{file}");
            assert_ne!(a, before, "{file}");
        }
    }

    fn git_in(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// The inputs key as build-app computes it, minus the base images.
    fn key(root: &Path, head: bool, bases: &[(&str, &str)]) -> String {
        let mut e = source_entries(&runner(), root, head).unwrap();
        e.extend(entries(bases));
        hash_text(&runner(), &material(&e)).unwrap()
    }

    #[test]
    fn inputs_key_follows_the_build_inputs_and_the_base_images() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "app/src/A.php", "<?php");
        write(root, "docker/app/Dockerfile", "FROM x");
        write(root, ".dockerignore", "**/.env");
        write(root, "xtask/src/main.rs", "fn main() {}");
        write(root, ".gitignore", "node_modules/\n");
        git_in(root, &["init", "-q"]);
        git_in(root, &["add", "-A"]);
        git_in(root, &["commit", "-q", "-m", "one"]);
        let base = [("base", "sha256:1")];
        let head = key(root, true, &base);
        let tree = key(root, false, &base);
        assert_eq!(key(root, true, &base), head, "stable");

        // Not inputs: other directories, ignored and excluded files.
        write(root, "xtask/src/main.rs", "fn main() { }");
        write(root, "app/node_modules/x/index.js", "1");
        write(root, "app/.env", "APP_SECRET=1");
        git_in(root, &["add", "xtask"]);
        git_in(root, &["commit", "-q", "-m", "xtask only"]);
        assert_eq!(key(root, true, &base), head);
        assert_eq!(key(root, false, &base), tree);

        // Another base image ID.
        assert_ne!(key(root, true, &[("base", "sha256:2")]), head);

        // An uncommitted change: the working tree's key moves, HEAD's does not until committed.
        write(root, "app/src/A.php", "<?php // one line");
        assert_eq!(key(root, true, &base), head);
        let dirty = key(root, false, &base);
        assert_ne!(dirty, tree);
        git_in(root, &["commit", "-q", "-am", "php"]);
        assert_ne!(key(root, true, &base), head);
        // An untracked, not ignored file is staged by --allow-dirty: part of its key.
        write(root, "docker/new.conf", "x");
        assert_ne!(key(root, false, &base), dirty);
    }

    #[test]
    fn files_under_lists_sorted_relative_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "assets/b.css", "");
        write(dir.path(), "assets/sub/a.js", "");
        write(dir.path(), "build.mjs", "");
        assert_eq!(
            files_under(dir.path(), "assets"),
            ["assets/b.css", "assets/sub/a.js"]
        );
        assert_eq!(files_under(dir.path(), "build.mjs"), ["build.mjs"]);
        assert!(files_under(dir.path(), "missing").is_empty());
    }

    #[test]
    fn cache_entries_appear_whole_and_restore() {
        let cache = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        write(src.path(), "vendor/autoload.php", "<?php");
        let entry = CacheEntry::new(cache.path(), "vendor", "k1");
        assert!(!entry.hit());
        entry.store(&runner(), &src.path().join("vendor")).unwrap();
        assert!(entry.hit());
        let leftovers: Vec<_> = std::fs::read_dir(cache.path().join("vendor"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["k1"]);
        let dest = src.path().join("restored");
        entry.restore(&runner(), &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("autoload.php")).unwrap(),
            "<?php"
        );
    }
}
