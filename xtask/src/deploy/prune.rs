//! What a target no longer needs, decided from its history: release images and stopped
//! containers of no kept release, hashed files in the shared assets volume that no kept release
//! has, and backups beyond a count.
//!
//! Kept: the releases of the last N successful lines of the history, the live one, the stopped
//! standby's (its containers are what a rollback starts), and the one `rollback` would pick (basecamp/kamal #1922: a prune that removes it breaks the next
//! rollback). Everything is planned first (read-only queries), listed, then removed; when the
//! files of a kept release cannot be listed, the assets volume is left alone.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::compose_file::{self, release_of};
use crate::config::{APP_IMAGES, NGINX};
use crate::deploy::backups::BACKUPS;
use crate::deploy::deployment::Deployment;
use crate::deploy::history::{previous_release, Entry};
use crate::deploy::stack::Stack;

/// Where each release's nginx image keeps its hashed files (what the deploy copies to the volume).
const BUILD_DIR: &str = "/var/www/app/public/build";

/// Which releases stay, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Newest first, no repeats.
    pub tags: Vec<String>,
    pub live: Option<String>,
    pub rollback: Option<String>,
}

/// The releases of the last `keep` successful history lines (distinct, newest first), plus the
/// live one and the one `rollback` would pick.
pub fn kept_releases(history: &[Entry], live: Option<&str>, keep: usize) -> Kept {
    let mut tags: Vec<String> = Vec::new();
    let mut push = |tag: &str| {
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    };
    if let Some(live) = live {
        push(live);
    }
    let rollback = previous_release(history, live);
    if let Some(tag) = &rollback {
        push(tag);
    }
    let mut recent: Vec<&str> = Vec::new();
    for e in history.iter().rev().filter(|e| e.succeeded()) {
        if recent.len() >= keep {
            break;
        }
        if !recent.contains(&e.tag.as_str()) {
            recent.push(&e.tag);
        }
    }
    for tag in recent {
        push(tag);
    }
    Kept {
        tags,
        live: live.map(String::from),
        rollback,
    }
}

/// The repositories of the app images a compose file names (`registry/ns/crm-gdb_php`...).
pub fn app_repositories(compose_yaml: &str) -> Result<Vec<String>> {
    let refs = compose_file::app_references(compose_yaml, &APP_IMAGES)
        .map_err(|err| anyhow::anyhow!("cannot read the target's compose.yaml: {err}"))?;
    let mut repos: Vec<String> = refs.iter().map(|r| repository(r).to_string()).collect();
    repos.sort();
    repos.dedup();
    Ok(repos)
}

/// `registry:5000/ns/name:tag` -> `registry:5000/ns/name` (a port is not a tag).
fn repository(reference: &str) -> &str {
    let reference = reference.split('@').next().unwrap_or(reference);
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

/// `docker image ls` of one repository, as `repo:tag` lines.
pub fn list_images(repository: &str) -> Cmd {
    Cmd::new("docker").args([
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        repository,
    ])
}

/// The images of `listing` (`repo:tag` lines) that belong to no kept release.
pub fn images_to_remove(listing: &str, kept: &[String]) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with(":<none>"))
        .filter(|image| match release_of(image) {
            Some(release) => !kept.contains(&release),
            None => false,
        })
        .map(String::from)
        .collect()
}

/// Every container whose name starts with the stack's, one tab-separated line each.
pub fn list_containers(stack: &str) -> Cmd {
    Cmd::new("docker").args([
        "ps",
        "--all",
        "--no-trunc",
        "--filter",
        &format!("name=^{stack}-"),
        "--format",
        "{{.ID}}\t{{.State}}\t{{.Image}}\t{{.Names}}\t{{.Label \"com.docker.compose.project\"}}",
    ])
}

/// A container prune removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub release: String,
    pub state: String,
}

/// The stopped containers of the stack (its release projects, `exec --new` leftovers) whose
/// image is of no kept release. The edge is never one: it belongs to no release.
pub fn containers_to_remove(listing: &str, stack: &str, kept: &[String]) -> Vec<Container> {
    let projects = [format!("{stack}-blue"), format!("{stack}-green")];
    let exec_prefix = format!("{stack}-exec-");
    listing
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [id, state, image, name, project] = f.as_slice() else {
                return None;
            };
            let ours = projects.iter().any(|p| p == project)
                || (project.is_empty() && name.starts_with(&exec_prefix));
            let stopped = matches!(*state, "exited" | "created" | "dead");
            let release = release_of(image)?;
            (ours && stopped && !kept.contains(&release)).then(|| Container {
                id: id.to_string(),
                name: name.to_string(),
                release,
                state: state.to_string(),
            })
        })
        .collect()
}

/// The files under an image's build directory, relative to it.
pub fn list_release_assets(nginx_image: &str) -> Cmd {
    Cmd::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "find",
        nginx_image,
        BUILD_DIR,
        "-type",
        "f",
        "-printf",
        "%P\\n",
    ])
}

/// The files of the shared assets volume, relative to it (read-only mount).
pub fn list_volume_assets(stack: &str, tool_image: &str) -> Cmd {
    Cmd::new("docker")
        .args(["run", "--rm", "--network", "none"])
        .args(crate::docker::throwaway_label(stack))
        .arg("--volume")
        .arg(format!("{stack}_assets:/assets:ro"))
        .args(["--entrypoint", "find", tool_image])
        .args(["/assets", "-type", "f", "-printf", "%P\\n"])
}

/// Files of the volume no kept release has. Names that could leave the volume are never listed.
pub fn assets_to_remove(in_volume: &str, kept_files: &BTreeSet<String>) -> Vec<String> {
    in_volume
        .lines()
        .filter(|f| !f.is_empty() && !f.starts_with('/'))
        .filter(|f| !f.split('/').any(|part| part == ".." || part.is_empty()))
        .filter(|f| !kept_files.contains(*f))
        .map(String::from)
        .collect()
}

/// Removes `files` (relative to the volume) in batches, as root, in a throwaway container.
pub fn remove_assets(stack: &str, tool_image: &str, files: &[String]) -> Vec<Cmd> {
    files
        .chunks(200)
        .map(|chunk| {
            Cmd::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--user",
                    "0:0",
                    "--volume",
                ])
                .arg(format!("{stack}_assets:/assets"))
                .args(["--entrypoint", "rm", tool_image, "-f", "--"])
                .args(chunk.iter().map(|f| format!("/assets/{f}")))
        })
        .collect()
}

/// The oldest backups beyond `keep` (names sort by time).
pub fn old_backups(names: &[String], keep: usize) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    let old = names.len().saturating_sub(keep.max(1));
    names.truncate(old);
    names
}

/// What prune would do on a target.
#[derive(Debug)]
pub struct Plan {
    pub kept: Kept,
    pub containers: Vec<Container>,
    pub images: Vec<String>,
    /// Files of the assets volume to remove, or why the volume is left alone.
    pub assets: std::result::Result<Vec<String>, String>,
    pub backups: Vec<String>,
    /// The image whose `find` and `rm` handle the assets volume.
    tool_image: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.images.is_empty()
            && self.assets.as_ref().map_or(true, Vec::is_empty)
            && self.backups.is_empty()
    }
}

/// Looks at the target (read-only) and decides what goes.
pub fn plan(d: &Deployment, keep: usize, keep_backups: usize) -> Result<Plan> {
    let stack = Stack::new(d);
    // A canary's release is in no `ok` line of the history yet: decide it before pruning.
    if let Some(canary) = stack.canary_summary()? {
        anyhow::bail!(
            "a canary is on ({canary}): decide it first with `deploy --promote` or `deploy --abort`"
        );
    }
    let history = d.history()?;
    let live_release = stack.live_release()?;
    let standby = stack.standby(live_release.as_ref().map(|(color, _)| *color))?;
    let live = live_release.and_then(|(_, tag)| tag);
    let mut kept = kept_releases(&history, live.as_deref(), keep);
    // Normally the release rollback picks; kept whatever the history says.
    if let Some((_, Some(tag))) = standby {
        if !kept.tags.contains(&tag) {
            kept.tags.push(tag);
        }
    }
    // Without a release to keep, "everything else" would be every image of the repositories,
    // e.g. those of `up` on the same engine.
    if kept.tags.is_empty() {
        anyhow::bail!(
            "nothing is deployed on {} and its history names no release: nothing to prune",
            d.target().describe()
        );
    }
    let compose_yaml = d.read("compose.yaml")?;
    let q = |cmd: Cmd| d.remote.query(cmd);

    let mut images = Vec::new();
    for repo in app_repositories(&compose_yaml)? {
        images.extend(images_to_remove(&q(list_images(&repo))?, &kept.tags));
    }
    let containers = containers_to_remove(&q(list_containers(&d.stack))?, &d.stack, &kept.tags);

    // The files every kept release needs, from its own nginx image.
    let mut kept_files = BTreeSet::new();
    let mut missing = Vec::new();
    let mut tool_image = None;
    for tag in &kept.tags {
        let (text, _) = compose_file::set_tag(&compose_yaml, tag, &APP_IMAGES)
            .map_err(|err| anyhow::anyhow!("cannot read the target's compose.yaml: {err}"))?;
        let Some(nginx) = compose_file::app_references(&text, &[NGINX])
            .ok()
            .and_then(|r| r.into_iter().next())
        else {
            missing.push(tag.clone());
            continue;
        };
        if !d.remote.succeeds(crate::docker::image_exists(&nginx))? {
            missing.push(tag.clone());
            continue;
        }
        let files = q(list_release_assets(&nginx))
            .with_context(|| format!("listing the assets of {nginx}"))?;
        kept_files.extend(files.lines().filter(|l| !l.is_empty()).map(String::from));
        tool_image.get_or_insert(nginx);
    }
    let volume = format!("{}_assets", d.stack);
    let assets = if !missing.is_empty() {
        Err(format!(
            "left alone: the files of kept release(s) {} cannot be listed (their nginx image is not on the target)",
            missing.join(", ")
        ))
    } else if !d
        .remote
        .succeeds(Cmd::new("docker").args(["volume", "inspect", &volume]))?
    {
        Ok(Vec::new())
    } else {
        match &tool_image {
            Some(image) => Ok(assets_to_remove(
                &q(list_volume_assets(&d.stack, image))?,
                &kept_files,
            )),
            None => Err("left alone: no kept release to tell which files are needed".to_string()),
        }
    };
    let backups = old_backups(&d.backups()?, keep_backups);
    Ok(Plan {
        kept,
        containers,
        images,
        assets,
        backups,
        tool_image,
    })
}

/// Removes what `plan` lists: containers first (an image in use cannot go), then images, assets
/// and backups. A removal that fails is reported and the others go on; returns those failures.
pub fn apply(d: &Deployment, plan: &Plan) -> Result<Vec<String>> {
    let mut failures = Vec::new();
    let mut run = |cmd: Cmd, what: &str| -> Result<()> {
        if let Err(err) = d.remote.run(cmd) {
            if err.is::<crate::interrupt::Interrupted>() {
                return Err(err);
            }
            failures.push(format!("{what}: {err:#}"));
        }
        Ok(())
    };
    for c in &plan.containers {
        run(
            Cmd::new("docker").args(["rm", &c.id]),
            &format!("container {}", c.name),
        )?;
    }
    for image in &plan.images {
        run(
            Cmd::new("docker").args(["image", "rm", image]),
            &format!("image {image}"),
        )?;
    }
    if let (Ok(files), Some(tool)) = (&plan.assets, &plan.tool_image) {
        for cmd in remove_assets(&d.stack, tool, files) {
            run(cmd, "assets")?;
        }
    }
    if !plan.backups.is_empty() {
        let paths = plan
            .backups
            .iter()
            .map(|n| d.target().path(&format!("{BACKUPS}/{n}")));
        run(Cmd::new("rm").arg("-f").args(paths), "backups")?;
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str, result: &str) -> Entry {
        Entry {
            time: "t".into(),
            tag: tag.into(),
            revision: "r".into(),
            who: "w".into(),
            strategy: "rolling".into(),
            result: result.into(),
            id: String::new(),
        }
    }

    #[test]
    fn kept_are_the_last_n_the_live_and_the_rollback_pick() {
        let history: Vec<Entry> = [
            ("1", "ok"),
            ("2", "ok"),
            ("3", "ok"),
            ("4", "failed; rolled back"),
            ("5", "ok"),
            ("5", "ok"),
            ("6", "ok"),
            ("3", "ok"), // a rollback to 3: live
        ]
        .iter()
        .map(|(t, r)| entry(t, r))
        .collect();
        let kept = kept_releases(&history, Some("3"), 2);
        assert_eq!(kept.tags, ["3", "6"]);
        assert_eq!(kept.rollback.as_deref(), Some("6"));
        let kept = kept_releases(&history, Some("3"), 3);
        assert_eq!(
            kept.tags,
            ["3", "6", "5"],
            "distinct tags, failures skipped"
        );
        // --keep 0 still keeps the live release and the rollback pick.
        assert_eq!(kept_releases(&history, Some("2"), 0).tags, ["2", "3"]);
        assert!(kept_releases(&[], None, 5).tags.is_empty());
    }

    #[test]
    fn repositories_and_images_of_dropped_releases() {
        let yaml = "services:\n  php:\n    image: 127.0.0.1:5000/k/crm-gdb_php:3\n  worker:\n    image: 127.0.0.1:5000/k/crm-gdb_php:3-supervisor\n  nginx:\n    image: 127.0.0.1:5000/k/crm-gdb_nginx:3\n  edge:\n    image: 127.0.0.1:5000/k/crm-gdb_edge:0.2.0\n";
        assert_eq!(
            app_repositories(yaml).unwrap(),
            [
                "127.0.0.1:5000/k/crm-gdb_nginx",
                "127.0.0.1:5000/k/crm-gdb_php"
            ]
        );
        assert_eq!(repository("host:5000/k/x"), "host:5000/k/x");
        assert_eq!(
            list_images("r/k/crm-gdb_php").argv(),
            [
                "docker",
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "r/k/crm-gdb_php"
            ]
        );
        let listing = "r:5000/k/crm-gdb_php:3\nr:5000/k/crm-gdb_php:3-supervisor\nr:5000/k/crm-gdb_php:2-supervisor\nr:5000/k/crm-gdb_php:2\nr:5000/k/crm-gdb_php:<none>\nr:5000/k/crm-gdb_php:1\n";
        let kept = vec!["3".to_string(), "1".to_string()];
        assert_eq!(
            images_to_remove(listing, &kept),
            [
                "r:5000/k/crm-gdb_php:2-supervisor",
                "r:5000/k/crm-gdb_php:2"
            ]
        );
    }

    #[test]
    fn only_stopped_containers_of_dropped_releases_go() {
        let listing = [
            "a1\trunning\tr/k/crm-gdb_php:3\tcrm-blue-php-1\tcrm-blue",
            "a2\texited\tr/k/crm-gdb_php:2\tcrm-green-php-1\tcrm-green",
            "a3\texited\tr/k/crm-gdb_php:3-supervisor\tcrm-blue-worker-1\tcrm-blue",
            "a4\tcreated\tr/k/crm-gdb_php:1\tcrm-exec-42\t",
            "a5\texited\tr/k/crm-gdb_edge:0.1.0\tcrm-edge-edge-1\tcrm-edge",
            "a6\texited\tr/k/crm-gdb_php:2\tcrm-test-blue-php-1\tcrm-test-blue",
            "a7\trunning\tr/k/crm-gdb_php:1\tcrm-exec-43\t",
        ]
        .join("\n");
        let kept = vec!["3".to_string()];
        let gone: Vec<String> = containers_to_remove(&listing, "crm", &kept)
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(gone, ["a2", "a4"]);
        assert!(list_containers("crm")
            .args
            .windows(2)
            .any(|w| w == ["--filter", "name=^crm-"]));
    }

    #[test]
    fn assets_of_no_kept_release_go_and_nothing_outside_the_volume() {
        let kept: BTreeSet<String> = ["app-AAA.css", "manifest.json", "app-BBB.js"]
            .map(String::from)
            .into();
        let in_volume = "app-AAA.css\napp-OLD.css\nmanifest.json\n../etc/passwd\n/abs\napp-BBB.js\nsub/x-OLD.js\n";
        assert_eq!(
            assets_to_remove(in_volume, &kept),
            ["app-OLD.css", "sub/x-OLD.js"]
        );
        let cmds = remove_assets("crm", "r/k/crm-gdb_nginx:3", &["app-OLD.css".to_string()]);
        assert_eq!(
            cmds[0].argv(),
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                "0:0",
                "--volume",
                "crm_assets:/assets",
                "--entrypoint",
                "rm",
                "r/k/crm-gdb_nginx:3",
                "-f",
                "--",
                "/assets/app-OLD.css"
            ]
        );
        let many: Vec<String> = (0..450).map(|i| format!("f{i}")).collect();
        assert_eq!(remove_assets("crm", "i", &many).len(), 3);
        assert_eq!(
            list_release_assets("n:3").argv()[7..],
            ["n:3", BUILD_DIR, "-type", "f", "-printf", "%P\\n"]
        );
        assert!(list_volume_assets("crm", "n:3")
            .args
            .contains(&"crm_assets:/assets:ro".to_string()));
    }

    #[test]
    fn backups_beyond_the_count_go_oldest_first() {
        let names: Vec<String> = ["data-3.tar.gz", "data-1.tar.gz", "data-2.tar.gz"]
            .map(String::from)
            .to_vec();
        assert_eq!(old_backups(&names, 2), ["data-1.tar.gz"]);
        assert_eq!(old_backups(&names, 0), ["data-1.tar.gz", "data-2.tar.gz"]);
        assert!(old_backups(&names, 5).is_empty());
    }
}
