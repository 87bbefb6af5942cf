//! Python values in and out: UUIDs, datetimes (as microseconds since the Unix epoch, by
//! Python's own arithmetic, so any time zone works as it does in the reference), header
//! values, loaded rows and supplied commands.

use crate::domain::{Command, Config, Kind, Resource, Status};
use crate::uuid::Uuid;
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

pub struct Helpers {
    epoch: Py<PyAny>,
    micro: Py<PyAny>,
    pub uuid: Py<PyAny>,
    bytes: Py<PyAny>,
}

static HELPERS: PyOnceLock<Helpers> = PyOnceLock::new();

pub fn helpers(py: Python<'_>) -> PyResult<&'static Helpers> {
    HELPERS.get_or_try_init(py, || {
        let datetime = py.import("datetime")?;
        let utc = datetime.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        let epoch = datetime
            .getattr("datetime")?
            .call((1970, 1, 1), Some(&kwargs))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("microseconds", 1)?;
        let micro = datetime.getattr("timedelta")?.call((), Some(&kwargs))?;
        Ok::<_, PyErr>(Helpers {
            epoch: epoch.unbind(),
            micro: micro.unbind(),
            uuid: py.import("uuid")?.getattr("UUID")?.unbind(),
            bytes: py.import("builtins")?.getattr("bytes")?.unbind(),
        })
    })
}

/// `(at - EPOCH) // timedelta(microseconds=1)`, the reference's `_micros`.
pub fn micros(at: &Bound<'_, PyAny>) -> PyResult<i64> {
    let h = helpers(at.py())?;
    at.sub(h.epoch.bind(at.py()))?
        .floor_div(h.micro.bind(at.py()))?
        .extract()
}

pub fn opt_micros(at: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if at.is_none() {
        Ok(None)
    } else {
        micros(at).map(Some)
    }
}

/// A `uuid.UUID` (its `bytes`) or 16 bytes.
pub fn uuid_of(value: &Bound<'_, PyAny>) -> PyResult<Uuid> {
    let raw = if let Ok(b) = value.cast::<PyBytes>() {
        b.clone()
    } else {
        value
            .getattr(intern!(value.py(), "bytes"))?
            .cast_into::<PyBytes>()?
    };
    raw.as_bytes()
        .try_into()
        .map_err(|_| PyValueError::new_err("a UUID is 16 bytes"))
}

pub fn opt_string(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        Ok(None)
    } else {
        Ok(Some(value.cast::<PyString>()?.to_str()?.to_owned()))
    }
}

/// `headers._as_bytes(value)`: bytes as they are, text as UTF-8 (`b"\xff"` when it cannot
/// be), anything else through `bytes()` (`b"\xff"` when that raises TypeError/ValueError).
pub fn header_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if value.is_exact_instance_of::<PyBytes>() {
        return Ok(value.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(match text.to_str() {
            Ok(t) => t.as_bytes().to_vec(),
            Err(_) => vec![0xff],
        });
    }
    let py = value.py();
    match helpers(py)?.bytes.bind(py).call1((value,)) {
        Ok(b) => Ok(b.cast::<PyBytes>()?.as_bytes().to_vec()),
        Err(e) if e.is_instance_of::<PyTypeError>(py) || e.is_instance_of::<PyValueError>(py) => {
            Ok(vec![0xff])
        }
        Err(e) => Err(e),
    }
}

/// `name, value = pair`.
pub fn unpack_pair<'py>(
    pair: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(t) = pair.cast::<PyTuple>() {
        if t.len() == 2 {
            return Ok((t.get_item(0)?, t.get_item(1)?));
        }
    } else if let Ok(l) = pair.cast::<PyList>() {
        if l.len() == 2 {
            return Ok((l.get_item(0)?, l.get_item(1)?));
        }
    }
    let items: Vec<Bound<'py, PyAny>> = pair.try_iter()?.collect::<PyResult<_>>()?;
    match <[Bound<'py, PyAny>; 2]>::try_from(items) {
        Ok([a, b]) => Ok((a, b)),
        Err(items) => Err(PyValueError::new_err(format!(
            "a header is a (name, value) pair, not {} values",
            items.len()
        ))),
    }
}

/// A mapping of strings, in its iteration order.
pub fn config_of(value: &Bound<'_, PyAny>) -> PyResult<Config> {
    let items = value.call_method0(intern!(value.py(), "items"))?;
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let (k, v) = unpack_pair(&item?)?;
        out.push((
            k.cast::<PyString>()?.to_str()?.to_owned(),
            v.cast::<PyString>()?.to_str()?.to_owned(),
        ));
    }
    Ok(out)
}

/// A row of the `LOAD` query: `id, name, config, status, version, created_at, updated_at,
/// last_command_id, deleted_at` (`_row_to_resource`).
pub fn resource_of(row: &Bound<'_, PyAny>) -> PyResult<Resource> {
    let get = |i: usize| row.get_item(i);
    let status_text = get(3)?;
    let status_text = status_text.cast::<PyString>()?.to_str()?.to_owned();
    let status = Status::from_name(&status_text).ok_or_else(|| PyKeyError::new_err(status_text))?;
    Ok(Resource {
        id: uuid_of(&get(0)?)?,
        name: get(1)?.cast::<PyString>()?.to_str()?.to_owned(),
        config: config_of(&get(2)?)?,
        status,
        version: get(4)?.extract()?,
        created_at: micros(&get(5)?)?,
        updated_at: micros(&get(6)?)?,
        last_command_id: uuid_of(&get(7)?)?,
        deleted_at: opt_micros(&get(8)?)?,
    })
}

/// A row of the `KNOWN` query: `command_id, resource_id, command_type` (whose a recorded id
/// is).
pub fn recorded_of(row: &Bound<'_, PyAny>) -> PyResult<(Uuid, (Uuid, Kind))> {
    let kind = row.get_item(2)?;
    let kind = kind.cast::<PyString>()?.to_str()?;
    let kind = Kind::from_name(kind)
        .ok_or_else(|| PyValueError::new_err(format!("not a command type: {kind}")))?;
    Ok((
        uuid_of(&row.get_item(0)?)?,
        (uuid_of(&row.get_item(1)?)?, kind),
    ))
}

/// A command object of `domain/commands.py` (what the Python codec returns).
pub fn command_of(c: &Bound<'_, PyAny>) -> PyResult<Command> {
    let py = c.py();
    let type_name = c.getattr(intern!(py, "type"))?;
    let type_name = type_name.cast::<PyString>()?.to_str()?.to_owned();
    let kind = Kind::from_name(&type_name)
        .ok_or_else(|| PyValueError::new_err(format!("not a command type: {type_name}")))?;
    let expected = c.getattr(intern!(py, "expected_version"))?;
    let mut command = Command {
        kind,
        command_id: uuid_of(&c.getattr(intern!(py, "command_id"))?)?,
        resource_id: uuid_of(&c.getattr(intern!(py, "resource_id"))?)?,
        issued_at: micros(&c.getattr(intern!(py, "issued_at"))?)?,
        expected_version: if expected.is_none() {
            None
        } else {
            Some(expected.extract()?)
        },
        correlation_id: opt_string(&c.getattr(intern!(py, "correlation_id"))?)?,
        issued_by: opt_string(&c.getattr(intern!(py, "issued_by"))?)?,
        name: None,
        config: None,
        status: None,
    };
    if kind != Kind::Delete {
        command.name = opt_string(&c.getattr(intern!(py, "name"))?)?;
        let config = c.getattr(intern!(py, "config"))?;
        command.config = if config.is_none() {
            None
        } else {
            Some(config_of(&config)?)
        };
        let status = c.getattr(intern!(py, "status"))?;
        command.status = match opt_string(&status)? {
            None => None,
            Some(s) => Some(
                Status::from_name(&s)
                    .ok_or_else(|| PyValueError::new_err(format!("not a status: {s}")))?,
            ),
        };
        if kind == Kind::Create
            && (command.name.is_none() || command.config.is_none() || command.status.is_none())
        {
            return Err(PyValueError::new_err(
                "a create has a name, a config and a status",
            ));
        }
    }
    Ok(command)
}
