//! The prompt store: which prompt produced a decision. Prompt templates in
//! versions (latest, a given version, the version deployed as of an
//! instant) and their usage (by case, by prompt version, effectiveness as
//! counts by outcome).
//!
//! Keys: templates under `0x40 (prompt_id, version)`, indexed by creation
//! `0x41 (prompt_id, created_at, registered_at)` and deployment `0x42
//! (prompt_id, deployed_at, registered_at)` (values: the version); usages
//! under `0x48 (usage_id)`, indexed `0x49 (case_id, used_at, usage_id)` and
//! `0x4a (prompt_id, version, used_at, usage_id)` (value: the outcome).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use treestore_storage::{Db, ReadTxn, WriteTxn};

use crate::error::{Error, Result};
use crate::key::KeyBuilder;
use crate::metadata::check_time;
use crate::records::{
    self, check_id, check_json, check_len, check_list, check_opt_id, MAX_NAME_LEN, MAX_RECORD_TEXT,
};
use crate::schema::{
    strs, SPACE_PROMPT, SPACE_PROMPT_BY_CREATED, SPACE_PROMPT_BY_DEPLOYED, SPACE_USAGE,
    SPACE_USAGE_BY_CASE, SPACE_USAGE_BY_PROMPT,
};
use crate::time::Timestamp;

/// One version of a prompt template.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate {
    pub prompt_id: String,
    /// Empty when storing = the next number (`"1"`, `"2"`, ...) after the
    /// versions stored so far. Storing an existing version replaces it.
    pub version: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub template: String,
    /// Names of the template's variables.
    #[serde(default)]
    pub variables: Vec<String>,
    /// JSON text (empty = none).
    #[serde(default)]
    pub tool_schemas: String,
    /// Defaults to the time of storing; orders versions for "latest".
    pub created_at: Timestamp,
    /// When it went into use (`None` = never deployed).
    #[serde(default)]
    pub deployed_at: Option<Timestamp>,
    /// Set by the store; orders versions created on the same instant.
    #[serde(default)]
    pub registered_at: Timestamp,
}

/// One use of a prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptUsage {
    /// Generated when empty; storing the same id again replaces the record.
    pub usage_id: String,
    pub prompt_id: String,
    /// Empty when storing = the prompt's latest version at that time (left
    /// empty if the prompt is not stored here).
    #[serde(default)]
    pub prompt_version: String,
    #[serde(default)]
    pub case_id: String,
    #[serde(default)]
    pub filled_variables: BTreeMap<String, String>,
    #[serde(default)]
    pub response: String,
    /// Execution ids of the tool results the response led to.
    #[serde(default)]
    pub tool_result_ids: Vec<String>,
    /// Outcome label (e.g. "approved", "denied", "escalated"; empty = none).
    #[serde(default)]
    pub outcome: String,
    /// Defaults to the time of storing.
    pub used_at: Timestamp,
}

/// How a prompt (version) fared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Effectiveness {
    pub uses: u64,
    /// Uses by outcome label; uses with no label count under `""`.
    pub outcomes: BTreeMap<String, u64>,
}

fn template_key(prompt: &str, version: &str) -> Vec<u8> {
    strs(SPACE_PROMPT, &[prompt, version]).finish()
}

fn template_index(t: &PromptTemplate) -> Vec<(Vec<u8>, Vec<u8>)> {
    let reg = t.registered_at.unix_nanos();
    let v = t.version.as_bytes().to_vec();
    let mut out = vec![(
        strs(SPACE_PROMPT_BY_CREATED, &[&t.prompt_id])
            .i64(t.created_at.unix_nanos())
            .i64(reg)
            .finish(),
        v.clone(),
    )];
    if let Some(d) = t.deployed_at {
        out.push((
            strs(SPACE_PROMPT_BY_DEPLOYED, &[&t.prompt_id])
                .i64(d.unix_nanos())
                .i64(reg)
                .finish(),
            v,
        ));
    }
    out
}

pub(crate) fn prepare_template(mut t: PromptTemplate) -> Result<PromptTemplate> {
    check_id("prompt_id", &t.prompt_id)?;
    check_opt_id("version", &t.version)?;
    check_len("name", &t.name, MAX_NAME_LEN)?;
    check_len("template", &t.template, MAX_RECORD_TEXT)?;
    check_list("variables", &t.variables, MAX_NAME_LEN)?;
    check_json("tool_schemas", &t.tool_schemas)?;
    t.created_at = records::or_now(t.created_at);
    check_time("created_at", t.created_at)?;
    if let Some(d) = t.deployed_at {
        check_time("deployed_at", d)?;
    }
    Ok(t)
}

/// Writes a prepared template (an upsert by (prompt, version)); returns it
/// with its version and registration time filled in.
pub(crate) fn write_template(txn: &mut WriteTxn, t: &PromptTemplate) -> Result<PromptTemplate> {
    let mut t = t.clone();
    if t.version.is_empty() {
        let mut n = txn
            .prefix(&strs(SPACE_PROMPT, &[&t.prompt_id]).finish(), false)
            .count()
            + 1;
        while txn
            .get(&template_key(&t.prompt_id, &n.to_string()))?
            .is_some()
        {
            n += 1;
        }
        t.version = n.to_string();
    }
    t.registered_at = Timestamp::now_monotonic();
    records::upsert(
        txn,
        &template_key(&t.prompt_id, &t.version),
        &t,
        template_index,
    )?;
    Ok(t)
}

/// The version of the newest entry at or before `upper` in an index prefix.
fn newest_version(
    txn: &ReadTxn,
    prefix: Vec<u8>,
    upper: Option<Timestamp>,
) -> Result<Option<String>> {
    let upper = match upper {
        Some(at) => KeyBuilder::from(prefix.clone())
            .i64(at.unix_nanos())
            .i64(i64::MAX)
            .finish(),
        None => {
            let mut p = prefix.clone();
            p.push(0xff);
            p
        }
    };
    match txn
        .range_rev(
            std::ops::Bound::Included(prefix.as_slice()),
            std::ops::Bound::Included(upper.as_slice()),
        )
        .next()
    {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item?;
            Ok(Some(
                String::from_utf8(v).map_err(|e| Error::corrupt(&k, e))?,
            ))
        }
    }
}

pub(crate) fn prepare_usage(mut u: PromptUsage) -> Result<PromptUsage> {
    u.usage_id = records::id_or_new("usage_id", &u.usage_id)?;
    check_id("prompt_id", &u.prompt_id)?;
    check_opt_id("prompt_version", &u.prompt_version)?;
    check_opt_id("case_id", &u.case_id)?;
    let vars: usize = u
        .filled_variables
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if vars > MAX_RECORD_TEXT {
        return Err(Error::invalid(
            "filled_variables",
            format!("{vars} bytes, at most {MAX_RECORD_TEXT} allowed"),
        ));
    }
    check_len("response", &u.response, MAX_RECORD_TEXT)?;
    check_list(
        "tool_result_ids",
        &u.tool_result_ids,
        crate::model::MAX_ID_LEN,
    )?;
    check_len("outcome", &u.outcome, MAX_NAME_LEN)?;
    u.used_at = records::or_now(u.used_at);
    check_time("used_at", u.used_at)?;
    Ok(u)
}

fn usage_key(id: &str) -> Vec<u8> {
    strs(SPACE_USAGE, &[id]).finish()
}

fn usage_index(u: &PromptUsage) -> Vec<(Vec<u8>, Vec<u8>)> {
    let at = u.used_at.unix_nanos();
    let mut out = vec![(
        strs(SPACE_USAGE_BY_PROMPT, &[&u.prompt_id, &u.prompt_version])
            .i64(at)
            .str(&u.usage_id)
            .finish(),
        u.outcome.as_bytes().to_vec(),
    )];
    if !u.case_id.is_empty() {
        out.push((
            strs(SPACE_USAGE_BY_CASE, &[&u.case_id])
                .i64(at)
                .str(&u.usage_id)
                .finish(),
            Vec::new(),
        ));
    }
    out
}

/// Writes a prepared usage (an upsert by id), resolving an empty prompt
/// version to the latest one; returns the usage as stored.
pub(crate) fn write_usage(txn: &mut WriteTxn, u: &PromptUsage) -> Result<PromptUsage> {
    let mut u = u.clone();
    if u.prompt_version.is_empty() {
        let prefix = strs(SPACE_PROMPT_BY_CREATED, &[&u.prompt_id]).finish();
        if let Some(item) = txn.prefix(&prefix, true).next() {
            let (k, v) = item?;
            u.prompt_version = String::from_utf8(v).map_err(|e| Error::corrupt(&k, e))?;
        }
    }
    records::upsert(txn, &usage_key(&u.usage_id), &u, usage_index)?;
    Ok(u)
}

/// The prompt store's API. Get it with
/// [`TreeStore::prompts`](crate::TreeStore::prompts).
pub struct PromptStore<'s> {
    db: &'s Db,
}

impl<'s> PromptStore<'s> {
    pub(crate) fn new(db: &'s Db) -> Self {
        PromptStore { db }
    }

    /// Stores a template version durably; returns it as stored (version
    /// filled in).
    pub fn put_template(&self, t: PromptTemplate) -> Result<PromptTemplate> {
        let t = prepare_template(t)?;
        records::write(self.db, |txn| write_template(txn, &t))
    }

    /// One version of a prompt.
    pub fn template(&self, prompt_id: &str, version: &str) -> Result<PromptTemplate> {
        check_id("prompt_id", prompt_id)?;
        check_id("version", version)?;
        records::get(&self.db.begin_read(), &template_key(prompt_id, version))?
            .ok_or_else(|| Error::not_found("prompt version", format!("{prompt_id}/{version}")))
    }

    /// The latest version (by created_at, then the one stored last).
    pub fn latest(&self, prompt_id: &str) -> Result<PromptTemplate> {
        check_id("prompt_id", prompt_id)?;
        let txn = self.db.begin_read();
        let prefix = strs(SPACE_PROMPT_BY_CREATED, &[prompt_id]).finish();
        let v = newest_version(&txn, prefix, None)?
            .ok_or_else(|| Error::not_found("prompt", prompt_id))?;
        records::get(&txn, &template_key(prompt_id, &v))?.ok_or_else(|| {
            Error::corrupt(&template_key(prompt_id, &v), "indexed version is missing")
        })
    }

    /// The version deployed as of `at`: the latest deployment at or before it.
    pub fn deployed_as_of(&self, prompt_id: &str, at: Timestamp) -> Result<PromptTemplate> {
        check_id("prompt_id", prompt_id)?;
        let txn = self.db.begin_read();
        let prefix = strs(SPACE_PROMPT_BY_DEPLOYED, &[prompt_id]).finish();
        let v = newest_version(&txn, prefix, Some(at))?.ok_or_else(|| {
            Error::not_found("prompt deployed as of", format!("{prompt_id} at {at}"))
        })?;
        records::get(&txn, &template_key(prompt_id, &v))?.ok_or_else(|| {
            Error::corrupt(&template_key(prompt_id, &v), "indexed version is missing")
        })
    }

    /// Every version of a prompt, latest first.
    pub fn versions(&self, prompt_id: &str) -> Result<Vec<PromptTemplate>> {
        check_id("prompt_id", prompt_id)?;
        let txn = self.db.begin_read();
        let prefix = strs(SPACE_PROMPT_BY_CREATED, &[prompt_id]).finish();
        let mut out = Vec::new();
        for item in txn.prefix(&prefix, true) {
            let (k, v) = item?;
            let v = String::from_utf8(v).map_err(|e| Error::corrupt(&k, e))?;
            out.push(
                records::get(&txn, &template_key(prompt_id, &v))?
                    .ok_or_else(|| Error::corrupt(&k, "indexed version is missing"))?,
            );
        }
        Ok(out)
    }

    /// Records one use of a prompt durably; returns it as stored.
    pub fn record_usage(&self, u: PromptUsage) -> Result<PromptUsage> {
        let u = prepare_usage(u)?;
        records::write(self.db, |txn| write_usage(txn, &u))
    }

    /// A case's prompt usages, newest first.
    pub fn usages_by_case(&self, case_id: &str, limit: usize) -> Result<Vec<PromptUsage>> {
        check_id("case_id", case_id)?;
        let txn = self.db.begin_read();
        let prefix = strs(SPACE_USAGE_BY_CASE, &[case_id]).finish();
        let ids = records::ids_newest_first(&txn, &prefix, records::limit(limit))?;
        records::fetch_all(&txn, &ids, usage_key)
    }

    /// A case's usages of one prompt (and, with `version`, one version of
    /// it), newest first: the first `limit` that match, however many of the
    /// case's usages of other prompts come before them.
    pub fn usages_by_case_and_prompt(
        &self,
        case_id: &str,
        prompt_id: &str,
        version: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromptUsage>> {
        check_id("case_id", case_id)?;
        check_id("prompt_id", prompt_id)?;
        if let Some(v) = version {
            check_opt_id("prompt_version", v)?;
        }
        let limit = records::limit(limit);
        let txn = self.db.begin_read();
        let prefix = strs(SPACE_USAGE_BY_CASE, &[case_id]).finish();
        records::newest_matching(&txn, &prefix, limit, usage_key, |u: &PromptUsage| {
            u.prompt_id == prompt_id && version.is_none_or(|v| u.prompt_version == v)
        })
    }

    /// Usages of one prompt version (`None` = every version), newest first.
    pub fn usages_by_prompt(
        &self,
        prompt_id: &str,
        version: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromptUsage>> {
        check_id("prompt_id", prompt_id)?;
        let limit = records::limit(limit);
        let txn = self.db.begin_read();
        match version {
            Some(v) => {
                check_opt_id("version", v)?;
                let prefix = strs(SPACE_USAGE_BY_PROMPT, &[prompt_id, v]).finish();
                let ids = records::ids_newest_first(&txn, &prefix, limit)?;
                records::fetch_all(&txn, &ids, usage_key)
            }
            None => {
                // Keys group by version first, so newest-first across
                // versions needs every usage of the prompt, sorted by time:
                // cost grows with the prompt's usages (name a version to
                // read only the newest `limit`).
                let prefix = strs(SPACE_USAGE_BY_PROMPT, &[prompt_id]).finish();
                let mut all: Vec<PromptUsage> = Vec::new();
                for item in txn.prefix(&prefix, false) {
                    let (k, _) = item?;
                    let id = records::last_str(&k)?;
                    all.push(
                        records::get(&txn, &usage_key(&id))?
                            .ok_or_else(|| Error::corrupt(&k, "indexed usage is missing"))?,
                    );
                }
                all.sort_by(|a, b| {
                    b.used_at
                        .cmp(&a.used_at)
                        .then_with(|| b.usage_id.cmp(&a.usage_id))
                });
                all.truncate(limit);
                Ok(all)
            }
        }
    }

    /// Uses and counts by outcome of one version of a prompt (`None` = all
    /// versions together).
    pub fn effectiveness(&self, prompt_id: &str, version: Option<&str>) -> Result<Effectiveness> {
        check_id("prompt_id", prompt_id)?;
        let prefix = match version {
            // `Some("")`: usages recorded with no version (prompt not stored).
            Some(v) => {
                check_opt_id("version", v)?;
                strs(SPACE_USAGE_BY_PROMPT, &[prompt_id, v]).finish()
            }
            None => strs(SPACE_USAGE_BY_PROMPT, &[prompt_id]).finish(),
        };
        let txn = self.db.begin_read();
        let mut e = Effectiveness::default();
        for item in txn.prefix(&prefix, false) {
            let (k, v) = item?;
            e.uses += 1;
            *e.outcomes
                .entry(String::from_utf8(v).map_err(|err| Error::corrupt(&k, err))?)
                .or_insert(0) += 1;
        }
        Ok(e)
    }
}
