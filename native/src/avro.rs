//! Avro for the three schemas the worker reads and writes, byte for byte like the reference:
//!
//! * [`read_command`] mirrors `wire/command_reader.py` (the reader specialised for
//!   `resource_command.avsc`, fingerprint [`COMMAND_FINGERPRINT`]), error texts included;
//! * [`put_long`] / [`put_text`] are the primitives of `wire/event_writer.py` and of
//!   what fastavro writes for `command_rejected.avsc` (see `outbox.rs`).

use crate::pytext::utf8_problem;
use indexmap::IndexMap;

pub const COMMAND_FINGERPRINT: [u8; 8] = [0x1a, 0xd6, 0x6f, 0x27, 0x98, 0x38, 0x37, 0x8e];
pub const EVENT_FINGERPRINT: [u8; 8] = [0x1b, 0x90, 0x9c, 0xcd, 0x4b, 0x0e, 0x0e, 0x39];
pub const REJECTION_FINGERPRINT: [u8; 8] = [0x54, 0x4b, 0x59, 0xf5, 0x4f, 0xc6, 0xc9, 0x48];
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xc3, 0x01];

/// Why a body is not a record of the command schema (`command_reader`'s `DecodeError`
/// details; the reason is always `malformed-avro`).
enum Problem {
    /// `IndexError`: a read past the end.
    End,
    /// `UnicodeDecodeError`.
    Utf8(&'static str, usize),
    /// A `DecodeError` raised by the reader itself.
    Said(String),
}

type Read<T> = Result<(T, usize), Problem>;

fn byte(b: &[u8], p: usize) -> Result<u8, Problem> {
    b.get(p).copied().ok_or(Problem::End)
}

/// Avro's long at `p`: zig-zag, little-endian base-128, at most 64 bits.
fn long(b: &[u8], p: usize) -> Read<i64> {
    let mut c = byte(b, p)?;
    if c < 0x80 {
        return Ok((((c >> 1) as i64) ^ -((c & 1) as i64), p + 1));
    }
    let mut n: u64 = (c & 0x7f) as u64;
    let mut shift = 7;
    let mut p = p;
    loop {
        p += 1;
        c = byte(b, p)?;
        if shift == 63 && c > 1 {
            return Err(Problem::Said("a varint longer than 64 bits".into()));
        }
        n |= ((c & 0x7f) as u64) << shift;
        if c < 0x80 {
            return Ok((((n >> 1) as i64) ^ -((n & 1) as i64), p + 1));
        }
        shift += 7;
    }
}

fn text(b: &[u8], p: usize) -> Read<String> {
    let (n, p) = long(b, p)?;
    let end = p as i128 + n as i128;
    if n < 0 || end > b.len() as i128 {
        return Err(Problem::Said(
            "a string length that is negative or past the end".into(),
        ));
    }
    let raw = &b[p..end as usize];
    match std::str::from_utf8(raw) {
        Ok(s) => Ok((s.to_owned(), end as usize)),
        Err(e) => {
            let (reason, at) = utf8_problem(raw, &e);
            Err(Problem::Utf8(reason, at))
        }
    }
}

/// A `["null", T]` union: branch 0 is null, branch 1 is read by `read`.
fn optional<T>(b: &[u8], p: usize, read: fn(&[u8], usize) -> Read<T>) -> Read<Option<T>> {
    match byte(b, p)? {
        0 => Ok((None, p + 1)),
        2 => read(b, p + 1).map(|(v, p)| (Some(v), p)),
        _ => Err(Problem::Said("a union index other than 0 or 1".into())),
    }
}

fn symbol(b: &[u8], p: usize, count: i64) -> Read<u8> {
    let (i, p) = long(b, p)?;
    if !(0..count).contains(&i) {
        return Err(Problem::Said(format!("enum index {i} out of range")));
    }
    Ok((i as u8, p))
}

fn status(b: &[u8], p: usize) -> Read<u8> {
    symbol(b, p, 3)
}

/// A map of strings; a key given twice keeps its first place and its last value (a dict).
fn map(b: &[u8], p: usize) -> Read<IndexMap<String, String>> {
    let mut out = IndexMap::new();
    let mut p = p;
    loop {
        let (count, q) = long(b, p)?;
        p = q;
        if count == 0 {
            return Ok((out, p));
        }
        let count = if count < 0 {
            let (_, q) = long(b, p)?; // the block's size in bytes, which readers may skip
            p = q;
            -(count as i128)
        } else {
            count as i128
        };
        let mut i: i128 = 0;
        while i < count {
            let (key, q) = text(b, p)?;
            let (value, q) = text(b, q)?;
            p = q;
            out.insert(key, value);
            i += 1;
        }
    }
}

/// The fields of a `ResourceCommand` as the reader returns them (wire values).
pub struct RawCommand {
    pub command_id: String,
    pub command_type: u8,
    pub resource_id: String,
    pub expected_version: Option<i64>,
    pub name: Option<String>,
    pub config: Option<IndexMap<String, String>>,
    pub status: Option<u8>,
    pub issued_at: i64,
    pub correlation_id: Option<String>,
    pub issued_by: Option<String>,
}

fn record(b: &[u8], p: usize) -> Read<RawCommand> {
    let (command_id, p) = text(b, p)?;
    let (command_type, p) = symbol(b, p, 3)?;
    let (resource_id, p) = text(b, p)?;
    let (expected_version, p) = optional(b, p, long)?;
    let (name, p) = optional(b, p, text)?;
    let (config, p) = optional(b, p, map)?;
    let (status, p) = optional(b, p, status)?;
    let (issued_at, p) = long(b, p)?;
    let (correlation_id, p) = optional(b, p, text)?;
    let (issued_by, p) = optional(b, p, text)?;
    Ok((
        RawCommand {
            command_id,
            command_type,
            resource_id,
            expected_version,
            name,
            config,
            status,
            issued_at,
            correlation_id,
            issued_by,
        },
        p,
    ))
}

/// `command_reader.read_command(value, start)`: the record, or the `malformed-avro` detail.
pub fn read_command(value: &[u8], start: usize) -> Result<RawCommand, String> {
    match record(value, start) {
        Ok((command, end)) if end == value.len() => Ok(command),
        Ok((_, end)) => Err(format!(
            "{} bytes after the record (a writer schema other than the one announced?)",
            value.len() - end
        )),
        Err(Problem::End) => Err("the record ends before its last field".into()),
        Err(Problem::Utf8(reason, at)) => {
            Err(format!("a string is not UTF-8: {reason} at byte {at}"))
        }
        Err(Problem::Said(detail)) => Err(detail),
    }
}

/// Avro's long: zig-zag, then a little-endian base-128 varint.
pub fn put_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro's string (or bytes): the length as a long, then the bytes.
pub fn put_text(out: &mut Vec<u8>, raw: &[u8]) {
    put_long(out, raw.len() as i64);
    out.extend_from_slice(raw);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs() {
        for n in [
            0i64,
            -1,
            1,
            63,
            -64,
            64,
            i64::MAX,
            i64::MIN,
            1_700_000_000_000_000,
        ] {
            let mut out = Vec::new();
            put_long(&mut out, n);
            assert_eq!(long(&out, 0).ok(), Some((n, out.len())));
        }
    }
}
