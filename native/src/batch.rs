//! The Python-facing classes: a decoded [`Batch`], the [`Plan`] of its claim, and what a fold
//! [`Written`] hands the transaction. See `native/README.md` for the protocol.

use crate::convert::{
    command_of, header_bytes, helpers, micros, recorded_of, resource_of, unpack_pair, uuid_of,
};
use crate::decode::{self, Decoded, Options};
use crate::domain::{self, Command, Kind, Outcome};
use crate::headers::{self, Headers};
use crate::partitioner;
use crate::pytext::isoformat_utc;
use crate::statements::{self, Item, OutboxRow, OutboxSettings};
use crate::uuid::{text, text_string, IdMap, IdSet, Uuid};
use pyo3::exceptions::{PyIndexError, PyOverflowError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::collections::{HashMap, HashSet};

enum State {
    Command(Command, bool),
    Dead(String, String),
    Fallback(Option<Vec<u8>>),
}

struct Record {
    partition: i64,
    offset: i64,
    /// ``murmur2`` of the record's key (``None``: no key).
    key_hash: Option<i32>,
    headers: Headers,
    state: State,
}

/// A batch of records, decoded; records the native reader could not take wait for
/// [`Batch::supply`] or [`Batch::refuse`].
#[pyclass(module = "phoenix_resources_native")]
pub struct Batch {
    records: Vec<Record>,
}

fn read_headers(pairs: &Bound<'_, PyAny>) -> PyResult<Headers> {
    if pairs.is_none() {
        return Ok(Headers::default());
    }
    let mut content: Option<Bound<'_, PyAny>> = None;
    let mut trace: Option<Bound<'_, PyAny>> = None;
    for pair in pairs.try_iter()? {
        let (name, value) = unpack_pair(&pair?)?;
        let Ok(name) = name.cast::<PyString>() else {
            continue;
        };
        let Ok(name) = name.to_str() else { continue };
        match headers::which(name) {
            Some(true) => content = Some(value),
            Some(false) => trace = Some(value),
            None => {}
        }
    }
    let content = content.map(|v| header_value(&v)).transpose()?;
    let trace = trace.map(|v| header_value(&v)).transpose()?;
    Ok(headers::read(
        content.as_ref().map(|v| v.as_deref()),
        trace.as_ref().map(|v| v.as_deref()),
    ))
}

/// A present header's value: `None` for a header without one (a null value).
fn header_value(value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if value.is_none() {
        Ok(None)
    } else {
        header_bytes(value).map(Some)
    }
}

fn options(
    max_bytes: usize,
    known_fingerprints: Option<Vec<Vec<u8>>>,
    registry: bool,
    registry_ids: Option<Vec<u32>>,
) -> PyResult<Options> {
    let mut fingerprints = HashSet::new();
    for fp in known_fingerprints.unwrap_or_default() {
        let fp: [u8; 8] = fp
            .try_into()
            .map_err(|_| PyValueError::new_err("a fingerprint is 8 bytes"))?;
        fingerprints.insert(fp);
    }
    Ok(Options {
        max_bytes,
        known_fingerprints: fingerprints,
        registry,
        registry_ids: registry_ids.unwrap_or_default().into_iter().collect(),
    })
}

fn key_matches(key: Option<&[u8]>, command: &Command) -> bool {
    key == Some(&text(&command.resource_id)[..])
}

fn record(
    value: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    pairs: &Bound<'_, PyAny>,
    partition: &Bound<'_, PyAny>,
    offset: &Bound<'_, PyAny>,
    options: &Options,
) -> PyResult<Record> {
    let py = value.py();
    let headers = read_headers(pairs)?;
    let value = if value.is_none() {
        None
    } else {
        Some(value.cast::<PyBytes>()?.as_bytes())
    };
    let key = key.cast::<PyBytes>().ok().map(|k| k.as_bytes());
    let uuid_class = helpers(py)?.uuid.bind(py);
    let mut slow = |text: &str| -> PyResult<Option<Uuid>> {
        match uuid_class.call1((text,)) {
            Ok(u) => uuid_of(&u).map(Some),
            Err(e) if e.is_instance_of::<PyValueError>(py) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let state = match decode::decode(value, headers.content_type.as_deref(), options, &mut slow)? {
        Decoded::Command(c) => {
            let matches = key_matches(key, &c);
            State::Command(c, matches)
        }
        Decoded::Error(reason, detail) => State::Dead(reason.to_owned(), detail),
        Decoded::Fallback => State::Fallback(key.map(<[u8]>::to_vec)),
    };
    let offset = if offset.is_none() {
        0
    } else {
        offset.extract()?
    };
    Ok(Record {
        partition: partition.extract()?,
        offset,
        key_hash: key.map(partitioner::murmur2),
        headers,
        state,
    })
}

/// The partition the record's key belongs in, when it is not the record's own.
fn home(r: &Record, partitions: i64) -> Option<i64> {
    let home = partitioner::partition_of(r.key_hash?, partitions);
    (home != r.partition).then_some(home)
}

fn items<'py>(seq: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    seq.try_iter()?.collect()
}

/// Decode a batch of records given as parallel sequences (see the README).
#[pyfunction]
#[pyo3(signature = (values, keys, headers, partitions, offsets, *, max_bytes,
                    known_fingerprints=None, registry=false, registry_ids=None))]
#[allow(clippy::too_many_arguments)]
pub fn decode_batch(
    values: &Bound<'_, PyAny>,
    keys: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
    partitions: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    max_bytes: usize,
    known_fingerprints: Option<Vec<Vec<u8>>>,
    registry: bool,
    registry_ids: Option<Vec<u32>>,
) -> PyResult<Batch> {
    let options = options(max_bytes, known_fingerprints, registry, registry_ids)?;
    let (values, keys, headers, partitions, offsets) = (
        items(values)?,
        items(keys)?,
        items(headers)?,
        items(partitions)?,
        items(offsets)?,
    );
    let n = values.len();
    if [keys.len(), headers.len(), partitions.len(), offsets.len()]
        .iter()
        .any(|&m| m != n)
    {
        return Err(PyValueError::new_err(
            "values, keys, headers, partitions and offsets differ in length",
        ));
    }
    let mut records = Vec::with_capacity(n);
    for i in 0..n {
        records.push(record(
            &values[i],
            &keys[i],
            &headers[i],
            &partitions[i],
            &offsets[i],
            &options,
        )?);
    }
    Ok(Batch { records })
}

/// Decode consumed messages (``confluent_kafka.Message``: ``value()``, ``key()``,
/// ``headers()``, ``partition()``, ``offset()``).
#[pyfunction]
#[pyo3(signature = (messages, *, max_bytes, known_fingerprints=None, registry=false,
                    registry_ids=None))]
pub fn decode_messages(
    messages: &Bound<'_, PyAny>,
    max_bytes: usize,
    known_fingerprints: Option<Vec<Vec<u8>>>,
    registry: bool,
    registry_ids: Option<Vec<u32>>,
) -> PyResult<Batch> {
    let py = messages.py();
    let options = options(max_bytes, known_fingerprints, registry, registry_ids)?;
    let mut records = Vec::new();
    for m in messages.try_iter()? {
        let m = m?;
        records.push(record(
            &m.call_method0(intern!(py, "value"))?,
            &m.call_method0(intern!(py, "key"))?,
            &m.call_method0(intern!(py, "headers"))?,
            &m.call_method0(intern!(py, "partition"))?,
            &m.call_method0(intern!(py, "offset"))?,
            &options,
        )?);
    }
    Ok(Batch { records })
}

/// ``micros / 10**6`` as Python's true division of integers (correctly rounded).
fn seconds(py: Python<'_>, micros: i64) -> PyResult<f64> {
    if micros.unsigned_abs() < (1u64 << 53) {
        return Ok(micros as f64 / 1e6); // both exact in a double: one rounding, like Python
    }
    micros.into_pyobject(py)?.div(1_000_000)?.extract()
}

fn command_dict<'py>(
    py: Python<'py>,
    c: &Command,
    r: &Record,
    matches: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("type", c.kind.name())?;
    d.set_item("command_id", PyBytes::new(py, &c.command_id))?;
    d.set_item("command_id_text", text_string(&c.command_id))?;
    d.set_item("resource_id", PyBytes::new(py, &c.resource_id))?;
    d.set_item("resource_id_text", text_string(&c.resource_id))?;
    d.set_item("issued_at", c.issued_at)?;
    d.set_item("expected_version", c.expected_version)?;
    d.set_item("correlation_id", c.correlation_id.as_deref())?;
    d.set_item("issued_by", c.issued_by.as_deref())?;
    d.set_item("name", c.name.as_deref())?;
    let config = match &c.config {
        None => None,
        Some(cfg) => Some(PyList::new(
            py,
            cfg.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?),
    };
    d.set_item("config", config)?;
    d.set_item("status", c.status.map(|s| s.name()))?;
    d.set_item("key_matches", matches)?;
    d.set_item("partition", r.partition)?;
    d.set_item("offset", r.offset)?;
    d.set_item("traceparent", r.headers.traceparent.as_deref())?;
    Ok(d)
}

impl Batch {
    fn get(&self, i: usize) -> PyResult<&Record> {
        self.records
            .get(i)
            .ok_or_else(|| PyIndexError::new_err(format!("no record {i}")))
    }

    fn waiting(&mut self, i: usize) -> PyResult<&mut Record> {
        let r = self
            .records
            .get_mut(i)
            .ok_or_else(|| PyIndexError::new_err(format!("no record {i}")))?;
        if !matches!(r.state, State::Fallback(_)) {
            return Err(PyValueError::new_err(format!(
                "record {i} does not wait for Python"
            )));
        }
        Ok(r)
    }
}

#[pymethods]
impl Batch {
    fn __len__(&self) -> usize {
        self.records.len()
    }

    /// ``[(index, reason, detail)]`` of the records that are not commands, in order.
    fn dead_letters(&self) -> Vec<(usize, String, String)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.state {
                State::Dead(reason, detail) => Some((i, reason.clone(), detail.clone())),
                _ => None,
            })
            .collect()
    }

    /// Indices of the records the Python codec must decode (then ``supply`` or ``refuse``).
    fn fallbacks(&self) -> Vec<usize> {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, State::Fallback(_)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Indices of the records that are commands, in order.
    /// The commands (record indices) whose record is not in its key's partition among
    /// ``partitions`` (``wire/partitioner.partition_for``).
    fn misplaced(&self, partitions: i64) -> PyResult<Vec<usize>> {
        if partitions < 1 {
            return Err(PyValueError::new_err("a topic has at least one partition"));
        }
        Ok(self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, State::Command(..)))
            .filter(|(_, r)| home(r, partitions).is_some())
            .map(|(i, _)| i)
            .collect())
    }

    fn commands(&self) -> Vec<usize> {
        self.records
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, State::Command(..)))
            .map(|(i, _)| i)
            .collect()
    }

    /// ``(content_type, traceparent, invalid)`` as ``command_headers`` reads them.
    fn headers<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyTuple>> {
        let h = &self.get(i)?.headers;
        let invalid = PyTuple::new(py, h.invalid())?;
        PyTuple::new(
            py,
            [
                h.content_type.as_deref().into_pyobject(py)?.into_any(),
                h.traceparent.as_deref().into_pyobject(py)?.into_any(),
                invalid.into_any(),
            ],
        )
    }

    /// How many records had each header present but unusable (``CommandHeaders.invalid``).
    fn invalid_header_counts(&self) -> HashMap<&'static str, usize> {
        let mut out = HashMap::new();
        for r in &self.records {
            for name in r.headers.invalid() {
                *out.entry(name).or_insert(0) += 1;
            }
        }
        out
    }

    /// The decoded command of record ``i`` as a dict, or ``None``.
    fn command<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Option<Bound<'py, PyDict>>> {
        let r = self.get(i)?;
        match &r.state {
            State::Command(c, matches) => command_dict(py, c, r, *matches).map(Some),
            _ => Ok(None),
        }
    }

    /// ``(reason, detail)`` of record ``i`` when it is not a command, else ``None``.
    fn error(&self, i: usize) -> PyResult<Option<(String, String)>> {
        Ok(match &self.get(i)?.state {
            State::Dead(reason, detail) => Some((reason.clone(), detail.clone())),
            _ => None,
        })
    }

    /// Record ``i`` decoded by the Python codec into ``command`` (a ``domain.commands``
    /// object); its key is checked here.
    fn supply(&mut self, i: usize, command: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = command_of(command)?;
        let r = self.waiting(i)?;
        let State::Fallback(key) = &r.state else {
            unreachable!()
        };
        let matches = key_matches(key.as_deref(), &c);
        r.state = State::Command(c, matches);
        Ok(())
    }

    /// Record ``i`` refused by the Python codec (its ``DecodeError``).
    fn refuse(&mut self, i: usize, reason: String, detail: String) -> PyResult<()> {
        self.waiting(i)?.state = State::Dead(reason, detail);
        Ok(())
    }

    /// ``issued_at.timestamp()`` of every command of the batch, in order, but those whose
    /// id is in ``exclude`` (``WorkerWatch._issued``: the batch's commands less the known
    /// duplicates).
    #[pyo3(signature = (exclude=None))]
    fn issued_seconds(
        &self,
        py: Python<'_>,
        exclude: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<f64>> {
        let mut skip = IdSet::default();
        if let Some(ids) = exclude {
            for id in ids.try_iter()? {
                let id = id?;
                let parsed = match id.cast::<PyString>() {
                    Ok(text) => crate::uuid::parse_canonical(text.to_str()?.as_bytes())
                        .ok_or_else(|| PyValueError::new_err("ids as text are canonical"))?,
                    Err(_) => uuid_of(&id)?,
                };
                skip.insert(parsed);
            }
        }
        let mut out = Vec::new();
        for r in &self.records {
            if let State::Command(c, _) = &r.state {
                if !skip.contains(&c.command_id) {
                    out.push(seconds(py, c.issued_at)?);
                }
            }
        }
        Ok(out)
    }

    /// The claim of the commands at ``select`` (all of them, in order, by default): the first
    /// delivery of each command id, with how often it repeats in the selection.
    #[pyo3(signature = (select=None))]
    fn plan(slf: &Bound<'_, Self>, select: Option<Vec<usize>>) -> PyResult<Plan> {
        let batch = slf.borrow();
        let select = match select {
            Some(s) => s,
            None => batch.commands(),
        };
        let command = |i: usize| match &batch.records[i].state {
            State::Command(c, _) => c,
            _ => unreachable!(),
        };
        let mut first: IdMap<usize> = IdMap::default();
        let mut claims: Vec<Claim> = Vec::new();
        for i in select {
            let State::Command(c, _) = &batch.get(i)?.state else {
                return Err(PyValueError::new_err(format!(
                    "record {i} is not a command"
                )));
            };
            match first.get(&c.command_id) {
                Some(&at) => {
                    let claim = &mut claims[at];
                    let head = command(claim.index);
                    if head.resource_id == c.resource_id && head.kind == c.kind {
                        claim.repeats += 1;
                    } else {
                        claim.reused.push(i);
                    }
                }
                None => {
                    first.insert(c.command_id, claims.len());
                    claims.push(Claim {
                        index: i,
                        repeats: 0,
                        reused: Vec::new(),
                    });
                }
            }
        }
        let claim_ids = statements::known_param(claims.iter().map(|c| command(c.index).command_id));
        let resource_ids = statements::load_param(
            claims
                .iter()
                .map(|c| command(c.index).resource_id)
                .collect(),
        );
        Ok(Plan {
            batch: slf.clone().unbind(),
            claims,
            claim_ids,
            resource_ids,
        })
    }
}

/// ``Claim``: the first delivery of a command id (a record index), how often the same
/// command (resource and type) repeats, and the deliveries reusing the id (in order).
struct Claim {
    index: usize,
    repeats: i64,
    reused: Vec<usize>,
}

/// The claim of a batch: the ``KNOWN`` and ``LOAD`` parameters, then :meth:`fold`.
#[pyclass(module = "phoenix_resources_native", frozen)]
pub struct Plan {
    batch: Py<Batch>,
    claims: Vec<Claim>,
    claim_ids: Vec<u8>,
    resource_ids: Vec<u8>,
}

/// What the read round trip returned, and the batch's clock, in Rust values.
struct Inputs {
    /// Whose each recorded id is: its resource and command type.
    known: IdMap<(Uuid, Kind)>,
    parked: IdSet,
    states: IdMap<domain::Resource>,
    failed: IdMap<String>,
    now: i64,
    oldest: Option<(i64, String)>,
}

impl Inputs {
    fn read(
        known: &Bound<'_, PyAny>,
        parked: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        oldest: Option<&Bound<'_, PyAny>>,
        failed: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Inputs> {
        let py = now.py();
        let mut states = IdMap::default();
        for row in rows.try_iter()? {
            let r = resource_of(&row?)?;
            states.insert(r.id, r);
        }
        let mut failures = IdMap::default();
        if let Some(failed) = failed.filter(|f| !f.is_none()) {
            for item in failed.call_method0(intern!(py, "items"))?.try_iter()? {
                let (k, v) = unpack_pair(&item?)?;
                failures.insert(uuid_of(&k)?, v.cast::<PyString>()?.to_str()?.to_owned());
            }
        }
        // The retention's bound, and its text for CMD-008 messages (as Python writes it).
        let oldest = match oldest.filter(|o| !o.is_none()) {
            None => None,
            Some(o) => Some((
                micros(o)?,
                o.call_method0(intern!(py, "isoformat"))?.extract()?,
            )),
        };
        let mut recorded = IdMap::default();
        for row in known.try_iter()? {
            let (id, owner) = recorded_of(&row?)?;
            recorded.insert(id, owner);
        }
        Ok(Inputs {
            known: recorded,
            parked: set_of(Some(parked))?,
            states,
            failed: failures,
            now: micros(now)?,
            oldest,
        })
    }
}

fn set_of(values: Option<&Bound<'_, PyAny>>) -> PyResult<IdSet> {
    let mut out = IdSet::default();
    if let Some(values) = values {
        for v in values.try_iter()? {
            out.insert(uuid_of(&v?)?);
        }
    }
    Ok(out)
}

#[pymethods]
impl Plan {
    fn __len__(&self) -> usize {
        self.claims.len()
    }

    /// ``uuid[]``: the claims' command ids, in claim order (the ``KNOWN`` query's parameter).
    #[getter]
    fn claim_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.claim_ids)
    }

    /// ``uuid[]``: the claims' distinct resource ids, sorted (``PARKED_AMONG`` and ``LOAD``).
    #[getter]
    fn resource_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.resource_ids)
    }

    /// ``[(record index, repeats, [reused record indices])]`` of the claims, in claim order.
    fn claims(&self) -> Vec<(usize, i64, Vec<usize>)> {
        self.claims
            .iter()
            .map(|c| (c.index, c.repeats, c.reused.clone()))
            .collect()
    }

    /// Fold the claims against what the read round trip returned, and build the write's
    /// parameters (see the README).
    #[pyo3(signature = (known, parked, rows, now, *, oldest=None, failed=None, events_topic,
                        rejections_topic, event_prefix=None, rejection_prefix=None,
                        partitions=None))]
    #[allow(clippy::too_many_arguments)]
    fn fold(
        &self,
        py: Python<'_>,
        known: &Bound<'_, PyAny>,
        parked: &Bound<'_, PyAny>,
        rows: &Bound<'_, PyAny>,
        now: &Bound<'_, PyAny>,
        oldest: Option<&Bound<'_, PyAny>>,
        failed: Option<&Bound<'_, PyAny>>,
        events_topic: String,
        rejections_topic: String,
        event_prefix: Option<Vec<u8>>,
        rejection_prefix: Option<Vec<u8>>,
        partitions: Option<i64>,
    ) -> PyResult<Written> {
        if partitions.is_some_and(|n| n < 1) {
            return Err(PyValueError::new_err("a topic has at least one partition"));
        }
        let batch = self.batch.borrow(py);
        let inputs = Inputs::read(known, parked, rows, now, oldest, failed)?;
        let mut indices = Vec::new();
        let mut items = Vec::new();
        let mut fresh = Vec::new();
        let mut sorted = Sorted::default();
        for claim in &self.claims {
            let (i, repeats) = (claim.index, claim.repeats);
            let r = &batch.records[i];
            let (c, matches) = command_at(&batch, i)?;
            let recorded = inputs.known.get(&c.command_id).copied();
            match recorded {
                None => {
                    sorted.duplicates += repeats;
                    let misplaced = partitions
                        .and_then(|n| home(r, n).map(|h| domain::Misplaced(r.partition, h, n)));
                    fresh.push(domain::Fresh {
                        command: c,
                        key_matches: matches,
                        misplaced,
                    });
                    indices.push(i);
                    items.push(Item {
                        command: c,
                        partition: r.partition,
                        offset: r.offset,
                        traceparent: r.headers.traceparent.as_deref(),
                        repeats,
                    });
                }
                Some(owner) => sorted.delivered(&batch, i, owner, repeats + 1)?,
            }
            let owner = recorded.unwrap_or((c.resource_id, c.kind));
            for &j in &claim.reused {
                sorted.delivered(&batch, j, owner, 1)?;
            }
        }
        let mut repr = |s: &str| -> String {
            PyString::new(py, s)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default()
        };
        let folded = domain::fold(
            &inputs.states,
            &fresh,
            inputs.now,
            &inputs.parked,
            &inputs.failed,
            inputs.oldest.as_ref(),
            &mut repr,
        )
        .map_err(PyOverflowError::new_err)?;
        let settings = OutboxSettings {
            events_topic: &events_topic,
            rejections_topic: &rejections_topic,
            event_prefix: event_prefix.as_deref().unwrap_or(&EVENT_HEADER),
            rejection_prefix: rejection_prefix.as_deref().unwrap_or(&REJECTION_HEADER),
        };
        let written = statements::write(
            &items,
            &sorted.bumps,
            &sorted.refused,
            &folded,
            inputs.now,
            &settings,
        )
        .map_err(PyOverflowError::new_err)?;
        let (outcomes, mut report) = views(&indices, &items, folded.outcomes);
        report.duplicates = sorted.duplicates;
        report.duplicate_ids = sorted.bumps.iter().map(|(id, _)| text_string(id)).collect();
        for _ in &sorted.refused {
            report.rejected += 1;
            report.count(domain::code::COMMAND_ID_REUSED);
        }
        Ok(Written {
            outcomes,
            statements: written.statements,
            expected: written.expected,
            outbox: written.outbox,
            outbox_statement: written.outbox_statement,
            report,
            events_topic,
            rejections_topic,
        })
    }
}

/// The command of record ``i`` of a plan, and whether its key was its resource id.
fn command_at(batch: &Batch, i: usize) -> PyResult<(&Command, bool)> {
    match &batch.records[i].state {
        State::Command(c, matches) => Ok((c, *matches)),
        _ => Err(PyValueError::new_err(format!(
            "record {i} is no longer a command"
        ))),
    }
}

/// ``apply_batch.sort_claims``: the deliveries of recorded ids, and of ids reused in the
/// batch — each is its id's command (a duplicate) or refused (CMD-012).
#[derive(Default)]
struct Sorted<'a> {
    /// Deliveries to add to recorded commands' counters, in first-duplicate order.
    bumps: Vec<(Uuid, i64)>,
    /// Where each id is in ``bumps``.
    bumped: IdMap<usize>,
    refused: Vec<statements::Refusal<'a>>,
    duplicates: i64,
}

impl<'a> Sorted<'a> {
    /// ``deliveries`` of record ``i``'s command, whose id names ``owner``'s command.
    fn delivered(
        &mut self,
        batch: &'a Batch,
        i: usize,
        owner: (Uuid, Kind),
        deliveries: i64,
    ) -> PyResult<()> {
        let (c, _) = command_at(batch, i)?;
        match domain::check_same_command(c, owner) {
            Ok(()) => {
                self.duplicates += deliveries;
                match self.bumped.get(&c.command_id) {
                    Some(&at) => self.bumps[at].1 += deliveries,
                    None => {
                        self.bumped.insert(c.command_id, self.bumps.len());
                        self.bumps.push((c.command_id, deliveries));
                    }
                }
            }
            Err(domain::Violation(_, message)) => {
                for _ in 0..deliveries {
                    self.refused.push(statements::Refusal {
                        command: c,
                        traceparent: batch.records[i].headers.traceparent.as_deref(),
                        message: message.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The outcomes as ``Written.outcomes`` shows them, and the report's counts of them.
fn views(
    indices: &[usize],
    items: &[Item],
    outcomes: Vec<(Outcome, Option<usize>)>,
) -> (Vec<(usize, OutcomeView)>, Report) {
    let mut report = Report::default();
    let mut out = Vec::with_capacity(items.len());
    for ((i, item), (outcome, _)) in indices.iter().zip(items).zip(outcomes) {
        let view = match outcome {
            Outcome::Applied { version, change } => {
                if change.is_some() {
                    report.applied += 1;
                    report.events += 1;
                } else {
                    report.unchanged += 1;
                }
                let event = change.map(|(k, _)| k.type_name());
                OutcomeView {
                    kind: "applied",
                    code: None,
                    message: None,
                    version: Some(version),
                    event,
                }
            }
            Outcome::Rejected { code, message } => {
                report.rejected += 1;
                report.count(code);
                OutcomeView {
                    kind: "rejected",
                    code: Some(code),
                    message: Some(message),
                    version: None,
                    event: None,
                }
            }
            Outcome::Parked { code, error } => {
                report.parked += 1;
                report
                    .parked_ids
                    .push(text_string(&item.command.command_id));
                report.count(code);
                OutcomeView {
                    kind: "parked",
                    code: Some(code),
                    message: Some(error),
                    version: None,
                    event: None,
                }
            }
        };
        out.push((*i, view));
    }
    (out, report)
}

const EVENT_HEADER: [u8; 10] = single_object(crate::avro::EVENT_FINGERPRINT);
const REJECTION_HEADER: [u8; 10] = single_object(crate::avro::REJECTION_FINGERPRINT);

const fn single_object(fp: [u8; 8]) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[0] = crate::avro::SINGLE_OBJECT_MAGIC[0];
    out[1] = crate::avro::SINGLE_OBJECT_MAGIC[1];
    let mut i = 0;
    while i < 8 {
        out[2 + i] = fp[i];
        i += 1;
    }
    out
}

pub fn single_object_header(fp: [u8; 8]) -> [u8; 10] {
    single_object(fp)
}

struct OutcomeView {
    kind: &'static str,
    code: Option<&'static str>,
    message: Option<String>,
    version: Option<i64>,
    event: Option<&'static str>,
}

/// ``BatchReport``'s counts for one unit.
#[derive(Default)]
struct Report {
    applied: usize,
    rejected: usize,
    unchanged: usize,
    duplicates: i64,
    parked: usize,
    events: usize,
    duplicate_ids: Vec<String>,
    parked_ids: Vec<String>,
    codes: Vec<(&'static str, usize)>,
}

impl Report {
    fn count(&mut self, code: &'static str) {
        match self.codes.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => self.codes.push((code, 1)),
        }
    }
}

/// What one fold hands the transaction: outcomes, the write's parameters, the report.
#[pyclass(module = "phoenix_resources_native", frozen)]
pub struct Written {
    outcomes: Vec<(usize, OutcomeView)>,
    statements: Vec<(&'static str, Vec<Vec<u8>>)>,
    expected: (usize, usize, usize),
    outbox: Vec<OutboxRow>,
    outbox_statement: Option<usize>,
    report: Report,
    events_topic: String,
    rejections_topic: String,
}

impl Written {
    fn payload(&self, row: &OutboxRow) -> &[u8] {
        let column = &self.statements[self.outbox_statement.expect("rows")].1[4];
        &column[row.payload.0..row.payload.0 + row.payload.1]
    }
}

#[pymethods]
impl Written {
    /// ``[(record index, outcome, code, message, resulting_version, event type)]`` of the
    /// fresh commands, in fold order (``message`` is the parked error for ``parked``).
    #[allow(clippy::type_complexity)]
    fn outcomes(
        &self,
    ) -> Vec<(
        usize,
        &'static str,
        Option<&'static str>,
        Option<String>,
        Option<i64>,
        Option<&'static str>,
    )> {
        self.outcomes
            .iter()
            .map(|(i, o)| (*i, o.kind, o.code, o.message.clone(), o.version, o.event))
            .collect()
    }

    /// ``{statement: [array parameter, ...]}`` for the statements the write runs, in order.
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, arrays) in &self.statements {
            let list = PyList::new(py, arrays.iter().map(|a| PyBytes::new(py, a)))?;
            d.set_item(*name, list)?;
        }
        Ok(d)
    }

    /// The statements the write runs, in order.
    fn statements(&self) -> Vec<&'static str> {
        self.statements.iter().map(|(n, _)| *n).collect()
    }

    /// Row counts the claim insert, the insert and the update must report.
    #[getter]
    fn expected_rowcounts(&self) -> (usize, usize, usize) {
        self.expected
    }

    /// Whether the write inserts outbox rows (and so notifies the relay).
    #[getter]
    fn notify(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// ``BatchReport`` of this unit, as a dict.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = &self.report;
        let d = PyDict::new(py);
        d.set_item("applied", r.applied)?;
        d.set_item("rejected", r.rejected)?;
        d.set_item("unchanged", r.unchanged)?;
        d.set_item("duplicates", r.duplicates)?;
        d.set_item("parked", r.parked)?;
        d.set_item("events", r.events)?;
        d.set_item("duplicate_ids", &r.duplicate_ids)?;
        d.set_item("parked_ids", &r.parked_ids)?;
        let codes = PyDict::new(py);
        for (code, n) in &r.codes {
            codes.set_item(*code, n)?;
        }
        d.set_item("codes", codes)?;
        Ok(d)
    }

    /// The outbox rows: ``(id, aggregateid, type, topic, payload, occurred_at micros,
    /// traceparent)``.
    #[allow(clippy::type_complexity)]
    fn outbox<'py>(
        &self,
        py: Python<'py>,
    ) -> Vec<(
        Bound<'py, PyBytes>,
        String,
        &'static str,
        &str,
        Bound<'py, PyBytes>,
        i64,
        Option<String>,
    )> {
        self.outbox
            .iter()
            .map(|row| {
                let topic = if row.rejection {
                    self.rejections_topic.as_str()
                } else {
                    self.events_topic.as_str()
                };
                (
                    PyBytes::new(py, &row.id),
                    text_string(&row.aggregate),
                    row.type_name,
                    topic,
                    PyBytes::new(py, self.payload(row)),
                    row.occurred_at,
                    row.traceparent.clone(),
                )
            })
            .collect()
    }

    /// The CloudEvents headers the relay sends with each outbox row
    /// (``wire/cloudevents.py``, ``CloudEventHeaders.headers``),
    /// with ``ce_time`` in UTC (as the relay writes it when its session's TimeZone is UTC).
    fn cloudevents<'py>(
        &self,
        py: Python<'py>,
        source: &[u8],
    ) -> PyResult<Vec<Bound<'py, PyList>>> {
        let mut out = Vec::with_capacity(self.outbox.len());
        for row in &self.outbox {
            let mut headers: Vec<(&str, Vec<u8>)> = vec![
                ("ce_specversion", b"1.0".to_vec()),
                ("ce_id", text(&row.id).to_vec()),
                (
                    "ce_type",
                    format!("phoenix.resources.v1.{}", row.type_name).into_bytes(),
                ),
                ("ce_source", source.to_vec()),
                ("ce_subject", text(&row.aggregate).to_vec()),
                ("ce_time", isoformat_utc(row.occurred_at).into_bytes()),
                ("content-type", b"application/avro".to_vec()),
            ];
            if let Some(tp) = &row.traceparent {
                headers.push(("traceparent", tp.as_bytes().to_vec()));
            }
            out.push(PyList::new(
                py,
                headers.into_iter().map(|(n, v)| (n, PyBytes::new(py, &v))),
            )?);
        }
        Ok(out)
    }
}
