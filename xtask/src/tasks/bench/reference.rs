//! The reference procedure `bench` measures against: the old Makefile's build, scripted plainly
//! as a list of commands.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::docker;

/// The old Makefile procedure, timed; returns its copy of the tree (with vendor/ and node_modules/).
/// `cold`: `--no-cache` on the builds, as the classic builder's cache is every local image.
pub(super) fn naive(
    ctx: &Ctx,
    work: &Path,
    tag: &str,
    cold: bool,
) -> Result<(Duration, tempfile::TempDir)> {
    let tree = tempfile::Builder::new()
        .prefix("makefile.")
        .tempdir_in(work)?;
    let copy = tree.path().join("tree");
    let mut commands = naive_commands(&ctx.config, &ctx.root, &copy, tag);
    if cold {
        for build in commands
            .iter_mut()
            .filter(|c| c.args.first().is_some_and(|a| a == "build"))
        {
            build.args.insert(1, "--no-cache".into());
        }
    }
    let started = Instant::now();
    for cmd in &commands {
        ctx.runner
            .run(cmd)
            .with_context(|| format!("baseline: `{cmd}` failed"))?;
    }
    let compose = copy.join("compose.yaml");
    let text = std::fs::read_to_string(&compose)?;
    std::fs::write(&compose, naive_set_tag(&text, tag))?;
    Ok((started.elapsed(), tree))
}

/// The naive procedure as data: copy, composer, npm, three classic builds, three pushes.
pub(super) fn naive_commands(config: &Config, root: &Path, copy: &Path, tag: &str) -> Vec<Cmd> {
    let app = copy.join("app");
    // The same trust store as build-app's tools (behind a TLS-inspecting proxy npm needs it).
    let ca_bundle = Path::new(docker::HOST_CA_BUNDLE);
    let ca_bundle = ca_bundle.is_file().then_some(ca_bundle);
    let tool = |name: &str, argv: &[&str]| {
        docker::run_in(
            &config.php_build(),
            &format!("xtask-{}-makefile-{name}", std::process::id()),
            &app,
            docker::current_user(),
            ca_bundle,
            argv,
        )
    };
    let [php, supervisor, nginx] = config.app_images(tag);
    let path = |p: PathBuf| p.display().to_string();
    let build = |file: &str, target: Option<&str>, arg: String, image: String| {
        let mut cmd = Cmd::new("docker").env("DOCKER_BUILDKIT", "0").args([
            "build",
            "--file",
            &path(copy.join(file)),
        ]);
        if let Some(target) = target {
            cmd = cmd.args(["--target", target]);
        }
        cmd.args([
            "--build-arg",
            &arg,
            "--tag",
            &image,
            &path(copy.to_path_buf()),
        ])
    };
    let base_arg = format!("BASE_IMAGE={}", config.php_base());
    vec![
        Cmd::new("cp").args(["-a", &path(root.to_path_buf()), &path(copy.to_path_buf())]),
        tool(
            "composer",
            &[
                "composer",
                "install",
                "--no-dev",
                "--no-interaction",
                "--no-progress",
            ],
        ),
        tool("npm-ci", &["npm", "ci"]),
        tool("npm-build", &["npm", "run", "build"]),
        build(
            "docker/app/Dockerfile",
            Some("php"),
            base_arg.clone(),
            php.to_string(),
        ),
        build(
            "docker/app/Dockerfile",
            Some("supervisor"),
            base_arg,
            supervisor.to_string(),
        ),
        build(
            "docker/nginx/Dockerfile",
            None,
            format!("OS_IMAGE={}", config.os_image),
            nginx.to_string(),
        ),
        docker::push(&php),
        docker::push(&supervisor),
        docker::push(&nginx),
    ]
}

/// The old Makefile's `sed`: the tag after `crm-gdb_php:` / `crm-gdb_nginx:` on `image:` lines.
pub(super) fn naive_set_tag(text: &str, tag: &str) -> String {
    text.lines()
        .map(|line| {
            let Some(at) = ["crm-gdb_php:", "crm-gdb_nginx:"]
                .iter()
                .find_map(|name| line.find(name).map(|at| at + name.len()))
            else {
                return line.to_string();
            };
            if !line.trim_start().starts_with("image:") {
                return line.to_string();
            }
            let rest = &line[at..];
            let suffix = if rest.contains("-supervisor") {
                "-supervisor"
            } else {
                ""
            };
            format!("{}{tag}{suffix}", &line[..at])
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_procedure_is_the_makefiles() {
        let config = Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        };
        let cmds = naive_commands(&config, Path::new("/dev-tree"), Path::new("/w/tree"), "t1");
        let lines: Vec<Vec<&str>> = cmds.iter().map(|c| c.argv()).collect();
        assert_eq!(lines[0], ["cp", "-a", "/dev-tree", "/w/tree"]);
        assert!(lines[1].ends_with(&[
            "composer",
            "install",
            "--no-dev",
            "--no-interaction",
            "--no-progress"
        ]));
        assert!(lines[2].ends_with(&["npm", "ci"]));
        for build in &cmds[4..7] {
            assert_eq!(build.argv()[..2], ["docker", "build"]);
            assert_eq!(
                build.env,
                [("DOCKER_BUILDKIT".to_string(), "0".to_string())]
            );
            assert!(!build.args.iter().any(|a| a.contains("cache")));
        }
        assert_eq!(
            lines[9],
            ["docker", "push", "127.0.0.1:5000/kiora/crm-gdb_nginx:t1"]
        );
        assert_eq!(cmds.len(), 10);
    }

    #[test]
    fn naive_set_tag_replaces_the_text() {
        let text = "services:\n  php:\n    image: r/crm-gdb_php:1.0.0\n  worker:\n    image: r/crm-gdb_php:1.0.0-supervisor\n  nginx:\n    image: r/crm-gdb_nginx:1.0.0\n  edge:\n    image: r/crm-gdb_edge:0.1.0\n";
        assert_eq!(
            naive_set_tag(text, "2.0"),
            text.replace("php:1.0.0-supervisor", "php:2.0-supervisor")
                .replace("php:1.0.0\n", "php:2.0\n")
                .replace("nginx:1.0.0", "nginx:2.0")
        );
    }
}
