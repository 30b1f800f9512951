//! What the version, metadata and prompt stores share: their records are JSON
//! objects (serde, so a field added later reads back from older records with
//! its default), their time-ordered index keys, the checks of their input
//! fields, and running one durable write transaction with retries.

use serde::de::DeserializeOwned;
use serde::Serialize;
use treestore_storage::{Db, ReadTxn, WriteTxn};

use crate::error::{Error, Result};
use crate::ids;
use crate::time::Timestamp;

/// Longest free-text field of a metadata record (JSON payloads, observations,
/// templates, responses).
pub const MAX_RECORD_TEXT: usize = 4 * 1024 * 1024;
/// Longest short string (names, labels, statuses).
pub const MAX_NAME_LEN: usize = 1024;
/// Most elements of a list field (tags, variables, steps, ids).
pub const MAX_RECORD_LIST: usize = 10_000;
/// Most records a query returns when no limit is given.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// Most records one query returns.
pub const MAX_QUERY_LIMIT: usize = 100_000;

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::invalid("record", e.to_string()))
}

/// Decodes a record read from `key`.
pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| Error::corrupt(key, e))
}

/// Reads and decodes the record under `key`, if any.
pub(crate) fn get<T: DeserializeOwned>(txn: &ReadTxn, key: &[u8]) -> Result<Option<T>> {
    match txn.get(key)? {
        Some(raw) => Ok(Some(decode(key, &raw)?)),
        None => Ok(None),
    }
}

/// Reads and decodes the record under `key` as the write transaction sees it.
pub(crate) fn get_in<T: DeserializeOwned>(txn: &WriteTxn, key: &[u8]) -> Result<Option<T>> {
    match txn.get(key)? {
        Some(raw) => Ok(Some(decode(key, &raw)?)),
        None => Ok(None),
    }
}

/// Index entries (key, value) a record has besides its primary key.
pub(crate) type IndexEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes `record` under `key`, replacing an earlier record there: the index
/// entries `index` derives from the old record are deleted, then the new
/// record and its entries are written (so an upsert moves its entries).
pub(crate) fn upsert<T: Serialize + DeserializeOwned>(
    txn: &mut WriteTxn,
    key: &[u8],
    record: &T,
    index: impl Fn(&T) -> IndexEntries,
) -> Result<()> {
    if let Some(old) = get_in::<T>(txn, key)? {
        for (k, _) in index(&old) {
            txn.delete(&k)?;
        }
    }
    txn.put(key, &encode(record)?)?;
    for (k, v) in index(record) {
        txn.put(&k, &v)?;
    }
    Ok(())
}

/// Runs `f` in a durable write transaction, retrying on a write conflict (the
/// writes of these stores are upserts computed from a fresh snapshot, so a
/// retry is always correct).
pub(crate) fn write<T>(db: &Db, mut f: impl FnMut(&mut WriteTxn) -> Result<T>) -> Result<T> {
    crate::store::retry(|| {
        let mut txn = db.begin_write();
        let out = f(&mut txn)?;
        txn.commit()?;
        Ok(out)
    })
}

/// The limit a query applies: 0 means the default.
pub(crate) fn limit(limit: usize) -> usize {
    match limit {
        0 => DEFAULT_QUERY_LIMIT,
        n => n.min(MAX_QUERY_LIMIT),
    }
}

/// `id` itself, or a new generated id when it is empty; checked like any id.
pub(crate) fn id_or_new(field: &str, id: &str) -> Result<String> {
    if id.is_empty() {
        return Ok(ids::new_id());
    }
    check_id(field, id)?;
    Ok(id.to_string())
}

/// A required id: non-empty and at most [`MAX_ID_LEN`] bytes.
pub(crate) fn check_id(field: &str, id: &str) -> Result<()> {
    crate::plan::check_id_arg(field, id)
}

/// An optional id: empty, or a valid id.
pub(crate) fn check_opt_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Ok(());
    }
    check_id(field, id)
}

/// A string field of at most `max` bytes.
pub(crate) fn check_len(field: &str, s: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(Error::invalid(
            field,
            format!("{} bytes, at most {max} allowed", s.len()),
        ));
    }
    Ok(())
}

/// A list of short strings.
pub(crate) fn check_list(field: &str, items: &[String], max_item: usize) -> Result<()> {
    if items.len() > MAX_RECORD_LIST {
        return Err(Error::invalid(
            field,
            format!(
                "{} elements, at most {MAX_RECORD_LIST} allowed",
                items.len()
            ),
        ));
    }
    for (i, s) in items.iter().enumerate() {
        check_len(&format!("{field}[{i}]"), s, max_item)?;
    }
    Ok(())
}

/// A field that holds JSON text: empty, or valid JSON.
pub(crate) fn check_json(field: &str, s: &str) -> Result<()> {
    check_len(field, s, MAX_RECORD_TEXT)?;
    if s.is_empty() {
        return Ok(());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .map(|_| ())
        .map_err(|e| Error::invalid(field, format!("not valid JSON: {e}")))
}

/// A finite, non-negative number.
pub(crate) fn check_non_negative(field: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        return Err(Error::invalid(
            field,
            format!("{v} is not a finite number >= 0"),
        ));
    }
    Ok(())
}

/// A time that defaults to now when unset (the epoch).
pub(crate) fn or_now(t: Timestamp) -> Timestamp {
    if t == Timestamp::EPOCH {
        Timestamp::now()
    } else {
        t
    }
}

/// Whether `t` lies in the half-open window `[since, until)` (unset bounds
/// are open).
pub(crate) fn in_window(t: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

/// The ids at the end of the index keys under `prefix` (keys `(..., time,
/// id)`), newest first, at most `limit`.
pub(crate) fn ids_newest_first(txn: &ReadTxn, prefix: &[u8], limit: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in txn.prefix(prefix, true) {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        out.push(last_str(&k)?);
    }
    Ok(out)
}

/// The records named by the index keys under `prefix` (keys `(..., time,
/// id)`, each record at the primary key `key` builds from its id), newest
/// first, that `keep` accepts: the first `limit` of them, however many
/// rejected ones come before.
pub(crate) fn newest_matching<T: DeserializeOwned>(
    txn: &ReadTxn,
    prefix: &[u8],
    limit: usize,
    key: impl Fn(&str) -> Vec<u8>,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for item in txn.prefix(prefix, true) {
        if out.len() >= limit {
            break;
        }
        let (k, _) = item?;
        let record: T = get(txn, &key(&last_str(&k)?))?
            .ok_or_else(|| Error::corrupt(&k, "indexed record is missing"))?;
        if keep(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

/// The last element of a tuple key (after its space byte), as a string.
pub(crate) fn last_str(key: &[u8]) -> Result<String> {
    let elems = key
        .get(1..)
        .map(crate::key::decode)
        .ok_or_else(|| Error::corrupt(key, "empty key"))?
        .map_err(|e| Error::corrupt(key, e))?;
    match elems.last() {
        Some(crate::key::Elem::Bytes(b)) => {
            String::from_utf8(b.clone()).map_err(|e| Error::corrupt(key, e))
        }
        _ => Err(Error::corrupt(key, "index key does not end in an id")),
    }
}

/// Fetches the records named by `ids` from the primary keys `key` builds.
pub(crate) fn fetch_all<T: DeserializeOwned>(
    txn: &ReadTxn,
    ids: &[String],
    key: impl Fn(&str) -> Vec<u8>,
) -> Result<Vec<T>> {
    ids.iter()
        .map(|id| {
            let k = key(id);
            get(txn, &k)?.ok_or_else(|| Error::corrupt(&k, "indexed record is missing"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_name_the_field() {
        let e = check_json("output", "{not json").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "output"),
            "{e}"
        );
        check_json("output", "").unwrap();
        check_json("output", "[1, {\"a\": null}]").unwrap();
        let e = check_list("tags", &["x".repeat(10), "y".repeat(2000)], MAX_NAME_LEN).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "tags[1]"),
            "{e}"
        );
        assert!(check_non_negative("latency_ms", f64::NAN).is_err());
        assert!(check_non_negative("latency_ms", -1.0).is_err());
        check_non_negative("latency_ms", 0.5).unwrap();
        assert!(check_id("case_id", "").is_err());
        assert_eq!(id_or_new("id", "abc").unwrap(), "abc");
        assert!(ids::is_generated(&id_or_new("id", "").unwrap()));
        assert_eq!(limit(0), DEFAULT_QUERY_LIMIT);
        assert_eq!(limit(usize::MAX), MAX_QUERY_LIMIT);
    }

    #[test]
    fn windows_are_half_open() {
        let t = |n| Timestamp::from_unix_nanos(n);
        assert!(in_window(t(5), Some(t(5)), Some(t(6))));
        assert!(!in_window(t(6), Some(t(5)), Some(t(6))));
        assert!(in_window(t(6), None, None));
    }
}
