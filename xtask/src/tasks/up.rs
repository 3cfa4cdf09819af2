//! `cargo xtask up`: the whole chain on this machine, with nothing but a Docker engine.
//!
//! No registry account and no published base images are needed: what is missing is built and
//! kept in the local engine (the OS image, the php base images, the release images of the
//! working tree), then the stack runs as the Compose project `crm-gdb-local` on a loopback port
//! and `/health` is checked. `cargo xtask down` stops it.
//!
//! A port held by another program is refused before anything runs; a failure once the stack is
//! starting removes its containers. The contact form's APP_SECRET is made on the first run and
//! kept outside the tree (see `local_env`).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::build::base::{self, ensure_db_image, ensure_edge_image, BaseImage};
use crate::cmd::{Cmd, Runner};
use crate::config::LOCAL_PROJECT;
use crate::ctx::Ctx;
use crate::deploy::local_env;
use crate::deploy::local_stack::LocalStack;
use crate::docker;
use crate::http;
use crate::progress::Steps;
use crate::tasks::build_app;

#[derive(clap::Args)]
pub struct Args {
    /// Tag given to the locally built release images.
    #[arg(long, default_value = "dev")]
    pub tag: String,
    /// Loopback port nginx is published on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Compose project name of the local stack.
    #[arg(long, env = "XTASK_LOCAL_PROJECT", default_value = LOCAL_PROJECT)]
    pub project_name: String,
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let (tag, port, project) = (args.tag.as_str(), args.port, args.project_name.as_str());
    let runner = &ctx.runner;
    docker::check_engine(runner)?;
    check_port(ctx, port, project)?;
    let dir = local_env::project_dir(&ctx.root, project, runner)?;
    let mut steps = Steps::new(5, runner.verbosity);
    steps.step(
        &format!("Checking the OS image {}", ctx.config.os_image),
        || ensure_os_image(ctx),
    )?;
    steps.step("Checking the php base images", || {
        let present = |image: String| runner.succeeds(&docker::image_exists(&image));
        if present(ctx.config.php_base().to_string())?
            && present(ctx.config.php_build().to_string())?
        {
            return Ok(());
        }
        runner.say("  not in the local engine: building them (docker-publish --no-push)");
        base::publish(ctx, BaseImage::Php, &ctx.config.base_tag, false, &[])
    })?;
    steps.step(
        &format!("Building the working tree as release {tag} (build-app --no-push --allow-dirty)"),
        || {
            let opts = build_app::Args {
                tag: tag.parse()?,
                allow_dirty: true,
                host_tools: false,
                no_push: true,
                compose_file: "compose.yaml".into(),
                platform: Vec::new(),
                rebuild: false,
                no_registry_api: false,
                cache_dir: None,
            };
            build_app::run(ctx, &opts)
        },
    )?;
    let mut stack = LocalStack::new(&ctx.root, &ctx.config, &dir, project, tag, port)?;
    stack.password_file = local_env::db_password_file(project)?;
    let started = (|| {
        steps.step(&format!("Starting the stack on 127.0.0.1:{port}"), || {
            if let Some(edge) = stack.edge_image() {
                ensure_edge_image(ctx, &edge)?;
            }
            if let Some(db) = stack.db_image() {
                ensure_db_image(ctx, &db)?;
            }
            stack.up(runner)
        })?;
        if runner.dry_run {
            return Ok(());
        }
        steps.step("Checking /health", || {
            let response = http::wait_for_ok(port, "/health", Duration::from_secs(60))?;
            runner.say(format!("  {}", response.body.trim()));
            Ok(())
        })
    })();
    if let Err(err) = started {
        remove_after_failure(runner, &stack, &err);
        return Err(err);
    }
    if runner.dry_run {
        return Ok(());
    }
    let down = if project == LOCAL_PROJECT {
        String::new()
    } else {
        format!(" --project-name {project}")
    };
    println!("The CRM is running at http://127.0.0.1:{port}/ (release {tag}). Stop it with `cargo xtask down{down}`.");
    Ok(())
}

/// The stack publishes on 127.0.0.1:PORT: a port another program holds is refused here, before
/// anything is built or started (compose would fail only after starting php and worker). Our
/// own edge holding it (`up` run again) is fine: compose recreates what changed.
fn check_port(ctx: &Ctx, port: u16, project: &str) -> Result<()> {
    let Err(err) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
        return Ok(());
    };
    if !ctx.runner.query(&publishing(project, port))?.is_empty() {
        return Ok(());
    }
    let free = (port.saturating_add(1)..=port.saturating_add(20))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok());
    let example = free.map_or(String::new(), |p| format!(", e.g. `--port {p}`"));
    bail!("cannot publish the stack on 127.0.0.1:{port}: {err}; choose another port with `--port`{example}")
}

/// The containers of `project` that publish `port` on the host (read-only).
fn publishing(project: &str, port: u16) -> Cmd {
    Cmd::new("docker").args([
        "ps".to_string(),
        "--quiet".into(),
        "--filter".into(),
        format!("label=com.docker.compose.project={project}"),
        "--filter".into(),
        format!("publish={port}"),
    ])
}

/// A failed start (or /health check, or Ctrl-C) leaves nothing running: the containers' last
/// logs say why, then they are removed. The data volume is kept.
fn remove_after_failure(runner: &Runner, stack: &LocalStack, err: &anyhow::Error) {
    if runner.dry_run {
        return;
    }
    if !err.is::<crate::interrupt::Interrupted>() {
        eprintln!("--- logs of {} ---\n{}", stack.project, stack.logs(runner));
    }
    match stack.remove(runner, false) {
        Ok(()) => runner.say(format!(
            "  removed the containers of {} (the data volume is kept)",
            stack.project
        )),
        Err(remove) => eprintln!(
            "could not remove the containers of {}: {remove:#}; run `cargo xtask down --project-name {}`",
            stack.project, stack.project
        ),
    }
}

/// The OS image comes from Docker Hub where it is reachable; on machines that cannot pull,
/// it is made from Debian's packages with debootstrap (needs root and the debootstrap package).
fn ensure_os_image(ctx: &Ctx) -> Result<()> {
    let (runner, image) = (&ctx.runner, ctx.config.os_image.as_str());
    if runner.succeeds(&docker::image_exists(image))? {
        return Ok(());
    }
    if runner
        .run(&Cmd::new("docker").args(["pull", image]))
        .is_ok()
    {
        return Ok(());
    }
    if image != crate::config::DEFAULT_OS_IMAGE {
        bail!("the OS image {image} is not in the local engine and cannot be pulled; pull or import it, or unset XTASK_OS_IMAGE");
    }
    if !runner.succeeds(&Cmd::new("debootstrap").arg("--version"))? {
        bail!("{image} cannot be pulled and debootstrap is missing to make it; install it (`apt-get install debootstrap`) or run `bash .ci/setup`");
    }
    runner.say(format!(
        "  cannot pull {image}: making it from Debian packages with debootstrap (~1 min)"
    ));
    let work = tempfile::Builder::new()
        .prefix("xtask-os-image.")
        .tempdir()?;
    let (rootfs, tar) = (work.path().join("rootfs"), work.path().join("rootfs.tar"));
    for cmd in os_image_commands(image, &rootfs, &tar) {
        runner.run(&cmd)?;
    }
    Ok(())
}

/// debootstrap a minimal bookworm, pack it, import it as `image`: no pipe, so no shell.
/// What the official slim image leaves out too: package lists and downloads, docs, man pages
/// and translations (~64 MB that every image would carry).
const OS_IMAGE_LEAVES_OUT: [&str; 6] = [
    "./var/lib/apt/lists/*",
    "./var/cache/apt/archives/*.deb",
    "./var/cache/apt/*.bin",
    "./usr/share/doc/*",
    "./usr/share/man/*",
    "./usr/share/locale/*",
];

fn os_image_commands(image: &str, rootfs: &Path, tar: &Path) -> [Cmd; 3] {
    let (rootfs, tar) = (rootfs.display().to_string(), tar.display().to_string());
    [
        Cmd::new("debootstrap").args([
            "--variant=minbase",
            "bookworm",
            &rootfs,
            "http://deb.debian.org/debian",
        ]),
        Cmd::new("tar")
            .args(["-C", &rootfs])
            .args(OS_IMAGE_LEAVES_OUT.map(|pattern| format!("--exclude={pattern}")))
            .args(["-cf", &tar, "."]),
        Cmd::new("docker").args(["import", "--change", r#"CMD ["bash"]"#, &tar, image]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_edge_may_hold_the_port() {
        assert_eq!(
            publishing("crm-gdb-local", 8080).argv(),
            [
                "docker",
                "ps",
                "--quiet",
                "--filter",
                "label=com.docker.compose.project=crm-gdb-local",
                "--filter",
                "publish=8080"
            ]
        );
    }

    #[test]
    fn os_image_from_debian_packages() {
        let [boot, tar, import] = os_image_commands(
            "debian:bookworm-slim",
            Path::new("/w/rootfs"),
            Path::new("/w/r.tar"),
        );
        assert_eq!(
            boot.argv(),
            [
                "debootstrap",
                "--variant=minbase",
                "bookworm",
                "/w/rootfs",
                "http://deb.debian.org/debian"
            ]
        );
        assert_eq!(
            tar.argv(),
            [
                "tar",
                "-C",
                "/w/rootfs",
                "--exclude=./var/lib/apt/lists/*",
                "--exclude=./var/cache/apt/archives/*.deb",
                "--exclude=./var/cache/apt/*.bin",
                "--exclude=./usr/share/doc/*",
                "--exclude=./usr/share/man/*",
                "--exclude=./usr/share/locale/*",
                "-cf",
                "/w/r.tar",
                "."
            ]
        );
        assert_eq!(
            import.argv(),
            [
                "docker",
                "import",
                "--change",
                "CMD [\"bash\"]",
                "/w/r.tar",
                "debian:bookworm-slim"
            ]
        );
    }
}
