//! The table printed at the end of `build-app` and `docker-publish`: each image with its ID,
//! size and registry digest (known after a push), then how long each step took.
//!
//! ```text
//! IMAGE                                          ID            SIZE      DIGEST
//! 127.0.0.1:5000/kiora/crm-gdb_php:1.4.0         3f2c1e0a9b8c  275.3 MB  sha256:9f86d08...
//!
//! STEP                                    TIME
//! Staging HEAD in a temporary directory   0.3s
//! ```

use std::time::Duration;

use crate::cmd::Runner;
use crate::progress::Verbosity;
use crate::progress::{seconds, Timing};
use crate::reference::ImageRef;

/// What the local engine says about one image; `None` where it does not know (e.g. an image
/// pushed straight from a multi-platform build is not in the local engine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRow {
    pub image: String,
    pub id: Option<String>,
    pub size_bytes: Option<u64>,
    pub digest: Option<String>,
}

/// Prints the table on stderr, unless `-q` or `--dry-run` (nothing was built then).
pub fn show(runner: &Runner, images: &[&ImageRef], timings: &[Timing]) {
    if runner.dry_run || runner.verbosity == Verbosity::Quiet {
        return;
    }
    let rows: Vec<ImageRow> = images
        .iter()
        .map(
            |image| match crate::docker::image_summary(runner, &image.to_string()) {
                Ok(answer) => parse_inspect(image, &answer),
                Err(_) => parse_inspect(image, ""),
            },
        )
        .collect();
    runner.say(render(&rows, timings));
}

/// Reads [`crate::docker::summary_inspect`]'s answer; the digest kept is the one of this image's own repository.
pub fn parse_inspect(image: &ImageRef, answer: &str) -> ImageRow {
    let mut words = answer.split_whitespace();
    let id = words.next().map(String::from);
    let size_bytes = words.next().and_then(|size| size.parse().ok());
    let repository = format!("{}/{}", image.registry, image.name);
    let digest = words
        .filter_map(|entry| entry.split_once('@'))
        .find(|(repo, _)| *repo == repository)
        .map(|(_, digest)| digest.to_string());
    ImageRow {
        image: image.to_string(),
        id,
        size_bytes,
        digest,
    }
}

/// The images table, a blank line, then the steps table with a total.
pub fn render(rows: &[ImageRow], timings: &[Timing]) -> String {
    let images: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.image.clone(),
                row.id.as_deref().map_or("-".into(), short_id),
                row.size_bytes
                    .map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
                row.digest.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut steps: Vec<Vec<String>> = timings
        .iter()
        .map(|t| {
            let took = t.took.map_or("skipped".into(), seconds);
            vec![t.title.clone(), took]
        })
        .collect();
    let total: Duration = timings.iter().filter_map(|t| t.took).sum();
    steps.push(vec!["total".into(), seconds(total)]);
    format!(
        "{}\n\n{}",
        table(&["IMAGE", "ID", "SIZE", "DIGEST"], &images),
        table(&["STEP", "TIME"], &steps)
    )
}

/// `sha256:3f2c1e0a9b8c...` -> `3f2c1e0a9b8c`, as `docker image ls` shows it.
fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Left-aligned columns two spaces apart, no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:width$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> ImageRef {
        ImageRef {
            registry: "127.0.0.1:5000/kiora".into(),
            name: name.into(),
            tag: "1.4.0".into(),
        }
    }

    #[test]
    fn the_digest_is_the_one_of_the_images_repository() {
        let answer = "sha256:3f2c1e0a9b8c7d6e 275312345 \
                      other.io/x/crm-gdb_php@sha256:aaaa 127.0.0.1:5000/kiora/crm-gdb_php@sha256:bbbb";
        let row = parse_inspect(&image("crm-gdb_php"), answer);
        assert_eq!(row.id.as_deref(), Some("sha256:3f2c1e0a9b8c7d6e"));
        assert_eq!(row.size_bytes, Some(275_312_345));
        assert_eq!(row.digest.as_deref(), Some("sha256:bbbb"));
        let not_pushed = parse_inspect(&image("crm-gdb_php"), "sha256:ab 10");
        assert_eq!(not_pushed.digest, None);
        let not_local = parse_inspect(&image("crm-gdb_nginx"), "");
        assert_eq!((not_local.id, not_local.size_bytes), (None, None));
    }

    #[test]
    fn renders_aligned_tables() {
        let rows = [
            parse_inspect(
                &image("crm-gdb_php"),
                "sha256:3f2c1e0a9b8c7d6e 275312345 127.0.0.1:5000/kiora/crm-gdb_php@sha256:bbbb",
            ),
            parse_inspect(&image("crm-gdb_nginx"), ""),
        ];
        let timings = [
            Timing {
                title: "Staging HEAD".into(),
                took: Some(Duration::from_millis(300)),
            },
            Timing {
                title: "Updating compose.yaml".into(),
                took: None,
            },
            Timing {
                title: "Building".into(),
                took: Some(Duration::from_millis(61_240)),
            },
        ];
        assert_eq!(
            render(&rows, &timings),
            "\
IMAGE                                     ID            SIZE      DIGEST
127.0.0.1:5000/kiora/crm-gdb_php:1.4.0    3f2c1e0a9b8c  275.3 MB  sha256:bbbb
127.0.0.1:5000/kiora/crm-gdb_nginx:1.4.0  -             -         -

STEP                   TIME
Staging HEAD           0.3s
Updating compose.yaml  skipped
Building               61.2s
total                  61.5s"
        );
    }
}
