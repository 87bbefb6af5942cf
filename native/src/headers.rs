//! The headers of a command record (`wire/headers.py`): `content-type` and
//! `traceparent`, on bytes. Which header values to look at (names, the last one wins, values
//! of any type) is decided where the Python objects are read (`batch.rs`).

pub const CONTENT_TYPE: &str = "content-type";
pub const TRACEPARENT: &str = "traceparent";
pub const JSON: &str = "application/json";
const TRACEPARENT_LENGTH: usize = 55;

/// `headers.media_type`: `[ \t]*(token/token)[ \t]*(;.*)?`, lower-cased; `None` otherwise.
pub fn media_type(text: &[u8]) -> Option<String> {
    fn token(c: u8) -> bool {
        c.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&c)
    }
    let mut p = 0;
    while p < text.len() && matches!(text[p], b' ' | b'\t') {
        p += 1;
    }
    let start = p;
    while p < text.len() && token(text[p]) {
        p += 1;
    }
    if p == start || p >= text.len() || text[p] != b'/' {
        return None;
    }
    p += 1;
    let sub = p;
    while p < text.len() && token(text[p]) {
        p += 1;
    }
    if p == sub {
        return None;
    }
    let end = p;
    while p < text.len() && matches!(text[p], b' ' | b'\t') {
        p += 1;
    }
    if p < text.len() && text[p] != b';' {
        return None;
    }
    Some(String::from_utf8_lossy(&text[start..end]).to_ascii_lowercase())
}

/// `headers._content_type`: the media type of a header value, `None` when unusable.
pub fn content_type(value: &[u8]) -> Option<String> {
    match value {
        b"application/avro" => return Some("application/avro".to_owned()),
        b"application/json" => return Some(JSON.to_owned()),
        _ => {}
    }
    std::str::from_utf8(value).ok()?;
    media_type(value)
}

/// `headers.is_json` of a media type this module produced.
pub fn is_json(content_type: &str) -> bool {
    content_type == JSON || content_type.ends_with("+json")
}

fn lower_hex(s: &[u8]) -> bool {
    s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The W3C `traceparent` pattern on exactly 55 bytes.
fn trace_context(v: &[u8]) -> bool {
    v.len() == TRACEPARENT_LENGTH
        && v[2] == b'-'
        && v[35] == b'-'
        && v[52] == b'-'
        && lower_hex(&v[0..2])
        && &v[0..2] != b"ff"
        && lower_hex(&v[3..35])
        && v[3..35].iter().any(|&c| c != b'0')
        && lower_hex(&v[36..52])
        && v[36..52].iter().any(|&c| c != b'0')
        && lower_hex(&v[53..55])
}

/// `headers.traceparent`: a valid value (its first 55 characters for a later version's
/// longer form), or `None`.
pub fn traceparent(value: &[u8]) -> Option<String> {
    if value.len() == TRACEPARENT_LENGTH {
        return trace_context(value).then(|| String::from_utf8_lossy(value).into_owned());
    }
    if value.len() < TRACEPARENT_LENGTH
        || &value[..2] == b"00"
        || value[TRACEPARENT_LENGTH] != b'-'
        || !trace_context(&value[..TRACEPARENT_LENGTH])
    {
        return None;
    }
    Some(String::from_utf8_lossy(&value[..TRACEPARENT_LENGTH]).into_owned())
}

/// What `command_headers` keeps of a record's headers.
#[derive(Clone, Debug, Default)]
pub struct Headers {
    pub content_type: Option<String>,
    pub traceparent: Option<String>,
    pub invalid_content_type: bool,
    pub invalid_traceparent: bool,
}

impl Headers {
    /// `invalid`, in the order `command_headers` lists it.
    pub fn invalid(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.invalid_content_type {
            out.push(CONTENT_TYPE);
        }
        if self.invalid_traceparent {
            out.push(TRACEPARENT);
        }
        out
    }
}

/// Which of the two headers a name is (`name == X or (len(name) == len(X) and
/// name.lower() == X)`): only ASCII can lower-case into either name (the Kelvin sign, the one
/// non-ASCII character that lower-cases to an ASCII letter, is `k`, in neither).
pub fn which(name: &str) -> Option<bool> {
    if name.len() == CONTENT_TYPE.len() && name.eq_ignore_ascii_case(CONTENT_TYPE) {
        Some(true)
    } else if name.len() == TRACEPARENT.len() && name.eq_ignore_ascii_case(TRACEPARENT) {
        Some(false)
    } else {
        None
    }
}

/// `command_headers` once the two values are known: `None` inside means "present, no value".
pub fn read(content: Option<Option<&[u8]>>, trace: Option<Option<&[u8]>>) -> Headers {
    let mut out = Headers::default();
    if let Some(value) = content {
        out.content_type = value.and_then(content_type);
        out.invalid_content_type = out.content_type.is_none();
    }
    if let Some(value) = trace {
        out.traceparent = value.and_then(traceparent);
        out.invalid_traceparent = out.traceparent.is_none();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media() {
        assert_eq!(
            media_type(b" Application/JSON ; charset=x").as_deref(),
            Some("application/json")
        );
        assert_eq!(media_type(b"application/json\x00"), None);
        assert_eq!(media_type(b";;"), None);
        assert_eq!(media_type(b"a/b;\n"), Some("a/b".into()));
    }

    #[test]
    fn trace() {
        let t = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(traceparent(t).is_some());
        let mut longer = b"01".to_vec();
        longer.extend_from_slice(&t[2..]);
        longer.extend_from_slice(b"-x");
        assert_eq!(traceparent(&longer).unwrap().len(), 55);
        let mut v00 = t.to_vec();
        v00.extend_from_slice(b"-x");
        assert_eq!(traceparent(&v00), None);
    }
}
