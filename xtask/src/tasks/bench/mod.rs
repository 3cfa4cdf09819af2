//! `cargo xtask bench`: how fast `build-app` is against the old Makefile procedure, measured side
//! by side in one run, on this machine, against one loopback registry.
//!
//! The baseline is the old Makefile procedure, scripted plainly as a list of commands: copy the whole
//! tree (`cp -a`, untracked files included), `composer install --no-dev`, `npm ci`,
//! `npm run build` (in the build image), three sequential classic `docker build`s, three
//! `docker push`es and a text replace of the tag in a copy of compose.yaml. Measured:
//! 1. a cold build (`docker builder prune -af`, app images and the xtask cache removed);
//! 2. a warm rebuild after a one-line PHP change (committed in a scratch clone);
//! 3. a rebuild with no change;
//! 4. build-app's staging with and without 300 MB of ignored `node_modules` in the tree;
//! 5. `cargo build -p xtask` from clean and `xtask --help`;
//! 6. the php image's size against a naive single-stage image that keeps the build tools.
//!
//! A registry is started with `docker-registry serve` on a free 127.0.0.1 port (stopped by pid
//! at the end) unless `--registry` / `XTASK_REGISTRY` names one. What cannot be measured here is
//! skipped with a line saying why. The table is printed and written to `docs/benchmarks.md`.

mod reference;
pub(crate) mod registry;
mod table;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::build::base::{self, BaseImage};
use crate::build::staging::{self, Source};
use crate::cmd::{Cmd, Runner};
use crate::config::{Config, DEFAULT_REGISTRY};
use crate::ctx::Ctx;
use crate::docker;
use crate::progress::Verbosity;
use crate::project::git;
use crate::tasks::build_app;

use reference::naive;
use registry::RegistryServer;
use table::{render, row, skipped, Goal, Row, Value};

pub fn run(ctx: &Ctx) -> Result<()> {
    if ctx.runner.dry_run {
        bail!("bench measures real builds; it has no --dry-run");
    }
    docker::check_engine(&ctx.runner)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let say = |line: String| ctx.runner.say(line);
    say(format!("bench on a {cores}-core machine"));
    let quiet = Runner::new(false, Verbosity::Quiet);

    // One registry for everything, on loopback.
    let own_registry =
        ctx.config.registry == DEFAULT_REGISTRY && std::env::var_os("XTASK_REGISTRY").is_none();
    let server = if own_registry {
        Some(RegistryServer::start()?)
    } else {
        None
    };
    let registry = match &server {
        Some(server) => format!("127.0.0.1:{}/kiora", server.port),
        None => ctx.config.registry.clone(),
    };
    say(format!("registry: {registry}"));
    let work = tempfile::Builder::new().prefix("xtask-bench.").tempdir()?;
    // build-app's dependency cache, private to this run (cleared for the cold build).
    let cache = work.path().join("cache");
    let clone = scratch_clone(&quiet, &ctx.root, &work.path().join("clone"))?;
    let bench = Ctx {
        config: Config {
            registry: registry.clone(),
            ..ctx.config.clone()
        },
        runner: quiet,
        root: clone.clone(),
    };
    ensure_bases(ctx, &bench)?;

    let result = measure_all(ctx, &bench, work.path(), &cache, cores);
    remove_app_images(&quiet, &registry);
    if server.is_some() {
        // Our private prefix: its base image tags go too (the images stay under their own names).
        let bases = [bench.config.php_base(), bench.config.php_build()].map(|i| i.to_string());
        let _ = quiet.cleanup(&Cmd::new("docker").args(["image", "rm"]).args(bases));
    }
    drop(server);
    let rows = result?;
    let table = render(&rows);
    println!("{table}");
    let report = format!(
        "# Build benchmark\n\n`cargo xtask bench`, {} on a {cores}-core machine, one loopback registry, \
         everything measured in one run. Baseline: the old Makefile procedure (whole-tree `cp -a`, \
         composer and npm in the build image, three sequential classic `docker build`s, three \
         `docker push`es). Goals from issue 5.\n\n```\n{table}```\n",
        crate::project::now_rfc3339()
    );
    let path = ctx.root.join("docs/benchmarks.md");
    std::fs::create_dir_all(ctx.root.join("docs"))?;
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    say(format!("written to {}", path.display()));
    Ok(())
}

fn measure_all(
    ctx: &Ctx,
    bench: &Ctx,
    work: &Path,
    cache: &Path,
    cores: usize,
) -> Result<Vec<Row>> {
    let say = |line: &str| ctx.runner.say(line);
    let runner = &bench.runner;
    let registry = &bench.config.registry;
    let mut rows = Vec::new();
    let mut n = 0;
    let mut tag = |who: &str| {
        n += 1;
        format!("bench-{who}-{n}")
    };

    // 1. Cold.
    say("1/6 cold build, baseline (build cache pruned, app images removed)");
    go_cold(runner, registry, cache)?;
    let (base_cold, _) = naive(bench, work, &tag("makefile"), true)?;
    say("1/6 cold build, build-app");
    go_cold(runner, registry, cache)?;
    let ours_cold = timed(|| build_app::run(bench, &release(&tag("xtask"), cache)?))?;
    rows.push(Row {
        note: "baseline with --no-cache: other local images would feed the classic cache".into(),
        ..row(
            "cold build (empty build cache)",
            Some(Value::Time(base_cold)),
            Some(Value::Time(ours_cold)),
            None,
        )
    });

    // 2. Warm: a one-line PHP change, committed.
    say("2/6 warm rebuild after a one-line PHP change");
    one_line_change(runner, &bench.root)?;
    let (base_warm, _) = naive(bench, work, &tag("makefile"), false)?;
    let ours_warm = timed(|| build_app::run(bench, &release(&tag("xtask"), cache)?))?;
    rows.push(row(
        "warm rebuild (one-line PHP change)",
        Some(Value::Time(base_warm)),
        Some(Value::Time(ours_warm)),
        Some(Goal::Ratio(0.25)),
    ));

    // 3. No change.
    say("3/6 rebuild with no change");
    let (base_same, makefile_tree) = naive(bench, work, &tag("makefile"), false)?;
    let same_tag = tag("xtask");
    let ours_same = timed(|| build_app::run(bench, &release(&same_tag, cache)?))?;
    rows.push(row(
        "rebuild, no change",
        Some(Value::Time(base_same)),
        Some(Value::Time(ours_same)),
        Some(Goal::Ratio(0.10)),
    ));

    // 4. Staging with 300 MB of ignored files in the tree.
    say("4/6 staging with 300 MB of untracked, ignored files");
    rows.extend(staging_rows(runner, &bench.root)?);

    // 5. The xtask itself.
    say("5/6 cargo build -p xtask from clean, then xtask --help");
    rows.extend(cargo_rows(runner, work, cores));

    // 6. Image size against a naive single-stage image.
    say("6/6 image size against a naive single-stage image");
    let ours = image_size(runner, &bench.config.app_images(&same_tag)[0].to_string());
    let naive_image = format!("{registry}/bench-naive:single-stage");
    let naive = Cmd::new("docker")
        .args(["build", "--quiet", "--tag", &naive_image, "--file", "-"])
        .arg(makefile_tree.path().join("tree/app").display().to_string())
        .env("DOCKER_BUILDKIT", "0")
        .stdin(format!(
            "FROM {}\nCOPY --chown=app:app . /var/www/app/\nCMD [\"php-fpm\", \"--nodaemonize\"]\n",
            bench.config.php_build()
        ));
    let theirs = runner
        .run(&naive)
        .and_then(|()| image_size(runner, &naive_image));
    let _ = runner.cleanup(&Cmd::new("docker").args(["image", "rm", "--force", &naive_image]));
    match (theirs, ours) {
        (Ok(theirs), Ok(ours)) => rows.push(Row {
            note: "naive: FROM the build image, vendor/ and node_modules/ inside".into(),
            ..row(
                "php image size",
                Some(Value::Bytes(theirs)),
                Some(Value::Bytes(ours)),
                Some(Goal::Ratio(0.5)),
            )
        }),
        (Err(err), _) | (_, Err(err)) => rows.push(skipped("php image size", format!("{err:#}"))),
    }
    Ok(rows)
}

/// build-app's options for a release `tag`, with the dependency cache in `cache`.
fn release(tag: &str, cache: &Path) -> Result<build_app::Args> {
    Ok(build_app::Args {
        tag: tag.parse()?,
        allow_dirty: false,
        host_tools: false,
        no_push: false,
        compose_file: "compose.yaml".into(),
        platform: Vec::new(),
        rebuild: false,
        cache_dir: Some(cache.to_path_buf()),
    })
}

fn timed(body: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    body()?;
    Ok(started.elapsed())
}

/// An empty build cache: BuildKit's pruned, the app images (and with them the classic builder's
/// intermediate images) and build-app's dependency cache removed. Base images stay.
fn go_cold(runner: &Runner, registry: &str, cache: &Path) -> Result<()> {
    remove_app_images(runner, registry);
    runner.run(&Cmd::new("docker").args(["builder", "prune", "--all", "--force"]))?;
    if cache.exists() {
        std::fs::remove_dir_all(cache)?;
    }
    Ok(())
}

/// Every image named under `registry` but the base images.
fn remove_app_images(runner: &Runner, registry: &str) {
    let Ok(listed) = runner.cleanup(&Cmd::new("docker").args([
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])) else {
        return;
    };
    let ours: Vec<&str> = listed
        .lines()
        .filter(|image| {
            image.starts_with(&format!("{registry}/"))
                && !image.contains("/crm-gdb_php_base:")
                && !image.contains("/crm-gdb_php_build:")
        })
        .collect();
    if !ours.is_empty() {
        let _ = runner.cleanup(
            &Cmd::new("docker")
                .args(["image", "rm", "--force"])
                .args(ours),
        );
    }
}

/// The project as committed plus its untracked, not ignored files, in a fresh repository with
/// one commit; a file under docker/ makes its inputs key its own (no image of another run is
/// reused), without changing any image.
fn scratch_clone(runner: &Runner, root: &Path, dest: &Path) -> Result<PathBuf> {
    let listed = runner.query(&git(root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))?;
    for relative in listed.split('\0').filter(|p| !p.is_empty()) {
        let from = root.join(relative);
        if !from.is_file() {
            continue;
        }
        let to = dest.join(relative);
        std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
        std::fs::copy(&from, &to)?;
    }
    std::fs::write(
        dest.join("docker/.bench-run"),
        format!("{} {}\n", std::process::id(), crate::project::now_rfc3339()),
    )?;
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    ] {
        runner.run(&git(dest).args(args.iter().copied()))?;
    }
    Ok(dest.to_path_buf())
}

/// Appends a comment line to a PHP source and commits it.
fn one_line_change(runner: &Runner, root: &Path) -> Result<()> {
    let file = root.join("app/src/View.php");
    let mut text = std::fs::read_to_string(&file)?;
    text.push_str(&format!(
        "// bench change {}\n",
        crate::project::now_rfc3339()
    ));
    std::fs::write(&file, text)?;
    runner.run(&git(root).args([
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-q",
        "-am",
        "one line",
    ]))
}

/// The base images under the bench registry: re-tagged from the configured ones when they are
/// local, else built (no push).
fn ensure_bases(ctx: &Ctx, bench: &Ctx) -> Result<()> {
    let runner = &bench.runner;
    let wanted = [bench.config.php_base(), bench.config.php_build()];
    let have = |image: &str| runner.succeeds(&docker::image_exists(image));
    if wanted.iter().all(|i| have(&i.to_string()).unwrap_or(false)) {
        return Ok(());
    }
    let from = [ctx.config.php_base(), ctx.config.php_build()];
    if from.iter().all(|i| have(&i.to_string()).unwrap_or(false)) {
        for (from, to) in from.iter().zip(&wanted) {
            runner.run(&Cmd::new("docker").args(["tag", &from.to_string(), &to.to_string()]))?;
        }
        return Ok(());
    }
    ctx.runner
        .say("building the base images (docker-publish --no-push), not timed");
    base::publish(bench, BaseImage::Php, &bench.config.base_tag, false, &[])
}

/// build-app's staging (HEAD and --allow-dirty) without and with 300 MB of ignored files.
fn staging_rows(runner: &Runner, root: &Path) -> Result<Vec<Row>> {
    let best = |source: Source| -> Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            staging::stage(runner, root, source)?.remove()?;
            best = best.min(started.elapsed());
        }
        Ok(best)
    };
    let before = [best(Source::Head)?, best(Source::WorkingTree)?];
    let junk = root.join("app/node_modules/bench-junk");
    write_junk(&junk, 300_000_000)?;
    // Let the kernel write the 300 MB out first, or its writeback slows what is measured next.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let after = [best(Source::Head), best(Source::WorkingTree)];
    std::fs::remove_dir_all(root.join("app/node_modules"))?;
    let mut rows = Vec::new();
    for ((what, before), after) in [
        "staging HEAD, +300 MB ignored files (vs without)",
        "staging --allow-dirty, +300 MB ignored (vs without)",
    ]
    .into_iter()
    .zip(before)
    .zip(after)
    {
        rows.push(row(
            what,
            Some(Value::Time(before)),
            Some(Value::Time(after?)),
            Some(Goal::Ratio(1.1)),
        ));
    }
    Ok(rows)
}

/// `total` bytes of pseudo-random data in 1 MB files (xorshift: not compressible, no crate).
fn write_junk(dir: &Path, total: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1_000_000];
    for n in 0..total / buf.len() {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(dir.join(format!("blob-{n:04}.bin")), &buf)?;
    }
    Ok(())
}

/// `cargo build -p xtask` in a fresh target dir, then the built `xtask --help` (best of 5).
fn cargo_rows(runner: &Runner, work: &Path, cores: usize) -> Vec<Row> {
    let build_what = format!("cargo build -p xtask from clean ({cores} cores)");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = work.join("cargo-target");
    let build = Cmd::new("cargo")
        .args(["build", "--offline", "--package", "xtask", "--target-dir"])
        .arg(target.display().to_string())
        .dir(&source);
    let took = match timed(|| runner.run(&build)) {
        Ok(took) => took,
        Err(err) => {
            return vec![
                skipped(&build_what, format!("{err:#}")),
                skipped("xtask --help", "no xtask binary".into()),
            ]
        }
    };
    let binary = target.join("debug/xtask");
    let help = Cmd::new(binary.display().to_string()).arg("--help");
    let mut best = Duration::MAX;
    for _ in 0..5 {
        match timed(|| runner.query(&help).map(drop)) {
            Ok(t) => best = best.min(t),
            Err(err) => {
                return vec![
                    row(
                        &build_what,
                        None,
                        Some(Value::Time(took)),
                        Some(Goal::Below(Duration::from_secs(30))),
                    ),
                    skipped("xtask --help", format!("{err:#}")),
                ]
            }
        }
    }
    vec![
        row(
            &build_what,
            None,
            Some(Value::Time(took)),
            Some(Goal::Below(Duration::from_secs(30))),
        ),
        row(
            "cargo xtask --help (built)",
            None,
            Some(Value::Time(best)),
            Some(Goal::Below(Duration::from_millis(300))),
        ),
    ]
}

fn image_size(runner: &Runner, image: &str) -> Result<u64> {
    let size = runner.query(&Cmd::new("docker").args([
        "image",
        "inspect",
        "--format",
        "{{.Size}}",
        image,
    ]))?;
    size.trim()
        .parse()
        .with_context(|| format!("size of {image}: {size:?}"))
}
