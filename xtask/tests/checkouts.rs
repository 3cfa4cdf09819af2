//! Two checkouts of the project sharing one `CARGO_TARGET_DIR` (a common global setting): each
//! `cargo xtask` works on the checkout it runs in, with that checkout's code, never on the other
//! one. And a binary built from one checkout, run by cargo for the other (what a cargo that
//! does not track `[env]` would do), refuses in one line with the command that fixes it.
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// `cargo xtask ARGS` in `checkout`, the way a developer runs it there: no XTASK_ROOT.
fn cargo_xtask(checkout: &Path, target_dir: &Path, args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .arg("xtask")
        .args(args)
        .current_dir(checkout)
        .env("CARGO_TARGET_DIR", target_dir)
        // The crates are in cargo's cache already (this test was built from them).
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("XTASK_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!(
        "--- (in {}) cargo xtask {} -> {}\n{}",
        checkout.display(),
        args.join(" "),
        output.status,
        stderr(&output)
    );
    output
}

fn compose(checkout: &Path) -> String {
    std::fs::read_to_string(checkout.join("compose.yaml")).unwrap()
}

#[test]
fn two_checkouts_sharing_a_target_dir_each_run_their_own_xtask() {
    // Both exist before either builds: the second one's sources are older than the first
    // one's build, which is what made cargo take that build for the second one's.
    let a = scratch_clone();
    let b = scratch_clone();
    let target = tempfile::tempdir().unwrap();
    let original = compose(a.path());
    assert_eq!(original, compose(b.path()));
    assert!(original.contains("crm-gdb_php:1.0.0\n"));

    let out = cargo_xtask(a.path(), target.path(), &["set-tag", "--tag", "5.5.5"]);
    assert!(out.status.success());
    let out = cargo_xtask(b.path(), target.path(), &["set-tag", "--tag", "6.6.6"]);
    assert!(out.status.success());
    assert_eq!(compose(a.path()), original.replace(":1.0.0", ":5.5.5"));
    assert_eq!(compose(b.path()), original.replace(":1.0.0", ":6.6.6"));

    // B's build, run by cargo for A: refused, one line, A untouched.
    let binary = target.path().join("debug/xtask");
    let out = Command::new(&binary)
        .args(["set-tag", "--tag", "7.7.7"])
        .current_dir(a.path())
        .env("CARGO_PKG_NAME", "xtask")
        .env("CARGO_MANIFEST_DIR", a.path().join("xtask"))
        .env_remove("XTASK_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let (a_dir, b_dir) = (
        a.path().canonicalize().unwrap(),
        b.path().canonicalize().unwrap(),
    );
    assert!(
        err.starts_with(&format!(
            "error: this xtask binary was built from {}, not from {} ",
            b_dir.display(),
            a_dir.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`touch {}` and run the command again",
            a_dir.join("xtask/src/main.rs").display()
        )),
        "{err}"
    );
    assert_eq!(compose(a.path()), original.replace(":1.0.0", ":5.5.5"));

    // Started by hand (not by cargo), the binary works on the checkout it was built from.
    let out = Command::new(&binary)
        .args(["set-tag", "--tag", "8.8.8"])
        .current_dir(a.path())
        .env_remove("CARGO_PKG_NAME")
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("XTASK_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(compose(b.path()), original.replace(":1.0.0", ":8.8.8"));
    assert_eq!(compose(a.path()), original.replace(":1.0.0", ":5.5.5"));
}
