//! The reference procedure `bench` measures against: the Makefile procedure as a user would
//! write it today, with the default `docker build` (BuildKit), scripted plainly as a list of
//! commands: `git archive HEAD` into a temporary directory, `composer install --no-dev` and
//! `npm ci && npm run build` in the pinned build image, three sequential builds, three pushes,
//! `sed` on compose.yaml. Its BuildKit cache stays warm between runs, as a user's would.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::config::Config;
use crate::ctx::Ctx;
use crate::docker;

/// The Makefile procedure, timed, from the committed HEAD of `ctx.root`.
pub(super) fn makefile(ctx: &Ctx, work: &Path, tag: &str) -> Result<Duration> {
    let dir = tempfile::Builder::new()
        .prefix("makefile.")
        .tempdir_in(work)?;
    let commands = makefile_commands(&ctx.config, &ctx.root, dir.path(), tag);
    let started = Instant::now();
    for cmd in &commands {
        if cmd.program == "mkdir" {
            // `mkdir -p` of the Makefile: no child needed for it.
            std::fs::create_dir_all(cmd.args.last().expect("a directory"))?;
            continue;
        }
        ctx.runner
            .run(cmd)
            .with_context(|| format!("reference: `{cmd}` failed"))?;
    }
    Ok(started.elapsed())
}

/// The procedure as data: archive, extract, composer, npm, three BuildKit builds, three pushes, sed.
pub(super) fn makefile_commands(config: &Config, root: &Path, dir: &Path, tag: &str) -> Vec<Cmd> {
    let copy = dir.join("tree");
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
    // Today's `docker build` is BuildKit; DOCKER_BUILDKIT=1 asks for it from a 20.10 client too.
    let build = |file: &str, target: Option<&str>, arg: String, image: String| {
        let mut cmd = Cmd::new("docker").env("DOCKER_BUILDKIT", "1").args([
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
    let archive = dir.join("head.tar");
    let base_arg = format!("BASE_IMAGE={}", config.php_base());
    vec![
        Cmd::new("git").args([
            "-C",
            &path(root.to_path_buf()),
            "archive",
            "--format=tar",
            "--output",
            &path(archive.clone()),
            "HEAD",
        ]),
        Cmd::new("mkdir").args(["-p", &path(copy.clone())]),
        Cmd::new("tar").args(["-xf", &path(archive), "-C", &path(copy.clone())]),
        tool(
            "composer",
            &[
                "composer",
                "install",
                "--no-dev",
                "--optimize-autoloader",
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
        Cmd::new("sed").args([
            "-i",
            "-E",
            &format!("s#(crm-gdb_(php|nginx)):[A-Za-z0-9_.]+#\\1:{tag}#"),
            &path(copy.join("compose.yaml")),
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_is_the_makefile_with_buildkit() {
        let config = Config {
            registry: "127.0.0.1:5000/kiora".into(),
            ..Config::default()
        };
        let cmds = makefile_commands(&config, Path::new("/dev-tree"), Path::new("/w"), "t1");
        let lines: Vec<Vec<&str>> = cmds.iter().map(|c| c.argv()).collect();
        assert_eq!(
            lines[0],
            [
                "git",
                "-C",
                "/dev-tree",
                "archive",
                "--format=tar",
                "--output",
                "/w/head.tar",
                "HEAD"
            ]
        );
        assert_eq!(lines[2], ["tar", "-xf", "/w/head.tar", "-C", "/w/tree"]);
        assert!(lines[3].ends_with(&[
            "composer",
            "install",
            "--no-dev",
            "--optimize-autoloader",
            "--no-interaction",
            "--no-progress"
        ]));
        assert!(lines[4].ends_with(&["npm", "ci"]));
        assert!(lines[5].ends_with(&["npm", "run", "build"]));
        for build in &cmds[6..9] {
            assert_eq!(build.argv()[..2], ["docker", "build"]);
            assert_eq!(
                build.env,
                [("DOCKER_BUILDKIT".to_string(), "1".to_string())]
            );
            assert!(!build.args.iter().any(|a| a.contains("cache")));
        }
        assert_eq!(
            lines[11],
            ["docker", "push", "127.0.0.1:5000/kiora/crm-gdb_nginx:t1"]
        );
        assert_eq!(lines[12][..3], ["sed", "-i", "-E"]);
        assert_eq!(cmds.len(), 13);
    }

    #[test]
    fn the_sed_sets_the_tag_and_keeps_the_supervisor_suffix() {
        let Ok(sed) = std::process::Command::new("sed").arg("--version").output() else {
            return; // no sed here: the argv test above still holds
        };
        assert!(sed.status.success());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        let text = "services:\n  php:\n    image: r/crm-gdb_php:1.0.0\n  worker:\n    image: r/crm-gdb_php:1.0.0-supervisor\n  nginx:\n    image: r/crm-gdb_nginx:1.0.0\n  edge:\n    image: r/crm-gdb_edge:0.1.0\n";
        std::fs::write(&file, text).unwrap();
        let config = Config::default();
        let cmds = makefile_commands(&config, Path::new("/r"), dir.path(), "2.0");
        let sed = cmds.last().unwrap().clone();
        let sed = Cmd::new("sed")
            .args(sed.args[..3].iter().cloned())
            .arg(file.display().to_string());
        crate::cmd::Runner::new(false, crate::progress::Verbosity::Quiet)
            .run(&sed)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text.replace("php:1.0.0-supervisor", "php:2.0-supervisor")
                .replace("php:1.0.0\n", "php:2.0\n")
                .replace("nginx:1.0.0", "nginx:2.0")
        );
    }
}
