//! Order-preserving tuple keys.
//!
//! Every key of the document layer is a tuple such as `(policy, version, node)`.
//! The encoding keeps tuple order as byte order, so a B+tree range or prefix scan
//! over encoded keys walks tuples in order, and the encoding of a tuple prefix is a
//! byte prefix of every longer tuple that starts with it. Ids may contain any
//! bytes, separators included, without ambiguity.
//!
//! | element | encoding                                                          |
//! |---------|-------------------------------------------------------------------|
//! | bytes   | `0x02`, the bytes with each `0x00` written `0x00 0xFF`, then `0x00` |
//! | i64     | `0x14`, 8 bytes big endian with the sign bit flipped             |
//! | u64     | `0x15`, 8 bytes big endian                                       |
//!
//! Elements of different kinds order by their tag: bytes < i64 < u64.

/// Tag of a byte-string element.
const TAG_BYTES: u8 = 0x02;
/// Tag of a signed integer element.
const TAG_I64: u8 = 0x14;
/// Tag of an unsigned integer element.
const TAG_U64: u8 = 0x15;

/// One decoded tuple element. The derived order equals the encoded byte order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Elem {
    Bytes(Vec<u8>),
    I64(i64),
    U64(u64),
}

/// A key that does not decode as a tuple.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unknown tuple element tag {tag:#04x} at byte {at}")]
    UnknownTag { tag: u8, at: usize },
    #[error("tuple element starting at byte {at} is truncated")]
    Truncated { at: usize },
    #[error("invalid escape in byte string at byte {at}")]
    BadEscape { at: usize },
}

/// Builds an encoded tuple key element by element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBuilder(Vec<u8>);

impl KeyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a byte-string element.
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.push(TAG_BYTES);
        for &c in b {
            self.0.push(c);
            if c == 0 {
                self.0.push(0xff);
            }
        }
        self.0.push(0);
        self
    }

    /// Appends bytes as they are, with no tag or terminator: a table tag before
    /// the tuple, or a fixed-width suffix after it.
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }

    /// Appends a UTF-8 string element (encoded as its bytes).
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }

    /// Appends an unsigned integer element.
    pub fn u64(mut self, v: u64) -> Self {
        self.0.push(TAG_U64);
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends a signed integer element.
    pub fn i64(mut self, v: i64) -> Self {
        self.0.push(TAG_I64);
        self.0
            .extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    /// Appends an already decoded element.
    pub fn elem(self, e: &Elem) -> Self {
        match e {
            Elem::Bytes(b) => self.bytes(b),
            Elem::I64(v) => self.i64(*v),
            Elem::U64(v) => self.u64(*v),
        }
    }

    /// The encoded key.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }

    /// The encoded key so far, without consuming the builder.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for KeyBuilder {
    /// Continues a key from already encoded bytes.
    fn from(v: Vec<u8>) -> Self {
        KeyBuilder(v)
    }
}

/// Decodes an encoded tuple key.
pub fn decode(key: &[u8]) -> Result<Vec<Elem>, KeyError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < key.len() {
        let start = at;
        let tag = key[at];
        at += 1;
        match tag {
            TAG_BYTES => {
                let mut b = Vec::new();
                loop {
                    match key.get(at) {
                        None => return Err(KeyError::Truncated { at: start }),
                        Some(0) => match key.get(at + 1) {
                            Some(0xff) => {
                                b.push(0);
                                at += 2;
                            }
                            _ => {
                                at += 1;
                                break;
                            }
                        },
                        Some(&c) => {
                            b.push(c);
                            at += 1;
                        }
                    }
                }
                out.push(Elem::Bytes(b));
            }
            TAG_I64 | TAG_U64 => {
                let raw: [u8; 8] = key
                    .get(at..at + 8)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(KeyError::Truncated { at: start })?;
                at += 8;
                let v = u64::from_be_bytes(raw);
                out.push(if tag == TAG_U64 {
                    Elem::U64(v)
                } else {
                    Elem::I64((v ^ (1 << 63)) as i64)
                });
            }
            _ => return Err(KeyError::UnknownTag { tag, at: start }),
        }
    }
    Ok(out)
}

/// Encodes a whole tuple.
pub fn encode(elems: &[Elem]) -> Vec<u8> {
    elems
        .iter()
        .fold(KeyBuilder::new(), |b, e| b.elem(e))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn elem() -> impl Strategy<Value = Elem> {
        prop_oneof![
            prop::collection::vec(
                prop_oneof![Just(0u8), Just(0xff), Just(1), any::<u8>()],
                0..6
            )
            .prop_map(Elem::Bytes),
            any::<i64>().prop_map(Elem::I64),
            any::<u64>().prop_map(Elem::U64),
        ]
    }

    proptest! {
        #[test]
        fn byte_order_equals_tuple_order(a in prop::collection::vec(elem(), 0..4), b in prop::collection::vec(elem(), 0..4)) {
            prop_assert_eq!(encode(&a).cmp(&encode(&b)), a.cmp(&b));
        }

        #[test]
        fn roundtrips(a in prop::collection::vec(elem(), 0..5)) {
            prop_assert_eq!(decode(&encode(&a)).unwrap(), a);
        }

        #[test]
        fn prefix_tuples_encode_to_byte_prefixes(a in prop::collection::vec(elem(), 0..4), b in prop::collection::vec(elem(), 0..3)) {
            let mut long = a.clone();
            long.extend(b);
            prop_assert!(encode(&long).starts_with(&encode(&a)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn separators_inside_ids_are_unambiguous() {
        let a = KeyBuilder::new().str("pol/1").str("v").finish();
        let b = KeyBuilder::new().str("pol").str("1/v").finish();
        assert_ne!(a, b);
        assert_eq!(
            decode(&a).unwrap(),
            vec![Elem::Bytes(b"pol/1".to_vec()), Elem::Bytes(b"v".to_vec())]
        );
        assert!(matches!(
            decode(&[0x02, b'a']),
            Err(KeyError::Truncated { at: 0 })
        ));
        assert!(matches!(
            decode(&[0x15, 1, 2]),
            Err(KeyError::Truncated { at: 0 })
        ));
        assert!(matches!(
            decode(&[0x99]),
            Err(KeyError::UnknownTag { tag: 0x99, at: 0 })
        ));
    }
}
