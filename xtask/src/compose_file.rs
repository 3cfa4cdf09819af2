//! Rewrites the tag of our app images in a Docker Compose file, and nothing else.
//!
//! Self-contained on purpose: it uses nothing else of the crate (its own [`SplitRef`], not
//! `reference::ImageRef`), because the fuzz target (xtask/fuzz/fuzz_targets/set_tag.rs) compiles
//! this file alone with `#[path]`.
//!
//! The file is never parsed and re-serialized: the YAML event stream of `saphyr-parser` is only
//! used to locate, with exact positions, every scalar that is the value of an `image` key (at any
//! depth, in block or flow collections, in every document of the stream). The new reference is then
//! spliced into the original text at those byte ranges, so every other byte (comments, quoting,
//! CRLF line endings, BOM, trailing whitespace, key order, `---` markers...) survives unchanged.
//! Finally the result is parsed again and must give the same events except for the rewritten
//! values.
//!
//! What is rewritten: an `image` value whose reference (`[registry[:port]/][path/]name[:tag][@digest]`)
//! has a last path component `name` exactly equal to one of the app image names. Its tag becomes the
//! new tag (`<tag>-supervisor` when the old tag ended in `-supervisor`), a missing tag is added and
//! a digest is dropped (it would pin the old image); registry and path are kept.
//!
//! Anchors and aliases: an anchored `image` value (`image: &img ...`) is rewritten in place. An alias
//! value (`image: *img`) is never edited at the alias; instead the anchored scalar it points to is
//! rewritten (whatever key it sits under), because that text is what the service actually uses.
//! Merge keys (`<<: *php`) need nothing special: the `image` key inside the anchored mapping is found
//! where it is written.
//!
//! A block scalar whose content is one line (`image: >-` then the reference on the next line,
//! which Compose accepts) is rewritten on that line, its header kept.
//!
//! Refused (error, nothing written) when a value naming one of our images spans several lines
//! (block scalars included), keeps a final line break (`|`, `>`: Docker refuses it too), is
//! double-quoted with escape sequences, has surrounding whitespace, or has a tag made of a
//! Compose variable (`crm-gdb_php:${TAG}`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Context};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Tag suffix of the image variant that runs the supervisor (`crm-gdb_php:<tag>-supervisor`).
const SUPERVISOR_SUFFIX: &str = "-supervisor";

/// One rewritten image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 1-based line of the rewritten value in the original text.
    pub line: usize,
    /// The reference before the rewrite (the YAML value, without quotes).
    pub old: String,
    /// The reference after the rewrite.
    pub new: String,
}

/// Why a compose text cannot be rewritten. Nothing is written when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The text is not valid YAML (`line` is 1-based).
    Syntax { line: usize, message: String },
    /// No `image` value names one of the app images.
    NoAppImage,
    /// An `image` value names one of the app images but cannot be rewritten safely.
    Refused { line: usize, reason: String },
    /// The tag does not follow the Docker tag grammar (callers are expected to validate it first).
    InvalidTag(String),
    /// The rewritten text does not parse back to the same structure (a bug in this module).
    Verification(String),
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Syntax { line, message } => {
                write!(f, "line {line}: invalid YAML: {message}")
            }
            EditError::NoAppImage => f.write_str("no `image:` names one of our app images"),
            EditError::Refused { line, reason } => write!(f, "line {line}: {reason}"),
            EditError::InvalidTag(tag) => write!(f, "invalid image tag {tag:?}"),
            EditError::Verification(message) => {
                write!(f, "the rewritten file would not be equivalent: {message}")
            }
        }
    }
}

impl std::error::Error for EditError {}

/// Rewrites in memory the tag of every `image` value naming one of `app_images`, in every document
/// of the stream (see the module documentation). `tag` is already validated by the caller; it is
/// only checked here against the Docker tag grammar ([`EditError::InvalidTag`]).
///
/// Returns the new text and the changes, in file order; when every tag already matches, the text
/// is returned unchanged with no changes.
pub fn set_tag(
    text: &str,
    tag: &str,
    app_images: &[&str],
) -> Result<(String, Vec<Change>), EditError> {
    set_release(text, None, tag, app_images)
}

/// [`set_tag`], and with `registry` (e.g. `127.0.0.1:5000/kiora`) also the part before the
/// image name, so a stack can run images named after another registry (tests, local runs).
pub fn set_release(
    text: &str,
    registry: Option<&str>,
    tag: &str,
    app_images: &[&str],
) -> Result<(String, Vec<Change>), EditError> {
    if !is_valid_tag(tag) {
        return Err(EditError::InvalidTag(tag.to_owned()));
    }
    let events = parse_events(text)?;
    let char_to_byte = CharOffsets::new(text);

    let mut found_app_image = false;
    let mut edits: Vec<Edit> = Vec::new();
    for index in image_value_scalars(&events) {
        let (Event::Scalar(value, style, _, _), span) = &events[index] else {
            unreachable!("image_value_scalars returns scalar events only");
        };
        let reference = SplitRef::parse(value.trim());
        if !app_images.contains(&reference.name()) {
            continue;
        }
        found_app_image = true;
        let start = char_to_byte.byte(span.start.index())?;
        let end = char_to_byte.byte(span.end.index())?;
        let content = content_start(text, start, end);
        let line = line_at(text, content);
        let refuse = |reason: String| EditError::Refused { line, reason };

        let (from, to) = locate_scalar(text, content, end, *style, value).map_err(|why| {
            refuse(format!(
                "cannot rewrite the image reference {value:?}: {why}"
            ))
        })?;
        if value.trim() != value.as_ref() {
            return Err(refuse(format!(
                "the image reference {value:?} has surrounding whitespace"
            )));
        }
        if reference.tag.is_some_and(|t| t.contains('$')) {
            return Err(refuse(format!(
                "the image reference {value:?} takes its tag from a variable; \
                 set it by hand or remove the variable"
            )));
        }
        let new = match registry {
            Some(registry) => reference.with_registry_and_tag(registry, tag),
            None => reference.with_tag(tag),
        };
        if new == value.as_ref() {
            continue;
        }
        let replacement = encode_scalar(&new, *style)
            .ok_or_else(|| refuse(format!("cannot write {new:?} as a {style:?} scalar")))?;
        edits.push(Edit {
            event: index,
            from,
            to,
            replacement,
            change: Change {
                // Where the reference is written (a block scalar's is below its `>-`).
                line: line_at(text, from),
                old: value.to_string(),
                new,
            },
        });
    }
    if !found_app_image {
        return Err(EditError::NoAppImage);
    }

    edits.sort_by_key(|edit| edit.from);
    let mut output = String::with_capacity(text.len() + 16 * edits.len());
    let mut copied = 0;
    for edit in &edits {
        if edit.from < copied {
            return Err(EditError::Verification(format!(
                "overlapping rewrites at line {}",
                edit.change.line
            )));
        }
        output.push_str(&text[copied..edit.from]);
        output.push_str(&edit.replacement);
        copied = edit.to;
    }
    output.push_str(&text[copied..]);

    verify(&events, &output, &edits)?;
    Ok((output, edits.into_iter().map(|edit| edit.change).collect()))
}

/// Every app image reference of `text` (trimmed), in file order, without duplicates.
pub fn app_references(text: &str, app_images: &[&str]) -> Result<Vec<String>, EditError> {
    let events = parse_events(text)?;
    let mut references: Vec<String> = Vec::new();
    for index in image_value_scalars(&events) {
        let Event::Scalar(value, ..) = &events[index].0 else {
            continue;
        };
        let value = value.trim();
        if app_images.contains(&SplitRef::parse(value).name())
            && !references.iter().any(|r| r == value)
        {
            references.push(value.to_string());
        }
    }
    if references.is_empty() {
        return Err(EditError::NoAppImage);
    }
    Ok(references)
}

/// The release tag of one image reference (`r/crm-gdb_php:1.4.0-supervisor` -> `1.4.0`).
pub fn release_of(reference: &str) -> Option<String> {
    let tag = SplitRef::parse(reference).tag?;
    Some(
        tag.strip_suffix(SUPERVISOR_SUFFIX)
            .unwrap_or(tag)
            .to_string(),
    )
}

/// Reads `path`, rewrites it with [`set_tag`], and writes it atomically (temporary file in the same
/// directory, then rename, keeping the original file's permissions). A symlink is resolved and its
/// target is rewritten. On any error the file is unchanged; errors name the file (and the line for
/// YAML problems). When the tags already match, the file is not touched at all.
pub fn set_tag_in_file(path: &Path, tag: &str, app_images: &[&str]) -> anyhow::Result<Vec<Change>> {
    let shown = path.display();
    let target = fs::canonicalize(path)
        .with_context(|| format!("cannot set tag in {shown}: cannot find the file"))?;
    let text = fs::read_to_string(&target)
        .with_context(|| format!("cannot set tag in {shown}: cannot read it as UTF-8 text"))?;
    let (new_text, changes) = set_tag(&text, tag, app_images).map_err(|error| {
        anyhow!(
            "cannot set tag in {shown}: {error}\nhint: {}",
            hint(&error, app_images)
        )
    })?;
    if new_text != text {
        write_atomically(&target, new_text.as_bytes()).map_err(|error| {
            anyhow!(
                "cannot set tag in {shown}: cannot write {}: {error:#}; {}",
                target.display(),
                write_hint(&error)
            )
        })?;
    }
    Ok(changes)
}

/// Advice shown under a [`set_tag_in_file`] error.
fn hint(error: &EditError, app_images: &[&str]) -> String {
    match error {
        EditError::Syntax { .. } => {
            "fix the YAML first (`docker compose config -q` shows the problem too)".to_owned()
        }
        EditError::NoAppImage => format!(
            "expected an `image:` whose name is one of {}; pass the right file with --file",
            app_images.join(", ")
        ),
        EditError::Refused { .. } => {
            "write that `image:` value on one line, plain or quoted without escapes, \
             or edit its tag by hand"
                .to_owned()
        }
        EditError::InvalidTag(_) => {
            "a tag is 1 to 128 characters among letters, digits, `_`, `.` and `-`, \
             not starting with `.` or `-`"
                .to_owned()
        }
        EditError::Verification(_) => {
            "this is a bug in the set-tag code; edit the tags by hand meanwhile".to_owned()
        }
    }
}

/// What to do when [`write_atomically`] failed; the file is unchanged either way.
fn write_hint(error: &anyhow::Error) -> &'static str {
    let kind = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    match kind {
        Some(std::io::ErrorKind::StorageFull) => {
            "the file is unchanged; free some space on its file system and run this again"
        }
        Some(std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied) => {
            "the file is unchanged; the new version replaces it by a rename, so the file's \
             directory must be writable too"
        }
        _ => "the file is unchanged",
    }
}

/// Writes `bytes` to `target` through a temporary file in the same directory renamed over it, so
/// readers see either the old or the new content. The target's permissions are kept.
fn write_atomically(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = target
        .parent()
        .context("the file has no parent directory")?;
    let permissions = fs::metadata(target)?.permissions();
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    temp.write_all(bytes)?;
    temp.as_file().set_permissions(permissions)?;
    temp.as_file().sync_all()?;
    // On error the temporary file is dropped, hence deleted, and the target is left as it was.
    temp.persist(target).map_err(|error| error.error)?;
    // Best effort: make the rename itself durable (opening a directory fails on some platforms).
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// One splice into the original text.
struct Edit {
    /// Index of the rewritten scalar in the event stream.
    event: usize,
    /// Byte range replaced (inside the quotes for quoted scalars).
    from: usize,
    to: usize,
    replacement: String,
    change: Change,
}

/// Parses the whole stream (all documents), or reports the first syntax error.
fn parse_events(text: &str) -> Result<Vec<(Event<'_>, Span)>, EditError> {
    Parser::new_from_str(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| EditError::Syntax {
            line: error.marker().line(),
            message: format!("{} (column {})", error.info(), error.marker().col() + 1),
        })
}

/// Where a collection is in its key/value alternation.
enum Frame {
    Sequence,
    Mapping {
        /// The next node is a key.
        expect_key: bool,
        /// The last key was the scalar `image`.
        key_is_image: bool,
    },
}

/// Indices (in file order, without duplicates) of the scalar events that are the value of an
/// `image` key, directly or through an alias (then the anchored scalar is returned).
fn image_value_scalars(events: &[(Event<'_>, Span)]) -> Vec<usize> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchored_scalars: HashMap<usize, usize> = HashMap::new();
    let mut found = Vec::new();
    for (index, (event, _)) in events.iter().enumerate() {
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::Alias(_)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
        );
        let mut is_image_value = false;
        if is_node {
            if let Some(Frame::Mapping {
                expect_key,
                key_is_image,
            }) = stack.last_mut()
            {
                if *expect_key {
                    *key_is_image = matches!(event, Event::Scalar(key, ..) if key == "image");
                } else {
                    is_image_value = *key_is_image;
                }
                *expect_key = !*expect_key;
            }
        }
        match event {
            Event::Scalar(_, _, anchor, _) => {
                if *anchor != 0 {
                    anchored_scalars.insert(*anchor, index);
                }
                if is_image_value {
                    found.push(index);
                }
            }
            Event::Alias(anchor) if is_image_value => {
                if let Some(&target) = anchored_scalars.get(anchor) {
                    found.push(target);
                }
            }
            Event::MappingStart(..) => stack.push(Frame::Mapping {
                expect_key: true,
                key_is_image: false,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Sequence),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// Parses `rewritten` and checks it gives the same events as `original` except for the rewritten
/// scalars, which must hold their new value with the same style, anchor and tag.
fn verify(
    original: &[(Event<'_>, Span)],
    rewritten: &str,
    edits: &[Edit],
) -> Result<(), EditError> {
    let events = parse_events(rewritten)
        .map_err(|error| EditError::Verification(format!("it does not parse: {error}")))?;
    if events.len() != original.len() {
        return Err(EditError::Verification("its structure changed".to_owned()));
    }
    let new_values: HashMap<usize, &str> = edits
        .iter()
        .map(|edit| (edit.event, edit.change.new.as_str()))
        .collect();
    for (index, ((before, _), (after, span))) in original.iter().zip(&events).enumerate() {
        let expected = match (new_values.get(&index), before) {
            (Some(new), Event::Scalar(_, style, anchor, tag)) => {
                Event::Scalar(Cow::Borrowed(*new), *style, *anchor, tag.clone())
            }
            _ => before.clone(),
        };
        if *after != expected {
            return Err(EditError::Verification(format!(
                "line {}: expected {expected:?}, found {after:?}",
                span.start.line()
            )));
        }
    }
    Ok(())
}

/// Converts the parser's positions, which count characters (not bytes), to byte offsets.
struct CharOffsets(Vec<usize>);

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut offsets: Vec<usize> = text.char_indices().map(|(byte, _)| byte).collect();
        offsets.push(text.len());
        CharOffsets(offsets)
    }

    fn byte(&self, char_index: usize) -> Result<usize, EditError> {
        self.0.get(char_index).copied().ok_or_else(|| {
            EditError::Verification(format!("parser position {char_index} is past the end"))
        })
    }
}

/// 1-based line of byte offset `byte` (`\n`, `\r\n` and a lone `\r` each end a line, as in YAML).
fn line_at(text: &str, byte: usize) -> usize {
    let before = &text.as_bytes()[..byte];
    let breaks = before
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && before.get(i + 1) != Some(&b'\n')))
        .count();
    1 + breaks
}

/// Skips the node properties (`&anchor`, `!tag`) and the whitespace and comments around them that a
/// scalar's span starts with, returning the byte offset of the scalar text itself.
fn content_start(text: &str, start: usize, end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut pos = start;
    while pos < end {
        match bytes[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => pos += 1,
            b'#' => {
                while pos < end && !matches!(bytes[pos], b'\r' | b'\n') {
                    pos += 1;
                }
            }
            b'&' | b'!' => {
                while pos < end && !matches!(bytes[pos], b' ' | b'\t' | b'\r' | b'\n') {
                    pos += 1;
                }
            }
            // Only ASCII bytes stop the loops above, so `pos` is on a character boundary.
            _ => break,
        }
    }
    pos
}

/// Finds the byte range of a single-line scalar's text starting at `pos` (inside the quotes when
/// quoted) and checks it decodes to `value`. `span_end` is where the parser says the node ends; for
/// quoted scalars it may include trailing blanks and comments, so the closing quote is searched.
fn locate_scalar(
    text: &str,
    pos: usize,
    span_end: usize,
    style: ScalarStyle,
    value: &str,
) -> Result<(usize, usize), &'static str> {
    const MULTI_LINE: &str = "it spans several lines";
    const MISMATCH: &str = "its text in the file does not match its value";
    let bytes = text.as_bytes();
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            locate_block_scalar(text, pos, span_end, value)
        }
        ScalarStyle::Plain => {
            let raw = text[pos..span_end].trim_end_matches([' ', '\t']);
            if raw.contains(['\n', '\r']) {
                Err(MULTI_LINE)
            } else if raw != value {
                Err(MISMATCH)
            } else {
                Ok((pos, pos + raw.len()))
            }
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let (quote, double) = match style {
                ScalarStyle::DoubleQuoted => (b'"', true),
                _ => (b'\'', false),
            };
            if bytes.get(pos) != Some(&quote) {
                return Err(MISMATCH);
            }
            let mut i = pos + 1;
            loop {
                match bytes.get(i) {
                    None => return Err(MISMATCH),
                    Some(b'\n' | b'\r') => return Err(MULTI_LINE),
                    Some(b'\\') if double => return Err("it contains escape sequences"),
                    Some(b'\'') if !double && bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(&b) if b == quote => break,
                    Some(_) => i += 1,
                }
            }
            let inner = &text[pos + 1..i];
            let decoded: Cow<'_, str> = if double {
                Cow::Borrowed(inner)
            } else {
                Cow::Owned(inner.replace("''", "'"))
            };
            if decoded != value || i >= span_end {
                return Err(MISMATCH);
            }
            Ok((pos + 1, i))
        }
    }
}

/// Finds the one content line of a block scalar (`image: >-` then the reference on the next
/// line, which Compose accepts) and checks it is `value`. `pos` is where the parser's span starts
/// past the node properties: at the `|`/`>` header when the node has properties, else at the
/// content itself; either way the content line is the last non-blank one before `span_end`.
fn locate_block_scalar(
    text: &str,
    pos: usize,
    span_end: usize,
    value: &str,
) -> Result<(usize, usize), &'static str> {
    const SEVERAL: &str = "it is a block scalar (`|` or `>`) of several lines";
    let one_line = value.trim_end_matches('\n');
    if one_line.contains('\n') {
        return Err(SEVERAL);
    }
    if one_line.len() != value.len() {
        return Err(
            "it is a block scalar that keeps its line break (`|` or `>`), which Docker \
                    refuses; write `|-` or `>-`",
        );
    }
    let region = &text[pos..span_end];
    let last_text = region.trim_end_matches([' ', '\t', '\r', '\n']).len();
    let line_start = region[..last_text]
        .rfind(['\n', '\r'])
        .map_or(0, |at| at + 1);
    let line_end = region[line_start..]
        .find(['\n', '\r'])
        .map_or(region.len(), |at| line_start + at);
    let line = &region[line_start..line_end];
    let content = line.trim_start_matches(' ');
    // Above the content line: nothing, or the header (`>-`, `|2`, maybe a comment) and blank lines.
    let above: Vec<&str> = region[..line_start]
        .split(['\n', '\r'])
        .filter(|line| !line.trim().is_empty())
        .collect();
    let header = match above.as_slice() {
        [] => true,
        [line] => line.trim_start().starts_with(['|', '>']),
        _ => false,
    };
    if !header {
        return Err(SEVERAL);
    }
    if content != one_line {
        return Err("its text in the file does not match its value");
    }
    let from = pos + line_start + (line.len() - content.len());
    Ok((from, from + content.len()))
}

/// The source text for `value` in `style` (inside the quotes), or `None` if it would need escapes.
fn encode_scalar(value: &str, style: ScalarStyle) -> Option<String> {
    match style {
        ScalarStyle::Plain => Some(value.to_owned()),
        ScalarStyle::SingleQuoted => Some(value.replace('\'', "''")),
        ScalarStyle::DoubleQuoted => (!value.contains(['"', '\\'])
            && !value.contains(char::is_control))
        .then(|| value.to_owned()),
        // The content line of a one-line block scalar: any text but line breaks.
        ScalarStyle::Literal | ScalarStyle::Folded => {
            (!value.contains(char::is_control)).then(|| value.to_owned())
        }
    }
}

/// Docker tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    tag.len() <= 128
        && (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// An image reference `[registry[:port]/][path/]name[:tag][@digest]`, split without validation.
#[derive(Debug, PartialEq, Eq)]
struct SplitRef<'a> {
    /// Everything before the tag: `[registry[:port]/][path/]name`.
    repository: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

impl<'a> SplitRef<'a> {
    fn parse(reference: &'a str) -> Self {
        let (named, digest) = match reference.split_once('@') {
            Some((named, digest)) => (named, Some(digest)),
            None => (reference, None),
        };
        // A `:` is the tag separator only after the last `/` (else it is a registry port).
        let last_slash = named.rfind('/');
        match named.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => SplitRef {
                repository: &named[..colon],
                tag: Some(&named[colon + 1..]),
                digest,
            },
            _ => SplitRef {
                repository: named,
                tag: None,
                digest,
            },
        }
    }

    /// Last path component of the repository.
    fn name(&self) -> &'a str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(self.repository)
    }

    /// [`SplitRef::with_tag`] under another registry: `registry/name:tag`.
    fn with_registry_and_tag(&self, registry: &str, tag: &str) -> String {
        let retagged = self.with_tag(tag);
        let name_and_tag = &retagged[self.repository.len() - self.name().len()..];
        format!("{}/{name_and_tag}", registry.trim_end_matches('/'))
    }

    /// The reference with `tag` (or `<tag>-supervisor` for a supervisor tag) and no digest.
    fn with_tag(&self, tag: &str) -> String {
        let supervisor = self.tag.is_some_and(|old| old.ends_with(SUPERVISOR_SUFFIX))
            && !tag.ends_with(SUPERVISOR_SUFFIX);
        let suffix = if supervisor { SUPERVISOR_SUFFIX } else { "" };
        format!("{}:{tag}{suffix}", self.repository)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &[&str] = &["crm-gdb_php", "crm-gdb_nginx"];

    #[test]
    fn set_release_also_moves_the_registry() {
        let text = "services:\n  php: {image: 'r.io/k/crm-gdb_php:1.0.0'}  # c\n  w:\n    image: crm-gdb_php:1.0.0-supervisor\n  x: {image: r.io/k/crm-gdb_php_base:1}\n";
        let (out, changes) = set_release(text, Some("127.0.0.1:5000/kiora"), "2.0.0", APP).unwrap();
        assert_eq!(
            out,
            "services:\n  php: {image: '127.0.0.1:5000/kiora/crm-gdb_php:2.0.0'}  # c\n  w:\n    image: 127.0.0.1:5000/kiora/crm-gdb_php:2.0.0-supervisor\n  x: {image: r.io/k/crm-gdb_php_base:1}\n"
        );
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn app_references_and_release() {
        let text = "services:\n  php: {image: 'r.io/k/crm-gdb_php:1.4.0'}\n  w:\n    image: r.io/k/crm-gdb_php:1.4.0-supervisor\n  db: {image: crm-gdb_php_base:9}\n";
        assert_eq!(
            app_references(text, APP).unwrap(),
            [
                "r.io/k/crm-gdb_php:1.4.0",
                "r.io/k/crm-gdb_php:1.4.0-supervisor"
            ]
        );
        assert_eq!(
            app_references("services: {a: {image: x:1}}\n", APP),
            Err(EditError::NoAppImage)
        );
        assert_eq!(
            release_of("127.0.0.1:5000/k/crm-gdb_php:2.0.0-supervisor").as_deref(),
            Some("2.0.0")
        );
    }

    const REG: &str = "registry.kiora.tech/kiora";

    fn rewrite(text: &str) -> (String, Vec<Change>) {
        set_tag(text, "2.0.0", APP).unwrap_or_else(|error| panic!("{error}"))
    }

    fn change(line: usize, old: &str, new: &str) -> Change {
        Change {
            line,
            old: old.to_owned(),
            new: new.to_owned(),
        }
    }

    #[test]
    fn reference_parsing() {
        let r = SplitRef::parse("127.0.0.1:5000/kiora/crm-gdb_php:1.0.0@sha256:ab");
        assert_eq!(
            r,
            SplitRef {
                repository: "127.0.0.1:5000/kiora/crm-gdb_php",
                tag: Some("1.0.0"),
                digest: Some("sha256:ab")
            }
        );
        assert_eq!(r.name(), "crm-gdb_php");
        let r = SplitRef::parse("localhost:5000/crm-gdb_nginx");
        assert_eq!(
            (r.repository, r.tag, r.name()),
            ("localhost:5000/crm-gdb_nginx", None, "crm-gdb_nginx")
        );
        let r = SplitRef::parse("crm-gdb_php");
        assert_eq!(
            (r.repository, r.tag, r.name()),
            ("crm-gdb_php", None, "crm-gdb_php")
        );
        let r = SplitRef::parse("crm-gdb_php:1-supervisor");
        assert_eq!(r.with_tag("2.0.0"), "crm-gdb_php:2.0.0-supervisor");
        assert_eq!(
            r.with_tag("2.0.0-supervisor"),
            "crm-gdb_php:2.0.0-supervisor"
        );
        assert_eq!(SplitRef::parse("a/b@sha256:00").with_tag("3"), "a/b:3");
    }

    #[test]
    fn tag_grammar() {
        for good in ["1.0.0", "latest", "_x", "A-b.c_9", &"a".repeat(128)] {
            assert!(is_valid_tag(good), "{good}");
        }
        for bad in ["", ".1", "-1", "1 0", "1:0", "é", &"a".repeat(129)] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
        assert_eq!(
            set_tag("image: crm-gdb_php:1\n", "2 0", APP),
            Err(EditError::InvalidTag("2 0".to_owned()))
        );
    }

    #[test]
    fn services_with_comments_everywhere() {
        let input = "\
# Déploiement — ☃ commentaires non ASCII: ü é ñ 漢字
services: # ☃☃
  # l'app
  php: # ☃ é
    image: registry.kiora.tech/kiora/crm-gdb_php:1.0.0 # ☃ tag ← ici
    environment:
      - IMAGE=registry.kiora.tech/kiora/crm-gdb_php:1.0.0   # ▶ env
  nginx:
    # image: registry.kiora.tech/kiora/crm-gdb_nginx:1.0.0
    image: registry.kiora.tech/kiora/crm-gdb_nginx:1.0.0
    command: [\"run\", \"registry.kiora.tech/kiora/crm-gdb_php:1.0.0\"]
    labels: {x: registry.kiora.tech/kiora/crm-gdb_php:1.0.0, ☃: é}
";
        let expected = "\
# Déploiement — ☃ commentaires non ASCII: ü é ñ 漢字
services: # ☃☃
  # l'app
  php: # ☃ é
    image: registry.kiora.tech/kiora/crm-gdb_php:2.0.0 # ☃ tag ← ici
    environment:
      - IMAGE=registry.kiora.tech/kiora/crm-gdb_php:1.0.0   # ▶ env
  nginx:
    # image: registry.kiora.tech/kiora/crm-gdb_nginx:1.0.0
    image: registry.kiora.tech/kiora/crm-gdb_nginx:2.0.0
    command: [\"run\", \"registry.kiora.tech/kiora/crm-gdb_php:1.0.0\"]
    labels: {x: registry.kiora.tech/kiora/crm-gdb_php:1.0.0, ☃: é}
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(
            changes,
            [
                change(
                    5,
                    &format!("{REG}/crm-gdb_php:1.0.0"),
                    &format!("{REG}/crm-gdb_php:2.0.0")
                ),
                change(
                    10,
                    &format!("{REG}/crm-gdb_nginx:1.0.0"),
                    &format!("{REG}/crm-gdb_nginx:2.0.0")
                ),
            ]
        );
    }

    #[test]
    fn non_ascii_on_the_same_line_before_the_value() {
        let input = "x: {é: \"☃\", image: 'crm-gdb_php:1', ü: 1} # ñ\ny: {image: crm-gdb_nginx}\n";
        let expected =
            "x: {é: \"☃\", image: 'crm-gdb_php:2.0.0', ü: 1} # ñ\ny: {image: crm-gdb_nginx:2.0.0}\n";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(
            changes,
            [
                change(1, "crm-gdb_php:1", "crm-gdb_php:2.0.0"),
                change(2, "crm-gdb_nginx", "crm-gdb_nginx:2.0.0"),
            ]
        );
    }

    #[test]
    fn anchors_and_merge_keys() {
        let input = "\
x-php: &php
  image: &img registry.kiora.tech/kiora/crm-gdb_php:1.0.0
  restart: always
x-worker: &worker {image: \"registry.kiora.tech/kiora/crm-gdb_php:1.0.0-supervisor\", restart: always}
services:
  app:
    <<: *php
    labels:
      same: *img
  worker:
    <<: [*worker, *php]
    image: *img
";
        let expected = "\
x-php: &php
  image: &img registry.kiora.tech/kiora/crm-gdb_php:2.0.0
  restart: always
x-worker: &worker {image: \"registry.kiora.tech/kiora/crm-gdb_php:2.0.0-supervisor\", restart: always}
services:
  app:
    <<: *php
    labels:
      same: *img
  worker:
    <<: [*worker, *php]
    image: *img
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(changes.iter().map(|c| c.line).collect::<Vec<_>>(), [2, 4]);
    }

    #[test]
    fn alias_value_rewrites_the_anchored_scalar() {
        let input = "\
x-images:
  php: &php-image crm-gdb_php:1.0.0 # anchored under another key
  other: &other postgres:16
services:
  app:
    image: *php-image
  db:
    image: *other
";
        let expected = "\
x-images:
  php: &php-image crm-gdb_php:2.0.0 # anchored under another key
  other: &other postgres:16
services:
  app:
    image: *php-image
  db:
    image: *other
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(
            changes,
            [change(2, "crm-gdb_php:1.0.0", "crm-gdb_php:2.0.0")]
        );
    }

    #[test]
    fn properties_on_their_own_line() {
        let input = "services:\n  app:\n    image: !!str &a # note\n      'crm-gdb_php:1'\n";
        let expected = "services:\n  app:\n    image: !!str &a # note\n      'crm-gdb_php:2.0.0'\n";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(changes, [change(4, "crm-gdb_php:1", "crm-gdb_php:2.0.0")]);
    }

    #[test]
    fn flow_collections() {
        let input = "\
services: {php: {image: crm-gdb_php:1.0.0, restart: always}, nginx: {\"image\": 'crm-gdb_nginx:1.0.0'}}
list: [{image: crm-gdb_php:1.0.0-supervisor}, [ {image: crm-gdb_nginx} , x ], {image: redis:7}]
";
        let expected = "\
services: {php: {image: crm-gdb_php:2.0.0, restart: always}, nginx: {\"image\": 'crm-gdb_nginx:2.0.0'}}
list: [{image: crm-gdb_php:2.0.0-supervisor}, [ {image: crm-gdb_nginx:2.0.0} , x ], {image: redis:7}]
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(changes.len(), 4);
    }

    #[test]
    fn quoting_styles_are_kept() {
        let input = "\
a:
  image: 'crm-gdb_php:1.0.0'   # single
b:
  image: \"crm-gdb_nginx:1.0.0\"  # double
c:
  image: crm-gdb_php:1.0.0\t# plain, tab
d:
  image: 'it''s/crm-gdb_php:1'
";
        let expected = "\
a:
  image: 'crm-gdb_php:2.0.0'   # single
b:
  image: \"crm-gdb_nginx:2.0.0\"  # double
c:
  image: crm-gdb_php:2.0.0\t# plain, tab
d:
  image: 'it''s/crm-gdb_php:2.0.0'
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(
            changes[3],
            change(8, "it's/crm-gdb_php:1", "it's/crm-gdb_php:2.0.0")
        );
    }

    #[test]
    fn crlf_bom_tabs_trailing_whitespace_and_no_final_newline() {
        let input = "\u{feff}---\r\n# tab\there \t\r\nservices:   \r\n\r\n  php:\r\n    image: crm-gdb_php:1.0.0  \r\n    restart: always\t\r\n  nginx:\r\n    image: 'crm-gdb_nginx:1.0.0'";
        let expected = "\u{feff}---\r\n# tab\there \t\r\nservices:   \r\n\r\n  php:\r\n    image: crm-gdb_php:2.0.0  \r\n    restart: always\t\r\n  nginx:\r\n    image: 'crm-gdb_nginx:2.0.0'";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(changes.iter().map(|c| c.line).collect::<Vec<_>>(), [6, 9]);
    }

    #[test]
    fn digests_are_dropped() {
        let input = "\
a: {image: registry.kiora.tech/kiora/crm-gdb_php:1.0.0@sha256:0123abcd}
b: {image: registry.kiora.tech/kiora/crm-gdb_nginx@sha256:0123abcd}
c: {image: crm-gdb_php:1.0.0-supervisor@sha256:0123abcd}
d: {image: postgres:16@sha256:0123abcd}
";
        let expected = "\
a: {image: registry.kiora.tech/kiora/crm-gdb_php:2.0.0}
b: {image: registry.kiora.tech/kiora/crm-gdb_nginx:2.0.0}
c: {image: crm-gdb_php:2.0.0-supervisor}
d: {image: postgres:16@sha256:0123abcd}
";
        assert_eq!(rewrite(input).0, expected);
    }

    #[test]
    fn registry_with_port_and_variables_in_the_registry() {
        let input = "\
a: {image: 127.0.0.1:5000/kiora/crm-gdb_php:1.0.0}
b: {image: localhost:5000/crm-gdb_nginx}
c: {image: \"${REGISTRY:-registry.kiora.tech}/kiora/crm-gdb_php:1.0.0\"}
";
        let expected = "\
a: {image: 127.0.0.1:5000/kiora/crm-gdb_php:2.0.0}
b: {image: localhost:5000/crm-gdb_nginx:2.0.0}
c: {image: \"${REGISTRY:-registry.kiora.tech}/kiora/crm-gdb_php:2.0.0\"}
";
        assert_eq!(rewrite(input).0, expected);
    }

    #[test]
    fn look_alikes_and_other_keys_are_untouched() {
        let input = "\
services:
  build:
    image: registry.kiora.tech/kiora/crm-gdb_php_build:1.0.0
  base:
    image: crm-gdb_php_base:1.0.0
  pma:
    image: crm-gdb_phpmyadmin:1.0.0
  x:
    image: xcrm-gdb_php:1.0.0
  y:
    image: crm-gdb_php/other:1.0.0
  app:
    image: crm-gdb_php:1.0.0
    environment: IMAGE=crm-gdb_php:1.0.0
    labels: {x: registry.kiora.tech/kiora/crm-gdb_php:1.0.0}
    command: crm-gdb_php:1.0.0
    images: crm-gdb_php:1.0.0
    crm-gdb_php:1.0.0: image
#   image: crm-gdb_php:1.0.0
";
        let expected = input.replacen(
            "    image: crm-gdb_php:1.0.0\n",
            "    image: crm-gdb_php:2.0.0\n",
            1,
        );
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(
            changes,
            [change(13, "crm-gdb_php:1.0.0", "crm-gdb_php:2.0.0")]
        );
    }

    #[test]
    fn supervisor_variant_and_supervisor_tag_given() {
        let input = "a: {image: crm-gdb_php:1.0.0-supervisor}\nb: {image: crm-gdb_php:1.0.0}\n";
        let (output, _) = set_tag(input, "3.1.4-supervisor", APP).unwrap();
        assert_eq!(
            output,
            "a: {image: crm-gdb_php:3.1.4-supervisor}\nb: {image: crm-gdb_php:3.1.4-supervisor}\n"
        );
    }

    #[test]
    fn already_at_tag_is_no_change() {
        let input = "services:\n  app:\n    image: crm-gdb_php:2.0.0\n  w:\n    image: crm-gdb_php:2.0.0-supervisor\n";
        assert_eq!(rewrite(input), (input.to_owned(), Vec::new()));
    }

    #[test]
    fn multi_document_streams_are_all_rewritten() {
        let input = "\
%YAML 1.2
---
a: {image: crm-gdb_php:1}
...
--- # second
b:
  image: crm-gdb_nginx:1
---
c: 1
";
        let expected = "\
%YAML 1.2
---
a: {image: crm-gdb_php:2.0.0}
...
--- # second
b:
  image: crm-gdb_nginx:2.0.0
---
c: 1
";
        let (output, changes) = rewrite(input);
        assert_eq!(output, expected);
        assert_eq!(changes.iter().map(|c| c.line).collect::<Vec<_>>(), [3, 7]);
    }

    #[test]
    fn no_app_image() {
        for input in [
            "",
            "  \n\t\n",
            "# only a comment\n",
            "---\n",
            "services:\n  db:\n    image: postgres:16\n",
            "services:\n  app:\n    # image: crm-gdb_php:1.0.0\n    image: crm-gdb_php_build:1\n",
            "image: [crm-gdb_php:1]\n",
            "labels: {image_name: crm-gdb_php:1}\n",
            "- image\n- crm-gdb_php:1\n",
        ] {
            assert_eq!(
                set_tag(input, "2.0.0", APP),
                Err(EditError::NoAppImage),
                "{input:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            ("services:\n  app:\n    image: [crm-gdb_php:1\n", 4),
            ("a: 1\nb:\n  c: 2\n d: 3\n", 4),
            ("a: *missing\n", 1),
            ("a: 1\nb: \"unterminated\n", 2), // reported where the quoted scalar starts
        ];
        for (input, line) in cases {
            match set_tag(input, "2.0.0", APP) {
                Err(EditError::Syntax { line: got, message }) => {
                    assert_eq!(got, line, "{input:?}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsafe_values_are_refused() {
        let cases = [
            ("a: 1\nimage: |-\n  crm-gdb_php:1\n  x\n", 3, "block scalar"),
            (
                "a: 1\nimage: >-\n  r.io/kiora\n  /crm-gdb_php:1\n",
                3,
                "block scalar",
            ),
            (
                "a: 1\nimage: >-\n  r.io\n\n  x/crm-gdb_php:1\n",
                3,
                "several lines",
            ),
            ("image: >-\n\n  crm-gdb_php:1\n", 3, "several lines"),
            ("image: |\n  crm-gdb_php:1\n", 2, "`|-` or `>-`"),
            ("image: >+\n  crm-gdb_php:1\n\n", 2, "`|-` or `>-`"),
            ("image: |2-\n   crm-gdb_php:1\n", 2, "does not match"),
            ("image: >-\n  crm-gdb_php:1 \n", 2, "whitespace"),
            ("image: crm-gdb_php:1\n  -supervisor\n", 1, "several lines"),
            ("image: 'crm-gdb_php:1\n  x'\n", 1, "several lines"),
            ("image: \"crm-gdb\\x5fphp:1\"\n", 1, "escape"),
            ("image: ' crm-gdb_php:1'\n", 1, "whitespace"),
            ("x:\n  image: crm-gdb_php:${TAG}\n", 2, "variable"),
        ];
        for (input, line, reason) in cases {
            match set_tag(input, "2.0.0", APP) {
                Err(EditError::Refused {
                    line: got,
                    reason: why,
                }) => {
                    assert_eq!(got, line, "{input:?}: {why}");
                    assert!(why.contains(reason), "{input:?}: {why}");
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        // Block scalars and escapes are fine where they do not name one of our images.
        let input =
            "a: {image: \"postgres\\t16\"}\nb:\n  image: |\n    redis\nc: {image: crm-gdb_php}\n";
        let expected = "a: {image: \"postgres\\t16\"}\nb:\n  image: |\n    redis\nc: {image: crm-gdb_php:2.0.0}\n";
        assert_eq!(rewrite(input).0, expected);
    }

    #[test]
    fn one_line_block_scalars_keep_their_style() {
        let input = "\
services:
  php:
    image: >-
      registry.kiora.tech/kiora/crm-gdb_php:1.0.0
    restart: always
  worker:
    image: !!str &w |-   # literal, with properties and a comment
      crm-gdb_php:1.0.0-supervisor
  nginx: {image: crm-gdb_nginx:1.0.0}
x: {image: *w}
last:
  image: >2-
    crm-gdb_nginx:1.0.0";
        let (output, changes) = rewrite(input);
        assert_eq!(output, input.replace(":1.0.0", ":2.0.0"));
        assert_eq!(
            changes.iter().map(|c| c.line).collect::<Vec<_>>(),
            [4, 8, 9, 13]
        );
        // Comments after the block, less indented than its content, are not part of it.
        let input = "s:\n  image: >-\n    crm-gdb_php:1\n  # c\n\n# d\n  b: 1\nt:\n  image: |-\n    crm-gdb_php:1\n# e";
        assert_eq!(rewrite(input).0, input.replace(":1\n", ":2.0.0\n"));
        // CRLF, and the header's own comment naming an image.
        let input = "a:\r\n  image: >- # crm-gdb_php:0\r\n    crm-gdb_php:1\r\nb: 1\r\n";
        let expected = "a:\r\n  image: >- # crm-gdb_php:0\r\n    crm-gdb_php:2.0.0\r\nb: 1\r\n";
        assert_eq!(
            rewrite(input),
            (
                expected.to_owned(),
                vec![change(3, "crm-gdb_php:1", "crm-gdb_php:2.0.0")]
            )
        );
    }

    #[test]
    fn verification_catches_structure_and_value_changes() {
        let original = parse_events("a: b\nc: d\n").unwrap();
        let edit = |event, new: &str| Edit {
            event,
            from: 0,
            to: 0,
            replacement: String::new(),
            change: change(1, "", new),
        };
        assert!(verify(&original, "a: b\nc: d\n", &[]).is_ok());
        assert!(verify(&original, "a: x\nc: d\n", &[edit(4, "x")]).is_ok());
        for (text, edits) in [
            ("a: [b]\nc: d\n", vec![]),
            ("a: x\nc: d\n", vec![]),
            ("a: x\nc: d\n", vec![edit(4, "y")]),
            ("a: 'b'\nc: d\n", vec![]),
            ("a: &z b\nc: d\n", vec![]),
            ("a: b\nc: d\n---\n", vec![]),
            ("a: [b\n", vec![]),
        ] {
            assert!(
                matches!(
                    verify(&original, text, &edits),
                    Err(EditError::Verification(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn empty_app_image_list_matches_nothing() {
        assert_eq!(
            set_tag("image: crm-gdb_php:1\n", "2", &[]),
            Err(EditError::NoAppImage)
        );
    }

    #[test]
    fn error_messages() {
        let error = EditError::Syntax {
            line: 3,
            message: "oops".to_owned(),
        };
        assert_eq!(error.to_string(), "line 3: invalid YAML: oops");
        let error: Box<dyn std::error::Error> = Box::new(EditError::NoAppImage);
        assert!(error.to_string().contains("image"));
    }

    mod file {
        use super::*;
        use std::path::PathBuf;

        const GOOD: &str = "services:\r\n  app:\r\n    image: crm-gdb_php:1.0.0 # é\r\n";
        const GOOD_AFTER: &str = "services:\r\n  app:\r\n    image: crm-gdb_php:2.0.0 # é\r\n";

        fn setup(content: &str) -> (tempfile::TempDir, PathBuf) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("compose.yaml");
            fs::write(&path, content).unwrap();
            (dir, path)
        }

        fn entries(dir: &Path) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }

        #[test]
        fn rewrites_the_file() {
            let (dir, path) = setup(GOOD);
            let changes = set_tag_in_file(&path, "2.0.0", APP).unwrap();
            assert_eq!(
                changes,
                [change(3, "crm-gdb_php:1.0.0", "crm-gdb_php:2.0.0")]
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), GOOD_AFTER);
            assert_eq!(entries(dir.path()), ["compose.yaml"]);
        }

        #[cfg(unix)]
        #[test]
        fn keeps_permissions() {
            use std::os::unix::fs::PermissionsExt;
            let (_dir, path) = setup(GOOD);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
            set_tag_in_file(&path, "2.0.0", APP).unwrap();
            assert_eq!(fs::read_to_string(&path).unwrap(), GOOD_AFTER);
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
                0o640
            );
        }

        #[cfg(unix)]
        #[test]
        fn no_change_does_not_touch_the_file() {
            use std::os::unix::fs::MetadataExt;
            let (dir, path) = setup(GOOD_AFTER);
            let before = fs::metadata(&path).unwrap();
            let changes = set_tag_in_file(&path, "2.0.0", APP).unwrap();
            assert!(changes.is_empty());
            let after = fs::metadata(&path).unwrap();
            assert_eq!(
                (after.ino(), after.mtime(), after.mtime_nsec()),
                (before.ino(), before.mtime(), before.mtime_nsec())
            );
            assert_eq!(fs::read_to_string(&path).unwrap(), GOOD_AFTER);
            assert_eq!(entries(dir.path()), ["compose.yaml"]);
        }

        #[test]
        fn errors_leave_the_file_unchanged() {
            let cases = [
                ("services:\n  app:\n    image: [crm-gdb_php:1\n", "line 4"),
                (
                    "services:\n  db:\n    image: postgres:16\n",
                    "crm-gdb_php, crm-gdb_nginx",
                ),
                ("image: |\n  crm-gdb_php:1\n", "line 2"),
                (
                    "s:\n  image: >-\n    crm-gdb_php:1\n    -supervisor\n",
                    "several lines",
                ),
                ("", "no `image:`"),
            ];
            for (content, expected) in cases {
                let (dir, path) = setup(content);
                let error = set_tag_in_file(&path, "2.0.0", APP).unwrap_err();
                let message = format!("{error:#}");
                assert!(
                    message.starts_with(&format!("cannot set tag in {}: ", path.display())),
                    "{message}"
                );
                assert!(message.contains(expected), "{message}");
                assert!(message.contains("hint: "), "{message}");
                assert_eq!(fs::read_to_string(&path).unwrap(), content);
                assert_eq!(entries(dir.path()), ["compose.yaml"]);
            }
        }

        #[test]
        fn missing_and_non_utf8_files() {
            let (dir, path) = setup("");
            let missing = dir.path().join("nope.yaml");
            let message = format!("{:#}", set_tag_in_file(&missing, "2.0.0", APP).unwrap_err());
            assert!(message.contains("nope.yaml"), "{message}");
            fs::write(&path, b"image: crm-gdb_php:1 # \xff\n").unwrap();
            let message = format!("{:#}", set_tag_in_file(&path, "2.0.0", APP).unwrap_err());
            assert!(
                message.contains("compose.yaml") && message.contains("UTF-8"),
                "{message}"
            );
            assert_eq!(fs::read(&path).unwrap(), b"image: crm-gdb_php:1 # \xff\n");
        }

        #[cfg(unix)]
        #[test]
        fn symlink_target_is_rewritten() {
            let (dir, target) = setup(GOOD);
            let link_dir = dir.path().join("deploy");
            fs::create_dir(&link_dir).unwrap();
            let link = link_dir.join("compose.yaml");
            std::os::unix::fs::symlink("../compose.yaml", &link).unwrap();
            set_tag_in_file(&link, "2.0.0", APP).unwrap();
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(fs::read_to_string(&target).unwrap(), GOOD_AFTER);
            assert_eq!(entries(dir.path()), ["compose.yaml", "deploy"]);
            assert_eq!(entries(&link_dir), ["compose.yaml"]);
        }
    }
}

#[cfg(test)]
mod props;
