//! `wire/partitioner.py`: the Java client's default partitioner (Kafka's `Utils.murmur2`,
//! sign bit cleared, modulo the partition count), which every publisher of commands must use.

/// Kafka's ``Utils.murmur2``: a signed 32-bit hash, bit for bit like the Java client.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = 0x9747_b28c ^ (length as u32);
    let tail = length & !3;
    for chunk in data[..tail].chunks_exact(4) {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = length & 3;
    if rest == 3 {
        h ^= u32::from(data[tail + 2]) << 16;
    }
    if rest >= 2 {
        h ^= u32::from(data[tail + 1]) << 8;
    }
    if rest >= 1 {
        h ^= u32::from(data[tail]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// ``partition_for``: the partition a record with this key hash goes to among ``partitions``.
pub fn partition_of(hash: i32, partitions: i64) -> i64 {
    i64::from(hash & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }
}
