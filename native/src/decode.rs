//! `CommandCodec.decode` (`wire/commands.py`) for the records the worker sees
//! most: the framing checks, the size limit, and Avro bodies written with the command schema
//! itself (single-object, or Confluent with an id known to name that schema), read by the
//! port of the specialised reader and checked like `command_from_record`. Every other
//! record — JSON, another writer schema, a registry id not known here — is handed back as
//! [`Decoded::Fallback`], for the Python codec to decode.

use crate::avro::{read_command, RawCommand, COMMAND_FINGERPRINT, SINGLE_OBJECT_MAGIC};
use crate::domain::{Command, Kind, Status};
use crate::headers::is_json;
use crate::pytext::{ascii_repr, char_len, head_chars};
use crate::uuid::{parse_canonical, Uuid};
use pyo3::PyResult;
use std::collections::HashSet;

pub const TEXT_MAX: usize = 255;
/// ``MICROS_MAX``: 9999-12-31T23:59:59.999999 UTC in microseconds since 1970.
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;
/// ``MICROS_MIN``: smaller positive integers are epoch milliseconds or seconds.
pub const MIN_MICROS: i64 = 100_000_000_000_000;
/// ``_SECONDS_BELOW``: below this an epoch integer reads as seconds, else milliseconds.
const SECONDS_BELOW: i64 = 100_000_000_000;

pub enum Decoded {
    Command(Command),
    /// A ``DecodeError``: its reason and detail (``too-large`` is a ``MessageTooLarge``).
    Error(&'static str, String),
    Fallback,
}

/// What the Python codec was configured with.
pub struct Options {
    pub max_bytes: usize,
    /// Fingerprints of the other writer schemas the framing accepts (released versions,
    /// ``PHOENIX_AVRO_WRITER_SCHEMAS_DIR``): their records fall back to Python.
    pub known_fingerprints: HashSet<[u8; 8]>,
    /// Whether a schema registry is configured.
    pub registry: bool,
    /// Registry ids whose schema is the command schema itself (same fingerprint).
    pub registry_ids: HashSet<u32>,
}

/// ``UUID(text)`` for the text forms other than canonical lower case: ``Some`` id, or
/// ``None`` when Python refuses it.
pub type SlowUuid<'a> = &'a mut dyn FnMut(&str) -> PyResult<Option<Uuid>>;

fn error(reason: &'static str, detail: impl Into<String>) -> Decoded {
    Decoded::Error(reason, detail.into())
}

/// ``CommandCodec.decode(value, content_type)``.
pub fn decode(
    value: Option<&[u8]>,
    content_type: Option<&str>,
    options: &Options,
    slow: SlowUuid,
) -> PyResult<Decoded> {
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(error("empty", "the record has no value (a tombstone?)")),
    };
    if value.len() > options.max_bytes {
        return Ok(error(
            "too-large",
            format!(
                "{} bytes; the limit is {} (PHOENIX_MAX_COMMAND_BYTES)",
                value.len(),
                options.max_bytes
            ),
        ));
    }
    if value[0] == b'{' || content_type.is_some_and(is_json) {
        return Ok(Decoded::Fallback);
    }
    let start = if value.starts_with(&SINGLE_OBJECT_MAGIC) {
        if value.len() < 10 {
            return Ok(error("malformed-avro", "truncated single-object header"));
        }
        let fp: [u8; 8] = value[2..10].try_into().expect("8 bytes");
        if fp != COMMAND_FINGERPRINT {
            if options.known_fingerprints.contains(&fp) {
                return Ok(Decoded::Fallback);
            }
            let hex: String = fp.iter().map(|b| format!("{b:02x}")).collect();
            return Ok(error(
                "unknown-schema",
                format!(
                    "no schema with fingerprint {hex} is known (see \
                     PHOENIX_AVRO_WRITER_SCHEMAS_DIR)"
                ),
            ));
        }
        10
    } else if value[0] == 0 {
        if value.len() < 5 {
            return Ok(error("malformed-avro", "truncated Confluent header"));
        }
        if !options.registry {
            return Ok(error(
                "unknown-schema",
                "Confluent-framed payload but no schema registry is configured \
                 (PHOENIX_SCHEMA_REGISTRY_URL)",
            ));
        }
        let id = u32::from_be_bytes(value[1..5].try_into().expect("4 bytes"));
        if !options.registry_ids.contains(&id) {
            return Ok(Decoded::Fallback);
        }
        5
    } else {
        return Ok(error(
            "unknown-format",
            "neither Avro single-object (C3 01), Confluent (00) nor JSON",
        ));
    };
    match read_command(value, start) {
        Ok(raw) => from_record(raw, slow),
        Err(detail) => Ok(error("malformed-avro", detail)),
    }
}

fn uuid(value: &str, field: &str, slow: SlowUuid) -> PyResult<Result<Uuid, Decoded>> {
    if char_len(value) <= 45 {
        if let Some(id) = parse_canonical(value.as_bytes()) {
            return Ok(Ok(id));
        }
        if let Some(id) = slow(value)? {
            return Ok(Ok(id));
        }
    }
    Ok(Err(error(
        "invalid-field",
        format!(
            "'{field}' is not a UUID: {}",
            ascii_repr(head_chars(value, 48))
        ),
    )))
}

/// ``_text`` after the type check: the length limit, then ``_storable``'s NUL check (Avro
/// strings are valid UTF-8 without surrogates, so the Unicode check cannot fail).
fn text(value: &Option<String>, field: &str, max: Option<usize>) -> Option<Decoded> {
    let v = value.as_ref()?;
    if max.is_some_and(|m| char_len(v) > m) {
        return Some(error(
            "invalid-field",
            format!(
                "'{field}' is longer than {} characters",
                max.unwrap_or_default()
            ),
        ));
    }
    if v.contains('\0') {
        return Some(error(
            "invalid-field",
            format!("'{field}' contains a NUL character"),
        ));
    }
    None
}

/// ``issued_at_from`` of an epoch-microseconds integer (``wire/validation.py``).
fn issued_at(value: i64) -> Option<Decoded> {
    if (MIN_MICROS..=MAX_MICROS).contains(&value) {
        return None;
    }
    if (0..MIN_MICROS).contains(&value) {
        let (unit, factor) = if value < SECONDS_BELOW {
            ("seconds", "1,000,000")
        } else {
            ("milliseconds", "1,000")
        };
        return Some(error(
            "issued-at-unit",
            format!(
                "'issued_at' must be epoch microseconds (at least {MIN_MICROS}); {value} \
                 reads as epoch {unit}: multiply by {factor}, or send ISO-8601 text"
            ),
        ));
    }
    Some(error(
        "invalid-field",
        format!(
            "'issued_at' epoch micros out of range ({MIN_MICROS}..{MAX_MICROS}: years \
             1973..9999; nanoseconds?)"
        ),
    ))
}

macro_rules! check {
    ($e:expr) => {
        if let Some(problem) = $e {
            return Ok(problem);
        }
    };
}

/// ``command_from_record`` of the reader's record, in the reference's order of checks.
fn from_record(raw: RawCommand, slow: SlowUuid) -> PyResult<Decoded> {
    let kind = Kind::ALL[raw.command_type as usize];
    let command_id = match uuid(&raw.command_id, "command_id", slow)? {
        Ok(id) => id,
        Err(problem) => return Ok(problem),
    };
    let resource_id = match uuid(&raw.resource_id, "resource_id", slow)? {
        Ok(id) => id,
        Err(problem) => return Ok(problem),
    };
    if let Some(problem) = issued_at(raw.issued_at) {
        return Ok(problem);
    }
    if raw.expected_version.is_some_and(|v| v < 0) {
        return Ok(error(
            "invalid-field",
            format!("'expected_version' must be within 0..{}", i64::MAX),
        ));
    }
    check!(text(&raw.correlation_id, "correlation_id", Some(TEXT_MAX)));
    check!(text(&raw.issued_by, "issued_by", Some(TEXT_MAX)));
    let mut command = Command {
        kind,
        command_id,
        resource_id,
        issued_at: raw.issued_at,
        expected_version: raw.expected_version,
        correlation_id: raw.correlation_id,
        issued_by: raw.issued_by,
        name: None,
        config: None,
        status: None,
    };
    if kind == Kind::Delete {
        return Ok(Decoded::Command(command));
    }
    check!(text(&raw.name, "name", None));
    if let Some(config) = &raw.config {
        if config
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Ok(error("invalid-field", "'config' contains a NUL character"));
        }
    }
    let status = raw.status.map(|i| Status::ALL[i as usize]);
    let config = raw.config.map(|c| c.into_iter().collect::<Vec<_>>());
    if kind == Kind::Create {
        command.name = Some(raw.name.unwrap_or_default());
        command.config = Some(config.unwrap_or_default());
        command.status = Some(status.unwrap_or(Status::Pending));
    } else {
        command.name = raw.name;
        command.config = config;
        command.status = status;
    }
    Ok(Decoded::Command(command))
}
