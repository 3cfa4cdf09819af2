//! After taking over the lock of a dead deploy (or finding a traffic canary left for a decision,
//! or on `deploy --abort`), the target is made to agree with itself before anything else: the
//! edge's live.conf says which color serves; a canary split is withdrawn (the edge switched to
//! the live color alone); the other color's containers (a half-started next release, a canary,
//! or an old one that was being drained) are removed, unless its worker is stopped (the standby
//! a finished deploy left for a rollback stays), and compose.yaml is made to name the
//! release the live color runs; the live color's worker is started if it does not run (a deploy
//! or rollback that died between its switch and its worker's start). With no edge or no live
//! color (a first deploy that died), both colors are removed and the deploy starts as a first
//! one.

use anyhow::{Context, Result};

use crate::cmd::Cmd;
use crate::compose_file;
use crate::config::APP_IMAGES;
use crate::deploy::deployment::Deployment;
use crate::deploy::stack::{Color, Stack};

/// How long the live color's worker may take to start.
const WORKER_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What reconciling will do, decided from what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The color serving per the edge and its release (None: nothing serves).
    pub live: Option<(Color, Option<String>)>,
    /// Colors with containers that do not serve: removed.
    pub remove: Vec<Color>,
    /// The color kept for a rollback (it has containers, its worker stopped): stays.
    pub standby: Option<Color>,
    /// The tag compose.yaml must name, when it names another one.
    pub set_compose_tag: Option<String>,
    /// The color a canary split sends requests to: the edge goes back to the live color alone.
    pub withdraw_canary: Option<Color>,
}

/// `present`: the colors that have containers; `standby`: the other color when its worker is
/// stopped; `compose_tag`: the release compose.yaml names.
pub fn plan(
    live: Option<(Color, Option<String>)>,
    present: &[Color],
    standby: Option<Color>,
    compose_tag: Option<&str>,
    canary: Option<Color>,
) -> Plan {
    // Without a live color there is nothing a standby could stand by for.
    let standby = standby.filter(|s| present.contains(s) && live.is_some());
    let remove = present
        .iter()
        .copied()
        .filter(|c| live.as_ref().map(|(l, _)| l) != Some(c) && Some(*c) != standby)
        .collect();
    let set_compose_tag = match &live {
        Some((_, Some(tag))) if compose_tag != Some(tag.as_str()) => Some(tag.clone()),
        _ => None,
    };
    Plan {
        withdraw_canary: canary.filter(|_| live.is_some()),
        live,
        remove,
        standby,
        set_compose_tag,
    }
}

impl Plan {
    /// One line: what serves and what was done.
    pub fn describe(&self, stack: &str) -> String {
        let mut line = match &self.live {
            Some((color, tag)) => format!(
                "reconciled: {} ({stack}-{}) serves per the edge",
                tag.as_deref().unwrap_or("an unknown release"),
                color.name()
            ),
            None => "reconciled: nothing serves per the edge (a first deploy)".to_string(),
        };
        if let Some(color) = self.withdraw_canary {
            line.push_str(&format!("; canary on {stack}-{} withdrawn", color.name()));
        }
        let removed: Vec<String> = self
            .remove
            .iter()
            .map(|c| format!("{stack}-{}", c.name()))
            .collect();
        line.push_str(&match (removed.is_empty(), self.standby) {
            (true, None) => "; no other containers".to_string(),
            (false, _) => format!("; removed {}", removed.join(" and ")),
            (true, Some(_)) => String::new(),
        });
        if let Some(color) = self.standby {
            line.push_str(&format!("; kept {stack}-{} (standby)", color.name()));
        }
        line.push_str(&match &self.set_compose_tag {
            Some(tag) => format!("; compose.yaml set back to {tag}"),
            None => "; compose.yaml agrees".to_string(),
        });
        line
    }
}

/// Makes the target agree with its edge (see the module doc); says in one line what was done.
pub fn run(d: &Deployment) -> Result<()> {
    let stack = Stack::new(d);
    let live = stack.live_release()?;
    let canary = stack.canary()?.map(|(color, _)| color);
    let mut present = Vec::new();
    for color in [Color::Blue, Color::Green] {
        let mut any = false;
        for service in ["php", "worker", "nginx"] {
            any |= stack.image_of(color, service)?.is_some();
        }
        if any {
            present.push(color);
        }
    }
    let text = d.read("compose.yaml")?;
    let compose_tag = compose_file::app_references(&text, &APP_IMAGES)
        .ok()
        .and_then(|refs| refs.first().and_then(|r| compose_file::release_of(r)));
    let standby = stack
        .standby(live.as_ref().map(|(color, _)| *color))?
        .map(|(color, _)| color);
    let plan = plan(live, &present, standby, compose_tag.as_deref(), canary);
    // The edge first: once it sends nothing to the canary, its containers can go.
    if let (Some(_), Some((color, _))) = (plan.withdraw_canary, &plan.live) {
        stack.switch(*color).context("withdrawing the canary")?;
    }
    for color in &plan.remove {
        stack
            .remove(*color)
            .with_context(|| format!("removing {} after the takeover", stack.project(*color)))?;
    }
    if let Some(tag) = &plan.set_compose_tag {
        let (fixed, _) = compose_file::set_tag(&text, tag, &APP_IMAGES)
            .map_err(|err| anyhow::anyhow!("cannot set {tag} in compose.yaml: {err}"))?;
        d.write_atomically("compose.yaml", fixed.as_bytes())?;
    }
    // A write the dead deploy left half-done.
    d.remote
        .run(Cmd::new("rm").args(["-f", &d.target().path("compose.yaml.xtask-new")]))?;
    // A throwaway container (release command, asset or TLS copy...) whose `docker run` died
    // between create and start.
    let leftovers = d
        .remote
        .query(crate::docker::unstarted_throwaways(&d.stack))?;
    let ids: Vec<&str> = leftovers.split_whitespace().collect();
    if !ids.is_empty() {
        let removed = d.remote.succeeds(
            Cmd::new("docker")
                .args(["rm", "--force"])
                .args(ids.iter().copied()),
        )?;
        d.remote.say(if removed {
            format!(
                "Removed {} never-started throwaway container(s) of the dead deploy",
                ids.len()
            )
        } else {
            format!("warning: could not remove the never-started throwaway containers {ids:?}")
        });
    }
    let mut line = plan.describe(&d.stack);
    if let Some((color, _)) = &plan.live {
        if !d.remote.dry_run() && stack.worker_stopped(*color)? {
            // Not fatal: the operation that took over goes on (a deploy replaces the release).
            line.push_str(&match stack.start_worker(*color, WORKER_LIMIT) {
                Ok(()) => format!("; started the worker of {}", stack.project(*color)),
                Err(err) => format!(
                    "; warning: the worker of {} did not start ({})",
                    stack.project(*color),
                    format!("{err:#}").replace('\n', " ")
                ),
            });
        }
    }
    d.remote.say(line);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_decides() {
        // Killed while starting green: green goes, compose.yaml back to blue's release.
        let p = plan(
            Some((Color::Blue, Some("1.0.0".into()))),
            &[Color::Blue, Color::Green],
            None,
            Some("1.1.0"),
            None,
        );
        assert_eq!(p.remove, [Color::Green]);
        assert_eq!(p.set_compose_tag.as_deref(), Some("1.0.0"));
        assert_eq!(
            p.describe("crm"),
            "reconciled: 1.0.0 (crm-blue) serves per the edge; removed crm-green; compose.yaml set back to 1.0.0"
        );
        // Killed while draining blue after the switch: blue goes, compose.yaml already right.
        let p = plan(
            Some((Color::Green, Some("1.1.0".into()))),
            &[Color::Blue, Color::Green],
            None,
            Some("1.1.0"),
            None,
        );
        assert_eq!(p.remove, [Color::Blue]);
        assert_eq!(p.set_compose_tag, None);
        // Killed while pulling: nothing to do.
        let p = plan(
            Some((Color::Blue, Some("1.0.0".into()))),
            &[Color::Blue],
            None,
            Some("1.0.0"),
            None,
        );
        assert_eq!(
            p.describe("crm"),
            "reconciled: 1.0.0 (crm-blue) serves per the edge; no other containers; compose.yaml agrees"
        );
        // A first deploy that died: whatever was started goes.
        let p = plan(None, &[Color::Blue], None, Some("1.0.0"), None);
        assert_eq!(p.remove, [Color::Blue]);
        assert_eq!(p.set_compose_tag, None);
        // Killed after the switch, the old color already stopped: it stays, the standby.
        let p = plan(
            Some((Color::Green, Some("1.1.0".into()))),
            &[Color::Blue, Color::Green],
            Some(Color::Blue),
            Some("1.1.0"),
            None,
        );
        assert_eq!((p.remove, p.standby), (vec![], Some(Color::Blue)));
        // Killed while pulling, a standby there: nothing to do but say so.
        let p = plan(
            Some((Color::Blue, Some("1.0.0".into()))),
            &[Color::Blue, Color::Green],
            Some(Color::Green),
            Some("1.0.0"),
            None,
        );
        assert_eq!(
            p.describe("crm"),
            "reconciled: 1.0.0 (crm-blue) serves per the edge; kept crm-green (standby); compose.yaml agrees"
        );
        // A canary left (held for a decision, or its deploy died): the edge goes back to blue
        // alone, green goes, compose.yaml names blue's release again.
        let p = plan(
            Some((Color::Blue, Some("1.0.0".into()))),
            &[Color::Blue, Color::Green],
            None,
            Some("1.1.0"),
            Some(Color::Green),
        );
        assert_eq!(p.withdraw_canary, Some(Color::Green));
        assert_eq!(
            p.describe("crm"),
            "reconciled: 1.0.0 (crm-blue) serves per the edge; canary on crm-green withdrawn; removed crm-green; compose.yaml set back to 1.0.0"
        );
    }
}
