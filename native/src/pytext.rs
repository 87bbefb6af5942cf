//! Text exactly as CPython writes it where the reference code formats values into messages,
//! payloads or parameters: `ascii()`, `str.isspace`, `json.dumps` (ASCII-only),
//! `orjson.dumps` of strings, `datetime.isoformat()` in UTC, and the reason and position of a
//! `UnicodeDecodeError` from `bytes.decode()`.

use std::fmt::Write;

/// `ascii(s)`: Python's `repr` of a `str`, with every non-ASCII character escaped.
pub fn ascii_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        let n = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if c == quote => {
                out.push('\\');
                out.push(c);
            }
            _ if n < 0x20 || n == 0x7f => {
                let _ = write!(out, "\\x{n:02x}");
            }
            _ if n < 0x7f => out.push(c),
            _ if n <= 0xff => {
                let _ = write!(out, "\\x{n:02x}");
            }
            _ if n <= 0xffff => {
                let _ = write!(out, "\\u{n:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{n:08x}");
            }
        }
    }
    out.push(quote);
    out
}

/// `s[:n]` in code points.
pub fn head_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// `len(s)`: the number of code points.
pub fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// `c.isspace()` (for `str.strip()`): Unicode White_Space plus U+001C..U+001F, which
/// CPython counts as whitespace (bidirectional class B or S) and Unicode does not.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `not s.strip()`: empty or whitespace only.
pub fn blank(s: &str) -> bool {
    s.chars().all(py_isspace)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u4(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((n >> shift) & 0xf) as usize]);
    }
}

/// A string as `json.dumps` writes it (``ensure_ascii=True``): everything outside
/// `' '..='~'` escaped, astral characters as surrogate pairs.
pub fn json_ascii_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        let n = c as u32;
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '"' => out.extend_from_slice(b"\\\""),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            ' '..='~' => out.push(n as u8),
            _ if n >= 0x10000 => {
                let v = n - 0x10000;
                push_u4(out, 0xd800 | (v >> 10));
                push_u4(out, 0xdc00 | (v & 0x3ff));
            }
            _ => push_u4(out, n),
        }
    }
    out.push(b'"');
}

/// A string as `orjson.dumps` writes it: UTF-8 kept, only `"`, `\` and C0 controls escaped.
pub fn orjson_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\x08' => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\x0c' => b"\\f",
            b'\r' => b"\\r",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            push_u4(out, b as u32);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `orjson.dumps(dict(config)).decode()` for a map of strings.
pub fn orjson_config(out: &mut Vec<u8>, config: &[(String, String)]) {
    out.push(b'{');
    for (i, (k, v)) in config.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        orjson_string(out, k);
        out.push(b':');
        orjson_string(out, v);
    }
    out.push(b'}');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `datetime.isoformat()` of a UTC datetime given as microseconds since the Unix epoch
/// (years 1..9999): `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`.
pub fn isoformat_utc(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s) = (in_day / 3600, (in_day / 60) % 60, in_day % 60);
    let mut out = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if fraction != 0 {
        let _ = write!(out, ".{fraction:06}");
    }
    out.push_str("+00:00");
    out
}

/// The `reason` and `start` of the `UnicodeDecodeError` that `bytes.decode()` (strict UTF-8)
/// raises for `raw`. CPython and Rust reject the same maximal subparts; Rust says "truncated"
/// where CPython says "unexpected end of data", and CPython tells an invalid start byte from
/// a bad continuation by the first byte of the offending sequence.
pub fn utf8_problem(raw: &[u8], error: &std::str::Utf8Error) -> (&'static str, usize) {
    let start = error.valid_up_to();
    let reason = match error.error_len() {
        None => "unexpected end of data",
        Some(_) => match raw[start] {
            0x80..=0xc1 | 0xf5..=0xff => "invalid start byte",
            _ => "invalid continuation byte",
        },
    };
    (reason, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso() {
        assert_eq!(isoformat_utc(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            isoformat_utc(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            isoformat_utc(951_782_400_000_001),
            "2000-02-29T00:00:00.000001+00:00"
        );
    }

    #[test]
    fn repr() {
        assert_eq!(ascii_repr("a'b"), "\"a'b\"");
        assert_eq!(ascii_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(
            ascii_repr("é\u{7f}\u{2028}\u{1f600}"),
            "'\\xe9\\x7f\\u2028\\U0001f600'"
        );
    }
}
