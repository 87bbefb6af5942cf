//! The parameters of the worker's write round trip (`adapters/postgres/batch_unit.py`,
//! `PostgresBatchUnit.write` and the helpers it calls), as binary arrays in the order each
//! statement takes them: the claims with their outcomes, the duplicate counters, the new and
//! updated resources, the parked commands and the outbox rows.

use crate::domain::code::COMMAND_ID_REUSED;
use crate::domain::{Command, Folded, Outcome};
use crate::encode::{command_json, event_body, rejection_body, EventView};
use crate::pgarray::{Array, Elem};
use crate::pytext::orjson_config;
use crate::uuid::{derived, reuse_rejection_id, text, Uuid, EVENT_NAMESPACE, REJECTION_NAMESPACE};

/// A claimed command as the write needs it.
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub command: &'a Command,
    pub partition: i64,
    pub offset: i64,
    pub traceparent: Option<&'a str>,
    /// Further deliveries of the same command id in the batch (``Claim.repeats``).
    pub repeats: i64,
}

/// A delivery refused for reusing another command's id (CMD-012): announced, not recorded.
pub struct Refusal<'a> {
    pub command: &'a Command,
    pub traceparent: Option<&'a str>,
    pub message: String,
}

/// Where the outbox rows go, and the framing in front of their Avro bodies.
pub struct OutboxSettings<'a> {
    pub events_topic: &'a str,
    pub rejections_topic: &'a str,
    pub event_prefix: &'a [u8],
    pub rejection_prefix: &'a [u8],
}

/// One outbox row, for the relay's CloudEvents headers (the payload is inside the
/// ``insert_outbox`` parameters, at ``payload``: start and length).
pub struct OutboxRow {
    pub id: Uuid,
    pub aggregate: Uuid,
    pub type_name: &'static str,
    pub rejection: bool,
    pub payload: (usize, usize),
    pub occurred_at: i64,
    pub traceparent: Option<String>,
}

pub const INSERT_OUTCOMES: &str = "insert_outcomes";
pub const BUMP_DUPLICATES: &str = "bump_duplicates";
pub const INSERT_NEW: &str = "insert_new";
pub const UPDATE_EXISTING: &str = "update_existing";
pub const PARK: &str = "park";
pub const PARK_RESOURCES: &str = "park_resources";
pub const INSERT_OUTBOX: &str = "insert_outbox";

pub struct Written {
    /// (statement, its array parameters), in the order the write sends them.
    pub statements: Vec<(&'static str, Vec<Vec<u8>>)>,
    /// The row counts the claim insert, the insert and the update must report.
    pub expected: (usize, usize, usize),
    pub outbox: Vec<OutboxRow>,
    /// Index of the ``insert_outbox`` statement in ``statements``.
    pub outbox_statement: Option<usize>,
}

fn int4(n: i64, what: &str) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| format!("{what} {n} does not fit PostgreSQL's int4"))
}

fn uuid_array(ids: impl ExactSizeIterator<Item = Uuid>) -> Vec<u8> {
    let mut a = Array::with_capacity(Elem::Uuid, ids.len() * 20);
    for id in ids {
        a.uuid(&id);
    }
    a.finish()
}

/// The ``KNOWN`` query's parameter: the claims' command ids, in claim order.
pub fn known_param(ids: impl ExactSizeIterator<Item = Uuid>) -> Vec<u8> {
    uuid_array(ids)
}

/// ``PARKED_AMONG`` and ``LOAD``'s parameter: distinct resource ids, sorted (as integers).
pub fn load_param(mut ids: Vec<Uuid>) -> Vec<u8> {
    ids.sort_unstable();
    ids.dedup();
    uuid_array(ids.into_iter())
}

fn outcome_fields(o: &Outcome) -> (&'static str, Option<&str>, Option<&str>, Option<i64>) {
    match o {
        Outcome::Applied { version, .. } => ("applied", None, None, Some(*version)),
        Outcome::Rejected { code, message } => {
            ("rejected", Some(code), Some(message.as_str()), None)
        }
        Outcome::Parked { code, error } => ("parked", Some(code), Some(error.as_str()), None),
    }
}

/// ``processed_at`` (``now``) is the statement's scalar parameter, sent by the caller.
fn insert_outcomes(items: &[Item], folded: &Folded) -> Result<Vec<Vec<u8>>, String> {
    let n = items.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        items[a]
            .command
            .command_id
            .cmp(&items[b].command.command_id)
    });
    let mut cols = [
        Array::with_capacity(Elem::Uuid, n * 20),
        Array::with_capacity(Elem::Uuid, n * 20),
        Array::with_capacity(Elem::Text, n * 10),
        Array::with_capacity(Elem::Text, n * 12),
        Array::new(Elem::Text),
        Array::new(Elem::Text),
        Array::with_capacity(Elem::Int8, n * 12),
        Array::with_capacity(Elem::Int4, n * 8),
        Array::new(Elem::Text),
        Array::with_capacity(Elem::Int4, n * 8),
        Array::with_capacity(Elem::Int8, n * 12),
        Array::with_capacity(Elem::Timestamptz, n * 12),
    ];
    for i in order {
        let item = &items[i];
        let c = item.command;
        let (outcome, code, message, version) = outcome_fields(&folded.outcomes[i].0);
        cols[0].uuid(&c.command_id);
        cols[1].uuid(&c.resource_id);
        cols[2].text(c.kind.name());
        cols[3].text(outcome);
        cols[4].opt_text(code);
        cols[5].opt_text(message);
        cols[6].opt_int8(version);
        cols[7].int4(int4(item.repeats, "duplicate_deliveries")?);
        cols[8].opt_text(c.correlation_id.as_deref());
        cols[9].int4(int4(item.partition, "partition")?);
        cols[10].int8(item.offset);
        cols[11].timestamptz(c.issued_at);
    }
    Ok(cols.into_iter().map(Array::finish).collect())
}

fn resources(folded: &Folded, existing: bool) -> Vec<Vec<u8>> {
    let rows: Vec<_> = folded
        .changes
        .iter()
        .filter(|(_, c)| c.before_version.is_some() == existing)
        .collect();
    let n = rows.len();
    let mut out = vec![
        Array::with_capacity(Elem::Uuid, n * 20),
        Array::new(Elem::Text),
        Array::new(Elem::Jsonb),
        Array::with_capacity(Elem::Text, n * 12),
        Array::with_capacity(Elem::Int8, n * 12),
    ];
    let tail = if existing {
        vec![Elem::Timestamptz, Elem::Uuid, Elem::Timestamptz, Elem::Int8]
    } else {
        vec![
            Elem::Timestamptz,
            Elem::Timestamptz,
            Elem::Uuid,
            Elem::Timestamptz,
        ]
    };
    out.extend(tail.into_iter().map(Array::new));
    for (_, change) in rows {
        let r = &folded.arena[change.after];
        out[0].uuid(&r.id);
        out[1].text(&r.name);
        out[2].jsonb_with(|buf| orjson_config(buf, &r.config));
        out[3].text(r.status.name());
        out[4].int8(r.version);
        if existing {
            out[5].timestamptz(r.updated_at);
            out[6].uuid(&r.last_command_id);
            out[7].opt_timestamptz(r.deleted_at);
            out[8].int8(change.before_version.expect("existing"));
        } else {
            out[5].timestamptz(r.created_at);
            out[6].timestamptz(r.updated_at);
            out[7].uuid(&r.last_command_id);
            out[8].opt_timestamptz(r.deleted_at);
        }
    }
    out.into_iter().map(Array::finish).collect()
}

/// The ``park`` statement's arrays and ``park_resources``'s one array.
type Parking = (Vec<Vec<u8>>, Vec<u8>);

fn park(items: &[Item], folded: &Folded) -> Result<Option<Parking>, String> {
    let parked: Vec<(&Item, &str, &str)> = items
        .iter()
        .zip(&folded.outcomes)
        .filter_map(|(item, (o, _))| match o {
            Outcome::Parked { code, error } => Some((item, *code, error.as_str())),
            _ => None,
        })
        .collect();
    if parked.is_empty() {
        return Ok(None);
    }
    let mut cols = [
        Array::new(Elem::Uuid),
        Array::new(Elem::Uuid),
        Array::new(Elem::Text),
        Array::new(Elem::Bytea),
        Array::new(Elem::Text),
        Array::new(Elem::Int4),
        Array::new(Elem::Int8),
        Array::new(Elem::Text),
        Array::new(Elem::Text),
    ];
    let mut resources = Array::new(Elem::Uuid);
    for (item, code, error) in parked {
        let c = item.command;
        cols[0].uuid(&c.command_id);
        cols[1].uuid(&c.resource_id);
        cols[2].text(c.kind.name());
        cols[3].bytea_with(|buf| command_json(buf, c));
        cols[4].opt_text(item.traceparent);
        cols[5].int4(int4(item.partition, "partition")?);
        cols[6].int8(item.offset);
        cols[7].text(code);
        cols[8].text(error);
        resources.uuid(&c.resource_id);
    }
    Ok(Some((
        cols.into_iter().map(Array::finish).collect(),
        resources.finish(),
    )))
}

/// The ``insert_outbox`` columns, one row at a time.
struct OutboxColumns<'s> {
    cols: [Array; 7],
    rows: Vec<OutboxRow>,
    settings: &'s OutboxSettings<'s>,
}

impl OutboxColumns<'_> {
    /// A rejection's payload (framing and Avro body), appended to the payload column.
    fn rejection(
        &mut self,
        id: &Uuid,
        c: &Command,
        code: &str,
        message: &str,
        now: i64,
    ) -> (usize, usize) {
        let prefix = self.settings.rejection_prefix;
        self.cols[4].bytea_with(|buf| {
            buf.extend_from_slice(prefix);
            rejection_body(buf, id, c, code, message, now);
        })
    }

    /// The row's other columns, once its payload is in place.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: Uuid,
        c: &Command,
        type_name: &'static str,
        rejection: bool,
        occurred_at: i64,
        payload: (usize, usize),
        traceparent: Option<&str>,
    ) {
        let cols = &mut self.cols;
        cols[0].uuid(&id);
        cols[1].raw(&text(&c.resource_id));
        cols[2].text(type_name);
        cols[3].text(if rejection {
            self.settings.rejections_topic
        } else {
            self.settings.events_topic
        });
        cols[5].timestamptz(occurred_at);
        cols[6].opt_text(traceparent);
        self.rows.push(OutboxRow {
            id,
            aggregate: c.resource_id,
            type_name,
            rejection,
            payload,
            occurred_at,
            traceparent: traceparent.map(str::to_owned),
        });
    }
}

/// The outbox rows: the decisions' events and refusals in decision order, then the refusals
/// of reused ids (``stored_rows``).
fn outbox(
    items: &[Item],
    folded: &Folded,
    refused: &[Refusal],
    now: i64,
    settings: &OutboxSettings,
) -> (Vec<Vec<u8>>, Vec<OutboxRow>) {
    let n = items.len() + refused.len();
    let mut out = OutboxColumns {
        cols: [
            Array::with_capacity(Elem::Uuid, n * 20),
            Array::with_capacity(Elem::Text, n * 40),
            Array::with_capacity(Elem::Text, n * 20),
            Array::new(Elem::Text),
            Array::with_capacity(Elem::Bytea, n * 200),
            Array::with_capacity(Elem::Timestamptz, n * 12),
            Array::new(Elem::Text),
        ],
        rows: Vec::new(),
        settings,
    };
    for (item, (outcome, state)) in items.iter().zip(&folded.outcomes) {
        let c = item.command;
        match outcome {
            Outcome::Applied {
                change: Some((kind, changed)),
                ..
            } => {
                let state = &folded.arena[state.expect("an applied change has a state")];
                let id = derived(&EVENT_NAMESPACE, &c.command_id);
                let view = EventView {
                    event_id: &id,
                    kind: *kind,
                    command: c,
                    state,
                    changed,
                };
                let payload = out.cols[4].bytea_with(|buf| {
                    buf.extend_from_slice(settings.event_prefix);
                    event_body(buf, &view);
                });
                let at = state.updated_at;
                out.push(
                    id,
                    c,
                    kind.type_name(),
                    false,
                    at,
                    payload,
                    item.traceparent,
                );
            }
            Outcome::Rejected { code, message } => {
                let id = derived(&REJECTION_NAMESPACE, &c.command_id);
                let payload = out.rejection(&id, c, code, message, now);
                out.push(id, c, REJECTED, true, now, payload, item.traceparent);
            }
            _ => {}
        }
    }
    for r in refused {
        let c = r.command;
        let id = reuse_rejection_id(&c.command_id, &c.resource_id, c.kind.name());
        let payload = out.rejection(&id, c, COMMAND_ID_REUSED, &r.message, now);
        out.push(id, c, REJECTED, true, now, payload, r.traceparent);
    }
    (out.cols.into_iter().map(Array::finish).collect(), out.rows)
}

const REJECTED: &str = "CommandRejected";

/// ``PostgresBatchUnit.write(outcomes, changes, now)`` for a unit whose claim found
/// ``items`` fresh, ``known`` already recorded (with the deliveries to add to their
/// counters) and ``refused`` deliveries reusing ids.
pub fn write(
    items: &[Item],
    known: &[(Uuid, i64)],
    refused: &[Refusal],
    folded: &Folded,
    now: i64,
    settings: &OutboxSettings,
) -> Result<Written, String> {
    let mut statements = Vec::new();
    let mut expected = (0, 0, 0);
    if !items.is_empty() {
        statements.push((INSERT_OUTCOMES, insert_outcomes(items, folded)?));
        expected.0 = items.len();
    }
    if !known.is_empty() {
        let mut sorted: Vec<&(Uuid, i64)> = known.iter().collect();
        sorted.sort_by_key(|k| k.0);
        let mut ids = Array::new(Elem::Uuid);
        let mut counts = Array::new(Elem::Int4);
        for (id, deliveries) in sorted {
            ids.uuid(id);
            counts.int4(int4(*deliveries, "duplicate_deliveries")?);
        }
        statements.push((BUMP_DUPLICATES, vec![ids.finish(), counts.finish()]));
    }
    let new = folded
        .changes
        .iter()
        .filter(|(_, c)| c.before_version.is_none())
        .count();
    let existing = folded.changes.len() - new;
    if new > 0 {
        statements.push((INSERT_NEW, resources(folded, false)));
        expected.1 = new;
    }
    if existing > 0 {
        statements.push((UPDATE_EXISTING, resources(folded, true)));
        expected.2 = existing;
    }
    if let Some((cols, resources)) = park(items, folded)? {
        statements.push((PARK, cols));
        statements.push((PARK_RESOURCES, vec![resources]));
    }
    let (cols, rows) = outbox(items, folded, refused, now, settings);
    let mut outbox_statement = None;
    if !rows.is_empty() {
        outbox_statement = Some(statements.len());
        statements.push((INSERT_OUTBOX, cols));
    }
    Ok(Written {
        statements,
        expected,
        outbox: rows,
        outbox_statement,
    })
}
