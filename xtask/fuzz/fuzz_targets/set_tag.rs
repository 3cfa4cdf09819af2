//! libFuzzer target for the compose editor: `cargo +nightly fuzz run set_tag` (see ../Cargo.toml).
//!
//! The input's first line is the tag, the rest the compose text, so both get explored. Checked:
//! no panic; when `set_tag` accepts, its output is accepted again and left unchanged (it parses,
//! and our values are already rewritten), and "no change" means "same text". The full oracle
//! (events and bytes outside our values unchanged) is in src/compose_file/props.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The xtask is a binary crate with no library to link: compile the module in as it is.
#[allow(dead_code)]
#[path = "../../src/compose_file.rs"]
mod compose_file;

const APP: &[&str] = &["crm-gdb_php", "crm-gdb_nginx"];

fuzz_target!(|data: &[u8]| {
    let Ok(data) = std::str::from_utf8(data) else {
        return;
    };
    let (tag, text) = data.split_once('\n').unwrap_or(("9.8.7", data));
    if let Ok((output, changes)) = compose_file::set_tag(text, tag, APP) {
        assert_eq!(changes.is_empty(), output == text);
        let again = compose_file::set_tag(&output, tag, APP).expect("the output is refused");
        assert_eq!(again, (output, Vec::new()), "a second run changed something");
    }
});
