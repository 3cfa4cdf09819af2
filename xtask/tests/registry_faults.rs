//! The registry goes away in the middle of `build-app`'s pushes (its process is killed as the
//! pushes start; they run side by side): each failed push is retried with backoff, one line per
//! retry; a registry that stays down gives one clear error naming it and compose.yaml untouched;
//! a registry that comes back during the backoff gets the pushes.

mod common;

use std::time::Duration;

use common::faults::*;
use common::*;

struct Setup {
    registry: Registry,
    prefix: String,
    clone: ScratchClone,
    tmp: tempfile::TempDir,
    _images: ImagesUnder,
}

fn setup() -> Setup {
    let registry = Registry::start();
    let prefix = registry.prefix();
    let images = ImagesUnder(prefix.clone());
    let clone = scratch_clone();
    let tmp = tempfile::tempdir().unwrap();
    publish_base_locally(clone.path(), tmp.path(), &prefix);
    Setup {
        registry,
        prefix,
        clone,
        tmp,
        _images: images,
    }
}

/// Starts build-app and kills the registry when the second push starts.
fn stop_registry_at_second_push(s: &mut Setup, tag: &str, retries: Option<&str>) -> Running {
    let env: Vec<(&str, &str)> = retries
        .map(|r| vec![("XTASK_PUSH_RETRIES", r)])
        .unwrap_or_default();
    let run = Running::start(
        s.clone.path(),
        s.tmp.path(),
        &s.prefix,
        &["-v", "build-app", "--tag", tag],
        &env,
    );
    let second = format!("$ docker push {}/crm-gdb_php:{tag}-supervisor", s.prefix);
    let seen = run.wait_for_line(Duration::from_secs(300), |l| l == second);
    assert!(
        seen.is_some(),
        "the second push never started:\n{}",
        run.stderr()
    );
    s.registry.stop();
    run
}

#[test]
fn a_registry_that_stays_down_is_named_and_nothing_changes() {
    if !engine_available("a_registry_that_stays_down_is_named_and_nothing_changes") {
        return;
    }
    let mut s = setup();
    let root = s.clone.path().to_path_buf();
    let before = snapshot(&root);
    let mut run = stop_registry_at_second_push(&mut s, "3.1.0", Some("2"));
    let status = run.wait(Duration::from_secs(120));
    let log = run.stderr();
    assert_eq!(status.code(), Some(1), "{log}");

    let host = s.prefix.split('/').next().unwrap();
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("; retry ")).collect();
    // The pushes run side by side: two retries each for the ones the registry's death caught
    // (php or nginx may have been quick enough to get in before it).
    let supervisor = format!(
        "`docker push {}/crm-gdb_php:3.1.0-supervisor` failed (exit code 1); retry",
        s.prefix
    );
    for expected in [
        format!("{supervisor} 1/2 in 1s"),
        format!("{supervisor} 2/2 in 2s"),
    ] {
        assert!(
            retries.contains(&expected.as_str()),
            "{expected} missing:\n{log}"
        );
    }
    assert!((2..=6).contains(&retries.len()), "{log}");
    for retry in &retries {
        assert!(
            retry.starts_with("`docker push ") && retry.contains(" failed (exit code 1); retry "),
            "{retry}"
        );
    }
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error: ")).collect();
    eprintln!("{}\n{}", retries.join("\n"), errors.join("\n"));
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains(&format!(
            "-supervisor to {host} failed; check the registry is reachable"
        )),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("gave up after 3 attempts"),
        "{}",
        errors[0]
    );

    // compose.yaml and the rest of the tree are as they were.
    assert!(snapshot(&root) == before, "the developer's tree changed");
    assert!(is_empty_dir(s.tmp.path()), "staging left behind");
    assert_eq!(
        processes_mentioning(&s.tmp.path().display().to_string()),
        Vec::<String>::new()
    );
    s.registry.restart();
    let php = s.registry.tags("crm-gdb_php");
    assert!(!php.contains(&"3.1.0-supervisor".to_string()), "{php:?}");
}

#[test]
fn a_registry_back_during_the_backoff_gets_the_push() {
    if !engine_available("a_registry_back_during_the_backoff_gets_the_push") {
        return;
    }
    let mut s = setup();
    let root = s.clone.path().to_path_buf();
    let compose_before = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    // Default backoff: 3 retries after 1, 2 and 4 s.
    let mut run = stop_registry_at_second_push(&mut s, "3.2.0", None);
    let retry = run.wait_for_line(Duration::from_secs(60), |l| l.contains("; retry 1/3 in 1s"));
    assert!(retry.is_some(), "no retry announced:\n{}", run.stderr());
    s.registry.restart();
    let status = run.wait(Duration::from_secs(120));
    let log = run.stderr();
    assert!(status.success(), "{log}");
    let retries: Vec<&str> = log.lines().filter(|l| l.contains("; retry ")).collect();
    eprintln!("{}", retries.join("\n"));
    let retries = retries.len();
    assert!((1..=3).contains(&retries), "{log}");

    assert_eq!(
        s.registry.tags("crm-gdb_php"),
        ["3.2.0", "3.2.0-supervisor"]
    );
    assert_eq!(s.registry.tags("crm-gdb_nginx"), ["3.2.0"]);
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    assert_eq!(compose, compose_before.replace(":1.0.0", ":3.2.0"));
    assert!(is_empty_dir(s.tmp.path()));
}
