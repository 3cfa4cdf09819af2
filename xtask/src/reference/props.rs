//! Property tests of the tag, registry and image reference checks: what the grammar allows is
//! accepted, anything else is refused with one line naming the value, and the references we
//! build are read back the same way by the compose editor.

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{check_registry, check_release_tag, check_tag, ImageRef};

fn config() -> Config {
    crate::proptest_cases::config(5_000)
}

/// Docker's tag grammar, written out independently: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

fn a_valid_tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
}

/// Strings near the grammar: valid tags with one character changed or added, and anything.
fn a_tag_like() -> impl Strategy<Value = String> {
    prop_oneof![
        a_valid_tag(),
        (a_valid_tag(), any::<usize>(), "[^A-Za-z0-9_]").prop_map(|(tag, at, c)| {
            let at = tag.char_indices().nth(at % tag.len()).map_or(0, |(i, _)| i);
            let mut tag = tag;
            tag.insert_str(at, &c);
            tag
        }),
        "[A-Za-z0-9_.-]{120,135}",
        "\\PC{0,10}",
        any::<String>(),
    ]
}

fn a_label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
}

fn a_component() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?"
}

fn a_valid_registry() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(a_label(), 1..4),
        prop::option::of(1u16..=65535),
        prop::collection::vec(a_component(), 0..3),
    )
        .prop_map(|(labels, port, path)| {
            let mut registry = labels.join(".");
            if let Some(port) = port {
                registry.push_str(&format!(":{port}"));
            }
            for component in path {
                registry.push('/');
                registry.push_str(&component);
            }
            registry
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tags_are_exactly_the_grammar(tag in a_tag_like()) {
        let checked = check_tag(&tag);
        prop_assert_eq!(checked.is_ok(), is_tag(&tag), "{:?}", tag);
        if let Err(err) = checked {
            let message = err.to_string();
            prop_assert!(message.starts_with(&format!("invalid tag {tag:?}:")), "{}", message);
            prop_assert!(!message.contains('\n'));
        }
        let release = check_release_tag(&tag).is_ok();
        prop_assert_eq!(release, is_tag(&tag) && !tag.eq_ignore_ascii_case("latest"));
    }

    #[test]
    fn valid_registries_are_accepted(registry in a_valid_registry()) {
        prop_assert!(check_registry(&registry).is_ok(), "{}", registry);
    }

    #[test]
    fn broken_registries_are_refused(
        registry in a_valid_registry(),
        breakage in prop_oneof![
            Just("/"), Just("//x"), Just("/X"), Just(":0"), Just(":65536"), Just(":99999"), Just(" "),
            Just(";rm"), Just("$(id)"), Just("/-x"), Just("/x-"), Just("\n"),
        ],
    ) {
        // Appended where it breaks the grammar: a port after a path is a bad path component.
        let broken = format!("{registry}{breakage}");
        let err = check_registry(&broken);
        prop_assert!(err.is_err(), "{:?} accepted", broken);
        let message = err.unwrap_err().to_string();
        prop_assert!(message.starts_with(&format!("invalid registry {broken:?}:")), "{}", message);
        prop_assert!(!message.contains('\n'));
        let leading_dash = format!("-{registry}");
        prop_assert!(check_registry(&leading_dash).is_err(), "{:?} accepted", leading_dash);
    }

    #[test]
    fn anything_else_never_panics(text in any::<String>()) {
        let _ = check_registry(&text);
        let _ = check_tag(&text);
    }

    /// What we push (`ImageRef`'s text) is what `set-tag` later recognizes and retags.
    #[test]
    fn references_round_trip_through_the_compose_editor(
        registry in a_valid_registry(),
        name in "[a-z0-9]([a-z0-9_-]{0,12}[a-z0-9])?",
        tag in a_valid_tag(),
    ) {
        let image = ImageRef { registry: registry.clone(), name: name.clone(), tag };
        let text = image.to_string();
        prop_assert_eq!(image.host(), registry.split('/').next().unwrap());
        let yaml = format!("services: {{app: {{image: '{text}'}}}}\n");
        let (_, changes) = crate::compose_file::set_tag(&yaml, "9.9.9", &[name.as_str()])
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let expected = format!("{registry}/{name}:9.9.9");
        let got: Vec<&str> = changes.iter().map(|c| c.new.as_str()).collect();
        if image.tag == "9.9.9" {
            prop_assert!(got.is_empty());
        } else {
            prop_assert_eq!(got, vec![expected.as_str()]);
        }
    }
}
