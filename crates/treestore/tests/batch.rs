//! Atomic batches (`TreeStore::apply`): a batch mixing every store is
//! visible as a whole after one commit; a batch with one bad operation writes
//! nothing and names the operation and field; batches survive a reopen.

use treestore::metadata::{
    Contradiction, ContradictionQuery, CrossReference, Direction, Evidence, Resolution, ToolResult,
    ToolResultQuery, Trajectory, TrajectoryStep,
};
use treestore::prompts::{PromptTemplate, PromptUsage};
use treestore::{
    Document, Error, Node, Options, PolicyVersion, Timestamp, TreeStore, VersionSpec, WriteOp,
};

fn day(y: i64, m: u32, d: u32) -> Timestamp {
    Timestamp::from_date(y, m, d).unwrap()
}

fn nodes(text: &str) -> Vec<Node> {
    let mut a = Node::new("1", None, "Coverage", (1, 2));
    a.text = text.to_string();
    let mut b = Node::new("1.1", Some("1"), "Exclusions", (2, 2));
    b.text = format!("{text} exclusions");
    vec![a, b]
}

fn tool_result(id: &str, case: &str, output: &str) -> ToolResult {
    ToolResult {
        execution_id: id.to_string(),
        case_id: case.to_string(),
        tool_name: "lookup".into(),
        policy_id: "p".into(),
        version_id: "v2".into(),
        node_id: "1".into(),
        input: "{\"q\":1}".into(),
        output: output.to_string(),
        success: true,
        latency_ms: 3.0,
        ..Default::default()
    }
}

fn contradiction(id: &str, case: &str) -> Contradiction {
    let ev = |n: &str| Evidence {
        policy_id: "p".into(),
        node_id: n.into(),
        ..Default::default()
    };
    Contradiction {
        contradiction_id: id.to_string(),
        case_id: case.to_string(),
        criterion_id: "crit".into(),
        evidence_a: ev("1"),
        evidence_b: ev("1.1"),
        ..Default::default()
    }
}

/// A batch touching every store.
fn mixed_batch(case: &str) -> Vec<WriteOp> {
    vec![
        WriteOp::StoreDocument {
            document: Document::new("p", "v2"),
            nodes: nodes("second"),
            version: Some(VersionSpec {
                effective_start: Some(day(2021, 1, 1)),
                supersedes: Some("v1".into()),
                ..Default::default()
            }),
        },
        WriteOp::RegisterVersion({
            let mut v = PolicyVersion::new("p", "v1", day(2020, 1, 1));
            v.effective_end = Some(day(2021, 1, 1));
            v
        }),
        WriteOp::ToolResult(tool_result("e1", case, "{\"found\":true}")),
        WriteOp::ToolResult(tool_result("", case, "[]")),
        WriteOp::Contradiction(contradiction("k1", case)),
        WriteOp::Trajectory(Trajectory {
            trajectory_id: "t1".into(),
            case_id: case.to_string(),
            policy_id: "p".into(),
            steps: vec![TrajectoryStep {
                step_number: 1,
                tool_name: "lookup".into(),
                nodes_visited: vec!["1".into(), "1.1".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        WriteOp::CrossReference(CrossReference {
            reference_id: "x1".into(),
            source_policy_id: "p".into(),
            source_node_id: "1.1".into(),
            target_policy_id: "q".into(),
            target_node_id: "7".into(),
            reference_type: "cites".into(),
            ..Default::default()
        }),
        WriteOp::PromptTemplate(PromptTemplate {
            prompt_id: "decide".into(),
            template: "Decide {case}".into(),
            ..Default::default()
        }),
        // Sees the template written earlier in the same batch.
        WriteOp::PromptUsage(PromptUsage {
            prompt_id: "decide".into(),
            case_id: case.to_string(),
            outcome: "approved".into(),
            tool_result_ids: vec!["e1".into()],
            ..Default::default()
        }),
        // Resolves the contradiction written earlier in the same batch.
        WriteOp::ResolveContradiction {
            contradiction_id: "k1".into(),
            resolution: Resolution::Resolved,
            note: "v2 prevails".into(),
        },
    ]
}

fn open() -> (tempfile::TempDir, TreeStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    (dir, store)
}

/// Everything `mixed_batch(case)` wrote is visible.
fn check_mixed(store: &TreeStore, case: &str, ids: &[String]) {
    let r = store.read();
    let (_, ns) = r.get_document("p", Some("v2")).unwrap();
    assert_eq!(ns.len(), 2);
    assert_eq!(ns[0].text, "second");
    // v2 from 2021 is in force now; v1 in 2020; ended at v2's start.
    assert_eq!(r.current_version("p").unwrap().as_deref(), Some("v2"));
    drop(r);
    let vs = store.versions();
    assert_eq!(vs.as_of("p", day(2020, 6, 1)).unwrap().version_id, "v1");
    assert_eq!(vs.as_of("p", day(2021, 6, 1)).unwrap().version_id, "v2");
    assert_eq!(vs.get("p", "v2").unwrap().supersedes.as_deref(), Some("v1"));

    let md = store.metadata();
    let results = md
        .tool_results(&ToolResultQuery {
            case_id: Some(case),
            ..Default::default()
        })
        .unwrap();
    let mut got: Vec<&str> = results.iter().map(|r| r.execution_id.as_str()).collect();
    got.sort();
    let mut want = vec![ids[2].as_str(), ids[3].as_str()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ids[2], "e1");
    assert!(treestore::ids::is_generated(&ids[3]));
    assert_eq!(md.tool_result("e1").unwrap().output, "{\"found\":true}");

    let k = md.contradiction("k1").unwrap();
    assert_eq!(k.resolution, Resolution::Resolved);
    assert_eq!(k.resolution_note, "v2 prevails");
    assert!(k.resolved_at.is_some());
    assert_eq!(
        md.contradictions(ContradictionQuery::Case(case), false, 0)
            .unwrap()
            .len(),
        1
    );
    assert!(md
        .contradictions(ContradictionQuery::Case(case), true, 0)
        .unwrap()
        .is_empty());

    assert_eq!(md.trajectories(case, 0).unwrap().len(), 1);
    let visits = md.most_visited_nodes("p", 0).unwrap();
    assert_eq!(visits.len(), 2);
    let xs = md
        .cross_references("q", "7", None, Direction::Incoming, Some("cites"))
        .unwrap();
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].reference_id, "x1");

    let ps = store.prompts();
    assert_eq!(ps.latest("decide").unwrap().version, "1");
    assert_eq!(ids[7], "decide/1");
    let usages = ps.usages_by_case(case, 0).unwrap();
    assert_eq!(usages.len(), 1);
    assert_eq!(usages[0].prompt_version, "1");
    assert_eq!(usages[0].usage_id, ids[8]);
    assert_eq!(
        ps.effectiveness("decide", Some("1")).unwrap().outcomes["approved"],
        1
    );
}

#[test]
fn a_mixed_batch_is_one_commit_and_all_visible() {
    let (_d, store) = open();
    let seq = store.db().stats().unwrap().commit_seq;
    let ids = store.apply(mixed_batch("case")).unwrap();
    assert_eq!(store.db().stats().unwrap().commit_seq, seq + 1);
    assert_eq!(ids.len(), 10);
    assert_eq!(ids[0], "p/v2");
    assert_eq!(ids[1], "p/v1");
    assert_eq!(ids[4], "k1");
    assert_eq!(ids[5], "t1");
    assert_eq!(ids[6], "x1");
    assert_eq!(ids[9], "k1");
    check_mixed(&store, "case", &ids);
}

/// Nothing of `mixed_batch` (or of its case) exists.
fn check_nothing(store: &TreeStore, case: &str) {
    let r = store.read();
    assert!(r.get_document("p", Some("v2")).unwrap_err().is_not_found());
    assert!(r.list_versions("p").unwrap().is_empty());
    drop(r);
    let md = store.metadata();
    let q = ToolResultQuery {
        case_id: Some(case),
        ..Default::default()
    };
    assert!(md.tool_results(&q).unwrap().is_empty());
    assert!(md.tool_result("e1").unwrap_err().is_not_found());
    assert!(md.contradiction("k1").unwrap_err().is_not_found());
    assert!(md.trajectories(case, 0).unwrap().is_empty());
    assert!(md.most_visited_nodes("p", 0).unwrap().is_empty());
    assert!(md
        .cross_references("q", "7", None, Direction::Both, None)
        .unwrap()
        .is_empty());
    assert!(md.tool_stats(None, None, None).unwrap().is_empty());
    assert!(store.prompts().latest("decide").unwrap_err().is_not_found());
    assert!(store.prompts().usages_by_case(case, 0).unwrap().is_empty());
}

fn field_of(e: &Error) -> &str {
    match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn a_batch_with_one_bad_op_writes_nothing_and_names_it() {
    let (_d, store) = open();
    let seq = store.db().stats().unwrap().commit_seq;

    // Bad JSON in the tool result at position 3.
    let mut ops = mixed_batch("case");
    ops[3] = WriteOp::ToolResult(tool_result("e2", "case", "{\"found\": tru"));
    let e = store.apply(ops).unwrap_err();
    assert_eq!(field_of(&e), "ops[3].output");
    assert!(e.to_string().contains("ops[3].output"), "{e}");

    // A version ending before it starts at position 1.
    let mut ops = mixed_batch("case");
    ops[1] = WriteOp::RegisterVersion({
        let mut v = PolicyVersion::new("p", "v1", day(2020, 1, 1));
        v.effective_end = Some(day(2019, 1, 1));
        v
    });
    assert_eq!(
        field_of(&store.apply(ops).unwrap_err()),
        "ops[1].effective_end"
    );

    // A bad document spec at position 0.
    let mut ops = mixed_batch("case");
    ops[0] = WriteOp::StoreDocument {
        document: Document::new("p", "v2"),
        nodes: nodes("x"),
        version: Some(VersionSpec {
            effective_start: Some(day(2021, 1, 1)),
            effective_end: Some(day(2021, 1, 1)),
            ..Default::default()
        }),
    };
    assert_eq!(
        field_of(&store.apply(ops).unwrap_err()),
        "ops[0].effective_end"
    );

    // An invalid document (a node whose parent does not exist).
    let mut ops = mixed_batch("case");
    ops[0] = WriteOp::StoreDocument {
        document: Document::new("p", "v2"),
        nodes: vec![Node::new("orphan", Some("nope"), "t", (1, 1))],
        version: None,
    };
    // Reported as an invalid argument naming the op, with the node.
    let e = store.apply(ops).unwrap_err();
    assert_eq!(field_of(&e), "ops[0].store_document");
    assert!(e.to_string().contains("orphan"), "{e}");

    // Missing ids further down: the trajectory's case at position 5.
    let mut ops = mixed_batch("case");
    ops[5] = WriteOp::Trajectory(Trajectory::default());
    assert_eq!(field_of(&store.apply(ops).unwrap_err()), "ops[5].case_id");

    // A failure inside the transaction (resolving a contradiction that does
    // not exist) after the writes of earlier ops: rolled back too.
    let mut ops = mixed_batch("case");
    ops[9] = WriteOp::ResolveContradiction {
        contradiction_id: "missing".into(),
        resolution: Resolution::Resolved,
        note: String::new(),
    };
    assert!(store.apply(ops).unwrap_err().is_not_found());

    // Empty: rejected.
    assert_eq!(field_of(&store.apply(Vec::new()).unwrap_err()), "ops");

    assert_eq!(store.db().stats().unwrap().commit_seq, seq);
    check_nothing(&store, "case");

    // The corrected batch then goes through whole.
    let ids = store.apply(mixed_batch("case")).unwrap();
    check_mixed(&store, "case", &ids);
}

#[test]
fn batch_writes_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let ids = store.apply(mixed_batch("case")).unwrap();
    // Deleting through a batch, with a tool result in the same commit.
    let del = store
        .apply(vec![
            WriteOp::DeleteDocument {
                policy_id: "p".into(),
                version_id: Some("v1".into()),
            },
            WriteOp::ToolResult(tool_result("e9", "other", "")),
        ])
        .unwrap();
    assert_eq!(del, ["p/v1", "e9"]);
    store.close().unwrap();

    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let vs = store.versions();
    assert!(vs.get("p", "v1").unwrap_err().is_not_found());
    // Without v1, 2020 is before the first version.
    assert!(matches!(
        vs.as_of("p", day(2020, 6, 1)).unwrap_err(),
        Error::NoVersionInForce { .. }
    ));
    assert_eq!(store.metadata().tool_result("e9").unwrap().case_id, "other");
    // Everything else of the first batch is still there.
    let r = store.read();
    assert_eq!(
        r.get_node("p", None, "1.1").unwrap().text,
        "second exclusions"
    );
    drop(r);
    assert_eq!(store.metadata().tool_result(&ids[3]).unwrap().output, "[]");
    assert_eq!(store.prompts().usages_by_case("case", 0).unwrap().len(), 1);
    store.close().unwrap();
}

/// Several documents in one batch are indexed on parallel threads: all are
/// stored and searchable after the commit, and one invalid document among
/// them (not the first) is the error reported, with nothing written.
#[test]
fn a_batch_of_many_documents_is_indexed_in_parallel() {
    let (_dir, store) = open();
    let doc_ops = |bad: Option<usize>| -> Vec<WriteOp> {
        (0..12)
            .map(|i| {
                let mut ns = nodes(&format!("knee arthroscopy policy{i} uniqueword{i}"));
                if bad == Some(i) {
                    ns.push(Node::new("stray", Some("missing"), "t", (1, 1)));
                }
                WriteOp::StoreDocument {
                    document: Document::new(format!("bulk{i}"), "v1"),
                    nodes: ns,
                    version: None,
                }
            })
            .collect()
    };
    let mut ops = doc_ops(Some(7));
    ops.push(WriteOp::ToolResult(tool_result("t-bad", "case", "{")));
    let e = store.apply(ops).unwrap_err();
    assert_eq!(field_of(&e), "ops[7].store_document", "{e}");
    assert!(e.to_string().contains("stray"), "{e}");
    assert!(store
        .read()
        .get_document("bulk0", None)
        .unwrap_err()
        .is_not_found());

    let ids = store.apply(doc_ops(None)).unwrap();
    assert_eq!(ids[11], "bulk11/v1");
    let r = store.read();
    for i in 0..12 {
        let (_, ns) = r.get_document(&format!("bulk{i}"), None).unwrap();
        assert_eq!(ns.len(), 2);
        let policy = format!("bulk{i}");
        let hits = r
            .search(
                treestore::SearchScope::Document {
                    policy: &policy,
                    version: None,
                },
                &format!("uniqueword{i}"),
                10,
            )
            .unwrap();
        assert_eq!(hits.len(), 2, "document {i}");
    }
    let all = r
        .search(treestore::SearchScope::AllPolicies, "arthroscopy", 100)
        .unwrap();
    assert_eq!(all.len(), 24);
}

/// Documents of one batch are stamped in op order even though they are
/// indexed in parallel: the last version of a policy in the batch is the one
/// in force afterwards (no effective dates given), every time.
#[test]
fn the_last_document_of_a_batch_is_current_whatever_the_thread_timing() {
    let (_dir, store) = open();
    for round in 0..20 {
        let ops: Vec<WriteOp> = (0..4)
            .map(|v| WriteOp::StoreDocument {
                document: Document::new("racy", format!("r{round}v{v}")),
                nodes: nodes(&format!("round {round} version {v}")),
                version: None,
            })
            .collect();
        store.apply(ops).unwrap();
        let (doc, _) = store.read().get_document("racy", None).unwrap();
        assert_eq!(doc.version_id, format!("r{round}v3"), "round {round}");
    }
}
