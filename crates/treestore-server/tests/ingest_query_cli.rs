//! Runs the real `treestore` binary's `ingest` and `query` subcommands on the
//! real PageIndex samples: exact output shapes, exit codes and error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn sample(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../treestore/tests/data/pageindex")
        .join(file)
}

fn run(args: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_treestore"))
        .args(args)
        .output()
        .expect("run treestore");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    o
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn ingest_then_every_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let earnings = sample("q1-fy25-earnings_structure.json");
    let o = run(&[
        "ingest",
        "--data",
        d,
        "--policy",
        "disney",
        "--version",
        "q1",
        "--effective-date",
        "2025-02-05",
        earnings.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "stored 41 nodes\n");
    let lectures = sample("four-lectures_structure.json");
    let o = run(&[
        "ingest",
        "--data",
        d,
        "--policy",
        "lectures",
        "--version",
        "1",
        lectures.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "stored 53 nodes\n");

    let q = |args: &[&str]| {
        let mut all = vec!["query", "--data", d];
        all.extend_from_slice(args);
        run(&all)
    };
    let node = json(&q(&["--policy", "disney", "node", "0002"]));
    assert_eq!(node["title"], "Key Points");
    assert_eq!(node["parent_id"], "0001");
    assert_eq!(node["depth"], 2);
    assert_eq!(node["section_path"], "1.1.1");
    for field in [
        "node_id",
        "parent_id",
        "title",
        "page_start",
        "page_end",
        "summary",
        "text",
        "section_path",
        "child_ids",
        "depth",
        "keywords",
        "see_also",
        "created_at",
        "updated_at",
    ] {
        assert!(node.get(field).is_some(), "node object lacks {field}");
    }
    let top = json(&q(&["--policy", "disney", "--version", "q1", "children"]));
    assert_eq!(top.as_array().unwrap().len(), 11);
    assert!(top[0]["parent_id"].is_null());
    assert_eq!(
        ids(&json(&q(&["--policy", "disney", "children", "0000"]))),
        ["0001", "0003", "0007"]
    );
    let sub = json(&q(&[
        "--policy",
        "disney",
        "subtree",
        "0000",
        "--max-depth",
        "1",
    ]));
    assert_eq!(ids(&sub), ["0000", "0001", "0003", "0007"]);
    let sub = json(&q(&["--policy", "disney", "subtree", "0000"]));
    assert_eq!(ids(&sub)[..4], ["0000", "0001", "0003", "0007"]);
    assert_eq!(
        ids(&json(&q(&["--policy", "disney", "ancestors", "0002"]))),
        ["0000", "0001", "0002"]
    );
    let page = json(&q(&["--policy", "disney", "page", "1"]));
    assert!(ids(&page).contains(&"0002".to_string()));
    let nodes = json(&q(&["--policy", "disney", "nodes", "0007", "0002"]));
    assert_eq!(ids(&nodes), ["0007", "0002"]);
    let doc = json(&q(&["--policy", "disney", "document"]));
    assert_eq!(doc.as_array().unwrap().len(), 41);

    let hits = json(&q(&[
        "--policy",
        "disney",
        "search",
        "Disney+ subscribers",
        "--limit",
        "3",
    ]));
    let hits = hits.as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 3);
    assert!(hits[0]["score"].as_f64().unwrap() > 0.0);
    assert!(hits[0]["node"]["node_id"].is_string());
    // Without --policy, search covers every policy.
    let hits = json(&q(&["search", "functor declaration", "--limit", "5"]));
    assert!(hits
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["policy_id"] == "lectures"));

    // Missing node or document: exit 1 and a message.
    let o = q(&["--policy", "disney", "node", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("\"nope\""), "{}", stderr(&o));
    let o = q(&["--policy", "nobody", "document"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nobody"));
    let o = q(&["--policy", "disney", "--version", "q9", "children"]);
    assert_eq!(o.status.code(), Some(1));
    let o = q(&["--policy", "disney", "nodes", "0002", "bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ids(&serde_json::from_slice(&o.stdout).unwrap()), ["0002"]);
    assert!(stderr(&o).contains("bogus"));
    // Other errors: exit 2.
    let o = q(&["children"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--policy"));
    let o = q(&["--policy", "disney", "search", " "]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("query"), "{}", stderr(&o));
}

#[test]
fn ingest_rejects_bad_files_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let bad = tmp.path().join("bad.json");
    for (content, expect) in [
        ("{not json", "not valid JSON"),
        ("{\"pages\": []}", "not a PageIndex document"),
        (
            "{\"structure\": [{\"title\": \"A\", \"node_id\": \"1\", \"start_index\": 1}, {\"title\": \"B\", \"node_id\": \"1\", \"start_index\": 1}]}",
            "duplicate",
        ),
    ] {
        std::fs::write(&bad, content).unwrap();
        let o = run(&["ingest", "--data", d, "--policy", "p", "--version", "v", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(expect), "{}", stderr(&o));
    }
    let o = run(&[
        "ingest",
        "--data",
        d,
        "--policy",
        "p",
        "--version",
        "v",
        "--effective-date",
        "2025-02-30",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("2025-02-30"));
    let o = run(&["query", "--data", d, "--policy", "p", "document"]);
    assert_eq!(o.status.code(), Some(1), "nothing was stored");
    let o = run(&["check", "--data", d]);
    assert!(o.status.success());
}
