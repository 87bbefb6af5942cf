//! The bodies the transaction stores:
//!
//! * [`event_body`]: `wire/event_writer.event_body` (the Avro body of a
//!   `ResourceChanged`, schema fingerprint [`crate::avro::EVENT_FINGERPRINT`]);
//! * [`rejection_body`]: what fastavro writes for `EventCodec.encode_rejection`'s record
//!   (`command_rejected.avsc`, fingerprint [`crate::avro::REJECTION_FINGERPRINT`]);
//! * [`command_json`]: `wire/commands.command_to_json` (a parked command's payload).

use crate::avro::{put_long, put_text};
use crate::domain::{Command, EventKind, Kind, Resource};
use crate::pytext::{isoformat_utc, json_ascii_string};
use crate::uuid::{text, Uuid};

const UUID_TEXT: u8 = 0x48; // zig-zag varint of 36
const NULL: u8 = 0x00; // union branch 0
const PRESENT: u8 = 0x02; // union branch 1
const END: u8 = 0x00; // the end of an array or a map

fn put_uuid_text(out: &mut Vec<u8>, id: &Uuid) {
    out.push(UUID_TEXT);
    out.extend_from_slice(&text(id));
}

fn put_optional_text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(NULL),
        Some(v) => {
            out.push(PRESENT);
            put_text(out, v.as_bytes());
        }
    }
}

/// The event a command's change announces, as `decide._event` builds it.
pub struct EventView<'a> {
    pub event_id: &'a Uuid,
    pub kind: EventKind,
    pub command: &'a Command,
    pub state: &'a Resource,
    pub changed: &'a [&'static str],
}

/// `event_writer.event_body(event)`.
pub fn event_body(out: &mut Vec<u8>, e: &EventView) {
    let s = e.state;
    put_uuid_text(out, e.event_id);
    out.push(e.kind.index() * 2);
    put_uuid_text(out, &e.command.resource_id);
    put_long(out, s.version);
    put_long(out, s.updated_at);
    put_uuid_text(out, &e.command.command_id);
    put_optional_text(out, e.command.correlation_id.as_deref());
    if !e.changed.is_empty() {
        put_long(out, e.changed.len() as i64);
        for field in e.changed {
            put_text(out, field.as_bytes());
        }
    }
    out.push(END);
    if s.deleted() {
        out.push(NULL);
        return;
    }
    out.push(PRESENT);
    put_uuid_text(out, &e.command.resource_id);
    put_text(out, s.name.as_bytes());
    if !s.config.is_empty() {
        put_long(out, s.config.len() as i64);
        for (k, v) in &s.config {
            put_text(out, k.as_bytes());
            put_text(out, v.as_bytes());
        }
    }
    out.push(END);
    out.push(s.status.index() * 2);
    put_long(out, s.version);
    put_long(out, s.created_at);
    put_long(out, s.updated_at);
}

/// The Avro body of `CommandRejected(rejection_id, command_id, command_type, resource_id,
/// code, message, rejected_at, correlation_id)`.
pub fn rejection_body(
    out: &mut Vec<u8>,
    rejection_id: &Uuid,
    command: &Command,
    code: &str,
    message: &str,
    rejected_at: i64,
) {
    put_uuid_text(out, rejection_id);
    put_uuid_text(out, &command.command_id);
    out.push(command.kind.index() * 2);
    put_uuid_text(out, &command.resource_id);
    put_text(out, code.as_bytes());
    put_text(out, message.as_bytes());
    put_long(out, rejected_at);
    put_optional_text(out, command.correlation_id.as_deref());
}

/// `command_to_json(command)`: `json.dumps` of the record without its `None` fields.
pub fn command_json(out: &mut Vec<u8>, c: &Command) {
    fn key(out: &mut Vec<u8>, name: &str, first: bool) {
        if !first {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\": ");
    }
    fn quoted(out: &mut Vec<u8>, raw: &[u8]) {
        out.push(b'"');
        out.extend_from_slice(raw);
        out.push(b'"');
    }
    out.push(b'{');
    key(out, "command_id", true);
    quoted(out, &text(&c.command_id));
    key(out, "command_type", false);
    quoted(out, c.kind.name().as_bytes());
    key(out, "resource_id", false);
    quoted(out, &text(&c.resource_id));
    if let Some(v) = c.expected_version {
        key(out, "expected_version", false);
        out.extend_from_slice(v.to_string().as_bytes());
    }
    if c.kind != Kind::Delete {
        if let Some(name) = &c.name {
            key(out, "name", false);
            json_ascii_string(out, name);
        }
        if let Some(config) = &c.config {
            key(out, "config", false);
            out.push(b'{');
            for (i, (k, v)) in config.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                json_ascii_string(out, k);
                out.extend_from_slice(b": ");
                json_ascii_string(out, v);
            }
            out.push(b'}');
        }
        if let Some(status) = c.status {
            key(out, "status", false);
            quoted(out, status.name().as_bytes());
        }
    }
    key(out, "issued_at", false);
    quoted(out, isoformat_utc(c.issued_at).as_bytes());
    for (name, value) in [
        ("correlation_id", &c.correlation_id),
        ("issued_by", &c.issued_by),
    ] {
        if let Some(v) = value {
            key(out, name, false);
            json_ascii_string(out, v);
        }
    }
    out.push(b'}');
}
