//! End to end on a real Docker engine and a real registry on loopback: `docker-publish`, then
//! `build-app` from a scratch clone that looks like a developer's tree, then bad input, then
//! the hashed assets of past releases each nginx image carries.

mod common;

use std::path::Path;

use common::*;
use xshell::{cmd, Shell};

const TAG: &str = "1.4.0";

#[test]
fn publish_then_build_app_from_a_developers_tree() {
    if !engine_available("publish_then_build_app_from_a_developers_tree") {
        return;
    }
    let sh = Shell::new().unwrap();
    let registry = Registry::start();
    let prefix = registry.prefix();
    // The images this file tagged under its registry, removed when it ends.
    let _images = common::faults::ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let _cleanup = RemoveImages(prefix.clone());

    // A dry run prints the plan and builds nothing.
    let out = xtask(
        root,
        tmp.path(),
        &prefix,
        &[
            "docker-publish",
            "--image",
            "php",
            "--tag",
            BASE_TAG,
            "--dry-run",
        ],
    );
    assert!(out.status.success());
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains(&format!("--tag {prefix}/crm-gdb_php_base:{BASE_TAG}")),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "docker push {prefix}/crm-gdb_php_build:{BASE_TAG}"
        )),
        "{plan}"
    );
    assert!(cmd!(
        sh,
        "docker image inspect {prefix}/crm-gdb_php_base:{BASE_TAG}"
    )
    .quiet()
    .ignore_stderr()
    .run()
    .is_err());

    // Base images: built and pushed.
    let out = xtask(
        root,
        tmp.path(),
        &prefix,
        &["docker-publish", "--image", "php", "--tag", BASE_TAG],
    );
    assert!(out.status.success(), "docker-publish failed");
    assert_eq!(registry.tags("crm-gdb_php_base"), [BASE_TAG]);
    assert_eq!(registry.tags("crm-gdb_php_build"), [BASE_TAG]);

    // Make the clone look like a developer's: dev dependencies installed, node_modules, secrets.
    let build_image = format!("{prefix}/crm-gdb_php_build:{BASE_TAG}");
    let app = root.join("app");
    let user = {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self").unwrap();
        format!("{}:{}", me.uid(), me.gid())
    };
    cmd!(sh, "docker run --rm --user {user} --volume {app}:/app --workdir /app {build_image} composer install --no-interaction --no-progress")
        .run()
        .unwrap();
    assert!(
        app.join("vendor/kiora/dev-tools").is_dir(),
        "the dev package is installed in the developer's vendor/"
    );
    std::fs::create_dir_all(app.join("node_modules/left-pad")).unwrap();
    std::fs::write(
        app.join("node_modules/left-pad/index.js"),
        "module.exports = 1;\n",
    )
    .unwrap();
    let secret = format!("s3cr3t-{}", std::process::id());
    std::fs::write(app.join(".env"), format!("APP_SECRET={secret}\n")).unwrap();
    std::fs::write(root.join(".env"), format!("APP_SECRET={secret}\n")).unwrap();
    let before = snapshot(root);
    let compose_before = std::fs::read_to_string(root.join("compose.yaml")).unwrap();

    let out = xtask(root, tmp.path(), &prefix, &["build-app", "--tag", TAG]);
    assert!(out.status.success(), "build-app failed");
    let log = stderr(&out);
    for step in [
        "[1/7] Staging HEAD",
        "[3/7] Installing production dependencies",
        "[7/7] Removing the staging directory",
    ] {
        assert!(log.contains(step), "progress line {step:?} missing");
    }

    // The five tags are in the registry.
    assert_eq!(
        registry.tags("crm-gdb_php"),
        [TAG.to_string(), format!("{TAG}-supervisor")]
    );
    assert_eq!(registry.tags("crm-gdb_nginx"), [TAG]);
    // Nothing left in TMPDIR, the developer's tree untouched but for compose.yaml's image tags.
    assert!(
        is_empty_dir(tmp.path()),
        "staging left behind: {:?}",
        std::fs::read_dir(tmp.path()).unwrap().collect::<Vec<_>>()
    );
    let mut after = snapshot(root);
    let compose_after =
        String::from_utf8(after.remove(Path::new("compose.yaml")).unwrap()).unwrap();
    let mut before_rest = before.clone();
    before_rest.remove(Path::new("compose.yaml"));
    assert!(before_rest == after, "the developer's tree changed");
    let expected = compose_before
        .replace(
            "crm-gdb_php:1.0.0-supervisor",
            &format!("crm-gdb_php:{TAG}-supervisor"),
        )
        .replace("crm-gdb_php:1.0.0", &format!("crm-gdb_php:{TAG}"))
        .replace("crm-gdb_nginx:1.0.0", &format!("crm-gdb_nginx:{TAG}"));
    assert_ne!(
        compose_before, expected,
        "compose.yaml names the app images at 1.0.0"
    );
    assert_eq!(compose_after, expected);

    check_images(&sh, &prefix, &secret);

    // Nothing changed since: the images are re-tagged and pushed, nothing is built again.
    let out = xtask(root, tmp.path(), &prefix, &["build-app", "--tag", "1.4.1"]);
    assert!(out.status.success(), "build-app 1.4.1 failed");
    let log = stderr(&out);
    assert!(
        log.contains("unchanged inputs: reusing")
            && log.contains(&format!("(built as {prefix}/crm-gdb_php:{TAG})")),
        "{log}"
    );
    assert!(
        !log.contains("composer install") && is_empty_dir(tmp.path()),
        "{log}"
    );
    assert_eq!(
        registry.tags("crm-gdb_php"),
        ["1.4.0", "1.4.0-supervisor", "1.4.1", "1.4.1-supervisor"]
    );
    assert_eq!(registry.tags("crm-gdb_nginx"), ["1.4.0", "1.4.1"]);
    // ... by the registry itself: the same manifests under the new tags (no `docker push`).
    assert!(log.contains("re-tagged in the registry"), "{log}");
    same_manifests(&registry, TAG, "1.4.1");

    // The old Makefile's "test the image locally": the release behind the edge, secrets from an env file.
    let env_file = tmp
        .path()
        .join("..")
        .join(format!("test-image-{}.env", std::process::id()));
    std::fs::write(&env_file, format!("APP_SECRET={secret}\n")).unwrap();
    let out = xtask(
        root,
        tmp.path(),
        &prefix,
        &[
            "test-image",
            "--tag",
            TAG,
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    std::fs::remove_file(&env_file).unwrap();
    assert!(out.status.success(), "test-image failed");
    assert!(stderr(&out).contains(&format!("Release {TAG} passed")));
    assert!(is_empty_dir(tmp.path()), "test-image left files in TMPDIR");
    // Its own project (`crm-gdb-test-PID`, named in its output): another file's test-image may
    // be running beside this one.
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let at = said
        .find("crm-gdb-test-")
        .expect("test-image names its project");
    let digits = said[at + "crm-gdb-test-".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>();
    let project = format!("crm-gdb-test-{digits}-");
    let names = "{{.Names}}";
    let left = cmd!(sh, "docker ps --all --format {names}")
        .read()
        .unwrap_or_default();
    assert!(
        !left.contains(&project),
        "test-image left containers: {left}"
    );
    bad_input(&sh, root, tmp.path(), &prefix);
    push_failure(&sh, root, tmp.path(), &prefix);
    cold_runner(&sh, root, tmp.path(), &registry);
    past_assets(&sh, root, tmp.path(), &prefix);
    cold_runner_php_change(&sh, root, tmp.path(), &registry);
}

/// Each nginx image carries the hashed assets of the release before it (a swarm has no shared
/// volume): a CSS change, then its revert, whose images may not be those of the same inputs
/// built before the change (they lack the changed release's assets), then no change (reused).
fn past_assets(sh: &Shell, root: &Path, tmp: &Path, prefix: &str) {
    let label = |tag: &str| {
        let format = "{{index .Config.Labels \"org.kiora.assets\"}}";
        cmd!(
            sh,
            "docker image inspect --format {format} {prefix}/crm-gdb_nginx:{tag}"
        )
        .read()
        .unwrap()
    };
    let files = |tag: &str| {
        cmd!(
            sh,
            "docker run --rm --entrypoint ls {prefix}/crm-gdb_nginx:{tag} /var/www/app/public/build"
        )
        .read()
        .unwrap()
    };
    let git = |args: &[&str]| {
        cmd!(
            sh,
            "git -C {root} -c user.name=dev -c user.email=dev@example.com {args...}"
        )
        .quiet()
        .run()
        .unwrap()
    };
    let css = root.join("app/assets/app.css");
    let text = std::fs::read_to_string(&css).unwrap();
    std::fs::write(&css, format!("{text}\nbody {{ outline: 0; }}\n")).unwrap();
    git(&["commit", "-q", "-am", "other CSS"]);
    let out = xtask(root, tmp, prefix, &["build-app", "--tag", "1.5.0"]);
    assert!(out.status.success(), "build-app 1.5.0: {}", stderr(&out));
    let (old, new) = (label("1.5.0"), files("1.5.0"));
    // Its own files, then those of 1.4.2 (built as 1.4.0), pulled from the registry.
    assert!(
        old.starts_with("1.5.0=") && old.contains(" 1.4.0="),
        "{old}"
    );
    let css_of = |label: &str, release: &str| -> String {
        let own = label
            .split_whitespace()
            .find_map(|e| e.strip_prefix(&format!("{release}=")))
            .unwrap_or_else(|| panic!("{release} in {label}"));
        own.split(',')
            .find(|f| f.ends_with(".css"))
            .unwrap()
            .to_string()
    };
    let (css_14, css_15) = (css_of(&old, "1.4.0"), css_of(&old, "1.5.0"));
    assert_ne!(css_14, css_15);
    assert!(new.contains(&css_14) && new.contains(&css_15), "{new}");

    // The revert: the inputs of 1.4.x again, but their nginx image lacks 1.5.0's CSS: built.
    std::fs::write(&css, &text).unwrap();
    git(&["commit", "-q", "-am", "the CSS as before"]);
    let out = xtask(root, tmp, prefix, &["build-app", "--tag", "1.6.0"]);
    let log = stderr(&out);
    assert!(out.status.success(), "build-app 1.6.0: {log}");
    assert!(
        !log.contains("Re-tagging the release in the registry"),
        "{log}"
    );
    let built = label("1.6.0");
    assert_eq!(css_of(&built, "1.6.0"), css_14, "{built}");
    assert!(
        files("1.6.0").contains(&css_15),
        "1.6.0 carries 1.5.0's CSS"
    );

    // No change since: reused as before, past assets and all.
    let out = xtask(root, tmp, prefix, &["build-app", "--tag", "1.6.1"]);
    let log = stderr(&out);
    assert!(
        out.status.success() && log.contains("unchanged inputs: reusing"),
        "{log}"
    );
    assert_eq!(label("1.6.1"), built);
    assert!(is_empty_dir(tmp), "staging left behind");
}

/// The three release manifests of `new` are those of `old`, byte for byte (same digests).
fn same_manifests(registry: &Registry, old: &str, new: &str) {
    for (name, suffix) in [
        ("crm-gdb_php", ""),
        ("crm-gdb_php", "-supervisor"),
        ("crm-gdb_nginx", ""),
    ] {
        let digest = |tag: &str| registry.manifest_digest(name, &format!("{tag}{suffix}"));
        assert!(
            digest(old).is_some(),
            "{name}:{old}{suffix} not in the registry"
        );
        assert_eq!(digest(new), digest(old), "{name}:{new}{suffix}");
    }
}

/// A CI runner's empty engine (no release image local) and a registry that holds a release of
/// the same inputs: build-app re-tags it in the registry; nothing is built, pulled or pushed.
fn cold_runner(sh: &Shell, root: &Path, tmp: &Path, registry: &Registry) {
    let prefix = registry.prefix();
    // The images this file tagged under its registry, removed when it ends.
    let _images = common::faults::ImagesUnder(prefix.clone());
    remove_release_images(sh, &prefix);
    let out = xtask(root, tmp, &prefix, &["build-app", "--tag", "1.4.2"]);
    assert!(out.status.success(), "build-app 1.4.2 failed");
    let log = stderr(&out);
    assert!(
        log.contains("Re-tagging the release in the registry")
            && log.contains("no build, no layer moved"),
        "{log}"
    );
    assert!(
        !log.contains("composer install") && is_empty_dir(tmp),
        "{log}"
    );
    same_manifests(registry, "1.4.1", "1.4.2");
    // No layer moved: the engine still has none of the release images.
    assert!(cmd!(sh, "docker image inspect {prefix}/crm-gdb_php:1.4.2")
        .quiet()
        .ignore_stderr()
        .run()
        .is_err());
    assert!(
        std::fs::read_to_string(root.join("compose.yaml"))
            .unwrap()
            .contains("crm-gdb_php:1.4.2"),
        "compose.yaml points at the new release"
    );
}

/// A CI runner's empty engine and empty dependency cache after a one-line PHP change: the
/// assets' inputs are those of the previous release, so its compiled assets come from its nginx
/// image's last layer in the registry, and npm does not run.
fn cold_runner_php_change(sh: &Shell, root: &Path, tmp: &Path, registry: &Registry) {
    let prefix = registry.prefix();
    let _images = common::faults::ImagesUnder(prefix.clone());
    let previous = "1.6.1";
    let label = |image: &str, key: &str| {
        let format = format!("{{{{index .Config.Labels \"{key}\"}}}}");
        cmd!(
            sh,
            "docker image inspect --format {format} {prefix}/{image}"
        )
        .read()
        .unwrap()
    };
    let in_image = |image: &str, program: &str, args: &[&str]| {
        cmd!(
            sh,
            "docker run --rm --entrypoint {program} {prefix}/{image} {args...}"
        )
        .read()
        .unwrap()
    };
    let nginx = |tag: &str| format!("crm-gdb_nginx:{tag}");
    let (key, files) = (
        label(&nginx(previous), "org.kiora.assets-key"),
        in_image(&nginx(previous), "ls", &["/var/www/app/public/build"]),
    );
    assert!(!key.is_empty(), "{previous} has no assets key");
    // An empty engine and cache, then a one-line PHP change, committed.
    let cold_change = |line: &str| {
        remove_release_images(sh, &prefix);
        std::fs::remove_dir_all(cache_dir(root)).unwrap();
        let view = root.join("app/src/View.php");
        let text = std::fs::read_to_string(&view).unwrap();
        std::fs::write(&view, format!("{text}// {line}\n")).unwrap();
        cmd!(
            sh,
            "git -C {root} -c user.name=dev -c user.email=dev@example.com commit -q -am View"
        )
        .run()
        .unwrap();
    };
    cold_change("changed on a CI runner");
    let out = xtask(root, tmp, &prefix, &["build-app", "--tag", "1.7.0"]);
    let log = stderr(&out);
    assert!(out.status.success(), "build-app 1.7.0: {log}");
    assert!(
        log.contains("its assets have the same inputs, npm skipped") && !log.contains("npm ci"),
        "{log}"
    );
    let code = in_image("crm-gdb_php:1.7.0", "cat", &["/var/www/app/src/View.php"]);
    assert!(
        code.contains("changed on a CI runner"),
        "php was not rebuilt"
    );
    assert_eq!(label(&nginx("1.7.0"), "org.kiora.assets-key"), key);
    let served = in_image(&nginx("1.7.0"), "ls", &["/var/www/app/public/build"]);
    assert_eq!(served, files);
    // php renders the page from the same manifest.
    let manifest = in_image(
        "crm-gdb_php:1.7.0",
        "cat",
        &["/var/www/app/public/build/manifest.json"],
    );
    let own = label(&nginx("1.7.0"), "org.kiora.assets");
    let own = own
        .split_whitespace()
        .next()
        .unwrap()
        .strip_prefix("1.7.0=");
    let css = own.and_then(|files| files.split(',').find(|f| f.ends_with(".css")));
    assert!(
        css.is_some_and(|css| manifest.contains(css)),
        "{own:?}: {manifest}"
    );
    assert!(is_empty_dir(tmp), "staging left behind");

    // A registry spoken to through the docker CLI only (as one behind TLS is): the previous
    // nginx image is pulled, so its compiled assets and its past releases' files come along.
    cold_change("changed again");
    let args = ["build-app", "--tag", "1.7.1", "--no-registry-api"];
    let out = xtask(root, tmp, &prefix, &args);
    let log = stderr(&out);
    assert!(out.status.success(), "build-app 1.7.1: {log}");
    assert!(
        log.contains("its assets have the same inputs, npm skipped") && !log.contains("npm ci"),
        "{log}"
    );
    let again = in_image(&nginx("1.7.1"), "ls", &["/var/www/app/public/build"]);
    assert_eq!(
        again, served,
        "1.7.1 serves what 1.7.0 did, past releases' files too"
    );
    assert!(is_empty_dir(tmp), "staging left behind");
}

/// Removes every release image (php and nginx) under `prefix` from the engine: a CI runner's.
fn remove_release_images(sh: &Shell, prefix: &str) {
    let format = "{{.Repository}}:{{.Tag}}";
    let listed = cmd!(sh, "docker image ls --format {format}")
        .read()
        .unwrap();
    let releases: Vec<&str> = listed
        .lines()
        .filter(|i| {
            i.starts_with(&format!("{prefix}/crm-gdb_php:"))
                || i.starts_with(&format!("{prefix}/crm-gdb_nginx:"))
        })
        .collect();
    assert!(!releases.is_empty());
    cmd!(sh, "docker image rm --force {releases...}")
        .quiet()
        .ignore_stdout()
        .run()
        .unwrap();
}

/// What must and must not be inside the release images.
fn check_images(sh: &Shell, prefix: &str, secret: &str) {
    let php = format!("{prefix}/crm-gdb_php:{TAG}");
    let supervisor = format!("{prefix}/crm-gdb_php:{TAG}-supervisor");
    let nginx = format!("{prefix}/crm-gdb_nginx:{TAG}");
    for image in [&php, &supervisor] {
        let uid = cmd!(sh, "docker run --rm --entrypoint id {image} -u")
            .read()
            .unwrap();
        assert_ne!(uid, "0", "{image} runs as root");
    }
    let run = |image: &str, script: &str| {
        cmd!(sh, "docker run --rm --entrypoint sh {image} -c {script}")
            .read()
            .unwrap()
    };
    assert_eq!(
        run(&php, "test -f /var/www/app/vendor/autoload.php && echo yes"),
        "yes"
    );
    let found = run(
        &php,
        "find / -xdev \\( -name dev-tools -o -name .env -o -name .git -o -name node_modules \\) -print 2>/dev/null; \
         grep -rl kiora/dev-tools /var/www/app/vendor/composer/installed.json 2>/dev/null; true",
    );
    assert_eq!(
        found, "",
        "dev package, .env, .git or node_modules in the php image"
    );
    let leaked = run(
        &php,
        &format!("grep -rl '{secret}' / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true"),
    );
    assert_eq!(leaked, "", "the developer's secret is in the php image");
    let format = "{{json .Config.Labels}}";
    let labels = cmd!(sh, "docker image inspect --format {format} {php}")
        .read()
        .unwrap();
    for label in [
        "org.opencontainers.image.version\":\"1.4.0",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.created",
    ] {
        assert!(labels.contains(label), "label {label} missing: {labels}");
    }
    // nginx holds the compiled, hashed assets that the manifest names.
    let manifest = run(&nginx, "cat /var/www/app/public/build/manifest.json");
    let assets = run(&nginx, "ls /var/www/app/public/build");
    for name in assets.lines().filter(|n| *n != "manifest.json") {
        assert!(manifest.contains(name), "{name} not in manifest {manifest}");
    }
    assert!(
        assets.lines().any(|n| n.ends_with(".css")) && assets.lines().any(|n| n.ends_with(".js")),
        "{assets}"
    );
    assert_eq!(
        run(
            &nginx,
            "find /var/www/app -name '*.php' ! -name index.php | head -1"
        ),
        "",
        "PHP sources in nginx"
    );
}

/// Refusals: one line naming the problem, non-zero exit, nothing built or written.
fn bad_input(sh: &Shell, root: &Path, tmp: &Path, prefix: &str) {
    let before = snapshot(root);
    for (args, expected) in [
        (
            vec!["build-app", "--tag", "latest"],
            "\"latest\" is refused",
        ),
        (
            vec!["build-app", "--tag", "1.0;rm -rf /"],
            "invalid tag \"1.0;rm -rf /\"",
        ),
        (vec!["build-app", "--tag", "$(id)"], "invalid tag \"$(id)\""),
        (vec!["set-tag", "--tag=-x"], "invalid tag \"-x\""),
        (
            vec!["build-app", "--tag", "1.5.0", "--compose-file", "nope.yaml"],
            "cannot read",
        ),
    ] {
        let out = xtask(root, tmp, prefix, &args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        let first = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(first.contains(expected), "{args:?}: {err}");
    }
    let out = xtask(root, tmp, "Bad/Registry", &["build-app", "--tag", "1.5.0"]);
    assert!(stderr(&out).contains("invalid registry \"Bad/Registry\""));

    // An uncommitted change among the build inputs is refused without --allow-dirty.
    std::fs::write(root.join("app/src/Scratch.php"), "<?php\n").unwrap();
    let out = xtask(root, tmp, prefix, &["build-app", "--tag", "1.5.0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("uncommitted changes in the build inputs (app/src/Scratch.php)"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(root.join("app/src/Scratch.php")).unwrap();

    assert!(
        snapshot(root) == before,
        "a refused command changed the tree"
    );
    assert!(is_empty_dir(tmp));
    assert!(cmd!(sh, "docker image inspect {prefix}/crm-gdb_php:1.5.0")
        .quiet()
        .ignore_stderr()
        .run()
        .is_err());
}

/// The registry is unreachable at push time: a clear error, compose.yaml untouched, no staging left.
fn push_failure(sh: &Shell, root: &Path, tmp: &Path, prefix: &str) {
    let dead = format!("127.0.0.1:{}/kiora", free_port());
    for name in ["crm-gdb_php_base", "crm-gdb_php_build"] {
        cmd!(
            sh,
            "docker tag {prefix}/{name}:{BASE_TAG} {dead}/{name}:{BASE_TAG}"
        )
        .run()
        .unwrap();
    }
    let _cleanup = RemoveImages(dead.clone());
    let compose = std::fs::read(root.join("compose.yaml")).unwrap();
    let out = xtask(root, tmp, &dead, &["build-app", "--tag", "1.6.0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let host = dead.split('/').next().unwrap();
    assert!(err.contains(&format!("to {host} failed")), "{err}");
    assert_eq!(
        std::fs::read(root.join("compose.yaml")).unwrap(),
        compose,
        "compose.yaml changed after a failed push"
    );
    assert!(is_empty_dir(tmp), "staging left behind after a failed push");
}

/// Removes the images a test tagged under its private registry prefix.
struct RemoveImages(String);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        let sh = Shell::new().unwrap();
        let prefix = &self.0;
        let format = "{{.Repository}}:{{.Tag}}";
        let images = cmd!(sh, "docker image ls --format {format}")
            .read()
            .unwrap_or_default();
        let ours: Vec<&str> = images
            .lines()
            .filter(|i| i.starts_with(prefix.as_str()))
            .collect();
        if !ours.is_empty() {
            let _ = cmd!(sh, "docker image rm --force {ours...}")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run();
        }
    }
}
