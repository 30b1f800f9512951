//! Runs the real `treestore` binary's `kv` subcommand.

use std::path::Path;
use std::process::{Command, Output};

use treestore_storage::{Db, Options, DATA_FILE};

fn kv(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treestore"))
        .arg("kv")
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .expect("run treestore")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_no_panic(o: &Output) {
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

#[test]
fn put_get_del_scan_load_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    assert!(kv(&dir, &["put", "alpha", "one"]).status.success());
    assert!(kv(&dir, &["put", "beta", "two words"]).status.success());
    let vf = tmp.path().join("value.txt");
    std::fs::write(&vf, "from a file").unwrap();
    assert!(kv(
        &dir,
        &["put", "gamma", "--value-file", vf.to_str().unwrap()]
    )
    .status
    .success());

    let o = kv(&dir, &["get", "beta"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "two words\n");
    assert_eq!(stdout(&kv(&dir, &["get", "gamma"])), "from a file\n");

    let o = kv(&dir, &["get", "missing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));

    let load = tmp.path().join("load.tsv");
    std::fs::write(&load, "p/1\tx\np/2\ty\twith tab\n\np/3\tz\r\n").unwrap();
    let o = kv(&dir, &["load", load.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "3");

    let o = kv(&dir, &["scan"]);
    assert_eq!(
        stdout(&o),
        "alpha\tone\nbeta\ttwo words\ngamma\tfrom a file\np/1\tx\np/2\ty\twith tab\np/3\tz\n"
    );
    assert_eq!(
        stdout(&kv(
            &dir,
            &["scan", "--prefix", "p/", "--reverse", "--limit", "2"]
        )),
        "p/3\tz\np/2\ty\twith tab\n"
    );
    assert_eq!(
        stdout(&kv(&dir, &["scan", "--start", "beta", "--end", "p/1"])),
        "beta\ttwo words\ngamma\tfrom a file\n"
    );
    assert_eq!(
        stdout(&kv(&dir, &["scan", "--prefix", "p/", "--start", "p/2"])),
        "p/2\ty\twith tab\np/3\tz\n"
    );

    assert!(kv(&dir, &["del", "alpha"]).status.success());
    assert_eq!(kv(&dir, &["get", "alpha"]).status.code(), Some(1));

    let o = kv(&dir, &["stats"]);
    assert!(o.status.success());
    let s = stdout(&o);
    for name in [
        "page_size: 4096",
        "pages_in_use: ",
        "free_pages: ",
        "file_bytes: ",
        "entries: 5",
    ] {
        assert!(s.contains(name), "missing {name} in {s}");
    }
}

#[test]
fn a_malformed_load_file_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let load = tmp.path().join("load.tsv");
    std::fs::write(&load, "a\t1\nno tab here\nc\t3\n").unwrap();
    let o = kv(&dir, &["load", load.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(":2:"), "{}", stderr(&o));
    assert_no_panic(&o);
    assert!(kv(&dir, &["put", "x", "y"]).status.success());
    assert_eq!(stdout(&kv(&dir, &["scan"])), "x\ty\n");
}

#[test]
fn reads_of_a_missing_directory_fail_clearly_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("absent");
    for args in [&["get", "k"][..], &["scan"], &["stats"], &["del", "k"]] {
        let o = kv(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
        assert_no_panic(&o);
    }
    assert!(!dir.exists());
}

#[test]
fn corruption_is_reported_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let load = tmp.path().join("load.tsv");
    let lines: String = (0..2000)
        .map(|i| format!("key{i:05}\tvalue number {i}\n"))
        .collect();
    std::fs::write(&load, lines).unwrap();
    assert!(kv(&dir, &["load", load.to_str().unwrap()]).status.success());
    // Flip one byte in the middle of every leaf page.
    let path = dir.join(DATA_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    for page in bytes.chunks_mut(4096) {
        if page[4] == 3 {
            page[2000] ^= 0xff;
        }
    }
    std::fs::write(&path, bytes).unwrap();
    let o = kv(&dir, &["scan"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("corrupt page"), "{}", stderr(&o));
    assert_no_panic(&o);
    let o = kv(&dir, &["get", "key01000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("checksum"), "{}", stderr(&o));

    // A file that is not ours at all.
    std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
    let o = kv(&dir, &["get", "a"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not a TreeStore database"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 10_000]);
}

#[test]
fn a_directory_in_use_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let db = Db::open(&dir, Options::default()).unwrap();
    db.put(b"k", b"v").unwrap();
    let o = kv(&dir, &["get", "k"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(db);
    assert_eq!(stdout(&kv(&dir, &["get", "k"])), "v\n");
}
