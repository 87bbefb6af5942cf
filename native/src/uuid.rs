//! UUIDs as 16 bytes: the canonical text form (`domain/ids.py`'s fast path), its formatting,
//! and name-based version-5 ids (`name_based_uuid`).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

pub type Uuid = [u8; 16];

/// A hasher for ids (FxHash's mixing, 8 bytes at a time): SipHash's resistance to chosen keys
/// buys nothing for at most a batch of ids, and costs a third of a fold's lookups.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.write(&n.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;
pub type IdSet = HashSet<Uuid, BuildHasherDefault<IdHasher>>;

/// Namespace of event ids (`domain/events.py`, `_EVENT_NAMESPACE`).
pub const EVENT_NAMESPACE: Uuid = [
    0x6f, 0x1c, 0x1d, 0x6e, 0x2b, 0x7a, 0x4c, 0x55, 0x9a, 0x64, 0x3d, 0x1b, 0x8f, 0x0e, 0x5a, 0x21,
];
/// Namespace of rejection ids (`domain/events.py`, `_REJECTION_NAMESPACE`).
pub const REJECTION_NAMESPACE: Uuid = [
    0x0b, 0x8e, 0x7c, 0x4a, 0x91, 0xd2, 0x4f, 0x3e, 0x8a, 0x0c, 0x5c, 0x2d, 0x7e, 0x9f, 0x1b, 0x33,
];

const HEX: &[u8; 16] = b"0123456789abcdef";
const DASHES: [usize; 4] = [8, 13, 18, 23];

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The id of canonical lower-case text (`8-4-4-4-12` hex digits), else `None`.
pub fn parse_canonical(text: &[u8]) -> Option<Uuid> {
    if text.len() != 36 || DASHES.iter().any(|&i| text[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = text
        .iter()
        .enumerate()
        .filter(|(i, _)| !DASHES.contains(i))
        .map(|(_, &c)| c);
    for byte in out.iter_mut() {
        let hi = nibble(digits.next()?)?;
        let lo = nibble(digits.next()?)?;
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

/// `str(uuid)`: canonical lower-case text.
pub fn text(id: &Uuid) -> [u8; 36] {
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in id.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[(byte >> 4) as usize];
        out[at + 1] = HEX[(byte & 0xf) as usize];
        at += 2;
    }
    out
}

pub fn text_string(id: &Uuid) -> String {
    // Only ASCII hex digits and dashes.
    String::from_utf8(text(id).to_vec()).expect("ascii")
}

/// `uuid.uuid5(namespace, name)`: SHA-1 of namespace and name, version 5, RFC 4122 variant.
pub fn uuid5(namespace: &Uuid, name: &[u8]) -> Uuid {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(namespace);
    sha.update(name);
    let digest = sha.digest().bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

/// `uuid5(namespace, str(id))`: the event or rejection id of a command id.
pub fn derived(namespace: &Uuid, id: &Uuid) -> Uuid {
    uuid5(namespace, &text(id))
}

/// `uuid5(rejection namespace, f"{command_id}/{resource_id}/{command_type}")`: the id of the
/// refusal of a command reusing ``id`` (`domain/events.py`, `reuse_rejection_id_for`).
pub fn reuse_rejection_id(id: &Uuid, resource: &Uuid, command_type: &str) -> Uuid {
    let mut name = Vec::with_capacity(74 + command_type.len());
    name.extend_from_slice(&text(id));
    name.push(b'/');
    name.extend_from_slice(&text(resource));
    name.push(b'/');
    name.extend_from_slice(command_type.as_bytes());
    uuid5(&REJECTION_NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = b"6f1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21";
        assert_eq!(parse_canonical(t), Some(EVENT_NAMESPACE));
        assert_eq!(&text(&EVENT_NAMESPACE), t);
        assert_eq!(
            parse_canonical(b"6F1c1d6e-2b7a-4c55-9a64-3d1b8f0e5a21"),
            None
        );
    }

    #[test]
    fn v5() {
        // uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
        let dns = parse_canonical(b"6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
        assert_eq!(
            &text(&uuid5(&dns, b"python.org")),
            b"886313e1-3b8a-5372-9b90-0c9aee199e5d"
        );
    }
}
