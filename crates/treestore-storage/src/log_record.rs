//! The payload of a log record: one committed transaction's write set.
//!
//! ```text
//! u8      record type (1 = commit)
//! u64     commit sequence number (LE)
//! varint  number of operations
//! per operation:
//!   u8      0 = put, 1 = delete
//!   varint  key length, key bytes
//!   (put)   varint value length, value bytes
//! ```
//!
//! Varints are LEB128. The record's checksum lives in the log framing; decoding
//! still checks every length so a damaged payload is an error, never a panic.

use crate::db::WriteSet;
use crate::varint;

const COMMIT: u8 = 1;
const PUT: u8 = 0;
const DELETE: u8 = 1;

/// Size of a commit record before encoding it (an upper bound: varints are
/// counted at their largest).
pub fn encoded_len(writes: &WriteSet) -> u64 {
    let ops: usize = writes
        .iter()
        .map(|(k, v)| 1 + 10 + k.len() + v.as_ref().map_or(0, |v| 10 + v.len()))
        .sum();
    (1 + 8 + 10 + ops) as u64
}

/// Encodes a commit, appending it to `out` (the log buffer itself).
pub fn encode_commit(seq: u64, writes: &WriteSet, out: &mut Vec<u8>) {
    let size: usize = writes
        .iter()
        .map(|(k, v)| 12 + k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    out.reserve(size + 20);
    out.push(COMMIT);
    out.extend_from_slice(&seq.to_le_bytes());
    varint::put(out, writes.len() as u64);
    for (k, v) in writes {
        out.push(if v.is_some() { PUT } else { DELETE });
        varint::put(out, k.len() as u64);
        out.extend_from_slice(k);
        if let Some(v) = v {
            varint::put(out, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
}

/// A decoded commit borrowing its keys and values from the record.
pub type Commit<'a> = (u64, Vec<(&'a [u8], Option<&'a [u8]>)>);

/// Decodes a commit without copying keys and values; `Err` says what is wrong.
pub fn decode_commit(buf: &[u8]) -> Result<Commit<'_>, String> {
    if buf.first() != Some(&COMMIT) {
        return Err(format!("unknown record type {:?}", buf.first()));
    }
    let seq = buf
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("truncated commit header")?;
    let mut at = 9;
    let n = varint::get(buf, &mut at).ok_or("bad operation count")?;
    let mut ops = Vec::with_capacity(n.min(1 << 20) as usize);
    let bytes = |at: &mut usize| -> Result<&[u8], String> {
        let len = varint::get(buf, at).ok_or("bad length")? as usize;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= buf.len())
            .ok_or("length past the end of the record")?;
        let out = &buf[*at..end];
        *at = end;
        Ok(out)
    };
    let mut prev: Option<&[u8]> = None;
    for i in 0..n {
        let kind = *buf.get(at).ok_or("truncated operation")?;
        at += 1;
        let key = bytes(&mut at)?;
        if prev.is_some_and(|p| p >= key) {
            return Err(format!("operation {i} is out of key order"));
        }
        let val = match kind {
            PUT => Some(bytes(&mut at)?),
            DELETE => None,
            other => return Err(format!("unknown operation kind {other}")),
        };
        prev = Some(key);
        ops.push((key, val));
    }
    if at != buf.len() {
        return Err("trailing bytes after the last operation".into());
    }
    Ok((seq, ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip() {
        let mut w = WriteSet::new();
        w.insert(b"a".to_vec(), Some(b"1".to_vec()));
        w.insert(b"b".to_vec(), None);
        w.insert(vec![0xff; 300], Some(vec![7; 70_000]));
        let mut record = Vec::new();
        encode_commit(42, &w, &mut record);
        let (seq, ops) = decode_commit(&record).unwrap();
        assert_eq!(seq, 42);
        let want: Vec<(&[u8], Option<&[u8]>)> = w
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_deref()))
            .collect();
        assert_eq!(ops, want);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_commit(&bytes);
        }

        #[test]
        fn truncations_are_errors(cut in 0usize..40) {
            let mut w = WriteSet::new();
            w.insert(b"key".to_vec(), Some(b"value".to_vec()));
            w.insert(b"other".to_vec(), None);
            let mut full = Vec::new();
            encode_commit(1, &w, &mut full);
            if cut < full.len() {
                prop_assert!(decode_commit(&full[..cut]).is_err());
            }
        }
    }
}
