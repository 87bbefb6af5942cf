//! PostgreSQL's binary array format (`array_send`) for one-dimensional arrays, byte for byte
//! what `adapters/postgres/arrays.py` writes: a header (ndim 1, has-null flag, element oid,
//! length, lower bound 1), then each element as its length and its binary form (-1 for NULL);
//! an empty array is `ndim 0, no nulls, element oid`.

use crate::uuid::Uuid;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01 (UTC).
pub const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    Uuid,
    Text,
    Bytea,
    Jsonb,
    Int8,
    Int4,
    Timestamptz,
}

impl Elem {
    pub fn oid(self) -> u32 {
        match self {
            Elem::Uuid => 2950,
            Elem::Text => 25,
            Elem::Bytea => 17,
            Elem::Jsonb => 3802,
            Elem::Int8 => 20,
            Elem::Int4 => 23,
            Elem::Timestamptz => 1184,
        }
    }

    /// The name of the Python wrapper class (`arrays.UuidArray` …).
    pub fn class_name(self) -> &'static str {
        match self {
            Elem::Uuid => "UuidArray",
            Elem::Text => "TextArray",
            Elem::Bytea => "ByteaArray",
            Elem::Jsonb => "JsonbArray",
            Elem::Int8 => "Int8Array",
            Elem::Int4 => "Int4Array",
            Elem::Timestamptz => "TimestamptzArray",
        }
    }

    pub fn from_class_name(name: &str) -> Option<Elem> {
        [
            Elem::Uuid,
            Elem::Text,
            Elem::Bytea,
            Elem::Jsonb,
            Elem::Int8,
            Elem::Int4,
            Elem::Timestamptz,
        ]
        .into_iter()
        .find(|e| e.class_name() == name)
    }
}

const HEADER: usize = 20;

/// One array parameter, built element by element.
pub struct Array {
    elem: Elem,
    buf: Vec<u8>,
    len: i32,
    has_null: bool,
}

impl Array {
    pub fn new(elem: Elem) -> Array {
        Array::with_capacity(elem, 0)
    }

    pub fn with_capacity(elem: Elem, bytes: usize) -> Array {
        let mut buf = Vec::with_capacity(HEADER + bytes);
        buf.resize(HEADER, 0);
        Array {
            elem,
            buf,
            len: 0,
            has_null: false,
        }
    }

    fn head(&mut self, n: usize) {
        self.len += 1;
        self.buf.extend_from_slice(&(n as i32).to_be_bytes());
    }

    pub fn null(&mut self) {
        self.len += 1;
        self.has_null = true;
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub fn uuid(&mut self, id: &Uuid) {
        debug_assert_eq!(self.elem, Elem::Uuid);
        self.head(16);
        self.buf.extend_from_slice(id);
    }

    /// A text, bytea element: its bytes. Returns where they start in the finished array.
    pub fn raw(&mut self, bytes: &[u8]) -> usize {
        debug_assert!(matches!(self.elem, Elem::Text | Elem::Bytea));
        self.head(bytes.len());
        let at = self.buf.len();
        self.buf.extend_from_slice(bytes);
        at
    }

    /// A bytea element written in place by `write`; returns (start, length).
    pub fn bytea_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> (usize, usize) {
        debug_assert_eq!(self.elem, Elem::Bytea);
        self.len += 1;
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        write(&mut self.buf);
        let n = self.buf.len() - at - 4;
        self.buf[at..at + 4].copy_from_slice(&(n as i32).to_be_bytes());
        (at + 4, n)
    }

    pub fn text(&mut self, text: &str) {
        self.raw(text.as_bytes());
    }

    pub fn opt_text(&mut self, text: Option<&str>) {
        match text {
            Some(t) => self.text(t),
            None => self.null(),
        }
    }

    /// A jsonb element: version byte 1, then the JSON text written by `write`.
    pub fn jsonb_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        debug_assert_eq!(self.elem, Elem::Jsonb);
        self.len += 1;
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0, 1]);
        write(&mut self.buf);
        let n = self.buf.len() - at - 4;
        self.buf[at..at + 4].copy_from_slice(&(n as i32).to_be_bytes());
    }

    pub fn int8(&mut self, n: i64) {
        debug_assert_eq!(self.elem, Elem::Int8);
        self.head(8);
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    pub fn opt_int8(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.int8(n),
            None => self.null(),
        }
    }

    pub fn int4(&mut self, n: i32) {
        debug_assert_eq!(self.elem, Elem::Int4);
        self.head(4);
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    /// A timestamptz element from microseconds since the Unix epoch.
    pub fn timestamptz(&mut self, unix_micros: i64) {
        debug_assert_eq!(self.elem, Elem::Timestamptz);
        self.head(8);
        self.buf
            .extend_from_slice(&(unix_micros - PG_EPOCH_MICROS).to_be_bytes());
    }

    pub fn opt_timestamptz(&mut self, unix_micros: Option<i64>) {
        match unix_micros {
            Some(n) => self.timestamptz(n),
            None => self.null(),
        }
    }

    /// The parameter's bytes. For an empty array, only `ndim 0, no nulls, oid`; offsets
    /// returned while building are into these bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let oid = self.elem.oid();
        if self.len == 0 {
            let mut out = Vec::with_capacity(12);
            out.extend_from_slice(&0i32.to_be_bytes());
            out.extend_from_slice(&0i32.to_be_bytes());
            out.extend_from_slice(&oid.to_be_bytes());
            return out;
        }
        let header = [1i32, self.has_null as i32, oid as i32, self.len, 1];
        for (i, v) in header.iter().enumerate() {
            self.buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        self.buf
    }
}
