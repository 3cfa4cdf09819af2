//! Property tests of the compose editor, against an oracle written independently of it (its
//! own walk over `saphyr-parser` events and spans, its own reference rewriting):
//!
//! - `model`: generated compose-like documents (block and flow services, comments with any
//!   printable Unicode, the three quoting styles, anchors, aliases, merge keys, CRLF, BOM,
//!   several documents, registries with ports, digests, look-alike names, look-alike keys and
//!   commented-out lines) whose exact expected output and changes are known; `block_scalars`:
//!   `image: >-` and `|-` values of one line (rewritten) or two (refused);
//! - `any_input`: those documents randomly mutated with YAML-significant snippets, and arbitrary
//!   strings and bytes: `set_tag` must refuse (`Err`) or return a text that parses to the same
//!   events but for the rewritten scalars, is byte for byte the input outside them (splicing
//!   the old values back gives the input), and is left alone by a second run.
//!
//! `PROPTEST_CASES` overrides the case counts (default: 100 000 in all). An on-demand longer
//! run: `XTASK_FUZZ_CASES=2000000 cargo test -p xtask --release fuzz_set_tag -- --ignored`.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use saphyr_parser::{Event, Parser, Span};

use super::{set_tag, Change, EditError};

const APP: &[&str] = &["crm-gdb_php", "crm-gdb_nginx"];
const NEW_TAG: &str = "9.8.7";

fn config(default_cases: u32) -> Config {
    crate::proptest_cases::config(default_cases)
}

// ---------------------------------------------------------------------------------------------
// The oracle for any input.

/// `set_tag` refuses, or its output differs from `input` only inside the rewritten scalars.
fn check_any(input: &str, tag: &str) -> Result<(), TestCaseError> {
    let Ok((output, changes)) = set_tag(input, tag, APP) else {
        return Ok(());
    };
    let before = events(input).expect("set_tag accepted text that does not parse");
    let after = events(&output).map_err(|e| fail(format!("output does not parse: {e}")))?;
    prop_assert_eq!(before.len(), after.len(), "event count changed");

    // The events that differ are scalars, with the same style, anchor and tag, one per change.
    let mut rewritten = Vec::new();
    for ((old, old_span), (new, new_span)) in before.iter().zip(&after) {
        if old == new {
            continue;
        }
        let (Event::Scalar(old_value, s1, a1, t1), Event::Scalar(new_value, s2, a2, t2)) =
            (old, new)
        else {
            return Err(fail(format!(
                "a non-scalar event changed: {old:?} -> {new:?}"
            )));
        };
        prop_assert!(
            s1 == s2 && a1 == a2 && t1 == t2,
            "scalar properties changed"
        );
        rewritten.push((
            old_value.to_string(),
            new_value.to_string(),
            bytes(input, old_span),
            bytes(&output, new_span),
        ));
    }
    let pairs: Vec<(String, String)> = changes
        .iter()
        .map(|c| (c.old.clone(), c.new.clone()))
        .collect();
    let seen: Vec<(String, String)> = rewritten
        .iter()
        .map(|(o, n, _, _)| (o.clone(), n.clone()))
        .collect();
    prop_assert_eq!(&pairs, &seen, "changes do not match the rewritten scalars");

    // Outside the rewritten scalars, the bytes are the input's: splicing back gives the input.
    let mut spliced = String::new();
    let (mut from_in, mut from_out) = (0, 0);
    for (_, _, (in_start, in_end), (out_start, out_end)) in &rewritten {
        prop_assert_eq!(&input[from_in..*in_start], &output[from_out..*out_start]);
        spliced.push_str(&output[from_out..*out_start]);
        spliced.push_str(&input[*in_start..*in_end]);
        (from_in, from_out) = (*in_end, *out_end);
    }
    spliced.push_str(&output[from_out..]);
    prop_assert_eq!(
        &spliced,
        input,
        "splicing the old values back does not give the input"
    );

    // Each change names one of our images and gets exactly the new tag, digest dropped, and
    // is reported on the line its value ends on (values on several lines are refused; a block
    // scalar's span ends past its line break).
    for (change, (_, _, (_, in_end), _)) in changes.iter().zip(&rewritten) {
        let in_end = &input[..*in_end]
            .trim_end_matches([' ', '\t', '\r', '\n'])
            .len();
        prop_assert!(
            APP.contains(&name_of(&change.old)),
            "{:?} is not ours",
            change.old
        );
        prop_assert_eq!(&change.new, &retagged(&change.old, tag));
        prop_assert_eq!(change.line, yaml_line(input, *in_end));
    }

    // A second run changes nothing.
    let again = set_tag(&output, tag, APP).map_err(|e| fail(format!("second run: {e}")))?;
    prop_assert_eq!(again, (output.clone(), Vec::new()), "not idempotent");
    Ok(())
}

/// The 1-based line of a byte offset, counting line breaks as YAML does: `\r\n`, `\n`, and a
/// lone `\r` (old Mac files).
fn yaml_line(text: &str, byte: usize) -> usize {
    let before = text[..byte].replace("\r\n", "\n");
    1 + before.matches(['\n', '\r']).count()
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

fn events(text: &str) -> Result<Vec<(Event<'_>, Span)>, String> {
    Parser::new_from_str(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// The byte range of a span (the parser counts characters).
fn bytes(text: &str, span: &Span) -> (usize, usize) {
    let byte = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(b, _)| b)
    };
    (byte(span.start.index()), byte(span.end.index()))
}

/// The last path component of a reference, without tag or digest.
fn name_of(reference: &str) -> &str {
    let named = reference.split('@').next().unwrap_or_default();
    let repository = match (named.rfind(':'), named.rfind('/')) {
        (Some(colon), Some(slash)) if colon > slash => &named[..colon],
        (Some(colon), None) => &named[..colon],
        _ => named,
    };
    repository.rsplit('/').next().unwrap_or_default()
}

/// What the reference must become: same repository, the new tag (keeping a `-supervisor`
/// suffix), no digest.
fn retagged(reference: &str, tag: &str) -> String {
    let named = reference.split('@').next().unwrap_or_default();
    let (repository, old_tag) = match (named.rfind(':'), named.rfind('/')) {
        (Some(colon), slash) if slash.is_none_or(|s| colon > s) => {
            (&named[..colon], Some(&named[colon + 1..]))
        }
        _ => (named, None),
    };
    let supervisor =
        old_tag.is_some_and(|t| t.ends_with("-supervisor")) && !tag.ends_with("-supervisor");
    format!(
        "{repository}:{tag}{}",
        if supervisor { "-supervisor" } else { "" }
    )
}

// ---------------------------------------------------------------------------------------------
// The model: compose-like documents with a known answer.

#[derive(Clone, Debug)]
struct Ref {
    registry: &'static str,
    name: &'static str,
    tag: Option<String>,
    supervisor: bool,
    digest: Option<String>,
}

impl Ref {
    fn text(&self) -> String {
        let mut text = format!("{}{}", self.registry, self.name);
        if let Some(tag) = &self.tag {
            text.push(':');
            text.push_str(tag);
            if self.supervisor {
                text.push_str("-supervisor");
            }
        }
        if let Some(digest) = &self.digest {
            text.push('@');
            text.push_str(digest);
        }
        text
    }

    fn ours(&self) -> bool {
        APP.contains(&self.name)
    }

    fn rewritten(&self) -> String {
        let supervisor = self.tag.is_some()
            && (self.supervisor
                || self
                    .tag
                    .as_ref()
                    .is_some_and(|t| t.ends_with("-supervisor")));
        format!(
            "{}{}:{NEW_TAG}{}",
            self.registry,
            self.name,
            if supervisor { "-supervisor" } else { "" }
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Quote {
    Plain,
    Single,
    Double,
}

impl Quote {
    fn wrap(self, text: &str) -> String {
        match self {
            Quote::Plain => text.to_string(),
            Quote::Single => format!("'{text}'"),
            Quote::Double => format!("\"{text}\""),
        }
    }
}

#[derive(Clone, Debug)]
enum Image {
    /// `image: REF`, maybe with an anchor of its own.
    Direct(Ref, Quote, bool),
    /// `image: *imgN`, an alias of a top-level anchored scalar.
    Alias(usize),
}

/// Keys and lines that mention an image without being an `image:` value.
#[derive(Clone, Debug)]
enum Decoy {
    ImagesKey(Ref),
    Environment(Ref),
    Label(Ref),
    CommentedOut(Ref),
    QuotedImageKeyOtherMapping,
}

#[derive(Clone, Debug)]
struct Service {
    flow: bool,
    merge: bool,
    image: Option<Image>,
    comment: Option<String>,
    decoys: Vec<Decoy>,
    quoted_key: bool,
}

#[derive(Clone, Debug)]
struct Doc {
    bom: bool,
    crlf: bool,
    indent: usize,
    start_marker: bool,
    head_comment: Option<String>,
    anchors: Vec<(Ref, Quote)>,
    x_php: Option<Option<(Ref, Quote)>>,
    services: Vec<Service>,
    second: Option<(Ref, Quote)>,
    tail_comment: Option<String>,
}

/// What rendering records about each `image` value that the editor must rewrite.
struct Rendered {
    text: String,
    /// (line, old, new) for each of our references in file order; old == new: already there.
    ours: Vec<(usize, String, String)>,
}

fn render(doc: &Doc, rewrite: bool) -> Rendered {
    let mut lines: Vec<String> = Vec::new();
    let mut ours = Vec::new();
    let pad = " ".repeat(doc.indent);
    // Emits a reference and notes it when it is one the editor rewrites.
    // `line`: the 1-based line the value is written on.
    let mut value = |line: usize, r: &Ref, quote: Quote, counts: bool| -> String {
        if counts && r.ours() {
            ours.push((line, r.text(), r.rewritten()));
            if rewrite {
                return quote.wrap(&r.rewritten());
            }
        }
        quote.wrap(&r.text())
    };
    if doc.start_marker {
        lines.push("---".into());
    }
    if let Some(comment) = &doc.head_comment {
        lines.push(format!("# {comment}"));
    }
    let aliased: Vec<bool> = (0..doc.anchors.len())
        .map(|i| {
            doc.services
                .iter()
                .any(|s| matches!(s.image, Some(Image::Alias(k)) if k % doc.anchors.len() == i))
        })
        .collect();
    for (i, (r, quote)) in doc.anchors.iter().enumerate() {
        let text = value(lines.len() + 1, r, *quote, aliased[i]);
        lines.push(format!("x-img{i}: &img{i} {text}"));
    }
    if let Some(image) = &doc.x_php {
        lines.push("x-php: &php".into());
        if let Some((r, quote)) = image {
            let text = value(lines.len() + 1, r, *quote, true);
            lines.push(format!("{pad}image: {text}"));
        }
        lines.push(format!("{pad}restart: unless-stopped"));
    }
    lines.push("services:".into());
    for (i, service) in doc.services.iter().enumerate() {
        let merge = service.merge && doc.x_php.is_some();
        let key = if service.quoted_key {
            "\"image\""
        } else {
            "image"
        };
        let image = match &service.image {
            Some(Image::Direct(r, quote, anchored)) => {
                // Flow: on the service's line; block: below it (and below `<<:`).
                let line = match (service.flow, merge) {
                    (true, _) => lines.len() + 1,
                    (false, false) => lines.len() + 2,
                    (false, true) => lines.len() + 3,
                };
                let text = value(line, r, *quote, true);
                Some(if *anchored {
                    format!("&s{i} {text}")
                } else {
                    text
                })
            }
            Some(Image::Alias(k)) if !doc.anchors.is_empty() => {
                Some(format!("*img{}", k % doc.anchors.len()))
            }
            _ => None,
        };
        let comment = service
            .comment
            .as_ref()
            .map(|c| format!("  # {c}"))
            .unwrap_or_default();
        if service.flow {
            let mut entries = Vec::new();
            if merge {
                entries.push("<<: *php".to_string());
            }
            if let Some(image) = image {
                entries.push(format!("{key}: {image}"));
            }
            entries.push("restart: always".into());
            lines.push(format!("{pad}svc{i}: {{{}}}{comment}", entries.join(", ")));
        } else {
            lines.push(format!("{pad}svc{i}:"));
            if merge {
                lines.push(format!("{pad}{pad}<<: *php"));
            }
            if let Some(image) = image {
                lines.push(format!("{pad}{pad}{key}: {image}{comment}"));
            }
            lines.push(format!("{pad}{pad}restart: always"));
        }
        for decoy in &service.decoys {
            let line = match decoy {
                Decoy::ImagesKey(r) => format!("images: {}", r.text()),
                Decoy::Environment(r) => format!("environment: [IMAGE={}]", r.text()),
                Decoy::Label(r) => format!("labels: {{x: '{}'}}", r.text()),
                Decoy::CommentedOut(r) => format!("# image: {}", r.text()),
                Decoy::QuotedImageKeyOtherMapping => "x-image: image".to_string(),
            };
            // Decoys live in their own service so the block above stays valid.
            lines.push(format!("{pad}decoy{i}_{}:", lines.len()));
            lines.push(format!("{pad}{pad}{line}"));
            if matches!(decoy, Decoy::CommentedOut(_)) {
                lines.push(format!("{pad}{pad}restart: no"));
            }
        }
    }
    if let Some((r, quote)) = &doc.second {
        lines.push("---".into());
        let text = value(lines.len() + 1, r, *quote, true);
        lines.push(format!("other: {{image: {text}}}"));
    }
    if let Some(comment) = &doc.tail_comment {
        lines.push(format!("# {comment}"));
    }
    let newline = if doc.crlf { "\r\n" } else { "\n" };
    let mut text = lines.join(newline);
    text.push_str(newline);
    if doc.bom {
        text.insert(0, '\u{feff}');
    }
    Rendered { text, ours }
}

fn a_ref() -> impl Strategy<Value = Ref> {
    let registry = prop::sample::select(vec![
        "",
        "registry.kiora.tech/kiora/",
        "127.0.0.1:5000/kiora/",
        "localhost:5000/",
        "ghcr.io/a/b/",
    ]);
    let name = prop::sample::select(vec![
        "crm-gdb_php",
        "crm-gdb_php",
        "crm-gdb_nginx",
        "crm-gdb_php_build",
        "crm-gdb_php_base",
        "crm-gdb_phpmyadmin",
        "xcrm-gdb_php",
        "crm-gdb_nginx-exporter",
        "CRM-GDB_PHP",
        "postgres",
    ]);
    let tag = prop::option::weighted(
        0.85,
        prop_oneof![
            "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,3}",
            Just(NEW_TAG.to_string()),
            Just("latest".to_string()),
            "[a-z_][a-z0-9_.-]{0,12}",
        ],
    );
    let digest = prop::option::weighted(0.2, "sha256:[0-9a-f]{64}");
    (registry, name, tag, any::<bool>(), digest).prop_map(
        |(registry, name, tag, supervisor, digest)| Ref {
            registry,
            name,
            tag,
            supervisor,
            digest,
        },
    )
}

fn a_quote() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

/// Any printable text without line breaks, for comments.
fn a_comment() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.4, "\\PC{0,24}")
}

fn a_service() -> impl Strategy<Value = Service> {
    let image = prop_oneof![
        4 => (a_ref(), a_quote(), prop::bool::weighted(0.2)).prop_map(|(r, q, a)| Some(Image::Direct(r, q, a))),
        1 => (0usize..4).prop_map(|k| Some(Image::Alias(k))),
        1 => Just(None),
    ];
    let decoy = prop_oneof![
        a_ref().prop_map(Decoy::ImagesKey),
        a_ref().prop_map(Decoy::Environment),
        a_ref().prop_map(Decoy::Label),
        a_ref().prop_map(Decoy::CommentedOut),
        Just(Decoy::QuotedImageKeyOtherMapping),
    ];
    (
        any::<bool>(),
        prop::bool::weighted(0.3),
        image,
        a_comment(),
        prop::collection::vec(decoy, 0..2),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(flow, merge, image, comment, decoys, quoted_key)| Service {
                flow,
                merge,
                image,
                // A comment inside a flow mapping's line would end it: only after it.
                comment,
                decoys,
                quoted_key,
            },
        )
}

fn a_doc() -> impl Strategy<Value = Doc> {
    (
        (
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.3),
            prop::sample::select(vec![2usize, 4]),
        ),
        (any::<bool>(), a_comment(), a_comment()),
        prop::collection::vec((a_ref(), a_quote()), 0..3),
        prop::option::weighted(0.4, prop::option::weighted(0.7, (a_ref(), a_quote()))),
        prop::collection::vec(a_service(), 1..5),
        prop::option::weighted(0.2, (a_ref(), a_quote())),
    )
        .prop_map(
            |(
                (bom, crlf, indent),
                (start_marker, head_comment, tail_comment),
                anchors,
                x_php,
                services,
                second,
            )| Doc {
                bom,
                crlf,
                indent,
                start_marker,
                head_comment,
                anchors,
                x_php,
                services,
                second,
                tail_comment,
            },
        )
}

/// The model's answer for `doc`: the exact output and changes, or no image of ours at all.
fn expected(doc: &Doc) -> Result<(String, Vec<Change>), EditError> {
    let after = render(doc, true);
    if after.ours.is_empty() {
        return Err(EditError::NoAppImage);
    }
    let changes = after
        .ours
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(line, old, new)| Change { line, old, new })
        .collect();
    Ok((after.text, changes))
}

proptest! {
    #![proptest_config(config(40_000))]

    #[test]
    fn model(doc in a_doc()) {
        let input = render(&doc, false).text;
        let got = set_tag(&input, NEW_TAG, APP);
        prop_assert_eq!(&got, &expected(&doc), "input:\n{}", input);
        check_any(&input, NEW_TAG)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Any input: mutated documents, YAML-ish strings, arbitrary bytes.

/// Snippets that change YAML structure or meaning.
const SNIPPETS: &[&str] = &[
    ":",
    ": ",
    " ",
    "#",
    " #",
    "'",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "|",
    ">",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "- ",
    "? ",
    "@",
    "---\n",
    "...\n",
    "crm-gdb_php",
    ":1.0.0",
    "image: ",
    "${X}",
    "\\",
    "%",
    "<<: ",
    "\u{feff}",
    "\u{2028}",
    "é",
    "-supervisor",
    "@sha256:00",
    "\"\\x41\"",
];

fn mutate(text: &str, edits: &[(usize, usize, bool)]) -> String {
    let mut text = text.to_string();
    for &(at, what, insert) in edits {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let at = if chars.is_empty() {
            0
        } else {
            at % (chars.len() + 1)
        };
        let byte = chars.get(at).map_or(text.len(), |(b, _)| *b);
        if insert || chars.is_empty() {
            text.insert_str(byte, SNIPPETS[what % SNIPPETS.len()]);
        } else {
            let end = chars.get(at + 1 + what % 4).map_or(text.len(), |(b, _)| *b);
            text.replace_range(byte..end, "");
        }
    }
    text
}

fn a_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just(NEW_TAG.to_string()),
        4 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,16}",
        1 => "[0-9.]{1,5}-supervisor",
        1 => "\\PC{0,6}",
    ]
}

fn mutated_doc() -> impl Strategy<Value = String> {
    (
        a_doc(),
        prop::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..4),
    )
        .prop_map(|(doc, edits)| mutate(&render(&doc, false).text, &edits))
}

fn yaml_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z:{}\\[\\],'\"#&*!|>@ \n\t-]{0,60}",
        prop::collection::vec(prop::sample::select(SNIPPETS.to_vec()), 0..24)
            .prop_map(|parts| parts.concat()),
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|raw| String::from_utf8_lossy(&raw).into_owned()),
    ]
}

proptest! {
    #![proptest_config(config(40_000))]

    #[test]
    fn any_mutated_document(input in mutated_doc(), tag in a_tag()) {
        check_any(&input, &tag)?;
    }
}

proptest! {
    #![proptest_config(config(20_000))]

    #[test]
    fn any_string(input in yaml_ish(), tag in a_tag()) {
        check_any(&input, &tag)?;
    }
}

/// `image:` as a block scalar (`>-`, `|-`, maybe `|2-`, properties, a header comment) of one
/// content line is rewritten on that line; with a second content line it is refused.
fn block_scalar_doc(reference: &str, header: &str, second_line: bool, newline: &str) -> String {
    let second = if second_line { "      x\n" } else { "" };
    format!("services:\n  app:\n    image: {header}\n      {reference}\n{second}    restart: always\n# end\n")
        .replace('\n', newline)
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn block_scalars(
        r in a_ref(),
        style in prop::sample::select(vec![">-", "|-", "|2-", ">2-"]),
        props in prop::sample::select(vec!["", "&a ", "!!str ", "!!str &a "]),
        comment in a_comment(),
        second_line in prop::bool::weighted(0.2),
        crlf: bool,
    ) {
        let header = format!("{props}{style}{}", comment.map(|c| format!("  # {c}")).unwrap_or_default());
        let newline = if crlf { "\r\n" } else { "\n" };
        let input = block_scalar_doc(&r.text(), &header, second_line, newline);
        let got = set_tag(&input, NEW_TAG, APP);
        // Two lines fold into "REF x" (`>`) or stay "REF\nx" (`|`): maybe no longer ours.
        let value = match (second_line, style.starts_with('>')) {
            (false, _) => r.text(),
            (true, true) => format!("{} x", r.text()),
            (true, false) => format!("{}\nx", r.text()),
        };
        match (APP.contains(&name_of(&value)), second_line) {
            (false, _) => prop_assert_eq!(got, Err(EditError::NoAppImage)),
            // Reported where the node starts: its properties, else its first content line.
            (true, true) => prop_assert!(
                matches!(&got, Err(EditError::Refused { line, reason })
                    if *line == if props.is_empty() { 4 } else { 3 } && reason.contains("several lines")),
                "{:?}", got
            ),
            (true, false) => {
                let output = block_scalar_doc(&r.rewritten(), &header, false, newline);
                let changes = if r.text() == r.rewritten() {
                    Vec::new()
                } else {
                    vec![Change { line: 4, old: r.text(), new: r.rewritten() }]
                };
                prop_assert_eq!(got, Ok((output, changes)));
            }
        }
        check_any(&input, NEW_TAG)?;
    }
}

/// The same properties for as long as asked: `XTASK_FUZZ_CASES` cases (default 1 000 000).
#[test]
#[ignore = "long; run on demand with XTASK_FUZZ_CASES"]
fn fuzz_set_tag() {
    let cases = std::env::var("XTASK_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let mut runner = proptest::test_runner::TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    });
    let inputs = prop_oneof![mutated_doc(), yaml_ish()];
    runner
        .run(&(inputs, a_tag()), |(input, tag)| check_any(&input, &tag))
        .unwrap();
}

#[test]
fn the_oracle_rewrites_references_like_docker_reads_them() {
    assert_eq!(
        name_of("127.0.0.1:5000/k/crm-gdb_php:1@sha256:0"),
        "crm-gdb_php"
    );
    assert_eq!(name_of("localhost:5000/crm-gdb_php"), "crm-gdb_php");
    assert_eq!(
        retagged("localhost:5000/crm-gdb_php", "2"),
        "localhost:5000/crm-gdb_php:2"
    );
    assert_eq!(
        retagged("r/crm-gdb_php:1-supervisor@sha256:0", "2"),
        "r/crm-gdb_php:2-supervisor"
    );
    assert_eq!(
        retagged("r/crm-gdb_php:1-supervisor", "2-supervisor"),
        "r/crm-gdb_php:2-supervisor"
    );
}
