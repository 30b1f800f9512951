//! LEB128 variable-length integers, used by the free-list pages and the log's
//! commit records.

/// Appends `v` as LEB128 (7 bits a byte, high bit = more follows).
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 integer at `*at`, advancing it; `None` when the bytes end
/// early or the number has more than 64 bits' worth of bytes.
pub fn get(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrips_and_rejects_truncation() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put(&mut buf, v);
            let mut at = 0;
            assert_eq!(get(&buf, &mut at), Some(v));
            assert_eq!(at, buf.len());
            let mut at = 0;
            assert_eq!(get(&buf[..buf.len() - 1], &mut at), None);
        }
        let mut at = 0;
        assert_eq!(get(&[0xff; 12], &mut at), None, "over-long varint");
    }
}
