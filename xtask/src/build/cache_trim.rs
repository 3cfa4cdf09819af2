//! Trimming the local dependency cache (`build_cache::cache_dir()`: `KIND/KEY` entries such as
//! `vendor/<key>`), which otherwise only grows: entries older than a limit go, then the oldest
//! until the total is under a size. Entries being written (`.partial-*`) are never touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Result;

use crate::cmd::{Cmd, Runner};

/// One cache entry: a directory, its last change and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub modified: SystemTime,
    pub bytes: u64,
}

/// A size such as `500M`, `2G` or `1048576` (bytes); K, M, G, T are powers of 1024.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let bad =
        || format!("invalid size {text:?}: a number of bytes, or with K, M, G or T (e.g. 2G)");
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => t.split_at(at),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// The entries to remove: older than `max_age`, then the oldest of the rest until they fit in
/// `max_bytes`.
pub fn to_remove(
    entries: &[Entry],
    now: SystemTime,
    max_age: Duration,
    max_bytes: u64,
) -> Vec<PathBuf> {
    let mut sorted = entries.to_vec();
    sorted.sort_by_key(|e| e.modified);
    let mut total: u64 = sorted.iter().map(|e| e.bytes).sum();
    let mut gone = Vec::new();
    for e in sorted {
        let old = now
            .duration_since(e.modified)
            .is_ok_and(|age| age > max_age);
        if old || total > max_bytes {
            total -= e.bytes;
            gone.push(e.path);
        }
    }
    gone
}

/// The cache's entries (`cache/KIND/KEY` directories), with their sizes.
pub fn entries(cache: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let Ok(kinds) = std::fs::read_dir(cache) else {
        return out;
    };
    for kind in kinds.flatten().filter(|k| k.path().is_dir()) {
        let Ok(keys) = std::fs::read_dir(kind.path()) else {
            continue;
        };
        for key in keys.flatten() {
            if key.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = key.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            out.push(Entry {
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: size_of(&path),
                path,
            });
        }
    }
    out
}

fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|dir| dir.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes `paths` (entries of the cache) through the runner, so `--dry-run` only lists them.
pub fn remove(runner: &Runner, paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        runner.run(&Cmd::new("rm").arg("-rf").arg(path.display().to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("500m"), Ok(500 << 20));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        for bad in ["", "G", "2X", "-1", "1.5G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn old_entries_go_then_the_oldest_until_it_fits() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86400);
        let day = |d: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(d * 86400);
        let e = |name: &str, d: u64, bytes: u64| Entry {
            path: PathBuf::from(name),
            modified: day(d),
            bytes,
        };
        let entries = [
            e("new", 99, 10),
            e("ancient", 10, 1),
            e("mid", 90, 10),
            e("older", 80, 10),
        ];
        let max_age = Duration::from_secs(30 * 86400);
        assert_eq!(
            to_remove(&entries, now, max_age, 100),
            [PathBuf::from("ancient")]
        );
        assert_eq!(
            to_remove(&entries, now, max_age, 15),
            ["ancient", "older", "mid"].map(PathBuf::from)
        );
    }

    #[test]
    fn entries_skip_partial_copies() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vendor/k1/a")).unwrap();
        std::fs::write(dir.path().join("vendor/k1/a/f"), b"12345").unwrap();
        std::fs::create_dir_all(dir.path().join("vendor/.partial-1-k2")).unwrap();
        std::fs::create_dir_all(dir.path().join("assets/k3")).unwrap();
        let mut found = entries(dir.path());
        found.sort_by(|a, b| a.path.cmp(&b.path));
        let names: Vec<(String, u64)> = found
            .iter()
            .map(|e| {
                (
                    e.path
                        .strip_prefix(dir.path())
                        .unwrap()
                        .display()
                        .to_string(),
                    e.bytes,
                )
            })
            .collect();
        assert_eq!(
            names,
            [("assets/k3".to_string(), 0), ("vendor/k1".to_string(), 5)]
        );
        assert!(entries(&dir.path().join("none")).is_empty());
    }
}
