//! The version store: which version of a policy is in force when. Every
//! boundary of the effective-period rule (before the first version, exactly at
//! a start, between versions, after the last, gaps after an explicit end,
//! open-ended older versions, same-day updates), listing, registration by
//! storing a document, diffs, deletion, cross-policy search and durability.
//!
//! The rule the expectations are computed from: among the versions whose
//! `[effective_start, effective_end)` contains the instant, the latest start
//! wins; several with the same start: the one registered last wins.

use treestore::{
    Document, Error, Node, Options, PolicyVersion, SearchScope, Timestamp, TreeStore, VersionSpec,
};

fn open() -> (tempfile::TempDir, TreeStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    (dir, store)
}

fn day(y: i64, m: u32, d: u32) -> Timestamp {
    Timestamp::from_date(y, m, d).unwrap()
}

fn plus(t: Timestamp, nanos: i64) -> Timestamp {
    Timestamp::from_unix_nanos(t.unix_nanos() + nanos)
}

const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

fn ver(policy: &str, v: &str, start: Timestamp, end: Option<Timestamp>) -> PolicyVersion {
    let mut pv = PolicyVersion::new(policy, v, start);
    pv.effective_end = end;
    pv
}

fn node(id: &str, text: &str) -> Node {
    let mut n = Node::new(id, None, format!("title {id}"), (1, 1));
    n.text = text.to_string();
    n.section_path = format!("s-{id}");
    n
}

/// The version in force at `at`, as an id.
fn as_of(store: &TreeStore, policy: &str, at: Timestamp) -> String {
    store
        .versions()
        .as_of(policy, at)
        .unwrap_or_else(|e| panic!("as_of({policy}, {at}): {e}"))
        .version_id
}

/// The reason of the not-found error `as_of` must return; checks that the
/// message says it too.
fn not_in_force(store: &TreeStore, policy: &str, at: Timestamp) -> String {
    match store.versions().as_of(policy, at) {
        Err(e @ Error::NoVersionInForce { .. }) => {
            assert!(e.is_not_found());
            let msg = e.to_string();
            let Error::NoVersionInForce { policy: p, reason } = e else {
                unreachable!()
            };
            assert_eq!(p, policy);
            assert!(msg.contains(&reason), "{msg:?} lacks {reason:?}");
            reason
        }
        other => panic!("as_of({policy}, {at}): expected NoVersionInForce, got {other:?}"),
    }
}

fn ids(list: &[PolicyVersion]) -> Vec<&str> {
    list.iter().map(|v| v.version_id.as_str()).collect()
}

/// A reference implementation of the rule over (id, start, end) in
/// registration order.
fn expected_in_force(
    versions: &[(&str, Timestamp, Option<Timestamp>)],
    at: Timestamp,
) -> Option<String> {
    let mut best: Option<(Timestamp, usize)> = None;
    for (i, (_, start, end)) in versions.iter().enumerate() {
        let covers = *start <= at && end.is_none_or(|e| at < e);
        if covers && best.is_none_or(|(s, _)| *start >= s) {
            best = Some((*start, i));
        }
    }
    best.map(|(_, i)| versions[i].0.to_string())
}

#[test]
fn as_of_before_at_between_after_and_in_gaps() {
    let (_d, store) = open();
    let vs = store.versions();

    // No versions at all.
    let reason = not_in_force(&store, "gap", day(2020, 1, 1));
    assert!(reason.contains("no registered versions"), "{reason}");

    // a: [2020-01-01, 2020-06-01); b: [2021-01-01, open).
    vs.register(ver("gap", "a", day(2020, 1, 1), Some(day(2020, 6, 1))))
        .unwrap();
    vs.register(ver("gap", "b", day(2021, 1, 1), None)).unwrap();

    // Before the first version: names the first version and why.
    for at in [day(2019, 1, 1), plus(day(2020, 1, 1), -1)] {
        let reason = not_in_force(&store, "gap", at);
        assert!(reason.contains("before the first version"), "{reason}");
        assert!(reason.contains("\"a\""), "{reason}");
        assert!(reason.contains(&day(2020, 1, 1).to_string()), "{reason}");
    }
    // Exactly at the start, and inside the period.
    assert_eq!(as_of(&store, "gap", day(2020, 1, 1)), "a");
    assert_eq!(as_of(&store, "gap", day(2020, 3, 1)), "a");
    assert_eq!(as_of(&store, "gap", plus(day(2020, 6, 1), -1)), "a");
    // The end is exclusive: from it on until b starts, a gap naming a's end.
    for at in [day(2020, 6, 1), day(2020, 9, 1), plus(day(2021, 1, 1), -1)] {
        let reason = not_in_force(&store, "gap", at);
        assert!(reason.contains("gap"), "{reason}");
        assert!(reason.contains("\"a\""), "{reason}");
        assert!(reason.contains(&day(2020, 6, 1).to_string()), "{reason}");
    }
    // b from its start on, open-ended.
    assert_eq!(as_of(&store, "gap", day(2021, 1, 1)), "b");
    assert_eq!(as_of(&store, "gap", day(2099, 12, 31)), "b");
    assert_eq!(store.versions().current("gap").unwrap().version_id, "b");

    // An open-ended older version covers again once a newer, explicitly
    // ended one ends.
    vs.register(ver("ovl", "old", day(2020, 1, 1), None))
        .unwrap();
    vs.register(ver("ovl", "new", day(2022, 1, 1), Some(day(2023, 1, 1))))
        .unwrap();
    assert_eq!(as_of(&store, "ovl", day(2021, 5, 5)), "old");
    assert_eq!(as_of(&store, "ovl", day(2022, 1, 1)), "new");
    assert_eq!(as_of(&store, "ovl", day(2022, 6, 1)), "new");
    assert_eq!(as_of(&store, "ovl", day(2023, 1, 1)), "old");
    assert_eq!(as_of(&store, "ovl", day(2030, 1, 1)), "old");

    // Other policies are not affected, and prefixes of ids do not leak.
    let reason = not_in_force(&store, "ov", day(2030, 1, 1));
    assert!(reason.contains("no registered versions"), "{reason}");
}

#[test]
fn a_gap_names_the_version_that_ended_last() {
    let (_d, store) = open();
    let vs = store.versions();
    // a: [2020, 2025) started first but ended last; b: [2021, 2022) inside it.
    vs.register(ver("p", "a", day(2020, 1, 1), Some(day(2025, 1, 1))))
        .unwrap();
    vs.register(ver("p", "b", day(2021, 1, 1), Some(day(2022, 1, 1))))
        .unwrap();
    assert_eq!(as_of(&store, "p", day(2021, 6, 1)), "b");
    assert_eq!(as_of(&store, "p", day(2023, 1, 1)), "a");
    // The gap begins when a ends.
    let reason = not_in_force(&store, "p", day(2026, 1, 1));
    assert!(reason.contains("gap"), "{reason}");
    assert!(reason.contains("\"a\""), "{reason}");
    assert!(reason.contains(&day(2025, 1, 1).to_string()), "{reason}");
}

#[test]
fn as_of_matches_the_rule_on_a_random_history() {
    let (_d, store) = open();
    // A fixed pseudo-random history of 40 versions over 20 "days"; some share
    // starts, some end, some are open-ended.
    let mut seed: u64 = 0x5eed;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let base = day(2024, 1, 1);
    let names: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    let mut history: Vec<(&str, Timestamp, Option<Timestamp>)> = Vec::new();
    for name in &names {
        let start = plus(base, next(20) as i64 * DAY_NANOS);
        let end = match next(3) {
            0 => None,
            _ => Some(plus(start, (1 + next(5) as i64) * DAY_NANOS)),
        };
        store
            .versions()
            .register(ver("r", name, start, end))
            .unwrap();
        history.push((name, start, end));
    }
    // Every half day, plus each start and end exactly and one nanosecond
    // before each.
    let mut instants: Vec<Timestamp> = (-2..50).map(|h| plus(base, h * DAY_NANOS / 2)).collect();
    for (_, s, e) in &history {
        instants.extend([*s, plus(*s, -1)]);
        if let Some(e) = e {
            instants.extend([*e, plus(*e, -1)]);
        }
    }
    let mut hits = 0;
    for at in instants {
        match expected_in_force(&history, at) {
            Some(want) => {
                hits += 1;
                assert_eq!(as_of(&store, "r", at), want, "at {at}");
            }
            None => {
                not_in_force(&store, "r", at);
            }
        }
    }
    assert!(hits > 20, "the history should mostly be covered ({hits})");
}

#[test]
fn same_day_updates_registered_last_wins() {
    let (_d, store) = open();
    let vs = store.versions();
    let start = day(2024, 1, 1);
    vs.register(ver("p", "a", start, None)).unwrap();
    vs.register(ver("p", "b", start, None)).unwrap();
    assert_eq!(as_of(&store, "p", start), "b");
    assert_eq!(as_of(&store, "p", day(2024, 5, 1)), "b");
    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["b", "a"]);
    assert_eq!(vs.latest("p").unwrap().version_id, "b");

    // Re-registering a makes it the one registered last.
    let a = vs.register(ver("p", "a", start, None)).unwrap();
    assert_eq!(as_of(&store, "p", day(2024, 5, 1)), "a");
    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["a", "b"]);
    assert_eq!(vs.latest("p").unwrap().version_id, "a");
    assert!(a.registered_at > vs.get("p", "b").unwrap().registered_at);
    // Still one registration each.
    assert_eq!(vs.list("p", 0).unwrap().len(), 2);

    // The last registered one ends: the other one (same start, open-ended)
    // covers after that.
    vs.register(ver("p", "b", start, Some(day(2024, 3, 1))))
        .unwrap();
    assert_eq!(as_of(&store, "p", day(2024, 2, 1)), "b");
    assert_eq!(as_of(&store, "p", day(2024, 3, 1)), "a");

    // A later registration with an earlier start does not take over.
    vs.register(ver("p", "early", day(2023, 1, 1), None))
        .unwrap();
    assert_eq!(as_of(&store, "p", day(2024, 2, 1)), "b");
    assert_eq!(as_of(&store, "p", day(2023, 6, 1)), "early");
}

#[test]
fn an_end_not_after_the_start_is_rejected_and_nothing_written() {
    let (_d, store) = open();
    let vs = store.versions();
    let start = day(2024, 1, 1);
    for end in [start, plus(start, -1), day(2000, 1, 1)] {
        let e = vs.register(ver("p", "v", start, Some(end))).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "effective_end"),
            "{e}"
        );
        assert!(e.to_string().contains("effective_end"), "{e}");
    }
    assert!(vs.get("p", "v").unwrap_err().is_not_found());
    assert!(vs.list("p", 0).unwrap().is_empty());

    // A bad re-registration leaves the earlier one as it was.
    let good = vs
        .register(ver("p", "v", start, Some(day(2025, 1, 1))))
        .unwrap();
    let seq = store.db().stats().unwrap().commit_seq;
    assert!(vs
        .register(ver("p", "v", day(2026, 1, 1), Some(day(2025, 1, 1))))
        .is_err());
    assert_eq!(vs.get("p", "v").unwrap(), good);
    assert_eq!(vs.list("p", 0).unwrap(), [good]);
    assert_eq!(store.db().stats().unwrap().commit_seq, seq);

    // The same through storing a document with a bad spec: no document, no
    // registration.
    let spec = VersionSpec {
        effective_start: Some(start),
        effective_end: Some(start),
        ..Default::default()
    };
    let e = store
        .store_document_with(Document::new("q", "v"), vec![node("n", "x")], Some(&spec))
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "effective_end"),
        "{e}"
    );
    assert!(store.read().get_document("q", Some("v")).is_err());
    assert!(store.versions().list("q", 0).unwrap().is_empty());
    assert_eq!(store.db().stats().unwrap().commit_seq, seq);
}

#[test]
fn list_latest_and_current() {
    let (_d, store) = open();
    let vs = store.versions();
    let future = plus(Timestamp::now(), 365 * DAY_NANOS);
    // Registered out of order.
    vs.register(ver("p", "v2", day(2021, 1, 1), None)).unwrap();
    vs.register(ver("p", "v1", day(2019, 1, 1), None)).unwrap();
    vs.register(ver("p", "v4", future, None)).unwrap();
    vs.register(ver("p", "v3", day(2020, 1, 1), Some(day(2020, 2, 1))))
        .unwrap();
    vs.register(ver("other", "x", day(2022, 1, 1), None))
        .unwrap();

    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["v4", "v2", "v3", "v1"]);
    assert_eq!(ids(&vs.list("p", 2).unwrap()), ["v4", "v2"]);
    assert_eq!(ids(&vs.list("p", 1).unwrap()), ["v4"]);
    assert_eq!(ids(&vs.list("p", 10).unwrap()).len(), 4);
    assert_eq!(ids(&store.read().list_versions("p").unwrap()).len(), 4);
    // Latest: the latest start, in force or not; current: in force now.
    assert_eq!(vs.latest("p").unwrap().version_id, "v4");
    assert_eq!(vs.current("p").unwrap().version_id, "v2");
    assert_eq!(as_of(&store, "p", Timestamp::now()), "v2");
    assert_eq!(as_of(&store, "p", plus(future, 1)), "v4");
    assert_eq!(
        store.read().current_version("p").unwrap().as_deref(),
        Some("v2")
    );
    assert_eq!(store.read().current_version("none").unwrap(), None);
    // The registration is returned as stored.
    let v3 = vs.get("p", "v3").unwrap();
    assert_eq!(v3.effective_start, day(2020, 1, 1));
    assert_eq!(v3.effective_end, Some(day(2020, 2, 1)));
    assert!(!v3.effective_from_store);
    assert!(vs.latest("none").unwrap_err().is_not_found());
    assert!(vs.get("p", "v9").unwrap_err().is_not_found());
}

#[test]
fn storing_a_document_registers_its_version_and_node_queries_follow_it() {
    let (_d, store) = open();
    let vs = store.versions();
    let spec = VersionSpec {
        effective_start: Some(day(2020, 1, 1)),
        supersedes: None,
        created_by: "loader".into(),
        description: "first".into(),
        tags: vec!["t1".into()],
        ..Default::default()
    };
    let mut doc = Document::new("p", "v1");
    doc.pageindex_doc_id = "pi-1".into();
    let seq = store.db().stats().unwrap().commit_seq;
    store
        .store_document_with(doc, vec![node("n", "one")], Some(&spec))
        .unwrap();
    // One commit holds the document and its registration.
    assert_eq!(store.db().stats().unwrap().commit_seq, seq + 1);
    let v1 = vs.get("p", "v1").unwrap();
    assert_eq!(v1.effective_start, day(2020, 1, 1));
    assert_eq!(v1.effective_end, None);
    assert!(!v1.effective_from_store);
    assert_eq!(v1.pageindex_doc_id, "pi-1");
    assert_eq!(v1.created_by, "loader");
    assert_eq!(v1.description, "first");
    assert_eq!(v1.tags, ["t1"]);

    // A future-dated version is stored and registered, but not yet current:
    // node queries with no version keep reading v1.
    let future = plus(Timestamp::now(), 30 * DAY_NANOS);
    let spec2 = VersionSpec {
        effective_start: Some(future),
        supersedes: Some("v1".into()),
        ..Default::default()
    };
    store
        .store_document_with(
            Document::new("p", "v2"),
            vec![node("n", "two")],
            Some(&spec2),
        )
        .unwrap();
    let r = store.read();
    assert_eq!(r.get_node("p", None, "n").unwrap().text, "one");
    assert_eq!(r.get_node("p", Some("v2"), "n").unwrap().text, "two");
    assert_eq!(r.current_version("p").unwrap().as_deref(), Some("v1"));
    drop(r);
    assert_eq!(vs.current("p").unwrap().version_id, "v1");
    assert_eq!(vs.latest("p").unwrap().version_id, "v2");
    assert_eq!(vs.get("p", "v2").unwrap().supersedes.as_deref(), Some("v1"));
    assert_eq!(as_of(&store, "p", future), "v2");

    // A version stored without a spec is effective from when it was stored:
    // it becomes current (its start is after v1's, before v2's).
    let before = Timestamp::now();
    store
        .store_document(Document::new("p", "v3"), vec![node("n", "three")])
        .unwrap();
    let v3 = vs.get("p", "v3").unwrap();
    assert!(v3.effective_from_store);
    assert!(v3.effective_start >= before && v3.effective_start <= Timestamp::now_observed());
    assert_eq!(vs.current("p").unwrap().version_id, "v3");
    let r = store.read();
    assert_eq!(r.get_node("p", None, "n").unwrap().text, "three");
    let (_, nodes) = r.get_document("p", None).unwrap();
    assert_eq!(nodes[0].text, "three");
    let hits = r
        .search(
            SearchScope::Document {
                policy: "p",
                version: None,
            },
            "three one two",
            10,
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].version_id, "v3");
    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["v2", "v3", "v1"]);
}

#[test]
fn node_queries_in_a_gap_say_why() {
    let (_d, store) = open();
    let spec = VersionSpec {
        effective_start: Some(day(2020, 1, 1)),
        effective_end: Some(day(2021, 1, 1)),
        ..Default::default()
    };
    store
        .store_document_with(Document::new("p", "v1"), vec![node("n", "x")], Some(&spec))
        .unwrap();
    let e = store.read().get_node("p", None, "n").unwrap_err();
    assert!(
        matches!(&e, Error::NoVersionInForce { reason, .. } if reason.contains("gap")),
        "{e}"
    );
    // Naming the version still works.
    assert_eq!(
        store.read().get_node("p", Some("v1"), "n").unwrap().text,
        "x"
    );
}

#[test]
fn restoring_without_a_spec_keeps_an_explicit_start() {
    let (_d, store) = open();
    let vs = store.versions();
    let spec = VersionSpec {
        effective_start: Some(day(2020, 1, 1)),
        ..Default::default()
    };
    store
        .store_document_with(Document::new("p", "v1"), vec![node("n", "a")], Some(&spec))
        .unwrap();
    let mut doc = Document::new("p", "v1");
    doc.pageindex_doc_id = "second".into();
    let report = store.store_document(doc, vec![node("n", "b")]).unwrap();
    assert!(report.replaced);
    let v1 = vs.get("p", "v1").unwrap();
    assert_eq!(v1.effective_start, day(2020, 1, 1));
    assert!(!v1.effective_from_store);
    assert_eq!(v1.pageindex_doc_id, "second");
    assert_eq!(vs.list("p", 0).unwrap().len(), 1);
    assert_eq!(store.read().get_node("p", None, "n").unwrap().text, "b");
    // A spec without a start keeps it too.
    store
        .store_document_with(
            Document::new("p", "v1"),
            vec![node("n", "c")],
            Some(&VersionSpec {
                description: "again".into(),
                ..Default::default()
            }),
        )
        .unwrap();
    let v1 = vs.get("p", "v1").unwrap();
    assert_eq!(v1.effective_start, day(2020, 1, 1));
    assert_eq!(v1.description, "again");

    // Without any start, each store moves the start to the time of storing.
    store
        .store_document(Document::new("q", "w"), vec![node("n", "a")])
        .unwrap();
    let first = vs.get("q", "w").unwrap().effective_start;
    store
        .store_document(Document::new("q", "w"), vec![node("n", "b")])
        .unwrap();
    let second = vs.get("q", "w").unwrap();
    assert!(second.effective_start > first);
    assert!(second.effective_from_store);
    assert_eq!(vs.list("q", 0).unwrap().len(), 1);
}

#[test]
fn diff_reports_added_removed_and_changed_nodes() {
    let (_d, store) = open();
    let mk = |id: &str, parent: Option<&str>, text: &str| {
        let mut n = Node::new(id, parent, format!("title {id}"), (1, 2));
        n.text = text.to_string();
        n.section_path = format!("s-{id}");
        n
    };
    let a = vec![
        mk("1", None, "one"),
        mk("2", None, "two"),
        mk("2.1", Some("2"), "two one"),
        mk("3", None, "three"),
        mk("4", None, "four"),
    ];
    let mut b = vec![
        mk("2", None, "two"),
        mk("2.1", Some("2"), "two one, amended"),
        mk("3", None, "three"),
        mk("5", None, "five"),
        mk("4", None, "four"),
        mk("6", Some("5"), "six"),
    ];
    b[4].keywords = vec!["new keyword".into()]; // 4 changes by a keyword
    b[2].updated_at = day(2030, 1, 1); // a timestamp is not content
                                       // Expected, from the inputs: by id, in b's order for added/changed, a's
                                       // for removed; "changed" compares the content fields set above.
    let content = |n: &Node| {
        (
            n.parent_id.clone(),
            n.title.clone(),
            n.text.clone(),
            n.keywords.clone(),
        )
    };
    let find = |list: &[Node], id: &str| list.iter().find(|n| n.node_id == id).cloned();
    let want_added: Vec<String> = b
        .iter()
        .filter(|n| find(&a, &n.node_id).is_none())
        .map(|n| n.node_id.clone())
        .collect();
    let want_removed: Vec<String> = a
        .iter()
        .filter(|n| find(&b, &n.node_id).is_none())
        .map(|n| n.node_id.clone())
        .collect();
    let want_changed: Vec<String> = b
        .iter()
        .filter(|n| find(&a, &n.node_id).is_some_and(|o| content(&o) != content(n)))
        .map(|n| n.node_id.clone())
        .collect();
    assert_eq!(want_added, ["5", "6"]);
    assert_eq!(want_removed, ["1"]);
    assert_eq!(want_changed, ["2.1", "4"]);

    store
        .store_document(Document::new("p", "a"), a.clone())
        .unwrap();
    store
        .store_document(Document::new("p", "b"), b.clone())
        .unwrap();
    let d = store.versions().diff("p", "a", "b").unwrap();
    assert_eq!(d.added, want_added);
    assert_eq!(d.removed, want_removed);
    assert_eq!(d.changed, want_changed);
    // Unchanged nodes are not reported anywhere.
    for same in ["2", "3"] {
        assert!(!d
            .added
            .iter()
            .chain(&d.removed)
            .chain(&d.changed)
            .any(|x| x == same));
    }
    // The other direction swaps added and removed.
    let r = store.versions().diff("p", "b", "a").unwrap();
    assert_eq!(r.added, want_removed);
    assert_eq!(r.removed, want_added);
    assert_eq!(r.changed, ["2.1", "4"]);
    // A version against itself: nothing.
    let same = store.versions().diff("p", "a", "a").unwrap();
    assert!(same.added.is_empty() && same.removed.is_empty() && same.changed.is_empty());
    // A missing version is not found.
    assert!(store
        .versions()
        .diff("p", "a", "zzz")
        .unwrap_err()
        .is_not_found());
    let e = store.versions().diff("p", "", "a").unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "version_a"),
        "{e}"
    );
}

#[test]
fn deleting_a_document_removes_its_registration() {
    let (_d, store) = open();
    let vs = store.versions();
    for (v, year) in [("v1", 2020), ("v2", 2021)] {
        store
            .store_document_with(
                Document::new("p", v),
                vec![node("n", v)],
                Some(&VersionSpec {
                    effective_start: Some(day(year, 1, 1)),
                    ..Default::default()
                }),
            )
            .unwrap();
    }
    // A registration with no document.
    vs.register(ver("p", "v0", day(2010, 1, 1), None)).unwrap();
    assert_eq!(vs.current("p").unwrap().version_id, "v2");

    assert_eq!(store.delete_document("p", Some("v2")).unwrap(), ["v2"]);
    assert!(vs.get("p", "v2").unwrap_err().is_not_found());
    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["v1", "v0"]);
    assert_eq!(vs.current("p").unwrap().version_id, "v1");
    assert_eq!(store.read().get_node("p", None, "n").unwrap().text, "v1");
    // as_of in 2021 now falls to v1 (open-ended).
    assert_eq!(as_of(&store, "p", day(2021, 6, 1)), "v1");

    // Deleting a registration without a document.
    assert_eq!(store.delete_document("p", Some("v0")).unwrap(), ["v0"]);
    assert_eq!(ids(&vs.list("p", 0).unwrap()), ["v1"]);
    let reason = not_in_force(&store, "p", day(2015, 1, 1));
    assert!(reason.contains("before the first version"), "{reason}");

    // Deleting everything.
    store
        .store_document(Document::new("p", "v9"), vec![node("n", "v9")])
        .unwrap();
    let mut gone = store.delete_document("p", None).unwrap();
    gone.sort();
    assert_eq!(gone, ["v1", "v9"]);
    assert!(vs.list("p", 0).unwrap().is_empty());
    let reason = not_in_force(&store, "p", Timestamp::now());
    assert!(reason.contains("no registered versions"), "{reason}");
    assert!(store.delete_document("p", None).unwrap_err().is_not_found());
}

#[test]
fn cross_policy_search_reads_only_the_version_in_force() {
    let (_d, store) = open();
    let store_at = |policy: &str, v: &str, text: &str, start, end| {
        store
            .store_document_with(
                Document::new(policy, v),
                vec![node("n", text)],
                Some(&VersionSpec {
                    effective_start: Some(start),
                    effective_end: end,
                    ..Default::default()
                }),
            )
            .unwrap();
    };
    let future = plus(Timestamp::now(), 100 * DAY_NANOS);
    // a: old (2020), current (2021), future.
    store_at("a", "v1", "aardvark marker", day(2020, 1, 1), None);
    store_at("a", "v2", "zebra marker", day(2021, 1, 1), None);
    store_at("a", "v3", "quokka marker", future, None);
    // b: its only version ended: nothing in force.
    store_at(
        "b",
        "v1",
        "zebra marker",
        day(2020, 1, 1),
        Some(day(2021, 1, 1)),
    );
    // c: in force now is a registration without a document; an older stored
    // version is not searched in its place.
    store_at("c", "v1", "zebra marker", day(2020, 1, 1), None);
    store
        .versions()
        .register(ver("c", "v2", day(2021, 1, 1), None))
        .unwrap();
    // d: an older open-ended version covering again after a newer one ended.
    store_at("d", "v1", "zebra marker", day(2020, 1, 1), None);
    store_at(
        "d",
        "v2",
        "aardvark",
        day(2021, 1, 1),
        Some(day(2022, 1, 1)),
    );

    let r = store.read();
    let found = |q: &str| {
        let mut hits: Vec<(String, String)> = r
            .search(SearchScope::AllPolicies, q, 100)
            .unwrap()
            .into_iter()
            .map(|h| (h.policy_id, h.version_id))
            .collect();
        hits.sort();
        hits
    };
    let pair = |p: &str, v: &str| (p.to_string(), v.to_string());
    assert_eq!(found("zebra"), [pair("a", "v2"), pair("d", "v1")]);
    assert_eq!(found("aardvark"), []);
    assert_eq!(found("quokka"), []);
    assert_eq!(found("marker"), [pair("a", "v2"), pair("d", "v1")]);
    // Consistent with node queries that name no version.
    assert!(r.get_node("b", None, "n").is_err());
    assert!(r.get_document("c", None).unwrap_err().is_not_found());
    assert_eq!(r.get_node("d", None, "n").unwrap().text, "zebra marker");
}

#[test]
fn versions_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let registered = {
        let store = TreeStore::open(dir.path(), Options::default()).unwrap();
        store
            .store_document_with(
                Document::new("p", "v1"),
                vec![node("n", "one")],
                Some(&VersionSpec {
                    effective_start: Some(day(2020, 1, 1)),
                    effective_end: Some(day(2021, 1, 1)),
                    ..Default::default()
                }),
            )
            .unwrap();
        let mut v2 = ver("p", "v2", day(2022, 1, 1), None);
        v2.tags = vec!["x".into(), "y".into()];
        let v2 = store.versions().register(v2).unwrap();
        let list = store.versions().list("p", 0).unwrap();
        assert_eq!(list[0], v2);
        store.close().unwrap();
        list
    };
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.versions().list("p", 0).unwrap(), registered);
    assert_eq!(as_of(&store, "p", day(2020, 6, 1)), "v1");
    assert!(not_in_force(&store, "p", day(2021, 6, 1)).contains("gap"));
    assert_eq!(as_of(&store, "p", day(2023, 6, 1)), "v2");
    assert_eq!(
        store.read().get_node("p", Some("v1"), "n").unwrap().text,
        "one"
    );
    store.close().unwrap();
}

/// Re-storing a version that has an explicit start with a spec that gives
/// only an end keeps the start (as `VersionSpec::effective_start` documents)
/// and takes the end (an end between the kept start and now is valid).
#[test]
fn restoring_with_only_an_end_keeps_the_explicit_start() {
    let (_d, store) = open();
    let start = VersionSpec {
        effective_start: Some(day(2020, 1, 1)),
        ..Default::default()
    };
    store
        .store_document_with(Document::new("p", "v1"), vec![node("n", "a")], Some(&start))
        .unwrap();
    let only_end = VersionSpec {
        effective_end: Some(day(2021, 1, 1)),
        ..Default::default()
    };
    store
        .store_document_with(
            Document::new("p", "v1"),
            vec![node("n", "b")],
            Some(&only_end),
        )
        .unwrap();
    let v1 = store.versions().get("p", "v1").unwrap();
    assert_eq!(v1.effective_start, day(2020, 1, 1));
    assert_eq!(v1.effective_end, Some(day(2021, 1, 1)));
}

#[test]
fn an_end_before_a_kept_start_is_rejected_when_restoring() {
    let (_d, store) = open();
    let start = VersionSpec {
        effective_start: Some(day(2090, 1, 1)),
        ..Default::default()
    };
    store
        .store_document_with(Document::new("q", "v1"), vec![node("n", "a")], Some(&start))
        .unwrap();
    let seq = store.db().stats().unwrap().commit_seq;
    let only_end = VersionSpec {
        effective_end: Some(day(2080, 1, 1)),
        ..Default::default()
    };
    let e = store
        .store_document_with(
            Document::new("q", "v1"),
            vec![node("n", "b")],
            Some(&only_end),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "effective_end"),
        "{e}"
    );
    // Neither the new content nor a new period was written.
    assert_eq!(store.db().stats().unwrap().commit_seq, seq);
    assert_eq!(
        store.read().get_node("q", Some("v1"), "n").unwrap().text,
        "a"
    );
    assert_eq!(store.versions().get("q", "v1").unwrap().effective_end, None);
}

/// A registration without a `pageindex_doc_id` takes the stored document's;
/// one registered before its document takes it when the document is stored.
#[test]
fn registrations_take_the_document_id_of_the_stored_document() {
    let (_d, store) = open();
    let vs = store.versions();
    let mut doc = Document::new("p", "v1");
    doc.pageindex_doc_id = "pi-1".into();
    store.store_document(doc, vec![node("a", "x")]).unwrap();
    let v = vs.register(ver("p", "v1", day(2020, 1, 1), None)).unwrap();
    assert_eq!(v.pageindex_doc_id, "pi-1");
    assert_eq!(vs.get("p", "v1").unwrap().pageindex_doc_id, "pi-1");
    // Given explicitly: kept.
    let mut explicit = ver("p", "v1", day(2020, 1, 1), None);
    explicit.pageindex_doc_id = "mine".into();
    assert_eq!(vs.register(explicit).unwrap().pageindex_doc_id, "mine");
    // No document yet: empty, until one is stored.
    let v = vs.register(ver("p", "v2", day(2021, 1, 1), None)).unwrap();
    assert_eq!(v.pageindex_doc_id, "");
    let mut doc = Document::new("p", "v2");
    doc.pageindex_doc_id = "pi-2".into();
    store.store_document(doc, vec![node("a", "x")]).unwrap();
    assert_eq!(vs.get("p", "v2").unwrap().pageindex_doc_id, "pi-2");
}

/// Effective periods outside the supported range are rejected.
#[test]
fn effective_times_outside_the_supported_range_are_rejected() {
    let (_d, store) = open();
    let early = Timestamp::from_unix_nanos(Timestamp::MIN.unix_nanos() - 1);
    match store.versions().register(ver("p", "v1", early, None)) {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "effective_start"),
        other => panic!("{other:?}"),
    }
    assert!(store.versions().list("p", 0).unwrap().is_empty());
    store
        .versions()
        .register(ver("p", "v1", Timestamp::MIN, Some(Timestamp::MAX)))
        .unwrap();
    let v = store.versions().get("p", "v1").unwrap();
    assert_eq!(
        (v.effective_start, v.effective_end),
        (Timestamp::MIN, Some(Timestamp::MAX))
    );
}

/// Queries that name no version use the version in force as remembered from
/// earlier queries; these check it is never stale: when time reaches the next
/// start or the end of the version in force, when the index is written
/// (documents or registrations), and for a reader on an older snapshot.
#[test]
fn the_remembered_version_in_force_follows_time_writes_and_snapshots() {
    let (_d, store) = open();
    let spec = |start: Timestamp, end: Option<Timestamp>| VersionSpec {
        effective_start: Some(start),
        effective_end: end,
        ..Default::default()
    };
    let text = |r: &treestore::Reader<'_>| r.get_node("p", None, "n").map(|n| n.text);
    store
        .store_document_with(
            Document::new("p", "v1"),
            vec![node("n", "one")],
            Some(&spec(day(2020, 1, 1), None)),
        )
        .unwrap();
    // v2 starts shortly: until then v1 is in force (and remembered). A read
    // that ends before the start must see v1, one that begins after it v2
    // (on a machine slow enough to straddle the start, either is right).
    let soon = plus(Timestamp::now(), 2_000_000_000);
    store
        .store_document_with(
            Document::new("p", "v2"),
            vec![node("n", "two")],
            Some(&spec(soon, None)),
        )
        .unwrap();
    let in_force_around = |r: &treestore::Reader<'_>, boundary: Timestamp| {
        let before = Timestamp::now();
        let got = text(r);
        let after = Timestamp::now();
        (got, after < boundary, before > boundary)
    };
    for _ in 0..2 {
        match in_force_around(&store.read(), soon) {
            (got, true, _) => assert_eq!(got.unwrap(), "one"),
            (got, _, true) => assert_eq!(got.unwrap(), "two"),
            (got, ..) => assert!(["one", "two"].contains(&got.unwrap().as_str())),
        }
    }
    while Timestamp::now() <= soon {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(text(&store.read()).unwrap(), "two", "v2 started");

    // A reader that began before v3 was stored keeps seeing v2, before and
    // after a newer reader has learnt that v3 is in force.
    let old = store.read();
    assert_eq!(text(&old).unwrap(), "two");
    store
        .store_document(Document::new("p", "v3"), vec![node("n", "three")])
        .unwrap();
    let new = store.read();
    assert_eq!(text(&new).unwrap(), "three");
    assert_eq!(text(&new).unwrap(), "three");
    assert_eq!(text(&old).unwrap(), "two");
    assert_eq!(old.current_version("p").unwrap().as_deref(), Some("v2"));
    drop((old, new));

    // A registration without a document is a write to the index too.
    store
        .versions()
        .register(ver("p", "v4", plus(Timestamp::now(), -1), None))
        .unwrap();
    let r = store.read();
    assert_eq!(r.current_version("p").unwrap().as_deref(), Some("v4"));
    assert!(matches!(text(&r), Err(Error::DocumentNotFound { .. })));
    drop(r);

    // The end of the version in force.
    let end = plus(Timestamp::now(), 2_000_000_000);
    store
        .store_document_with(
            Document::new("q", "only"),
            vec![node("n", "q")],
            Some(&spec(day(2020, 1, 1), Some(end))),
        )
        .unwrap();
    let before = Timestamp::now();
    let got = store.read().get_node("q", None, "n");
    if Timestamp::now() < end {
        assert_eq!(got.unwrap().text, "q");
    } else if before > end {
        assert!(matches!(got, Err(Error::NoVersionInForce { .. })));
    }
    while Timestamp::now() <= end {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(matches!(
        store.read().get_node("q", None, "n"),
        Err(Error::NoVersionInForce { .. })
    ));
}

/// Readers on many snapshots while new versions are stored: a reader's
/// version in force (and the node read with no version) is always the newest
/// version its own snapshot lists, and a reader kept from earlier still
/// answers as it did, whatever the remembered answers are meanwhile.
#[test]
fn the_remembered_version_in_force_is_right_for_every_snapshot_under_writes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (_d, store) = open();
    store
        .store_document(Document::new("p", "v000"), vec![node("n", "v000")])
        .unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..3 {
            let (store, done) = (&store, &done);
            s.spawn(move || {
                let mut kept: Option<(treestore::Reader<'_>, String)> = None;
                let mut rounds = 0u32;
                while !done.load(Ordering::Relaxed) || rounds < 10 {
                    let r = store.read();
                    let listed = r.list_versions("p").unwrap();
                    let want = listed[0].version_id.clone();
                    assert_eq!(r.current_version("p").unwrap(), Some(want.clone()));
                    assert_eq!(r.get_node("p", None, "n").unwrap().text, want);
                    if let Some((old, was)) = &kept {
                        assert_eq!(old.current_version("p").unwrap().as_ref(), Some(was));
                        assert_eq!(&old.get_node("p", None, "n").unwrap().text, was);
                    }
                    if rounds.is_multiple_of(5 + t) {
                        kept = Some((r, want));
                    }
                    rounds += 1;
                }
            });
        }
        for i in 1..=60 {
            let v = format!("v{i:03}");
            store
                .store_document(Document::new("p", &v), vec![node("n", &v)])
                .unwrap();
        }
        done.store(true, Ordering::Relaxed);
    });
}
