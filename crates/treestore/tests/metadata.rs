//! The metadata store: tool results (queries, upserts, validation,
//! aggregates), trajectories (steps, visit analytics), cross-references (both
//! directions), contradictions (queries, resolution), generated ids, 8
//! concurrent writers and durability. Expected values are computed in the
//! tests from the records they wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use treestore::ids;
use treestore::metadata::{
    Contradiction, ContradictionQuery, CrossReference, Direction, Evidence, Resolution, Severity,
    ToolResult, ToolResultQuery, ToolStats, Trajectory, TrajectoryStep,
};
use treestore::{Error, Options, Timestamp, TreeStore, MAX_QUERY_LIMIT};

fn open() -> (tempfile::TempDir, TreeStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    (dir, store)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

const SEC: i64 = 1_000_000_000;

fn at(secs: i64) -> Timestamp {
    // 2024-01-01T00:00:00Z plus `secs`.
    Timestamp::from_unix_nanos(1_704_067_200 * SEC + secs * SEC)
}

fn invalid_field(e: &Error) -> &str {
    match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn result(id: &str, case: &str, tool: &str, policy: &str, secs: i64) -> ToolResult {
    ToolResult {
        execution_id: id.to_string(),
        case_id: case.to_string(),
        tool_name: tool.to_string(),
        policy_id: policy.to_string(),
        node_id: if policy.is_empty() {
            String::new()
        } else {
            "n1".into()
        },
        input: format!("{{\"q\":\"{id}\"}}"),
        output: "[1,2,3]".into(),
        success: true,
        latency_ms: 1.5,
        executed_at: at(secs),
        ..Default::default()
    }
}

fn exec_ids(v: &[ToolResult]) -> Vec<&str> {
    v.iter().map(|r| r.execution_id.as_str()).collect()
}

/// The expected answer of a tool-result query over `all`: filtered, newest
/// first, at most `limit`.
fn expect(all: &[ToolResult], keep: impl Fn(&ToolResult) -> bool, limit: usize) -> Vec<&str> {
    let mut v: Vec<&ToolResult> = all.iter().filter(|r| keep(r)).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.executed_at));
    v.truncate(limit);
    v.into_iter().map(|r| r.execution_id.as_str()).collect()
}

#[test]
fn tool_results_by_case_tool_and_policy_newest_first() {
    let (_d, store) = open();
    let md = store.metadata();
    let mut rng = Rng(0x1234_5678);
    let cases = ["c1", "c2", "c3"];
    let tools = ["search", "lookup", "temporal"];
    let policies = ["", "pA", "pB"];
    // 150 results at distinct seconds, written in random order.
    let mut all: Vec<ToolResult> = (0..150)
        .map(|i| {
            result(
                &format!("e{i:03}"),
                cases[rng.below(3) as usize],
                tools[rng.below(3) as usize],
                policies[rng.below(3) as usize],
                i * 10,
            )
        })
        .collect();
    rng.shuffle(&mut all);
    for r in &all {
        assert_eq!(md.put_tool_result(r.clone()).unwrap(), r.execution_id);
    }
    // A record reads back as written.
    assert_eq!(md.tool_result(&all[7].execution_id).unwrap(), all[7]);
    assert!(md.tool_result("nope").unwrap_err().is_not_found());

    let q = |case, tool, policy, since, until, limit| {
        let got = md
            .tool_results(&ToolResultQuery {
                case_id: case,
                tool_name: tool,
                policy_id: policy,
                since,
                until,
                limit,
            })
            .unwrap();
        exec_ids(&got)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for c in cases {
        let want = expect(&all, |r| r.case_id == c, 1000);
        assert!(want.len() > 20);
        assert_eq!(q(Some(c), None, None, None, None, 1000), want, "case {c}");
        assert_eq!(
            q(Some(c), None, None, None, None, 5),
            want[..5],
            "case {c} limit 5"
        );
    }
    for t in tools {
        let want = expect(&all, |r| r.tool_name == t, 1000);
        assert_eq!(q(None, Some(t), None, None, None, 1000), want, "tool {t}");
        assert_eq!(q(None, Some(t), None, None, None, 1), want[..1]);
    }
    for p in ["pA", "pB"] {
        let want = expect(&all, |r| r.policy_id == p, 1000);
        assert_eq!(q(None, None, Some(p), None, None, 1000), want, "policy {p}");
    }
    // Combined filters.
    let want = expect(&all, |r| r.case_id == "c2" && r.tool_name == "lookup", 1000);
    assert!(!want.is_empty());
    assert_eq!(q(Some("c2"), Some("lookup"), None, None, None, 1000), want);
    let want = expect(&all, |r| r.case_id == "c2" && r.tool_name == "lookup", 2);
    assert_eq!(q(Some("c2"), Some("lookup"), None, None, None, 2), want);
    let want = expect(
        &all,
        |r| r.policy_id == "pA" && r.tool_name == "search",
        1000,
    );
    assert_eq!(q(None, Some("search"), Some("pA"), None, None, 1000), want);
    let want = expect(&all, |r| r.case_id == "c3" && r.policy_id == "pB", 1000);
    assert!(!want.is_empty());
    assert_eq!(q(Some("c3"), None, Some("pB"), None, None, 1000), want);
    let want = expect(
        &all,
        |r| r.case_id == "c1" && r.tool_name == "search" && r.policy_id == "pA",
        1000,
    );
    assert_eq!(
        q(Some("c1"), Some("search"), Some("pA"), None, None, 1000),
        want
    );
    // A half-open window [since, until), bounds exactly on records.
    let (since, until) = (at(300), at(900));
    let want = expect(
        &all,
        |r| r.case_id == "c1" && r.executed_at >= since && r.executed_at < until,
        1000,
    );
    let got = q(Some("c1"), None, None, Some(since), Some(until), 1000);
    assert_eq!(got, want);
    for t in tools {
        let want = expect(
            &all,
            |r| r.tool_name == t && r.executed_at >= since && r.executed_at < until,
            3,
        );
        assert_eq!(q(None, Some(t), None, Some(since), Some(until), 3), want);
    }
    let want = expect(
        &all,
        |r| r.policy_id == "pB" && r.executed_at >= since,
        1000,
    );
    assert_eq!(q(None, None, Some("pB"), Some(since), None, 1000), want);
    // An inverted or empty window matches nothing.
    assert!(q(Some("c1"), None, None, Some(until), Some(since), 1000).is_empty());
    assert!(q(None, Some("search"), None, Some(since), Some(since), 1000).is_empty());
    assert!(md
        .tool_stats(Some("search"), Some(until), Some(since))
        .unwrap()
        .is_empty());
    assert!(md
        .tool_stats(None, Some(until), Some(since))
        .unwrap()
        .is_empty());
    let want = expect(&all, |r| r.policy_id == "pB" && r.executed_at < until, 1000);
    assert_eq!(q(None, None, Some("pB"), None, Some(until), 1000), want);
    // The default limit (0) is 100.
    let want = expect(&all, |_| true, 1000);
    assert_eq!(want.len(), 150);
    let mut by_all_tools: Vec<String> = tools
        .iter()
        .flat_map(|t| q(None, Some(t), None, None, None, 0))
        .collect();
    assert!(by_all_tools.len() <= 300);
    by_all_tools.sort();
    by_all_tools.dedup();
    assert_eq!(by_all_tools.len(), 150);
    // More than 100 in one index: the default limit applies.
    for i in 0..110 {
        md.put_tool_result(result(&format!("bulk{i}"), "big", "t", "", i))
            .unwrap();
    }
    assert_eq!(q(Some("big"), None, None, None, None, 0).len(), 100);
    assert_eq!(q(Some("big"), None, None, None, None, 1000).len(), 110);
    // Nothing matches: empty, not an error; no index named: an error.
    assert!(q(Some("c9"), None, None, None, None, 0).is_empty());
    let e = md.tool_results(&ToolResultQuery::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}

#[test]
fn tool_results_upsert_by_execution_id() {
    let (_d, store) = open();
    let md = store.metadata();
    let first = result("x1", "case", "alpha", "pA", 10);
    md.put_tool_result(first.clone()).unwrap();
    md.put_tool_result(result("x2", "case", "alpha", "pA", 20))
        .unwrap();
    let mut second = result("x1", "case", "beta", "pB", 30);
    second.output = "{\"changed\":true}".into();
    second.success = false;
    second.latency_ms = 99.0;
    md.put_tool_result(second.clone()).unwrap();
    // Same again: still one record.
    md.put_tool_result(second.clone()).unwrap();

    assert_eq!(md.tool_result("x1").unwrap(), second);
    let by = |case: Option<&str>, tool: Option<&str>, policy: Option<&str>| {
        let q = ToolResultQuery {
            case_id: case,
            tool_name: tool,
            policy_id: policy,
            ..Default::default()
        };
        exec_ids(&md.tool_results(&q).unwrap())
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(by(Some("case"), None, None), ["x1", "x2"]);
    assert_eq!(by(None, Some("alpha"), None), ["x2"]);
    assert_eq!(by(None, Some("beta"), None), ["x1"]);
    assert_eq!(by(None, None, Some("pA")), ["x2"]);
    assert_eq!(by(None, None, Some("pB")), ["x1"]);
    let stats = md.tool_stats(None, None, None).unwrap();
    let counts: Vec<(&str, u64, u64)> = stats
        .iter()
        .map(|s| (s.tool_name.as_str(), s.count, s.successes))
        .collect();
    assert_eq!(counts, [("alpha", 1, 1), ("beta", 1, 0)]);
    // Moving it out of a case removes it from the case index.
    let mut third = second.clone();
    third.case_id = String::new();
    md.put_tool_result(third).unwrap();
    assert_eq!(by(Some("case"), None, None), ["x2"]);
}

#[test]
fn invalid_tool_results_are_rejected_with_nothing_written() {
    let (_d, store) = open();
    let md = store.metadata();
    let seq = store.db().stats().unwrap().commit_seq;
    let mut bad_in = result("b1", "case", "t", "", 1);
    bad_in.input = "{\"unterminated\": ".into();
    assert_eq!(
        invalid_field(&md.put_tool_result(bad_in).unwrap_err()),
        "input"
    );
    let mut bad_out = result("b2", "case", "t", "", 1);
    bad_out.output = "not json".into();
    assert_eq!(
        invalid_field(&md.put_tool_result(bad_out).unwrap_err()),
        "output"
    );
    let mut no_tool = result("b3", "case", "", "", 1);
    no_tool.tool_name.clear();
    assert_eq!(
        invalid_field(&md.put_tool_result(no_tool).unwrap_err()),
        "tool_name"
    );
    let mut neg = result("b4", "case", "t", "", 1);
    neg.latency_ms = -1.0;
    assert_eq!(
        invalid_field(&md.put_tool_result(neg).unwrap_err()),
        "latency_ms"
    );
    let mut node_without_policy = result("b5", "case", "t", "", 1);
    node_without_policy.node_id = "n".into();
    assert_eq!(
        invalid_field(&md.put_tool_result(node_without_policy).unwrap_err()),
        "policy_id"
    );
    assert_eq!(store.db().stats().unwrap().commit_seq, seq);
    for id in ["b1", "b2", "b3", "b4", "b5"] {
        assert!(md.tool_result(id).unwrap_err().is_not_found());
    }
    let q = ToolResultQuery {
        case_id: Some("case"),
        ..Default::default()
    };
    assert!(md.tool_results(&q).unwrap().is_empty());
    assert!(md.tool_stats(None, None, None).unwrap().is_empty());
    // Empty input/output are allowed (no payload).
    let mut empty = result("ok", "case", "t", "", 1);
    empty.input.clear();
    empty.output.clear();
    md.put_tool_result(empty).unwrap();
}

/// Nearest-rank percentile, written independently of the store's.
/// The smallest value with at least `p`% of the values at or below it.
fn percentile(values: &[f64], p: usize) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut rank = 1;
    while rank * 100 < p * v.len() {
        rank += 1;
    }
    v[rank - 1]
}

fn expected_stats(
    all: &[ToolResult],
    tool: Option<&str>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Vec<ToolStats> {
    let mut by: BTreeMap<&str, Vec<&ToolResult>> = BTreeMap::new();
    for r in all {
        if tool.is_some_and(|t| t != r.tool_name)
            || since.is_some_and(|s| r.executed_at < s)
            || until.is_some_and(|u| r.executed_at >= u)
        {
            continue;
        }
        by.entry(&r.tool_name).or_default().push(r);
    }
    by.into_iter()
        .map(|(name, rs)| {
            let lat: Vec<f64> = rs.iter().map(|r| r.latency_ms).collect();
            let ok = rs.iter().filter(|r| r.success).count() as u64;
            ToolStats {
                tool_name: name.to_string(),
                count: rs.len() as u64,
                successes: ok,
                success_rate: ok as f64 / rs.len() as f64,
                latency_p50_ms: percentile(&lat, 50),
                latency_p95_ms: percentile(&lat, 95),
            }
        })
        .collect()
}

#[test]
fn tool_stats_match_values_computed_here() {
    let (_d, store) = open();
    let md = store.metadata();
    let mut rng = Rng(0xfeed_beef);
    let tools = ["a", "b", "c", "d"];
    let mut all = Vec::new();
    for i in 0..800 {
        let tool = tools[rng.below(4) as usize];
        let mut r = result(&format!("s{i}"), "case", tool, "", rng.below(10_000) as i64);
        // Skewed latencies with fractions; tool "d" is slow and flaky.
        r.latency_ms = rng.below(50_000) as f64 / 100.0
            + if tool == "d" {
                1000.0 + rng.below(5000) as f64
            } else {
                0.0
            };
        r.success = rng.below(100) < if tool == "d" { 40 } else { 90 };
        all.push(r);
    }
    // A few with one latency so ties exist.
    for i in 0..7 {
        let mut r = result(&format!("tie{i}"), "case", "a", "", 5_000);
        r.latency_ms = 123.25;
        all.push(r);
    }
    for r in &all {
        md.put_tool_result(r.clone()).unwrap();
    }
    let windows = [
        (None, None),
        (Some(at(2_000)), None),
        (None, Some(at(5_000))),
        (Some(at(2_000)), Some(at(5_000))),
        (Some(at(5_000)), Some(at(5_001))),
        (Some(at(20_000)), None),
    ];
    for (since, until) in windows {
        let want = expected_stats(&all, None, since, until);
        assert_eq!(
            md.tool_stats(None, since, until).unwrap(),
            want,
            "all tools, {since:?}..{until:?}"
        );
        for t in tools {
            let want = expected_stats(&all, Some(t), since, until);
            assert_eq!(
                md.tool_stats(Some(t), since, until).unwrap(),
                want,
                "tool {t}, {since:?}..{until:?}"
            );
        }
    }
    // Sanity of the reference itself on a known list.
    let v: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!((percentile(&v, 50), percentile(&v, 95)), (10.0, 19.0));
    let full = expected_stats(&all, None, None, None);
    assert_eq!(full.iter().map(|s| s.count).sum::<u64>(), 807);
    assert!(md.tool_stats(Some("zzz"), None, None).unwrap().is_empty());
}

fn step(n: u32, tool: &str, nodes: &[&str], policy: &str, secs: i64) -> TrajectoryStep {
    TrajectoryStep {
        step_number: n,
        tool_name: tool.to_string(),
        action: format!("action {n}"),
        observation: format!("saw {n}"),
        thought: format!("thought {n}"),
        nodes_visited: nodes.iter().map(|s| s.to_string()).collect(),
        policy_id: policy.to_string(),
        confidence: Some(0.5),
        timestamp: at(secs),
        ..Default::default()
    }
}

#[test]
fn trajectories_by_case_and_analytics() {
    let (_d, store) = open();
    let md = store.metadata();
    let mut rng = Rng(0xabcdef);
    let pool = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];
    let mut written: Vec<Trajectory> = Vec::new();
    for i in 0..40 {
        let nsteps = 1 + rng.below(6) as u32;
        let mut steps: Vec<TrajectoryStep> = (1..=nsteps)
            .map(|k| {
                let visits: Vec<&str> = (0..rng.below(4))
                    .map(|_| pool[rng.below(8) as usize])
                    .collect();
                // Some steps look at another policy.
                let policy = if rng.below(5) == 0 { "Q" } else { "" };
                step(k * 10, "tool", &visits, policy, i * 100 + k as i64)
            })
            .collect();
        rng.shuffle(&mut steps); // stored sorted by step number
        let t = Trajectory {
            trajectory_id: format!("t{i:02}"),
            case_id: format!("case{}", i % 3),
            policy_id: "P".into(),
            steps,
            started_at: at(i * 100),
            completed_at: Some(at(i * 100 + 50)),
            final_confidence: Some(0.75),
        };
        assert_eq!(md.put_trajectory(t.clone()).unwrap(), t.trajectory_id);
        written.push(t);
    }
    // Replace one trajectory (an upsert): its old visits no longer count.
    let mut replaced = written[4].clone();
    replaced.steps = vec![step(1, "tool", &["n7", "n7", "n6"], "", 401)];
    md.put_trajectory(replaced.clone()).unwrap();
    written[4] = replaced;

    // By case: most recently started first, steps in step order.
    for c in 0..3 {
        let case = format!("case{c}");
        let mut want: Vec<&Trajectory> = written.iter().filter(|t| t.case_id == case).collect();
        want.sort_by_key(|x| std::cmp::Reverse(x.started_at));
        let got = md.trajectories(&case, 0).unwrap();
        assert_eq!(
            got.iter().map(|t| &t.trajectory_id).collect::<Vec<_>>(),
            want.iter().map(|t| &t.trajectory_id).collect::<Vec<_>>()
        );
        for (g, w) in got.iter().zip(&want) {
            let mut steps = w.steps.clone();
            steps.sort_by_key(|s| s.step_number);
            assert_eq!(g.steps, steps);
            assert!(g
                .steps
                .windows(2)
                .all(|p| p[0].step_number < p[1].step_number));
        }
        assert_eq!(md.trajectories(&case, 2).unwrap().len(), 2);
        let (n, mean) = md.mean_steps(Some(&case)).unwrap();
        let total: usize = want.iter().map(|t| t.steps.len()).sum();
        assert_eq!(n, want.len() as u64);
        assert!((mean - total as f64 / want.len() as f64).abs() < 1e-12);
    }
    let (n, mean) = md.mean_steps(None).unwrap();
    let total: usize = written.iter().map(|t| t.steps.len()).sum();
    assert_eq!(n, 40);
    assert!((mean - total as f64 / 40.0).abs() < 1e-12);
    assert_eq!(md.mean_steps(Some("nobody")).unwrap(), (0, 0.0));
    assert_eq!(md.trajectory("t07").unwrap().case_id, "case1");

    // Most visited nodes per policy: every occurrence in a step's list counts,
    // under the step's policy or else the trajectory's.
    for policy in ["P", "Q"] {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for t in &written {
            for s in &t.steps {
                let p = if s.policy_id.is_empty() {
                    &t.policy_id
                } else {
                    &s.policy_id
                };
                if p == policy {
                    for n in &s.nodes_visited {
                        *counts.entry(n).or_default() += 1;
                    }
                }
            }
        }
        let mut want: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let got: Vec<(String, u64)> = md
            .most_visited_nodes(policy, 0)
            .unwrap()
            .into_iter()
            .map(|v| (v.node_id, v.visits))
            .collect();
        assert_eq!(got, want, "policy {policy}");
        let top3: Vec<(String, u64)> = md
            .most_visited_nodes(policy, 3)
            .unwrap()
            .into_iter()
            .map(|v| (v.node_id, v.visits))
            .collect();
        assert_eq!(top3, want[..3.min(want.len())]);
    }
    assert!(md.most_visited_nodes("nobody", 0).unwrap().is_empty());
}

#[test]
fn trajectory_steps_are_numbered_and_checked() {
    let (_d, store) = open();
    let md = store.metadata();
    // All-zero step numbers: numbered 1, 2, 3 in the given order.
    let id = md
        .put_trajectory(Trajectory {
            case_id: "c".into(),
            policy_id: "P".into(),
            steps: vec![
                step(0, "first", &["a"], "", 1),
                step(0, "second", &[], "", 2),
                step(0, "third", &["b"], "", 3),
            ],
            ..Default::default()
        })
        .unwrap();
    assert!(ids::is_generated(&id));
    let t = md.trajectory(&id).unwrap();
    let got: Vec<(u32, &str)> = t
        .steps
        .iter()
        .map(|s| (s.step_number, s.tool_name.as_str()))
        .collect();
    assert_eq!(got, [(1, "first"), (2, "second"), (3, "third")]);
    assert!(t.started_at > Timestamp::EPOCH);
    // Invalid ones name the field; nothing written.
    let bad = md
        .put_trajectory(Trajectory {
            trajectory_id: "bad".into(),
            case_id: "c".into(),
            steps: vec![step(2, "x", &[], "", 1), step(2, "y", &[], "", 2)],
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(invalid_field(&bad), "steps[1].step_number");
    let bad = md
        .put_trajectory(Trajectory {
            trajectory_id: "bad".into(),
            case_id: String::new(),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(invalid_field(&bad), "case_id");
    let bad = md
        .put_trajectory(Trajectory {
            trajectory_id: "bad".into(),
            case_id: "c".into(),
            started_at: at(10),
            completed_at: Some(at(5)),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(invalid_field(&bad), "completed_at");
    assert!(md.trajectory("bad").unwrap_err().is_not_found());
    assert_eq!(md.trajectories("c", 0).unwrap().len(), 1);
}

fn xref(id: &str, from: (&str, &str), to: (&str, &str), kind: &str) -> CrossReference {
    CrossReference {
        reference_id: id.to_string(),
        source_policy_id: from.0.to_string(),
        source_node_id: from.1.to_string(),
        target_policy_id: to.0.to_string(),
        target_node_id: to.1.to_string(),
        reference_type: kind.to_string(),
        context: format!("{id} context"),
        ..Default::default()
    }
}

#[test]
fn cross_references_in_both_directions() {
    let (_d, store) = open();
    let md = store.metadata();
    let refs = [
        xref("r1", ("A", "n1"), ("B", "n2"), "cites"),
        xref("r2", ("A", "n1"), ("A", "n3"), "supports"),
        xref("r3", ("C", "n9"), ("A", "n1"), "cites"),
        xref("r4", ("A", "n1"), ("A", "n1"), "see-also"), // self-reference
        xref("r5", ("B", "n2"), ("A", "n1"), "contradicts"),
        xref("r6", ("A", "n10"), ("A", "n1x"), "cites"), // prefixes of n1
    ];
    for r in &refs {
        md.put_cross_reference(r.clone()).unwrap();
    }
    let get = |p: &str, n: &str, dir: Direction, kind: Option<&str>| {
        let mut v: Vec<String> = md
            .cross_references(p, n, None, dir, kind)
            .unwrap()
            .into_iter()
            .map(|r| r.reference_id)
            .collect();
        v.sort();
        v
    };
    // Expected from the list above.
    let want = |p: &str, n: &str, dir: Direction, kind: Option<&str>| {
        let mut v: Vec<String> = refs
            .iter()
            .filter(|r| kind.is_none_or(|k| r.reference_type == k))
            .filter(|r| {
                let out = r.source_policy_id == p && r.source_node_id == n;
                let inc = r.target_policy_id == p && r.target_node_id == n;
                match dir {
                    Direction::Outgoing => out,
                    Direction::Incoming => inc,
                    Direction::Both => out || inc,
                }
            })
            .map(|r| r.reference_id.clone())
            .collect();
        v.sort();
        v
    };
    for (p, n) in [
        ("A", "n1"),
        ("B", "n2"),
        ("A", "n3"),
        ("C", "n9"),
        ("A", "n10"),
    ] {
        for dir in [Direction::Outgoing, Direction::Incoming, Direction::Both] {
            for kind in [None, Some("cites"), Some("see-also"), Some("nothing")] {
                assert_eq!(
                    get(p, n, dir, kind),
                    want(p, n, dir, kind),
                    "{p}/{n} {dir:?} {kind:?}"
                );
            }
        }
    }
    // Spelled out for A/n1.
    assert_eq!(
        get("A", "n1", Direction::Outgoing, None),
        ["r1", "r2", "r4"]
    );
    assert_eq!(
        get("A", "n1", Direction::Incoming, None),
        ["r3", "r4", "r5"]
    );
    assert_eq!(
        get("A", "n1", Direction::Both, None),
        ["r1", "r2", "r3", "r4", "r5"]
    );
    assert_eq!(get("A", "n1", Direction::Both, Some("cites")), ["r1", "r3"]);
    // Outgoing come first, by type then id.
    let both: Vec<String> = md
        .cross_references("A", "n1", None, Direction::Both, None)
        .unwrap()
        .into_iter()
        .map(|r| r.reference_id)
        .collect();
    assert_eq!(both, ["r1", "r4", "r2", "r3", "r5"]);
    // Records read back whole.
    let one = md
        .cross_references("B", "n2", None, Direction::Incoming, None)
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].context, "r1 context");
    assert!(one[0].created_at > Timestamp::EPOCH);

    // Versions: a reference pinned to a target version matches that version
    // (and unversioned queries); unpinned ones match any version.
    let mut pinned = xref("r7", ("D", "x"), ("A", "n1"), "cites");
    pinned.target_version_id = "v2".into();
    md.put_cross_reference(pinned).unwrap();
    let versioned = |v: &str| {
        let mut ids: Vec<String> = md
            .cross_references("A", "n1", Some(v), Direction::Incoming, None)
            .unwrap()
            .into_iter()
            .map(|r| r.reference_id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(versioned("v1"), ["r3", "r4", "r5"]);
    assert_eq!(versioned("v2"), ["r3", "r4", "r5", "r7"]);

    // An upsert that changes the target moves the incoming entry.
    md.put_cross_reference(xref("r1", ("A", "n1"), ("C", "n9"), "cites"))
        .unwrap();
    assert!(get("B", "n2", Direction::Incoming, None).is_empty());
    assert_eq!(get("C", "n9", Direction::Both, None), ["r1", "r3"]);
    // Invalid: a missing target node.
    let mut bad = xref("bad", ("A", "n1"), ("B", ""), "cites");
    bad.target_node_id.clear();
    assert_eq!(
        invalid_field(&md.put_cross_reference(bad).unwrap_err()),
        "target_node_id"
    );
    assert!(!get("A", "n1", Direction::Both, None).contains(&"bad".to_string()));
}

fn contradiction(id: &str, case: &str, criterion: &str, secs: i64, sev: Severity) -> Contradiction {
    let ev = |p: &str, n: &str, stance: &str| Evidence {
        policy_id: p.into(),
        version_id: "v1".into(),
        node_id: n.into(),
        excerpt: format!("excerpt of {n}"),
        stance: stance.into(),
    };
    Contradiction {
        contradiction_id: id.to_string(),
        case_id: case.to_string(),
        criterion_id: criterion.to_string(),
        evidence_a: ev("P", "n1", "supports"),
        evidence_b: ev("Q", "n2", "denies"),
        description: format!("{id} conflicts"),
        severity: sev,
        detected_at: at(secs),
        ..Default::default()
    }
}

#[test]
fn contradictions_by_case_criterion_unresolved_and_resolution() {
    let (_d, store) = open();
    let md = store.metadata();
    let all = [
        contradiction("k1", "c1", "crit-a", 10, Severity::High),
        contradiction("k2", "c1", "crit-b", 20, Severity::Low),
        contradiction("k3", "c2", "crit-a", 30, Severity::Medium),
        contradiction("k4", "c1", "crit-a", 40, Severity::High),
        contradiction("k5", "", "crit-b", 50, Severity::Low),
    ];
    for c in &all {
        md.put_contradiction(c.clone()).unwrap();
    }
    let ids_of = |v: Vec<Contradiction>| -> Vec<String> {
        v.into_iter().map(|c| c.contradiction_id).collect()
    };
    let q = |query, unresolved_only, limit| {
        ids_of(md.contradictions(query, unresolved_only, limit).unwrap())
    };
    assert_eq!(
        q(ContradictionQuery::Case("c1"), false, 0),
        ["k4", "k2", "k1"]
    );
    assert_eq!(q(ContradictionQuery::Case("c1"), false, 2), ["k4", "k2"]);
    assert_eq!(q(ContradictionQuery::Case("c2"), false, 0), ["k3"]);
    assert_eq!(
        q(ContradictionQuery::Criterion("crit-a"), false, 0),
        ["k4", "k3", "k1"]
    );
    assert_eq!(
        q(ContradictionQuery::Criterion("crit-b"), false, 0),
        ["k5", "k2"]
    );
    assert_eq!(
        q(ContradictionQuery::Unresolved, false, 0),
        ["k5", "k4", "k3", "k2", "k1"]
    );
    assert_eq!(md.contradiction("k1").unwrap(), {
        let mut c = all[0].clone();
        c.resolution = Resolution::Unresolved;
        c
    });
    assert_eq!(md.contradiction("k1").unwrap().severity, Severity::High);

    // Resolve k4: out of the unresolved lists, still listed by case.
    let before = Timestamp::now();
    let done = md
        .resolve_contradiction("k4", Resolution::Resolved, "policy Q prevails")
        .unwrap();
    assert_eq!(done.resolution, Resolution::Resolved);
    assert!(done
        .resolved_at
        .is_some_and(|t| t >= before && t <= Timestamp::now()));
    assert_eq!(md.contradiction("k4").unwrap(), done);
    assert_eq!(done.resolution_note, "policy Q prevails");
    assert_eq!(
        q(ContradictionQuery::Unresolved, false, 0),
        ["k5", "k3", "k2", "k1"]
    );
    assert_eq!(
        q(ContradictionQuery::Case("c1"), false, 0),
        ["k4", "k2", "k1"]
    );
    assert_eq!(q(ContradictionQuery::Case("c1"), true, 0), ["k2", "k1"]);
    assert_eq!(q(ContradictionQuery::Case("c1"), true, 1), ["k2"]);
    assert_eq!(
        q(ContradictionQuery::Criterion("crit-a"), true, 0),
        ["k3", "k1"]
    );
    // Dismiss k1, then reopen it.
    md.resolve_contradiction("k1", Resolution::Dismissed, "not real")
        .unwrap();
    assert_eq!(
        q(ContradictionQuery::Unresolved, false, 0),
        ["k5", "k3", "k2"]
    );
    let reopened = md
        .resolve_contradiction("k1", Resolution::Unresolved, "")
        .unwrap();
    assert_eq!(reopened.resolved_at, None);
    assert_eq!(
        q(ContradictionQuery::Unresolved, false, 0),
        ["k5", "k3", "k2", "k1"]
    );
    // Unknown id: not found; nothing changes.
    assert!(md
        .resolve_contradiction("nope", Resolution::Resolved, "")
        .unwrap_err()
        .is_not_found());

    // Severities parse case-insensitively; unknown ones are rejected naming
    // the field.
    assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
    assert_eq!("low".parse::<Severity>().unwrap(), Severity::Low);
    let e = "urgent".parse::<Severity>().unwrap_err();
    assert_eq!(invalid_field(&e), "severity");
    assert!(e.to_string().contains("urgent"), "{e}");
    // Missing evidence: named, nothing written.
    let mut bad = contradiction("bad", "c1", "", 60, Severity::Low);
    bad.evidence_b.node_id.clear();
    assert_eq!(
        invalid_field(&md.put_contradiction(bad).unwrap_err()),
        "evidence_b.node_id"
    );
    assert!(md.contradiction("bad").unwrap_err().is_not_found());
    // Stored already resolved: resolved_at is filled, never unresolved-indexed.
    let mut pre = contradiction("k6", "c3", "", 70, Severity::Low);
    pre.resolution = Resolution::Resolved;
    md.put_contradiction(pre).unwrap();
    assert!(md.contradiction("k6").unwrap().resolved_at.is_some());
    assert!(!q(ContradictionQuery::Unresolved, false, 0).contains(&"k6".to_string()));
}

#[test]
fn generated_ids_are_unique_and_increasing() {
    let (_d, store) = open();
    let md = store.metadata();
    let mut got = Vec::new();
    for i in 0..300 {
        let mut r = result("", "case", "t", "", i);
        r.executed_at = Timestamp::EPOCH; // defaults to now
        got.push(md.put_tool_result(r).unwrap());
    }
    assert!(got.iter().all(|id| ids::is_generated(id)));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "not increasing");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), 300);
    // Other kinds interleave in the same order.
    let c = md
        .put_contradiction(contradiction("", "c", "", 1, Severity::Low))
        .unwrap();
    let x = md
        .put_cross_reference(xref("", ("A", "1"), ("B", "2"), "cites"))
        .unwrap();
    let t = md
        .put_trajectory(Trajectory {
            case_id: "c".into(),
            ..Default::default()
        })
        .unwrap();
    let mut last = result("", "case", "t", "", 0);
    last.executed_at = Timestamp::EPOCH;
    let after = md.put_tool_result(last).unwrap();
    let seq = [got.last().unwrap().clone(), c, x, t, after];
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "{seq:?}");
    // Defaulted execution times follow generation order: newest first by case.
    let q = ToolResultQuery {
        case_id: Some("case"),
        limit: 5,
        ..Default::default()
    };
    let newest: Vec<String> = md
        .tool_results(&q)
        .unwrap()
        .into_iter()
        .map(|r| r.execution_id)
        .collect();
    assert_eq!(newest[0], seq[4]);
}

#[test]
fn eight_threads_append_tool_results_and_nothing_is_lost() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 200;
    const CASES: usize = 7;
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let acked: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let md = store.metadata();
                    (0..PER_THREAD)
                        .map(|i| {
                            let case = format!("case{}", (t * PER_THREAD + i) % CASES);
                            let id = md
                                .put_tool_result(ToolResult {
                                    case_id: case.clone(),
                                    tool_name: format!("tool{t}"),
                                    output: format!("{{\"t\":{t},\"i\":{i}}}"),
                                    success: true,
                                    latency_ms: i as f64,
                                    ..Default::default()
                                })
                                .unwrap();
                            (id, case)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut expected: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (id, case) in acked.iter().flatten() {
        assert!(expected.entry(case.clone()).or_default().insert(id.clone()));
    }
    assert_eq!(
        expected.values().map(HashSet::len).sum::<usize>(),
        THREADS * PER_THREAD
    );
    // Each thread's ids increase (one generator).
    for ids in &acked {
        assert!(ids.windows(2).all(|w| w[0].0 < w[1].0));
    }

    let check = |store: &TreeStore| {
        let md = store.metadata();
        for (id, case) in acked.iter().flatten() {
            let r = md.tool_result(id).unwrap();
            assert_eq!(&r.case_id, case);
        }
        for (case, ids) in &expected {
            let got = md
                .tool_results(&ToolResultQuery {
                    case_id: Some(case),
                    limit: MAX_QUERY_LIMIT,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(got.len(), ids.len(), "{case}");
            let got: HashSet<String> = got.into_iter().map(|r| r.execution_id).collect();
            assert_eq!(&got, ids, "{case}");
        }
        let stats = md.tool_stats(None, None, None).unwrap();
        assert_eq!(stats.len(), THREADS);
        for s in &stats {
            assert_eq!(
                (s.count, s.successes),
                (PER_THREAD as u64, PER_THREAD as u64)
            );
        }
    };
    check(&store);
    store.close().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    check(&store);
    store.close().unwrap();
}

#[test]
fn metadata_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let md = store.metadata();
    let r = result("e1", "case", "lookup", "P", 5);
    md.put_tool_result(r.clone()).unwrap();
    let t = Trajectory {
        trajectory_id: "t1".into(),
        case_id: "case".into(),
        policy_id: "P".into(),
        steps: vec![step(1, "lookup", &["n1", "n2"], "", 6)],
        started_at: at(5),
        completed_at: Some(at(7)),
        final_confidence: Some(0.9),
    };
    md.put_trajectory(t.clone()).unwrap();
    let x = xref("x1", ("P", "n1"), ("Q", "n2"), "cites");
    md.put_cross_reference(x.clone()).unwrap();
    md.put_contradiction(contradiction("k1", "case", "crit", 8, Severity::High))
        .unwrap();
    let k = md
        .resolve_contradiction("k1", Resolution::Resolved, "done")
        .unwrap();
    let stats = md.tool_stats(None, None, None).unwrap();
    let x = md
        .cross_references("Q", "n2", None, Direction::Incoming, None)
        .unwrap();
    store.close().unwrap();

    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let md = store.metadata();
    assert_eq!(md.tool_result("e1").unwrap(), r);
    let q = ToolResultQuery {
        policy_id: Some("P"),
        ..Default::default()
    };
    assert_eq!(md.tool_results(&q).unwrap(), [r]);
    assert_eq!(md.tool_stats(None, None, None).unwrap(), stats);
    assert_eq!(md.trajectories("case", 0).unwrap(), [t]);
    assert_eq!(md.most_visited_nodes("P", 0).unwrap().len(), 2);
    assert_eq!(
        md.cross_references("Q", "n2", None, Direction::Incoming, None)
            .unwrap(),
        x
    );
    assert_eq!(md.contradiction("k1").unwrap(), k);
    assert!(md
        .contradictions(ContradictionQuery::Unresolved, false, 0)
        .unwrap()
        .is_empty());
    store.close().unwrap();
}

/// A case and a criterion together: the first `limit` of the case's
/// contradictions on that criterion, however many newer ones on other
/// criteria come first.
#[test]
fn contradictions_by_case_and_criterion_scan_past_other_criteria() {
    let (_d, store) = open();
    let md = store.metadata();
    for i in 0..3 {
        md.put_contradiction(contradiction(
            &format!("m{i}"),
            "c1",
            "want",
            i,
            Severity::Low,
        ))
        .unwrap();
    }
    md.put_contradiction(contradiction("elsewhere", "c2", "want", 5, Severity::Low))
        .unwrap();
    for i in 0..150 {
        md.put_contradiction(contradiction(
            &format!("o{i}"),
            "c1",
            "other",
            100 + i,
            Severity::Low,
        ))
        .unwrap();
    }
    let q = |unresolved_only, limit| -> Vec<String> {
        md.contradictions(
            ContradictionQuery::CaseAndCriterion {
                case: "c1",
                criterion: "want",
            },
            unresolved_only,
            limit,
        )
        .unwrap()
        .into_iter()
        .map(|c| c.contradiction_id)
        .collect()
    };
    assert_eq!(q(false, 0), ["m2", "m1", "m0"]);
    assert_eq!(q(false, 2), ["m2", "m1"]);
    md.resolve_contradiction("m2", Resolution::Resolved, "")
        .unwrap();
    assert_eq!(q(true, 1), ["m1"]);
    assert_eq!(q(false, 1), ["m2"]);
    let e = md
        .contradictions(
            ContradictionQuery::CaseAndCriterion {
                case: "c1",
                criterion: "",
            },
            false,
            0,
        )
        .unwrap_err();
    assert_eq!(invalid_field(&e), "criterion_id");
}

/// Instants before 1677-09-22 fit an i64 of nanoseconds but their text would
/// not parse back: every record rejects them, naming the field, so no record
/// becomes unreadable.
#[test]
fn instants_outside_the_supported_range_are_rejected() {
    let (_d, store) = open();
    let md = store.metadata();
    let early = Timestamp::from_unix_nanos(Timestamp::MIN.unix_nanos() - 1);
    let mut r = result("e1", "c1", "search", "", 0);
    r.executed_at = early;
    assert_eq!(
        invalid_field(&md.put_tool_result(r).unwrap_err()),
        "executed_at"
    );
    let mut k = contradiction("k1", "c1", "x", 0, Severity::Low);
    k.detected_at = early;
    assert_eq!(
        invalid_field(&md.put_contradiction(k).unwrap_err()),
        "detected_at"
    );
    let t = Trajectory {
        case_id: "c1".into(),
        started_at: at(0),
        steps: vec![TrajectoryStep {
            step_number: 1,
            timestamp: early,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        invalid_field(&md.put_trajectory(t).unwrap_err()),
        "steps[0].timestamp"
    );
    assert!(md
        .tool_results(&ToolResultQuery {
            case_id: Some("c1"),
            ..Default::default()
        })
        .unwrap()
        .is_empty());
    // The first supported instant is stored and reads back.
    let mut r = result("e2", "c1", "search", "", 0);
    r.executed_at = Timestamp::MIN;
    md.put_tool_result(r).unwrap();
    assert_eq!(md.tool_result("e2").unwrap().executed_at, Timestamp::MIN);
}
