//! Property tests of `--host` parsing (`[user@]host[:port]`): every well-formed spec is read back
//! exactly; nothing accepted could be taken by ssh as an option or hold a space, quote or
//! control character; every refusal is one line.

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{parse_host, SshHost};

fn config() -> Config {
    crate::proptest_cases::config(5_000)
}

fn a_host() -> impl Strategy<Value = SshHost> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?";
    (
        prop::option::of("[a-z_][a-z0-9_.-]{0,12}"),
        prop::collection::vec(label, 1..5),
        prop::option::of(1u16..=65535),
    )
        .prop_map(|(user, labels, port)| SshHost {
            user,
            host: labels.join("."),
            port,
        })
}

fn spec(host: &SshHost) -> String {
    let mut spec = String::new();
    if let Some(user) = &host.user {
        spec.push_str(user);
        spec.push('@');
    }
    spec.push_str(&host.host);
    if let Some(port) = host.port {
        spec.push_str(&format!(":{port}"));
    }
    spec
}

/// Inputs near the grammar: well-formed specs with a snippet inserted, and anything.
fn a_spec_like() -> impl Strategy<Value = String> {
    prop_oneof![
        a_host().prop_map(|h| spec(&h)),
        (
            a_host(),
            any::<usize>(),
            prop::sample::select(vec![
                "-",
                "-oProxyCommand=x",
                " ",
                "@",
                ":",
                "::",
                ":0",
                ":65536",
                "'",
                "\"",
                ";",
                "\n",
                "\0",
                "$(id)",
                "[",
                "]",
                "/",
                "é",
            ])
        )
            .prop_map(|(host, at, snippet)| {
                let mut text = spec(&host);
                let at = text
                    .char_indices()
                    .nth(at % text.len())
                    .map_or(0, |(i, _)| i);
                text.insert_str(at, snippet);
                text
            }),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn well_formed_hosts_are_read_back(host in a_host()) {
        let text = spec(&host);
        prop_assert_eq!(parse_host(&text).map_err(|e| TestCaseError::fail(e.to_string()))?, host);
    }

    #[test]
    fn nothing_unsafe_is_accepted(text in a_spec_like()) {
        match parse_host(&text) {
            Ok(host) => {
                prop_assert!(!text.starts_with('-'), "{:?}", text);
                prop_assert!(!host.host.starts_with('-'));
                prop_assert!(host.user.as_deref().is_none_or(|u| !u.starts_with('-')));
                prop_assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || "@:._-".contains(c)), "{:?}", text);
                prop_assert!(host.port.is_none_or(|p| p > 0));
                // Its canonical form (`A:01` is `A:1`) reads back the same.
                prop_assert_eq!(parse_host(&spec(&host)).ok(), Some(host.clone()));
            }
            Err(err) => {
                let message = err.to_string();
                prop_assert!(message.starts_with(&format!("invalid --host {text:?}: ")), "{}", message);
                prop_assert!(!message.contains('\n'));
            }
        }
    }
}
