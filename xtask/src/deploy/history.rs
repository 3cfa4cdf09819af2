//! The history of a target, `.deploy/history.tsv`: time, tag, revision, who, strategy and result
//! of every operation, one tab-separated line each, appended also after Ctrl-C.

use anyhow::Result;

use crate::cmd::Cmd;
use crate::deploy::deployment::{who, Deployment};
use crate::project::now_rfc3339;

pub const HISTORY: &str = ".deploy/history.tsv";

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub tag: String,
    pub revision: String,
    pub who: String,
    pub strategy: String,
    pub result: String,
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let f: Vec<&str> = line.split('\t').collect();
        let [time, tag, revision, who, strategy, result] = f.as_slice() else {
            return None;
        };
        let s = |v: &&str| v.to_string();
        Some(Entry {
            time: s(time),
            tag: s(tag),
            revision: s(revision),
            who: s(who),
            strategy: s(strategy),
            result: s(result),
        })
    }

    fn line(&self) -> String {
        // Tabs and newlines would break the format; none of our values has them, but be sure.
        let clean = |v: &str| v.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&self.time),
            clean(&self.tag),
            clean(&self.revision),
            clean(&self.who),
            clean(&self.strategy),
            clean(&self.result)
        )
    }

    /// The release was put in service (`ok`, or `ok; ...` when only the old one's removal failed).
    pub fn succeeded(&self) -> bool {
        self.result == "ok" || self.result.starts_with("ok;")
    }
}

impl Deployment {
    pub fn history(&self) -> Result<Vec<Entry>> {
        let exists = self
            .remote
            .succeeds(Cmd::new("test").args(["-f", &self.target().path(HISTORY)]))?;
        if !exists {
            return Ok(Vec::new());
        }
        Ok(self
            .read(HISTORY)?
            .lines()
            .filter_map(Entry::parse)
            .collect())
    }

    /// Appends one line (also after Ctrl-C: the history must say what happened).
    pub fn record(&self, tag: &str, revision: &str, strategy: &str, result: &str) -> Result<()> {
        let entry = Entry {
            time: now_rfc3339(),
            tag: tag.into(),
            revision: revision.into(),
            who: who(),
            strategy: strategy.into(),
            result: result.into(),
        };
        let append = Cmd::new("dd")
            .args([
                format!("of={}", self.target().path(HISTORY)),
                "oflag=append".into(),
                "conv=notrunc".into(),
                "status=none".into(),
            ])
            .stdin(entry.line());
        self.remote.cleanup(append).map(drop)
    }
}

/// The last successful release before the live one: the newest `ok` line whose tag differs.
pub fn previous_release(history: &[Entry], live: Option<&str>) -> Option<String> {
    history
        .iter()
        .rev()
        .filter(|e| e.succeeded())
        .map(|e| e.tag.clone())
        .find(|tag| Some(tag.as_str()) != live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_round_trip() {
        let entry = Entry {
            time: "2026-11-21T10:00:00Z".into(),
            tag: "1.4.0".into(),
            revision: "abc".into(),
            who: "me@box".into(),
            strategy: "rolling".into(),
            result: "ok".into(),
        };
        assert_eq!(Entry::parse(entry.line().trim_end()), Some(entry.clone()));
        assert!(entry.succeeded());
        assert_eq!(Entry::parse("garbage"), None);
    }

    fn entry(tag: &str, result: &str) -> Entry {
        Entry {
            time: "t".into(),
            tag: tag.into(),
            revision: "r".into(),
            who: "w".into(),
            strategy: "rolling".into(),
            result: result.into(),
        }
    }

    #[test]
    fn previous_successful_release() {
        let history = [
            entry("1.0.0", "ok"),
            entry("1.1.0", "ok"),
            entry("1.2.0", "failed; rolled back"),
            entry("1.1.0", "ok"),
        ];
        assert_eq!(
            previous_release(&history, Some("1.1.0")).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(previous_release(&history[..1], Some("1.0.0")), None);
    }
}
