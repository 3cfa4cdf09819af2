//! The tools that make a release's vendor/ and public/build/: composer and npm, inside the
//! pinned build image or (`--host-tools`) the host's own. Which one is decided once, as a
//! [`Tools`] value, and every command is built from it.

use std::path::Path;

use anyhow::Result;

use crate::build::build_cache;
use crate::cmd::{Cmd, Runner};
use crate::config::Config;
use crate::docker;
use crate::reference::ImageRef;

pub const COMPOSER_INSTALL: [&str; 6] = [
    "composer",
    "install",
    "--no-dev",
    "--optimize-autoloader",
    "--no-interaction",
    "--no-progress",
];
pub const COMPOSER_DUMP: [&str; 5] = [
    "composer",
    "dump-autoload",
    "--optimize",
    "--no-dev",
    "--no-interaction",
];
pub const NPM_CI: [&str; 4] = ["npm", "ci", "--no-audit", "--no-fund"];
pub const NPM_BUILD: [&str; 3] = ["npm", "run", "build"];

/// Where composer and npm run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tools {
    /// In a throwaway container of the pinned build image (the default).
    BuildImage(ImageRef),
    /// The host's own composer and npm (`--host-tools`).
    Host,
}

impl Tools {
    pub fn new(config: &Config, host_tools: bool) -> Tools {
        if host_tools {
            Tools::Host
        } else {
            Tools::BuildImage(config.php_build())
        }
    }

    /// The build image, when the tools run in it.
    pub fn image(&self) -> Option<&ImageRef> {
        match self {
            Tools::BuildImage(image) => Some(image),
            Tools::Host => None,
        }
    }

    /// A composer/npm command in `app_dir`: inside the pinned build image, or with the host's tool.
    pub fn command(&self, app_dir: &Path, argv: &[&str]) -> Cmd {
        match self {
            Tools::Host => Cmd::new(argv[0])
                .args(argv[1..].iter().copied())
                .dir(app_dir),
            Tools::BuildImage(image) => {
                let ca_bundle = Path::new(docker::HOST_CA_BUNDLE);
                let ca_bundle = ca_bundle.is_file().then_some(ca_bundle);
                docker::run_in(
                    image,
                    &tool_container(argv),
                    app_dir,
                    docker::current_user(),
                    ca_bundle,
                    argv,
                )
            }
        }
    }

    /// What makes vendor/ and public/build/: the build image's ID, or the host's own tools.
    pub fn identity(&self, runner: &Runner) -> String {
        let Tools::BuildImage(image) = self else {
            return "host-tools".into();
        };
        runner
            .query(&docker::image_exists(&image.to_string()))
            .unwrap_or_else(|_| image.to_string())
    }

    /// `composer install --no-dev`, or, when the cache has the vendor/ of the same composer.json,
    /// composer.lock and path packages, a copy of it and `composer dump-autoload` (the classmap
    /// depends on src/).
    pub fn install_vendor(
        &self,
        runner: &Runner,
        app_dir: &Path,
        cache: Option<&Path>,
        tool_id: &str,
    ) -> Result<()> {
        let Some(cache) = cache else {
            return self.run(runner, app_dir, &COMPOSER_INSTALL);
        };
        let key =
            build_cache::dependency_key(runner, app_dir, &build_cache::VENDOR_INPUTS, tool_id)?;
        let entry = build_cache::CacheEntry::new(cache, "vendor", &key);
        let vendor = app_dir.join("vendor");
        let autoload = autoload_entry(runner, cache, app_dir, &key)?;
        if let Some(autoload) = autoload.as_ref().filter(|a| a.hit()) {
            runner.say(format!(
                "  vendor/ and its classmap from the cache ({}): same packages, same files under src/; composer skipped",
                autoload.path.display()
            ));
            return autoload.restore(runner, &vendor);
        }
        if entry.hit() {
            runner.say(format!(
                "  vendor/ from the cache ({}): composer.json and composer.lock unchanged",
                entry.path.display()
            ));
            entry.restore(runner, &vendor)?;
            self.run(runner, app_dir, &COMPOSER_DUMP)?;
        } else {
            self.run(runner, app_dir, &COMPOSER_INSTALL)?;
            entry.store(runner, &vendor)?;
        }
        match autoload {
            Some(autoload) => autoload.store(runner, &vendor),
            None => Ok(()),
        }
    }

    /// `npm ci && npm run build`, or nothing but a copy when the cache has the public/build/ of
    /// the same package files, build script and assets/, or when `from_previous(KEY, OUTPUT)`
    /// put the previous release's there (made from the same inputs). Returns the inputs' cache
    /// key (`None` without a cache).
    pub fn compile_assets(
        &self,
        runner: &Runner,
        app_dir: &Path,
        cache: Option<&Path>,
        tool_id: &str,
        from_previous: &dyn Fn(&str, &Path) -> Result<bool>,
    ) -> Result<Option<String>> {
        let npm = || {
            self.run(runner, app_dir, &NPM_CI)?;
            self.run(runner, app_dir, &NPM_BUILD)
        };
        let Some(cache) = cache else {
            return npm().map(|()| None);
        };
        let key =
            build_cache::dependency_key(runner, app_dir, &build_cache::ASSETS_INPUTS, tool_id)?;
        let entry = build_cache::CacheEntry::new(cache, "assets", &key);
        let output = app_dir.join("public/build");
        if entry.hit() {
            runner.say(format!(
                "  public/build/ from the cache ({}): assets unchanged, npm skipped",
                entry.path.display()
            ));
            if output.exists() {
                std::fs::remove_dir_all(&output)?;
            }
            entry.restore(runner, &output)?;
            return Ok(Some(key));
        }
        let taken = !output.exists() && from_previous(&key, &output)?;
        if !taken {
            npm()?;
        }
        // node_modules/ is never part of a release: the build context's .dockerignore drops it,
        // and the staging directory goes away with it.
        entry.store(runner, &output)?;
        Ok(Some(key))
    }

    /// Runs [`Tools::command`]; when it fails (Ctrl-C included) its container is removed, because
    /// after an interrupt the docker client may have been killed while the container still ran.
    fn run(&self, runner: &Runner, app_dir: &Path, argv: &[&str]) -> Result<()> {
        let result = runner.run(&self.command(app_dir, argv));
        if result.is_err() && *self != Tools::Host {
            remove_tool_container(runner, &tool_container(argv));
        }
        result
    }
}

/// The cache entry of vendor/ with its optimized classmap, when the autoloader allows one: with
/// PSR-4 only (no `classmap`/`files`/`exclude-from-classmap` rule in composer.json), the
/// classmap composer writes maps each class to the file at its PSR-4 path, so it depends on
/// the packages (`vendor_key`) and the list of files under the autoload directory, not on
/// their contents: a change inside `src/` needs no composer run at all. `None`: always run it.
fn autoload_entry(
    runner: &Runner,
    cache: &Path,
    app_dir: &Path,
    vendor_key: &str,
) -> Result<Option<build_cache::CacheEntry>> {
    let composer = std::fs::read_to_string(app_dir.join("composer.json")).unwrap_or_default();
    let Some(dirs) = psr4_only_dirs(&composer) else {
        return Ok(None);
    };
    let mut entries = vec![("vendor".to_string(), vendor_key.to_string())];
    for dir in dirs {
        for file in build_cache::files_under(app_dir, &dir) {
            entries.push(("file".to_string(), file));
        }
    }
    let key = build_cache::hash_text(runner, &build_cache::material(&entries))?;
    Ok(Some(build_cache::CacheEntry::new(cache, "autoload", &key)))
}

/// The PSR-4 directories of composer.json's `autoload`, or `None` if it has any other rule
/// (whose output would depend on file contents) or cannot be read plainly.
fn psr4_only_dirs(composer_json: &str) -> Option<Vec<String>> {
    if [
        "\"classmap\"",
        "\"files\"",
        "\"exclude-from-classmap\"",
        "\"psr-0\"",
    ]
    .iter()
    .any(|rule| composer_json.contains(rule))
    {
        return None;
    }
    let autoload = composer_json.find("\"autoload\"")?;
    let psr4 = autoload + composer_json[autoload..].find("\"psr-4\"")?;
    let body = &composer_json[psr4..];
    let body = &body[body.find('{')? + 1..body.find('}')?];
    if body.contains('[') {
        return None; // several directories for one prefix: not read here
    }
    // "Crm\\": "src/" pairs: every second quoted string is a directory.
    let strings: Vec<&str> = body.split('"').skip(1).step_by(2).collect();
    let dirs: Vec<String> = strings
        .iter()
        .skip(1)
        .step_by(2)
        .map(|d| d.trim_end_matches('/').to_string())
        .collect();
    (!dirs.is_empty() && dirs.iter().all(|d| !d.is_empty() && !d.contains(".."))).then_some(dirs)
}

/// Removes a tool container, if there is one: usually it is gone already (`--rm`), and the
/// `rm` fails harmlessly. After Ctrl-C the docker client may have died with its request to
/// create the container still on the way: the engine then creates it just after our first
/// `rm`, and it stays "Created" for ever (never started, so `--rm` never applies). Seen in
/// tests/interrupts.rs; hence a few more tries within a second.
fn remove_tool_container(runner: &Runner, name: &str) {
    let remove = docker::remove_container(name);
    let _ = runner.cleanup(&remove);
    if crate::interrupt::requested() {
        for _ in 0..4 {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let _ = runner.cleanup(&remove);
        }
    }
}

/// `xtask-<pid>-npm-ci`: unique to this run, and says what it is in `docker ps`.
fn tool_container(argv: &[&str]) -> String {
    let words: Vec<&str> = argv
        .iter()
        .copied()
        .filter(|w| !w.starts_with('-'))
        .collect();
    format!("xtask-{}-{}", std::process::id(), words.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        }
    }

    /// The commands of [`Tools::new`]`(config, host_tools)`.
    fn tool(config: &Config, app_dir: &Path, host_tools: bool, argv: &[&str]) -> Cmd {
        Tools::new(config, host_tools).command(app_dir, argv)
    }

    #[test]
    fn composer_and_npm_run_inside_the_pinned_build_image() {
        let cmd = tool(&config(), Path::new("/s/app"), false, &COMPOSER_INSTALL);
        let argv = cmd.argv();
        assert_eq!(argv[..3], ["docker", "run", "--rm"]);
        let name = format!("xtask-{}-composer-install", std::process::id());
        assert_eq!(argv[3..6], ["--init", "--name", &name]);
        let image = argv
            .iter()
            .position(|a| {
                *a == format!(
                    "127.0.0.1:5000/kiora/crm-gdb_php_build:{}",
                    crate::config::DEFAULT_BASE_TAG
                )
            })
            .unwrap();
        assert_eq!(argv[image - 3..image], ["/s/app:/app", "--workdir", "/app"]);
        assert_eq!(argv[image + 1..], COMPOSER_INSTALL);
    }

    #[test]
    fn only_a_psr4_autoloader_lets_composer_be_skipped() {
        let app =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../app/composer.json"))
                .unwrap();
        assert_eq!(psr4_only_dirs(&app), Some(vec!["src".to_string()]));
        let two = r#"{"autoload": {"psr-4": {"A\\": "src/", "B\\": "lib"}}}"#;
        assert_eq!(
            psr4_only_dirs(two),
            Some(vec!["src".to_string(), "lib".to_string()])
        );
        for other in [
            r#"{"autoload": {"psr-4": {"A\\": "src/"}, "files": ["f.php"]}}"#,
            r#"{"autoload": {"classmap": ["lib/"]}}"#,
            r#"{"autoload": {"psr-0": {"A": "src/"}}}"#,
            r#"{"autoload": {"psr-4": {"A\\": "../x"}}}"#,
            r#"{"require": {}}"#,
            r#"{"autoload": {"psr-4": {"A\\": ["src/", "lib/"]}}}"#,
        ] {
            assert_eq!(psr4_only_dirs(other), None, "{other}");
        }
    }

    #[test]
    fn host_tools_run_in_the_staging_directory() {
        let cmd = tool(&config(), Path::new("/s/app"), true, &NPM_BUILD);
        assert_eq!(cmd.argv(), ["npm", "run", "build"]);
        assert_eq!(cmd.dir.as_deref(), Some(Path::new("/s/app")));
    }
}
