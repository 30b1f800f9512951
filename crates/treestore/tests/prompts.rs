//! The prompt store: template versions (latest, one version, deployed as of
//! an instant, auto-numbering), usage (by case, by prompt version, with the
//! latest version filled in) and effectiveness counted against the test's
//! own counts; validation and durability.

use std::collections::BTreeMap;

use treestore::prompts::{PromptTemplate, PromptUsage};
use treestore::{Error, Options, Timestamp, TreeStore};

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

fn template(
    prompt: &str,
    version: &str,
    created: Timestamp,
    deployed: Option<Timestamp>,
) -> PromptTemplate {
    PromptTemplate {
        prompt_id: prompt.to_string(),
        version: version.to_string(),
        name: format!("{prompt} {version}"),
        template: format!("Decide {{case}} with {version}"),
        variables: vec!["case".into()],
        tool_schemas: "[{\"name\":\"lookup\"}]".into(),
        created_at: created,
        deployed_at: deployed,
        ..Default::default()
    }
}

fn usage(prompt: &str, version: &str, case: &str, outcome: &str, used: Timestamp) -> PromptUsage {
    PromptUsage {
        prompt_id: prompt.to_string(),
        prompt_version: version.to_string(),
        case_id: case.to_string(),
        filled_variables: BTreeMap::from([("case".to_string(), case.to_string())]),
        response: format!("response for {case}"),
        tool_result_ids: vec!["e1".into(), "e2".into()],
        outcome: outcome.to_string(),
        used_at: used,
        ..Default::default()
    }
}

fn not_found(r: treestore::Result<PromptTemplate>) {
    match r {
        Err(e) => assert!(e.is_not_found(), "{e}"),
        Ok(t) => panic!("expected not found, got version {}", t.version),
    }
}

#[test]
fn latest_version_and_deployed_as_of() {
    let (_d, store) = open();
    let ps = store.prompts();
    not_found(ps.latest("decide"));
    not_found(ps.deployed_as_of("decide", day(2030, 1, 1)));

    // Created in this order; v3 is created last but never deployed; v2b is
    // written before v2 but created after it.
    let v1 = ps
        .put_template(template(
            "decide",
            "v1",
            day(2024, 1, 1),
            Some(day(2024, 2, 1)),
        ))
        .unwrap();
    let v2b = ps
        .put_template(template("decide", "v2b", day(2024, 4, 1), None))
        .unwrap();
    let v2 = ps
        .put_template(template(
            "decide",
            "v2",
            day(2024, 3, 1),
            Some(day(2024, 3, 15)),
        ))
        .unwrap();
    ps.put_template(template(
        "other",
        "x",
        day(2025, 1, 1),
        Some(day(2025, 1, 1)),
    ))
    .unwrap();
    assert_eq!(v1.version, "v1");
    assert!(v1.registered_at > Timestamp::EPOCH);

    // Latest: by creation time.
    assert_eq!(ps.latest("decide").unwrap(), v2b);
    let v3 = ps
        .put_template(template("decide", "v3", day(2024, 6, 1), None))
        .unwrap();
    assert_eq!(ps.latest("decide").unwrap(), v3);
    // A given version.
    assert_eq!(ps.template("decide", "v2").unwrap(), v2);
    assert_eq!(
        ps.template("decide", "v1").unwrap().template,
        "Decide {case} with v1"
    );
    assert!(ps.template("decide", "v9").unwrap_err().is_not_found());
    assert!(ps.template("decid", "v1").unwrap_err().is_not_found());
    // Every version, latest first.
    let all: Vec<String> = ps
        .versions("decide")
        .unwrap()
        .into_iter()
        .map(|t| t.version)
        .collect();
    assert_eq!(all, ["v3", "v2b", "v2", "v1"]);

    // Deployed as of: before any deployment: not found; then the latest
    // deployment at or before the instant.
    not_found(ps.deployed_as_of("decide", day(2024, 1, 15)));
    not_found(ps.deployed_as_of("decide", plus(day(2024, 2, 1), -1)));
    assert_eq!(ps.deployed_as_of("decide", day(2024, 2, 1)).unwrap(), v1);
    assert_eq!(ps.deployed_as_of("decide", day(2024, 3, 1)).unwrap(), v1);
    assert_eq!(
        ps.deployed_as_of("decide", plus(day(2024, 3, 15), -1))
            .unwrap(),
        v1
    );
    assert_eq!(ps.deployed_as_of("decide", day(2024, 3, 15)).unwrap(), v2);
    // v2b and v3 never deployed: v2 stays deployed.
    assert_eq!(ps.deployed_as_of("decide", day(2030, 1, 1)).unwrap(), v2);

    // Deploying v3 (an upsert of the version) moves "deployed" from then on.
    let v3d = ps
        .put_template(template(
            "decide",
            "v3",
            day(2024, 6, 1),
            Some(day(2024, 7, 1)),
        ))
        .unwrap();
    assert_eq!(ps.deployed_as_of("decide", day(2024, 6, 30)).unwrap(), v2);
    assert_eq!(ps.deployed_as_of("decide", day(2024, 7, 1)).unwrap(), v3d);
    assert_eq!(ps.versions("decide").unwrap().len(), 4);
    // Moving the deployment of v3 later removes the earlier entry.
    let v3e = ps
        .put_template(template(
            "decide",
            "v3",
            day(2024, 6, 1),
            Some(day(2024, 9, 1)),
        ))
        .unwrap();
    assert_eq!(ps.deployed_as_of("decide", day(2024, 8, 1)).unwrap(), v2);
    assert_eq!(ps.deployed_as_of("decide", day(2024, 9, 2)).unwrap(), v3e);
}

#[test]
fn versions_are_numbered_when_empty() {
    let (_d, store) = open();
    let ps = store.prompts();
    let mut numbered = Vec::new();
    for i in 0..12 {
        let t = ps
            .put_template(template("p", "", plus(day(2024, 1, 1), i), None))
            .unwrap();
        numbered.push(t.version);
    }
    let want: Vec<String> = (1..=12).map(|n| n.to_string()).collect();
    assert_eq!(numbered, want);
    assert_eq!(ps.latest("p").unwrap().version, "12");
    assert_eq!(ps.template("p", "10").unwrap().version, "10");
    // Another prompt is numbered on its own.
    assert_eq!(
        ps.put_template(template("q", "", day(2024, 1, 1), None))
            .unwrap()
            .version,
        "1"
    );
    // A numbered slot already taken by hand is skipped.
    ps.put_template(template("r", "2", day(2024, 1, 1), None))
        .unwrap();
    let next = ps
        .put_template(template("r", "", day(2024, 1, 2), None))
        .unwrap();
    assert_eq!(next.version, "3");
    assert_eq!(ps.versions("r").unwrap().len(), 2);
}

#[test]
fn invalid_templates_are_rejected_naming_the_field() {
    let (_d, store) = open();
    let ps = store.prompts();
    let mut bad = template("p", "v1", day(2024, 1, 1), None);
    bad.tool_schemas = "{\"name\": ".into();
    let e = ps.put_template(bad).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "tool_schemas"),
        "{e}"
    );
    let e = ps
        .put_template(template("", "v1", day(2024, 1, 1), None))
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "prompt_id"),
        "{e}"
    );
    not_found(ps.latest("p"));
    let e = ps
        .record_usage(usage("", "1", "c", "", day(2024, 1, 1)))
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument { field, .. } if field == "prompt_id"),
        "{e}"
    );
    assert!(ps.usages_by_case("c", 0).unwrap().is_empty());
}

#[test]
fn usage_by_case_by_version_and_effectiveness() {
    let (_d, store) = open();
    let ps = store.prompts();
    for (i, v) in ["1", "2", "3"].iter().enumerate() {
        ps.put_template(template("p", v, plus(day(2024, 1, 1), i as i64), None))
            .unwrap();
    }
    let outcomes = ["approved", "denied", "escalated", ""];
    let cases = ["c1", "c2", "c3", "c4", "c5"];
    // 120 usages at distinct instants, spread over versions, cases and
    // outcomes by a fixed pattern; counted here as they are written.
    let mut seed = 17u64;
    let mut written: Vec<PromptUsage> = Vec::new();
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..120 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = ["1", "2", "3"][(seed >> 33) as usize % 3];
        let outcome = outcomes[(seed >> 40) as usize % 4];
        let case = cases[(seed >> 50) as usize % 5];
        let u = ps
            .record_usage(usage(
                "p",
                v,
                case,
                outcome,
                plus(day(2024, 2, 1), i * 1000),
            ))
            .unwrap();
        assert!(treestore::ids::is_generated(&u.usage_id));
        assert_eq!(u.prompt_version, v);
        *counts
            .entry((v.to_string(), outcome.to_string()))
            .or_default() += 1;
        written.push(u);
    }
    // A usage of another prompt is counted there only.
    ps.record_usage(usage("q", "1", "cq", "approved", day(2024, 5, 1)))
        .unwrap();

    let newest_first = |keep: &dyn Fn(&PromptUsage) -> bool, limit: usize| {
        let mut v: Vec<&PromptUsage> = written.iter().filter(|u| keep(u)).collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.used_at));
        v.truncate(limit);
        v.into_iter()
            .map(|u| u.usage_id.clone())
            .collect::<Vec<_>>()
    };
    let ids = |v: Vec<PromptUsage>| v.into_iter().map(|u| u.usage_id).collect::<Vec<_>>();
    for case in cases {
        let want = newest_first(&|u| u.case_id == case, 1000);
        assert!(!want.is_empty());
        let got = ps.usages_by_case(case, 1000).unwrap();
        assert_eq!(ids(got.clone()), want, "case {case}");
        assert_eq!(
            ids(ps.usages_by_case(case, 3).unwrap()),
            want[..3.min(want.len())]
        );
        // Whole records come back.
        let first = written.iter().find(|u| u.usage_id == want[0]).unwrap();
        assert_eq!(&got[0], first);
    }
    let q_case = ps.usages_by_case("cq", 1000).unwrap();
    assert_eq!(q_case.len(), 1);
    assert_eq!(q_case[0].prompt_id, "q");
    for v in ["1", "2", "3"] {
        let want = newest_first(&|u| u.prompt_version == v, 1000);
        assert_eq!(
            ids(ps.usages_by_prompt("p", Some(v), 1000).unwrap()),
            want,
            "v{v}"
        );
        assert_eq!(
            ids(ps.usages_by_prompt("p", Some(v), 2).unwrap()),
            want[..2]
        );
        // Effectiveness: uses and counts by outcome, from this test's counts.
        let e = ps.effectiveness("p", Some(v)).unwrap();
        let want_outcomes: BTreeMap<String, u64> = counts
            .iter()
            .filter(|((ver, _), _)| ver == v)
            .map(|((_, o), n)| (o.clone(), *n))
            .collect();
        assert_eq!(e.outcomes, want_outcomes, "v{v}");
        assert_eq!(e.uses, want_outcomes.values().sum::<u64>());
        assert_eq!(e.uses, want.len() as u64);
    }
    // Every version together, newest first.
    let want = newest_first(&|_| true, 1000);
    assert_eq!(ids(ps.usages_by_prompt("p", None, 1000).unwrap()), want);
    assert_eq!(ids(ps.usages_by_prompt("p", None, 7).unwrap()), want[..7]);
    assert_eq!(ps.usages_by_prompt("p", None, 0).unwrap().len(), 100);
    assert_eq!(ps.usages_by_prompt("q", None, 0).unwrap().len(), 1);
    let e = ps.effectiveness("p", None).unwrap();
    assert_eq!(e.uses, 120);
    let mut by_outcome: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, o), n) in &counts {
        *by_outcome.entry(o.clone()).or_default() += n;
    }
    assert_eq!(e.outcomes, by_outcome);
    assert!(
        e.outcomes.contains_key(""),
        "unlabelled uses count under \"\""
    );
    assert_eq!(ps.effectiveness("q", None).unwrap().uses, 1);
    assert_eq!(ps.effectiveness("p", Some("9")).unwrap().uses, 0);
    // Usage of a prompt not stored here keeps an empty version and is
    // counted under it.
    ps.record_usage(usage("unknown", "", "cu", "approved", day(2024, 5, 2)))
        .unwrap();
    let e = ps.effectiveness("unknown", Some("")).unwrap();
    assert_eq!((e.uses, e.outcomes.get("approved").copied()), (1, Some(1)));

    // An upsert with another outcome moves the count.
    let mut changed = written[0].clone();
    let old_outcome = changed.outcome.clone();
    changed.outcome = "overturned".into();
    ps.record_usage(changed.clone()).unwrap();
    let e = ps
        .effectiveness("p", Some(&changed.prompt_version))
        .unwrap();
    assert_eq!(e.outcomes["overturned"], 1);
    let before = counts[&(changed.prompt_version.clone(), old_outcome.clone())];
    assert_eq!(
        e.outcomes.get(&old_outcome).copied().unwrap_or(0),
        before - 1
    );
    assert_eq!(ps.effectiveness("p", None).unwrap().uses, 120);
}

#[test]
fn usage_without_a_version_gets_the_latest() {
    let (_d, store) = open();
    let ps = store.prompts();
    ps.put_template(template("p", "a", day(2024, 1, 1), None))
        .unwrap();
    ps.put_template(template("p", "b", day(2024, 2, 1), None))
        .unwrap();
    let u = ps
        .record_usage(usage("p", "", "c", "approved", day(2024, 3, 1)))
        .unwrap();
    assert_eq!(u.prompt_version, "b");
    // Stored and indexed under that version.
    assert_eq!(ps.usages_by_case("c", 0).unwrap()[0].prompt_version, "b");
    assert_eq!(ps.usages_by_prompt("p", Some("b"), 0).unwrap().len(), 1);
    assert_eq!(ps.effectiveness("p", Some("b")).unwrap().uses, 1);
    // A newer version arrives: the next usage gets it.
    ps.put_template(template("p", "c", day(2024, 4, 1), None))
        .unwrap();
    let u = ps
        .record_usage(usage("p", "", "c", "denied", day(2024, 5, 1)))
        .unwrap();
    assert_eq!(u.prompt_version, "c");
    // "Latest" is by creation time, not by when it was written.
    ps.put_template(template("p", "old", day(2020, 1, 1), None))
        .unwrap();
    let u = ps
        .record_usage(usage("p", "", "c", "denied", day(2024, 6, 1)))
        .unwrap();
    assert_eq!(u.prompt_version, "c");
    // A prompt not stored here: the version stays empty.
    let u = ps
        .record_usage(usage("elsewhere", "", "c", "", day(2024, 6, 1)))
        .unwrap();
    assert_eq!(u.prompt_version, "");
    assert_eq!(
        ps.usages_by_prompt("elsewhere", Some(""), 0).unwrap().len(),
        1
    );
}

#[test]
fn prompts_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let ps = store.prompts();
    let t1 = ps
        .put_template(template("p", "", day(2024, 1, 1), Some(day(2024, 1, 2))))
        .unwrap();
    let t2 = ps
        .put_template(template("p", "", day(2024, 2, 1), None))
        .unwrap();
    let u = ps
        .record_usage(usage("p", "", "c", "approved", day(2024, 3, 1)))
        .unwrap();
    store.close().unwrap();

    let store = TreeStore::open(dir.path(), Options::default()).unwrap();
    let ps = store.prompts();
    assert_eq!(ps.latest("p").unwrap(), t2);
    assert_eq!(ps.deployed_as_of("p", day(2025, 1, 1)).unwrap(), t1);
    assert_eq!(ps.usages_by_case("c", 0).unwrap(), std::slice::from_ref(&u));
    assert_eq!(u.prompt_version, "2");
    assert_eq!(
        ps.effectiveness("p", Some("2")).unwrap().outcomes["approved"],
        1
    );
    // Numbering continues after a reopen.
    let t3 = ps
        .put_template(template("p", "", day(2024, 3, 1), None))
        .unwrap();
    assert_eq!(t3.version, "3");
    store.close().unwrap();
}

/// A case's usages of one prompt: the first `limit` that match, behind any
/// number of newer usages of other prompts in the same case.
#[test]
fn usages_by_case_and_prompt_scan_past_other_prompts() {
    let (_d, store) = open();
    let p = store.prompts();
    let t0 = day(2024, 1, 1);
    for i in 0..3 {
        let mut u = usage(
            "want",
            if i == 0 { "1" } else { "2" },
            "c1",
            "ok",
            plus(t0, i),
        );
        u.usage_id = format!("m{i}");
        p.record_usage(u).unwrap();
    }
    let mut u = usage("want", "2", "c2", "ok", plus(t0, 10));
    u.usage_id = "other-case".into();
    p.record_usage(u).unwrap();
    for i in 0..150 {
        let mut u = usage("other", "1", "c1", "ok", plus(t0, 1000 + i));
        u.usage_id = format!("o{i}");
        p.record_usage(u).unwrap();
    }
    let ids = |v: Vec<PromptUsage>| -> Vec<String> { v.into_iter().map(|u| u.usage_id).collect() };
    assert_eq!(
        ids(p.usages_by_case_and_prompt("c1", "want", None, 0).unwrap()),
        ["m2", "m1", "m0"]
    );
    assert_eq!(
        ids(p.usages_by_case_and_prompt("c1", "want", None, 1).unwrap()),
        ["m2"]
    );
    assert_eq!(
        ids(p
            .usages_by_case_and_prompt("c1", "want", Some("1"), 0)
            .unwrap()),
        ["m0"]
    );
    assert!(p
        .usages_by_case_and_prompt("c1", "nosuch", None, 0)
        .unwrap()
        .is_empty());
    assert!(matches!(
        p.usages_by_case_and_prompt("c1", "", None, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

/// Prompt times outside the supported range are rejected, naming the field.
#[test]
fn prompt_times_outside_the_supported_range_are_rejected() {
    let (_d, store) = open();
    let p = store.prompts();
    let early = Timestamp::from_unix_nanos(Timestamp::MIN.unix_nanos() - 1);
    let field = |e: Error| match e {
        Error::InvalidArgument { field, .. } => field,
        other => panic!("{other:?}"),
    };
    let t = template("p", "1", day(2024, 1, 1), Some(early));
    assert_eq!(field(p.put_template(t).unwrap_err()), "deployed_at");
    let u = usage("p", "1", "c1", "", early);
    assert_eq!(field(p.record_usage(u).unwrap_err()), "used_at");
    assert!(p.usages_by_case("c1", 0).unwrap().is_empty());
}
