//! Typed defaults for everything that names an image, in one place.
//!
//! Each value can be overridden by a flag or an environment variable (so tests point at a
//! registry on 127.0.0.1); the flags are declared in `main.rs` with clap's `env`.

use crate::reference::ImageRef;

pub const DEFAULT_REGISTRY: &str = "registry.kiora.tech/kiora";
pub const DEFAULT_BASE_TAG: &str = "0.6.0";
pub const DEFAULT_OS_IMAGE: &str = "debian:bookworm-slim";
/// Platforms of `build-app` and `docker-publish` when `--platform` is not given: none, i.e. the
/// engine's own. CI sets `XTASK_PLATFORMS=linux/amd64,linux/arm64` once instead of a flag per call.
pub const DEFAULT_PLATFORMS: &[&str] = &[];

/// Deploy targets: the stack name, the data backups kept, and the free space a target needs
/// (pulls and backups) before a deploy starts there.
pub const DEFAULT_STACK: &str = "crm";
pub const DEFAULT_KEEP_BACKUPS: usize = 5;
pub const MIN_FREE_DISK: u64 = 1 << 30;
/// Traffic canaries (`deploy --canary 10%`): how long the edge's error rates are compared when
/// `--canary-wait` is not given, how many requests the canary must have answered to be judged,
/// and how many points its 5xx rate may exceed the live release's and still count as no worse.
pub const CANARY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
pub const CANARY_MIN_REQUESTS: u64 = 20;
pub const CANARY_MARGIN_POINTS: f64 = 2.0;
/// How long a shared ssh connection to a server (`ssh.rs`) stays open without a command: past
/// the task's end only when the task was killed before it could close it.
pub const SSH_SHARED_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Compose project name of the stack `up` starts on this machine.
pub const LOCAL_PROJECT: &str = "crm-gdb-local";

/// Repository names (the last path component of each image).
pub const PHP_BASE: &str = "crm-gdb_php_base";
pub const PHP_BUILD: &str = "crm-gdb_php_build";
pub const PHP: &str = "crm-gdb_php";
pub const NGINX: &str = "crm-gdb_nginx";
/// The stable proxy in front of the blue/green releases; pinned like the base images.
pub const EDGE: &str = "crm-gdb_edge";
/// The PostgreSQL server of a swarm stack (docker/db), pinned like the edge (compose.yaml).
pub const DB: &str = "crm-gdb_db";
/// Tag suffix of the php image variant that runs the worker under supervisor.
pub const SUPERVISOR_SUFFIX: &str = "-supervisor";

/// The application images whose references `set-tag` rewrites in compose files.
pub const APP_IMAGES: [&str; 2] = [PHP, NGINX];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Registry host and namespace, e.g. `registry.kiora.tech/kiora` or `127.0.0.1:5000/kiora`.
    pub registry: String,
    /// Tag of the pinned php base and build images.
    pub base_tag: String,
    /// The OS image every image starts from.
    pub os_image: String,
    /// Platforms built when a task is given no `--platform` (empty: the engine's own).
    pub platforms: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            registry: DEFAULT_REGISTRY.to_string(),
            base_tag: DEFAULT_BASE_TAG.to_string(),
            os_image: DEFAULT_OS_IMAGE.to_string(),
            platforms: DEFAULT_PLATFORMS.iter().map(|p| p.to_string()).collect(),
        }
    }
}

impl Config {
    pub fn image(&self, name: &str, tag: &str) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            name: name.to_string(),
            tag: tag.to_string(),
        }
    }

    /// `requested` (a task's `--platform`), else the configured default list.
    pub fn platforms_or_default<'a>(&'a self, requested: &'a [String]) -> &'a [String] {
        if requested.is_empty() {
            &self.platforms
        } else {
            requested
        }
    }

    pub fn php_base(&self) -> ImageRef {
        self.image(PHP_BASE, &self.base_tag)
    }

    pub fn php_build(&self) -> ImageRef {
        self.image(PHP_BUILD, &self.base_tag)
    }

    /// The three release images for `tag`: php, php-supervisor, nginx.
    pub fn app_images(&self, tag: &str) -> [ImageRef; 3] {
        [
            self.image(PHP, tag),
            self.image(PHP, &format!("{tag}{SUPERVISOR_SUFFIX}")),
            self.image(NGINX, tag),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_name_the_published_images() {
        let config = Config::default();
        assert_eq!(
            config.php_base().to_string(),
            "registry.kiora.tech/kiora/crm-gdb_php_base:0.6.0"
        );
        assert_eq!(
            config.php_build().to_string(),
            "registry.kiora.tech/kiora/crm-gdb_php_build:0.6.0"
        );
        let names: Vec<String> = config
            .app_images("1.4.0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "registry.kiora.tech/kiora/crm-gdb_php:1.4.0",
                "registry.kiora.tech/kiora/crm-gdb_php:1.4.0-supervisor",
                "registry.kiora.tech/kiora/crm-gdb_nginx:1.4.0",
            ]
        );
    }
}
