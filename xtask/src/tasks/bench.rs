//! `cargo xtask bench`: how fast `build-app` is against the seed's naive procedure, measured side
//! by side in one run, on this machine, against one loopback registry.
//!
//! The baseline is the seed's procedure, scripted plainly as a list of commands: copy the whole
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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{Cmd, Runner, Verbosity};
use crate::config::{Config, DEFAULT_REGISTRY};
use crate::docker;
use crate::project::git;
use crate::staging::{self, Source};
use crate::tasks::{build_app, docker_publish, Ctx};

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
    // Set before any thread of ours starts; build-app reads it.
    std::env::set_var("XTASK_CACHE_DIR", &cache);
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
         everything measured in one run. Baseline: the seed's naive procedure (whole-tree `cp -a`, \
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

/// One line of the table: what, the reference value, ours, and the goal on ours / reference.
struct Row {
    what: String,
    reference: Option<Value>,
    ours: Option<Value>,
    /// At most this ratio (ours / reference), or an absolute limit when there is no reference.
    goal: Option<Goal>,
    note: String,
}

#[derive(Clone, Copy)]
enum Value {
    Time(Duration),
    Bytes(u64),
}

impl Value {
    fn number(self) -> f64 {
        match self {
            Value::Time(d) => d.as_secs_f64(),
            Value::Bytes(b) => b as f64,
        }
    }

    fn show(self) -> String {
        match self {
            Value::Time(d) if d < Duration::from_secs(1) => format!("{:.3}s", d.as_secs_f64()),
            Value::Time(d) => format!("{:.1}s", d.as_secs_f64()),
            Value::Bytes(b) => format!("{:.1} MB", b as f64 / 1e6),
        }
    }
}

#[derive(Clone, Copy)]
enum Goal {
    Ratio(f64),
    Below(Duration),
}

fn row(what: &str, reference: Option<Value>, ours: Option<Value>, goal: Option<Goal>) -> Row {
    Row {
        what: what.to_string(),
        reference,
        ours,
        goal,
        note: String::new(),
    }
}

fn skipped(what: &str, why: String) -> Row {
    Row {
        note: format!("skipped: {why}"),
        ..row(what, None, None, None)
    }
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
    let (base_cold, _) = naive(bench, work, &tag("seed"), true)?;
    say("1/6 cold build, build-app");
    go_cold(runner, registry, cache)?;
    let ours_cold = timed(|| build_app::run(bench, &release(&tag("xtask"))))?;
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
    let (base_warm, _) = naive(bench, work, &tag("seed"), false)?;
    let ours_warm = timed(|| build_app::run(bench, &release(&tag("xtask"))))?;
    rows.push(row(
        "warm rebuild (one-line PHP change)",
        Some(Value::Time(base_warm)),
        Some(Value::Time(ours_warm)),
        Some(Goal::Ratio(0.25)),
    ));

    // 3. No change.
    say("3/6 rebuild with no change");
    let (base_same, seed_tree) = naive(bench, work, &tag("seed"), false)?;
    let same_tag = tag("xtask");
    let ours_same = timed(|| build_app::run(bench, &release(&same_tag)))?;
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
        .arg(seed_tree.path().join("tree/app").display().to_string())
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

fn release(tag: &str) -> build_app::Options {
    build_app::Options {
        tag: tag.to_string(),
        allow_dirty: false,
        host_tools: false,
        push: true,
        compose_file: "compose.yaml".into(),
        platforms: Vec::new(),
        rebuild: false,
    }
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

/// The seed's procedure, timed; returns its copy of the tree (with vendor/ and node_modules/).
/// `cold`: `--no-cache` on the builds, as the classic builder's cache is every local image.
fn naive(ctx: &Ctx, work: &Path, tag: &str, cold: bool) -> Result<(Duration, tempfile::TempDir)> {
    let tree = tempfile::Builder::new().prefix("seed.").tempdir_in(work)?;
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
fn naive_commands(config: &Config, root: &Path, copy: &Path, tag: &str) -> Vec<Cmd> {
    let app = copy.join("app");
    // The same trust store as build-app's tools (behind a TLS-inspecting proxy npm needs it).
    let ca_bundle = Path::new(docker::HOST_CA_BUNDLE);
    let ca_bundle = ca_bundle.is_file().then_some(ca_bundle);
    let tool = |name: &str, argv: &[&str]| {
        docker::run_in(
            &config.php_build(),
            &format!("xtask-{}-seed-{name}", std::process::id()),
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

/// The seed's `sed`: the tag after `crm-gdb_php:` / `crm-gdb_nginx:` on `image:` lines.
fn naive_set_tag(text: &str, tag: &str) -> String {
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
    docker_publish::run(
        bench,
        docker_publish::BaseImage::Php,
        &bench.config.base_tag,
        false,
        &[],
    )
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

fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<52} {:>10} {:>10} {:>7} {:>9}  {}\n",
        "measure", "reference", "xtask", "ratio", "goal", "verdict"
    );
    for row in rows {
        let show = |v: Option<Value>| v.map_or("-".to_string(), Value::show);
        let ratio = match (row.reference, row.ours) {
            (Some(r), Some(o)) if r.number() > 0.0 => Some(o.number() / r.number()),
            _ => None,
        };
        let goal = match row.goal {
            Some(Goal::Ratio(r)) => format!("<= {r:.2}x"),
            Some(Goal::Below(d)) => format!("< {}", Value::Time(d).show()),
            None => "-".into(),
        };
        let verdict = match (row.goal, ratio, row.ours) {
            (Some(Goal::Ratio(r)), Some(ratio), _) => verdict(ratio <= r),
            (Some(Goal::Below(d)), _, Some(Value::Time(t))) => verdict(t < d),
            _ => "",
        };
        let note = if row.note.is_empty() {
            verdict.to_string()
        } else if verdict.is_empty() {
            row.note.clone()
        } else {
            format!("{verdict} ({})", row.note)
        };
        out.push_str(&format!(
            "{:<52} {:>10} {:>10} {:>7} {:>9}  {}\n",
            row.what,
            show(row.reference),
            show(row.ours),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            goal,
            note
        ));
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// `docker-registry serve` on a free loopback port, stopped (by its pid) on drop.
struct RegistryServer {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl RegistryServer {
    fn start() -> Result<RegistryServer> {
        let dir = tempfile::Builder::new()
            .prefix("xtask-bench-registry.")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.path().join("data").display()
            ),
        )?;
        // A server for the whole run, not a command that ends: started here, stopped on drop.
        let mut command = std::process::Command::new("docker-registry");
        // Like every `Cmd`: the secrets we were given are not the registry's.
        for key in crate::secret::ENV_VARS {
            command.env_remove(key);
        }
        let child = command
            .arg("serve")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log"))?)
            .spawn()
            .context("cannot start `docker-registry serve` (apt-get install docker-registry, or pass --registry HOST:PORT/NAMESPACE)")?;
        let server = RegistryServer {
            port,
            child,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while crate::http::get(port, "/v2/").map_or(true, |r| r.status != 200) {
            if Instant::now() > until {
                bail!("the registry on 127.0.0.1:{port} did not answer within 20 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_procedure_is_the_seeds() {
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

    #[test]
    fn table_shows_ratios_goals_and_skips() {
        let rows = vec![
            row(
                "warm",
                Some(Value::Time(Duration::from_secs(100))),
                Some(Value::Time(Duration::from_secs(20))),
                Some(Goal::Ratio(0.25)),
            ),
            row(
                "help",
                None,
                Some(Value::Time(Duration::from_millis(400))),
                Some(Goal::Below(Duration::from_millis(300))),
            ),
            skipped("cargo", "no cargo".into()),
        ];
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[1].contains("0.20x") && lines[1].ends_with("met"),
            "{table}"
        );
        assert!(
            lines[2].contains("0.400s") && lines[2].ends_with("MISSED"),
            "{table}"
        );
        assert!(lines[3].ends_with("skipped: no cargo"), "{table}");
    }
}
