//! `phoenix_resources_native`: the worker's hot path, compiled. Each function mirrors a part
//! of the Python reference (named in its module's documentation) byte for byte; the Python
//! code stays the reference, and `tests/native` checks the two against each other.

mod avro;
mod batch;
mod convert;
mod decode;
mod domain;
mod encode;
mod headers;
mod partitioner;
mod pgarray;
mod pytext;
mod statements;
mod uuid;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// ``arrays.encode(Kind(values))`` for one of the typed arrays of
/// ``adapters/postgres/arrays.py`` (``kind`` is its class name, e.g. ``"UuidArray"``).
#[pyfunction]
fn pg_array<'py>(
    py: Python<'py>,
    kind: &str,
    values: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    use pgarray::{Array, Elem};
    let elem = Elem::from_class_name(kind)
        .ok_or_else(|| PyValueError::new_err(format!("no array kind {kind}")))?;
    let mut a = Array::new(elem);
    for v in values.try_iter()? {
        let v = v?;
        if v.is_none() {
            a.null();
            continue;
        }
        match elem {
            Elem::Uuid => a.uuid(&convert::uuid_of(&v)?),
            Elem::Text => a.text(v.cast::<PyString>()?.to_str()?),
            Elem::Bytea => {
                a.raw(v.cast::<PyBytes>()?.as_bytes());
            }
            Elem::Jsonb => {
                let text = v.cast::<PyString>()?.to_str()?.to_owned();
                a.jsonb_with(|buf| buf.extend_from_slice(text.as_bytes()));
            }
            Elem::Int8 => a.int8(v.extract()?),
            Elem::Int4 => a.int4(v.extract()?),
            Elem::Timestamptz => a.timestamptz(convert::micros(&v)?),
        }
    }
    Ok(PyBytes::new(py, &a.finish()))
}

/// ``domain.ids.name_based_uuid(namespace, name)`` as 16 bytes.
#[pyfunction]
fn name_based_uuid<'py>(
    py: Python<'py>,
    namespace: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &uuid::uuid5(&convert::uuid_of(namespace)?, name.as_bytes()),
    ))
}

#[pymodule]
fn phoenix_resources_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "COMMAND_FINGERPRINT",
        PyBytes::new(py, &avro::COMMAND_FINGERPRINT),
    )?;
    m.add(
        "EVENT_FINGERPRINT",
        PyBytes::new(py, &avro::EVENT_FINGERPRINT),
    )?;
    m.add(
        "REJECTION_FINGERPRINT",
        PyBytes::new(py, &avro::REJECTION_FINGERPRINT),
    )?;
    m.add(
        "EVENT_HEADER",
        PyBytes::new(py, &batch::single_object_header(avro::EVENT_FINGERPRINT)),
    )?;
    m.add(
        "REJECTION_HEADER",
        PyBytes::new(
            py,
            &batch::single_object_header(avro::REJECTION_FINGERPRINT),
        ),
    )?;
    m.add_function(wrap_pyfunction!(batch::decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batch::decode_messages, m)?)?;
    m.add_function(wrap_pyfunction!(pg_array, m)?)?;
    m.add_function(wrap_pyfunction!(name_based_uuid, m)?)?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<batch::Plan>()?;
    m.add_class::<batch::Written>()?;
    Ok(())
}
