//! `cargo xtask bench`: how fast `build-app` is against the Makefile procedure with BuildKit,
//! measured side by side in one run, on this machine, against one loopback registry.
//!
//! The reference (`reference.rs`) is the Makefile procedure as a user would write it today:
//! `git archive HEAD` into a temporary directory, composer and npm in the pinned build image,
//! three sequential `docker build`s with BuildKit, three pushes, `sed` on compose.yaml. Both
//! sides are run as a user types them: the reference's commands, and `cargo xtask build-app`
//! (so cargo's own start is counted). Each row is the best of 3; the two sides take turns at
//! going first; caches stay warm wherever a user's would. Measured:
//! 1. a cold build: the engine's build cache pruned (`docker builder prune -af`, the WHOLE
//!    engine's: run the bench where that is fine), release images and xtask's cache removed;
//! 2. a CI runner's cold engine whose registry holds a release of the same inputs (against our
//!    own cold build), then the same after a one-line PHP change;
//! 3. a warm rebuild after a one-line PHP change (both sides built once before), with its limit:
//!    one build of just the changed layer plus its push;
//! 4. a rebuild with no change, with its limit: the registry round trips that give 3 existing
//!    manifests a new tag;
//! 5. build-app's staging with and without 300 MB of ignored `node_modules` in the tree;
//! 6. `cargo build -p xtask` from clean and `cargo xtask --help`;
//! 7. the release images' sizes and each one's largest layers.
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
use crate::build::registry_api;
use crate::build::staging::{self, Source};
use crate::cmd::{Cmd, Runner};
use crate::config::{Config, DEFAULT_REGISTRY};
use crate::ctx::Ctx;
use crate::docker;
use crate::progress::Verbosity;
use crate::project::git;

use reference::makefile;
use registry::RegistryServer;
use table::{render, row, skipped, Goal, Row, Value};

/// Runs per row by default; the best is kept.
const RUNS: usize = 3;

/// A part of the bench (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Cold build, both sides.
    Cold,
    /// CI cold runner rows (they compare with our cold build, so `cold` runs too).
    Ci,
    /// Warm rebuild after a one-line PHP change.
    Warm,
    /// Rebuild with no change.
    Same,
    /// Staging with and without 300 MB of ignored files.
    Staging,
    /// `cargo build -p xtask` from clean and `cargo xtask --help`.
    Cargo,
    /// Image sizes and largest layers.
    Sizes,
}

#[derive(clap::Args)]
pub struct Args {
    /// Measure only these parts (default: all). A partial run prints its table and leaves
    /// docs/benchmarks.md alone.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<Part>,
    /// Runs per row; the best is kept.
    #[arg(long, default_value_t = RUNS, value_parser = parse_runs)]
    pub runs: usize,
}

fn parse_runs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=9).contains(&n) => Ok(n),
        _ => Err(format!("{text:?}: a number of runs from 1 to 9")),
    }
}

/// What one bench run measures.
struct Plan {
    parts: Vec<Part>,
    runs: usize,
}

impl Plan {
    fn has(&self, part: Part) -> bool {
        self.parts.is_empty()
            || self.parts.contains(&part)
            // The CI rows are ratios to our cold build.
            || (part == Part::Cold && self.parts.contains(&Part::Ci))
    }

    fn full(&self) -> bool {
        self.parts.is_empty()
    }
}

pub fn run(ctx: &Ctx, args: &Args) -> Result<()> {
    let plan = Plan {
        parts: args.only.clone(),
        runs: args.runs,
    };
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

    let result = measure_all(ctx, &bench, work.path(), cores, &plan);
    remove_app_images(&quiet, &registry);
    if server.is_some() {
        // Our private prefix: its base image tags go too (the images stay under their own names).
        let bases = [bench.config.php_base(), bench.config.php_build()].map(|i| i.to_string());
        let _ = quiet.cleanup(&Cmd::new("docker").args(["image", "rm"]).args(bases));
    }
    drop(server);
    let (rows, layers) = result?;
    let table = render(&rows);
    println!("{table}");
    println!("{layers}");
    if !plan.full() {
        say("a partial run (--only): docs/benchmarks.md left as it is".into());
        return Ok(());
    }
    let report = format!(
        "# Build benchmark\n\n`cargo xtask bench`, {} on a {cores}-core machine, one loopback registry, \
         everything measured in one run, best of {} per row, the two sides taking turns at going \
         first. Reference: the Makefile procedure with BuildKit (`git archive HEAD`, composer and npm \
         in the build image, three sequential `docker build`s, three `docker push`es, `sed` on \
         compose.yaml), its build cache warm where a user's would be. Both sides timed as typed \
         (`cargo xtask build-app` includes cargo's start). Goals from issue 13.\n\n```\n{table}```\n\n\
         Largest layers of each release image:\n\n```\n{layers}```\n",
        crate::project::now_rfc3339(),
        plan.runs
    );
    let path = ctx.root.join("docs/benchmarks.md");
    std::fs::create_dir_all(ctx.root.join("docs"))?;
    std::fs::write(&path, report).with_context(|| format!("cannot write {}", path.display()))?;
    say(format!("written to {}", path.display()));
    Ok(())
}

/// Both sides of the bench: the reference procedure and `cargo xtask build-app` in the clone.
struct Sides<'a> {
    bench: &'a Ctx,
    work: &'a Path,
    /// build-app's dependency cache, private to this run (cleared for cold builds).
    cache: PathBuf,
    n: std::cell::Cell<usize>,
    /// CARGO_TARGET_DIR of every `cargo xtask` of the bench.
    target: PathBuf,
}

impl Sides<'_> {
    fn tag(&self, who: &str) -> String {
        self.n.set(self.n.get() + 1);
        format!("bench-{who}-{}", self.n.get())
    }

    fn reference(&self) -> Result<Duration> {
        makefile(self.bench, self.work, &self.tag("makefile"))
    }

    /// `cargo xtask build-app --tag T` in the clone, as a user types it; returns the time and tag.
    fn ours(&self) -> Result<(Duration, String)> {
        let tag = self.tag("xtask");
        let cmd = xtask_command(
            self.bench,
            &self.target,
            &self.cache,
            &["build-app", "--tag", &tag],
        );
        let took = timed(|| {
            self.bench
                .runner
                .run(&cmd)
                .context("cargo xtask build-app failed")
        })?;
        Ok((took, tag))
    }

    /// An empty build cache: BuildKit's pruned, the release images and build-app's
    /// dependency cache removed. Base images stay (a runner pulls them for both sides alike).
    fn go_cold(&self) -> Result<()> {
        go_cold(&self.bench.runner, &self.bench.config.registry, &self.cache)
    }
}

/// `cargo xtask -q ARGS` in the bench's clone, against the bench's registry and cache.
fn xtask_command(bench: &Ctx, target: &Path, cache: &Path, args: &[&str]) -> Cmd {
    Cmd::new("cargo")
        .args(["xtask", "-q"])
        .args(args.iter().copied())
        .dir(&bench.root)
        .env("XTASK_ROOT", bench.root.display().to_string())
        .env("XTASK_REGISTRY", bench.config.registry.clone())
        .env("XTASK_CACHE_DIR", cache.display().to_string())
        .env("CARGO_TARGET_DIR", target.display().to_string())
        .env("CARGO_NET_OFFLINE", "true")
}

/// Best of `runs` of `body(run)`.
fn best(runs: usize, mut body: impl FnMut(usize) -> Result<Duration>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for run in 0..runs {
        best = best.min(body(run)?);
    }
    Ok(best)
}

/// Both sides, best of `runs` each, the first to go alternating: (reference, ours).
fn both(
    runs: usize,
    mut before: impl FnMut() -> Result<()>,
    mut reference: impl FnMut() -> Result<Duration>,
    mut ours: impl FnMut() -> Result<Duration>,
) -> Result<(Duration, Duration)> {
    let (mut r, mut o) = (Duration::MAX, Duration::MAX);
    for run in 0..runs {
        before()?;
        if run % 2 == 0 {
            r = r.min(reference()?);
            o = o.min(ours()?);
        } else {
            o = o.min(ours()?);
            r = r.min(reference()?);
        }
    }
    Ok((r, o))
}

fn measure_all(
    ctx: &Ctx,
    bench: &Ctx,
    work: &Path,
    cores: usize,
    plan: &Plan,
) -> Result<(Vec<Row>, String)> {
    let say = |line: &str| ctx.runner.say(line);
    let runner = &bench.runner;
    let runs = plan.runs;
    let sides = Sides {
        bench,
        work,
        cache: work.join("cache"),
        n: std::cell::Cell::new(0),
        target: if plan.has(Part::Cargo) {
            work.join("cargo-target")
        } else {
            // Not timed: a target dir kept between runs only rebuilds the xtask crate itself.
            ctx.root.join("target/xtask-bench")
        },
    };
    let mut rows = Vec::new();

    // 0. cargo itself, first: it also builds the clone's xtask that every `cargo xtask` runs.
    let cargo = if plan.has(Part::Cargo) {
        say("0/7 cargo build -p xtask from clean, then cargo xtask --help");
        cargo_rows(bench, &sides.target, &sides.cache, cores)
    } else {
        say("0/7 cargo build -p xtask (not timed)");
        runner.run(&cargo_build(bench, &sides.target))?;
        Vec::new()
    };

    // 1. Cold, each side after a prune (the reference's cold run prunes, so no warm row yet).
    let mut last_ours = String::new();
    let mut cold_ours = Duration::MAX;
    if plan.has(Part::Cold) {
        say("1/7 cold build (build cache pruned, release images and xtask's cache removed)");
        let mut cold_ref = Duration::MAX;
        for run in 0..runs {
            let mut reference = || -> Result<()> {
                sides.go_cold()?;
                cold_ref = cold_ref.min(sides.reference()?);
                Ok(())
            };
            let mut ours = || -> Result<()> {
                // Inputs no registry tag has, and no previous release to take a cache from.
                fresh_inputs(runner, &bench.root)?;
                sides.go_cold()?;
                let (took, tag) = sides.ours()?;
                cold_ours = cold_ours.min(took);
                last_ours = tag;
                Ok(())
            };
            if run % 2 == 0 {
                reference()?;
                ours()?;
            } else {
                ours()?;
                reference()?;
            }
        }
        rows.push(row(
            "cold build (empty build cache)",
            Some(Value::Time(cold_ref)),
            Some(Value::Time(cold_ours)),
            None,
        ));
    }

    // 2. A CI runner: empty engine, the registry holds the previous pipeline's release.
    if plan.has(Part::Ci) {
        say("2/7 CI cold runner: unchanged inputs, then a one-line PHP change");
        let unchanged = best(runs, |_| {
            sides.go_cold()?;
            Ok(sides.ours()?.0)
        })?;
        rows.push(Row {
            note: "vs our cold build; the registry holds the same inputs".into(),
            ..row(
                "CI cold runner, unchanged inputs",
                Some(Value::Time(cold_ours)),
                Some(Value::Time(unchanged)),
                Some(Goal::Ratio(0.05)),
            )
        });
        let changed = best(runs, |_| {
            one_line_change(runner, &bench.root)?;
            sides.go_cold()?;
            let (took, tag) = sides.ours()?;
            last_ours = tag;
            Ok(took)
        })?;
        rows.push(Row {
            note: "vs our cold build; the previous release is the cache source and gives its compiled assets".into(),
            ..row(
                "CI cold runner, one-line PHP change",
                Some(Value::Time(cold_ours)),
                Some(Value::Time(changed)),
                Some(Goal::Ratio(0.5)),
            )
        });
    }

    // 3. Warm: each side has built once before; then a one-line PHP change, committed.
    let mut warmed = false;
    if plan.has(Part::Warm) {
        say("3/7 warm rebuild after a one-line PHP change (both sides built once before)");
        sides.reference()?;
        last_ours = sides.ours()?.1;
        warmed = true;
        let (ref_warm, ours_warm) = both(
            runs,
            || one_line_change(runner, &bench.root),
            || sides.reference(),
            || {
                let (took, tag) = sides.ours()?;
                last_ours = tag;
                Ok(took)
            },
        )?;
        let limit = best(runs, |run| layer_limit(bench, &last_ours, run)).ok();
        rows.push(Row {
            limit: limit.map(Value::Time),
            note: "limit: build of the changed layer alone + its push".into(),
            ..row(
                "warm rebuild (one-line PHP change)",
                Some(Value::Time(ref_warm)),
                Some(Value::Time(ours_warm)),
                Some(Goal::Ratio(0.35)),
            )
        });
    }

    // 4. No change.
    if plan.has(Part::Same) {
        say("4/7 rebuild with no change");
        if !warmed {
            // Each side has built this tree once before, as in a full run.
            sides.reference()?;
            last_ours = sides.ours()?.1;
        }
        let (ref_same, ours_same) = both(
            runs,
            || Ok(()),
            || sides.reference(),
            || {
                let (took, tag) = sides.ours()?;
                last_ours = tag;
                Ok(took)
            },
        )?;
        let limit = best(runs, |run| retag_limit(bench, &last_ours, run)).ok();
        rows.push(Row {
            limit: limit.map(Value::Time),
            note: "limit: registry round trips giving 3 manifests a new tag".into(),
            ..row(
                "rebuild, no change",
                Some(Value::Time(ref_same)),
                Some(Value::Time(ours_same)),
                Some(Goal::Ratio(0.05)),
            )
        });
    }

    // 5. Staging with 300 MB of ignored files in the tree.
    if plan.has(Part::Staging) {
        say("5/7 staging with 300 MB of untracked, ignored files");
        rows.extend(staging_rows(runner, &bench.root)?);
    }

    // 6. The xtask itself (measured first, shown here).
    rows.extend(cargo);

    // 7. Sizes and largest layers.
    let mut layers = String::new();
    if !plan.has(Part::Sizes) {
        return Ok((rows, layers));
    }
    say("7/7 image sizes and largest layers");
    if last_ours.is_empty() {
        last_ours = sides.ours()?.1;
    }
    for image in bench.config.app_images(&last_ours) {
        let image = image.to_string();
        match image_size(runner, &image) {
            Ok(size) => rows.push(row(
                &format!("size of {}", short_name(&image)),
                None,
                Some(Value::Bytes(size)),
                None,
            )),
            Err(err) => rows.push(skipped(
                &format!("size of {}", short_name(&image)),
                format!("{err:#}"),
            )),
        }
        layers.push_str(&format!("{}\n", short_name(&image)));
        for (size, created_by) in largest_layers(runner, &image, 3) {
            layers.push_str(&format!(
                "  {:>9}  {created_by}\n",
                Value::Bytes(size).show()
            ));
        }
    }
    Ok((rows, layers))
}

/// `crm-gdb_php:bench-xtask-9-supervisor` of `127.0.0.1:1/kiora/crm-gdb_php:...`.
fn short_name(image: &str) -> &str {
    image.rsplit('/').next().unwrap_or(image)
}

/// The least a warm one-line change could cost: a build of a single `COPY` of the changed file
/// on top of the release, then pushing that one new layer.
fn layer_limit(bench: &Ctx, release: &str, run: usize) -> Result<Duration> {
    let runner = &bench.runner;
    let [php, ..] = bench.config.app_images(release);
    let limit = format!("{}/bench-limit:{run}", bench.config.registry);
    let text = format!("// limit {run} {}\n", crate::project::now_rfc3339());
    let dir = tempfile::Builder::new().prefix("limit.").tempdir()?;
    std::fs::write(dir.path().join("View.php"), text)?;
    let build = Cmd::new("docker")
        .args([
            "buildx", "build", "--load", "--quiet", "--tag", &limit, "--file", "-",
        ])
        .arg(dir.path().display().to_string())
        .stdin(format!(
            "FROM {php}\nCOPY View.php /var/www/app/src/View.php\n"
        ));
    let push = Cmd::new("docker").args(["push", "--quiet", &limit]);
    let took = timed(|| {
        runner.run(&build)?;
        runner.run(&push)
    });
    let _ = runner.cleanup(&Cmd::new("docker").args(["image", "rm", "--force", &limit]));
    took
}

/// The least a no-change release could cost: for each of the 3 images one GET of the manifest
/// and one PUT of it under a new tag, through the registry API.
fn retag_limit(bench: &Ctx, release: &str, run: usize) -> Result<Duration> {
    let from = bench.config.app_images(release);
    let to = bench.config.app_images(&format!("bench-limit-{run}"));
    let registry = registry_api::Registry::for_image(&from[0])
        .context("the registry API is spoken to on loopback only")?;
    timed(|| {
        for (from, to) in from.iter().zip(&to) {
            let manifest = registry.manifest(from)?.context("no manifest")?;
            registry.put_manifest(to, &manifest)?;
        }
        Ok(())
    })
}

fn timed(body: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let started = Instant::now();
    body()?;
    Ok(started.elapsed())
}

/// An empty build cache: BuildKit's pruned (the engine's whole build cache), the app images and
/// build-app's dependency cache removed. Base images stay.
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

/// New inputs for a cold build that builds: a new marker under docker/ (a new inputs key, the
/// same images) and compose.yaml pointing at a release the registry does not have, committed.
fn fresh_inputs(runner: &Runner, root: &Path) -> Result<()> {
    std::fs::write(
        root.join("docker/.bench-run"),
        format!("{} {:?}\n", std::process::id(), Instant::now()),
    )?;
    crate::compose_file::set_tag_in_file(
        &root.join("compose.yaml"),
        "bench-none",
        &crate::config::APP_IMAGES,
    )?;
    runner.run(&git(root).args([
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-q",
        "-am",
        "cold",
    ]))
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

/// `cargo build -p xtask` of the clone in a fresh target dir (the one every later `cargo xtask`
/// of the bench uses), then `cargo xtask --help` as a user runs it (best of 5).
fn cargo_rows(bench: &Ctx, target: &Path, cache: &Path, cores: usize) -> Vec<Row> {
    let runner = &bench.runner;
    let build_what = format!("cargo build -p xtask from clean ({cores} cores)");
    let build = cargo_build(bench, target);
    let took = match timed(|| runner.run(&build)) {
        Ok(took) => took,
        Err(err) => {
            return vec![
                skipped(&build_what, format!("{err:#}")),
                skipped("cargo xtask --help", "no xtask binary".into()),
            ]
        }
    };
    let build_row = row(
        &build_what,
        None,
        Some(Value::Time(took)),
        Some(Goal::Below(Duration::from_secs(30))),
    );
    let help = xtask_command(bench, target, cache, &["--help"]);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        match timed(|| runner.query(&help).map(drop)) {
            Ok(t) => best = best.min(t),
            Err(err) => return vec![build_row, skipped("cargo xtask --help", format!("{err:#}"))],
        }
    }
    vec![
        build_row,
        row(
            "cargo xtask --help (through cargo, built)",
            None,
            Some(Value::Time(best)),
            Some(Goal::Below(Duration::from_millis(300))),
        ),
    ]
}

fn cargo_build(bench: &Ctx, target: &Path) -> Cmd {
    Cmd::new("cargo")
        .args(["build", "--offline", "--package", "xtask", "--target-dir"])
        .arg(target.display().to_string())
        .dir(&bench.root)
}

/// The `count` largest layers of `image`: size in bytes and the instruction that made it.
fn largest_layers(runner: &Runner, image: &str, count: usize) -> Vec<(u64, String)> {
    let Ok(answer) = runner.query(&history(image)) else {
        return Vec::new();
    };
    let mut layers = parse_history(&answer);
    layers.sort_by_key(|l| std::cmp::Reverse(l.0));
    layers.truncate(count);
    layers
}

fn history(image: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "history",
        "--human=false",
        "--no-trunc",
        "--format",
        "{{.Size}}\t{{.CreatedBy}}",
        image,
    ])
}

/// `SIZE\tCREATED BY` lines; the instruction is cut to 80 characters.
fn parse_history(answer: &str) -> Vec<(u64, String)> {
    answer
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(size, by)| {
            let by = by.trim().trim_start_matches("/bin/sh -c #(nop) ").trim();
            let by: String = by.chars().take(80).collect();
            Some((size.trim().parse().ok()?, by))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_read_from_the_history() {
        assert_eq!(
            history("r/x:1").argv()[..5],
            ["docker", "image", "history", "--human=false", "--no-trunc"]
        );
        let answer = "0\t/bin/sh -c #(nop)  CMD [\"php-fpm\"]\n12345\tCOPY app/ /var/www/app/ # buildkit\n<missing>\tx\n";
        assert_eq!(
            parse_history(answer),
            [
                (0, "CMD [\"php-fpm\"]".to_string()),
                (12345, "COPY app/ /var/www/app/ # buildkit".to_string())
            ]
        );
    }

    #[test]
    fn bench_runs_build_app_as_typed_in_its_clone() {
        let bench = Ctx {
            config: Config {
                registry: "127.0.0.1:5000/kiora".into(),
                ..Config::default()
            },
            runner: Runner::new(false, Verbosity::Quiet),
            root: "/w/clone".into(),
        };
        let cmd = xtask_command(
            &bench,
            Path::new("/w/cargo-target"),
            Path::new("/w/cache"),
            &["build-app", "--tag", "t"],
        );
        assert_eq!(
            cmd.argv(),
            ["cargo", "xtask", "-q", "build-app", "--tag", "t"]
        );
        assert_eq!(cmd.dir.as_deref(), Some(Path::new("/w/clone")));
        for (key, value) in [
            ("XTASK_ROOT", "/w/clone"),
            ("XTASK_REGISTRY", "127.0.0.1:5000/kiora"),
            ("XTASK_CACHE_DIR", "/w/cache"),
            ("CARGO_TARGET_DIR", "/w/cargo-target"),
        ] {
            assert!(
                cmd.env.contains(&(key.to_string(), value.to_string())),
                "{key}"
            );
        }
    }
}
