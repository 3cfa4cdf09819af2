//! What the fleet and swarm benches share: the checks before any machine is made, a throwaway
//! registry holding the bench's releases (pushed as a server would pull them), and a testbed
//! made for a set of scenarios and removed after them, whatever happened.

use std::path::Path;

use anyhow::Result;

use crate::cmd::{Cmd, Runner};
use crate::config::Config;
use crate::ctx::Ctx;
use crate::deploy::testbed::{self, Layout, Name, UpOptions, BASE_DIR};
use crate::tasks::bench::registry::RegistryServer;

/// The port of every machine's edge (each machine has its own network).
pub(super) const EDGE_PORT: u16 = 8080;

/// The bench's releases in a registry of their own on loopback. Dropping it removes the tags
/// made for it, then stops the registry.
pub(super) struct Pushed {
    /// The configuration whose registry is the throwaway one.
    pub config: Config,
    pub port: u16,
    images: Vec<String>,
    runner: Runner,
    _registry: RegistryServer,
}

impl Pushed {
    /// Checks `machines` (`what` needs at least 2) and root, then pushes `tags` (built by
    /// `quiet` under the default registry) to a fresh registry.
    pub fn start(quiet: &Ctx, machines: usize, what: &str, tags: &[&str]) -> Result<Pushed> {
        testbed::check_machines(machines)?;
        anyhow::ensure!(
            machines >= 2,
            "--machines {machines}: {what} needs at least 2 machines"
        );
        testbed::preflight(true)?;
        let registry = RegistryServer::start()?;
        let config = Config {
            registry: format!("127.0.0.1:{}/kiora", registry.port),
            ..quiet.config.clone()
        };
        let images = super::fleet::push_releases(quiet, &config, tags)?;
        Ok(Pushed {
            config,
            port: registry.port,
            images,
            runner: quiet.runner,
            _registry: registry,
        })
    }
}

impl Drop for Pushed {
    fn drop(&mut self) {
        let _ = self.runner.cleanup(
            &Cmd::new("docker")
                .args(["image", "rm", "--force"])
                .args(&self.images),
        );
    }
}

/// Makes the testbed `name` of `machines` machines (a swarm with `swarm`) pulling from `pushed`,
/// runs `scenarios` on it and removes it, also when they failed.
pub(super) fn on_testbed<T>(
    ctx: &Ctx,
    quiet: &Ctx,
    pushed: &Pushed,
    (name, machines, swarm): (&str, usize, bool),
    scenarios: impl FnOnce(&Layout, &Name) -> Result<T>,
) -> Result<T> {
    let name = Name::parse(name)?;
    ctx.runner.say(format!(
        "Making a {} of {machines} machines",
        if swarm { "swarm" } else { "testbed" }
    ));
    let layout = testbed::up(
        &quiet.runner,
        Path::new(BASE_DIR),
        name.clone(),
        &UpOptions {
            machines,
            swarm,
            registry_port: Some(pushed.port),
            edge_port: EDGE_PORT,
        },
    )?;
    let result = scenarios(&layout, &name);
    let down = testbed::down(&quiet.runner, Path::new(BASE_DIR), &name);
    let value = result?;
    down?;
    Ok(value)
}

/// Writes `text` to `docs/NAME` of the tree and says where.
pub(super) fn write_doc(ctx: &Ctx, name: &str, text: &str) -> Result<()> {
    use anyhow::Context;
    let path = ctx.root.join("docs").join(name);
    std::fs::create_dir_all(ctx.root.join("docs"))?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    ctx.runner.say(format!("written to {}", path.display()));
    Ok(())
}

/// The core count, for the reports.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}
