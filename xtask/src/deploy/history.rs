//! The history of a target, `.deploy/history.tsv`: time, tag, revision, who, strategy, result
//! and deploy id of every operation, one tab-separated line each, appended also after Ctrl-C.
//! The hosts of one fleet deploy share its id. Lines written before ids existed have 6 fields.

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
    /// Shared by every host's line of one fleet operation; empty on old lines.
    pub id: String,
}

impl Entry {
    fn parse(line: &str) -> Option<Entry> {
        let f: Vec<&str> = line.split('\t').collect();
        let (time, tag, revision, who, strategy, result, id) = match f.as_slice() {
            [time, tag, revision, who, strategy, result] => {
                (time, tag, revision, who, strategy, result, &"")
            }
            [time, tag, revision, who, strategy, result, id] => {
                (time, tag, revision, who, strategy, result, id)
            }
            _ => return None,
        };
        let s = |v: &&str| v.to_string();
        Some(Entry {
            time: s(time),
            tag: s(tag),
            revision: s(revision),
            who: s(who),
            strategy: s(strategy),
            result: s(result),
            id: s(id),
        })
    }

    fn line(&self) -> String {
        // Tabs and newlines would break the format; none of our values has them, but be sure.
        let clean = |v: &str| v.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            clean(&self.time),
            clean(&self.tag),
            clean(&self.revision),
            clean(&self.who),
            clean(&self.strategy),
            clean(&self.result),
            clean(&self.id)
        )
    }

    /// The release went live (`ok`, or `ok; ...` when only tidying up the old one failed).
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

    /// Appends one line (also after Ctrl-C: the history must say what happened); `id` is the
    /// operation's deploy id.
    pub fn record(
        &self,
        id: &str,
        tag: &str,
        revision: &str,
        strategy: &str,
        result: &str,
    ) -> Result<()> {
        let entry = Entry {
            id: id.into(),
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
            id: "20261121T100000Z-42".into(),
        };
        assert_eq!(Entry::parse(entry.line().trim_end()), Some(entry.clone()));
        assert!(entry.succeeded());
        assert_eq!(Entry::parse("garbage"), None);
        // Lines written before deploy ids: 6 fields, read with an empty id.
        let old = Entry::parse("t\t1.0\tabc\tme@box\trolling\tok").unwrap();
        assert_eq!((old.tag.as_str(), old.id.as_str()), ("1.0", ""));
    }

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
    fn previous_successful_release() {
        let history = [
            entry("1.0.0", "ok"),
            entry("1.1.0", "ok"),
            entry("1.2.0", "failed; rolled back"),
            entry("1.1.0", "ok"),
        ];
        assert!(entry(
            "1.3.0",
            "ok; 1.3.0 serves, but the old release was not removed"
        )
        .succeeded());
        assert!(!entry("1.3.0", "okay").succeeded());
        assert_eq!(
            previous_release(&history, Some("1.1.0")).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(previous_release(&history[..1], Some("1.0.0")), None);
    }
}
