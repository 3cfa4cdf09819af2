//! A small JSON reader for the Docker engine's answers (`docker_api.rs`): enough to walk an
//! array of objects and read strings and numbers, without a serde dependency for a few fields.

use anyhow::{bail, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number as written (sizes are integers; no float arithmetic is needed).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// The elements of an array (`null`, as the engine writes an empty list: none).
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }

    /// The strings of an array of strings (others skipped).
    pub fn strings(&self) -> Vec<&str> {
        self.items().iter().filter_map(Json::as_str).collect()
    }
}

pub fn parse(text: &str) -> Result<Json> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = reader.value(0)?;
    reader.space();
    if reader.at != reader.bytes.len() {
        bail!("JSON: unexpected text at byte {}", reader.at);
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() != Some(byte) {
            bail!("JSON: expected '{}' at byte {}", byte as char, self.at);
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Json> {
        if depth > 64 {
            bail!("JSON: nested too deep");
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Ok(Json::Object(fields));
                }
                loop {
                    self.expect(b'"')?;
                    let key = self.string()?;
                    self.expect(b':')?;
                    fields.push((key, self.value(depth + 1)?));
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b'}') => {
                            self.at += 1;
                            return Ok(Json::Object(fields));
                        }
                        _ => bail!("JSON: expected ',' or '}}' at byte {}", self.at),
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') => self.at += 1,
                        Some(b']') => {
                            self.at += 1;
                            return Ok(Json::Array(items));
                        }
                        _ => bail!("JSON: expected ',' or ']' at byte {}", self.at),
                    }
                }
            }
            Some(b'"') => {
                self.at += 1;
                self.string().map(Json::String)
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.at += 1;
                }
                Ok(Json::Number(
                    String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned(),
                ))
            }
            _ => {
                for (word, value) in [
                    ("null", Json::Null),
                    ("true", Json::Bool(true)),
                    ("false", Json::Bool(false)),
                ] {
                    if self.bytes[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        return Ok(value);
                    }
                }
                bail!("JSON: unexpected byte at {}", self.at)
            }
        }
    }

    /// The rest of a string whose opening quote was read.
    fn string(&mut self) -> Result<String> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&byte) = self.bytes.get(self.at) else {
                bail!("JSON: unterminated string");
            };
            self.at += 1;
            match byte {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&escaped) = self.bytes.get(self.at) else {
                        bail!("JSON: unterminated string");
                    };
                    self.at += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .bytes
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            let Some(code) = hex else {
                                bail!("JSON: bad \\u escape at byte {}", self.at);
                            };
                            self.at += 4;
                            // Surrogate pairs are not needed for the engine's answers.
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_engines_image_list() {
        let text = r#"[{"Containers":-1,"Id":"sha256:ab","Labels":{"a":"x\"}y"},"ParentId":"",
            "RepoDigests":null,"RepoTags":["r/crm-gdb_php:1","r/crm-gdb_php:2"],"Size":123,"On":true},
            {"Id":"sha256:cd","RepoTags":[],"Size":4.5e3,"X":false,"U":"\u00e9\n"}]"#;
        let json = parse(text).unwrap();
        let items = json.items();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].get("Id").and_then(Json::as_str), Some("sha256:ab"));
        assert_eq!(
            items[0].get("RepoTags").unwrap().strings(),
            ["r/crm-gdb_php:1", "r/crm-gdb_php:2"]
        );
        assert_eq!(
            items[0]
                .get("Labels")
                .unwrap()
                .get("a")
                .and_then(Json::as_str),
            Some("x\"}y")
        );
        assert_eq!(items[0].get("Size").and_then(Json::as_u64), Some(123));
        assert!(items[0].get("RepoDigests").unwrap().items().is_empty());
        assert_eq!(items[1].get("U").and_then(Json::as_str), Some("é\n"));
        assert_eq!(items[1].get("Size").and_then(Json::as_u64), None);
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"open", "[1] x", "nul"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
