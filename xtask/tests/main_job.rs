//! The README's main job, `cargo xtask up`, on a real engine: with no registry and no published
//! base images it builds what is missing, keeps it local and shows the app running.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const PROJECT: &str = "crm-gdb-e2e-up";

#[test]
fn up_runs_the_app_with_only_a_docker_engine() {
    if !engine_available("up_runs_the_app_with_only_a_docker_engine") {
        return;
    }
    let clone = scratch_clone();
    let root = clone.path();
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let _down = Down(root.to_path_buf());
    let before = snapshot(root);

    let out = xtask(
        root,
        tmp.path(),
        "registry.kiora.tech/kiora",
        &["up", "--port", &port.to_string(), "--project-name", PROJECT],
    );
    assert!(out.status.success(), "cargo xtask up failed");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("running at http://127.0.0.1:{port}/")),
        "{said}"
    );

    let (status, body) = http_get(port, "/health").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, page) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    let css = page
        .split("\"/build/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page names a hashed asset");
    let (status, _) = http_get(port, &format!("/build/{css}")).unwrap();
    assert_eq!(status, 200, "hashed asset {css} not served");

    assert!(snapshot(root) == before, "up changed the developer's tree");
    assert!(is_empty_dir(tmp.path()), "up left files in TMPDIR");

    let out = xtask(
        root,
        tmp.path(),
        "registry.kiora.tech/kiora",
        &["down", "--volumes", "--project-name", PROJECT],
    );
    assert!(out.status.success());
    assert_eq!(project_containers(), "", "containers left after down");
}

fn project_containers() -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            &format!("label=com.docker.compose.project={PROJECT}"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stops the stack even when an assertion failed.
struct Down(std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let root: &Path = &self.0;
        let _ = Command::new("docker")
            .args(["compose", "--project-name", PROJECT, "--project-directory"])
            .arg(root)
            .args(["down", "--volumes", "--remove-orphans"])
            .output();
    }
}
