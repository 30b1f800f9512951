//! Runs the real `treestore check`: exit 0 and a summary when sound, 1 and one
//! `problem:` line per problem when damaged, 2 when it cannot run; it never
//! modifies the directory.

use std::path::Path;
use std::process::{Command, Output};

use treestore_storage::{Db, Options, DATA_FILE};

fn check(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treestore"))
        .args(["check", "--data"])
        .arg(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("wal")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
                files.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn sound_damaged_missing_and_busy_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    {
        let db = Db::open(&dir, Options::default()).unwrap();
        let mut txn = db.begin_write();
        for i in 0..3000u32 {
            txn.put(
                format!("key{i:05}").as_bytes(),
                format!("value {i}").as_bytes(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
        db.put(b"logged", b"after the checkpoint").unwrap();
        db.checkpoint().unwrap();
        db.put(b"only-in-the-log", b"x").unwrap();
    }

    let o = check(&dir);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ok: "),
        "{}",
        text(&o)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);

    // Damage one leaf: exit 1, the page is named, and nothing is modified.
    let path = dir.join(DATA_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let leaf = bytes.chunks(4096).position(|p| p[4] == 3).unwrap();
    bytes[leaf * 4096 + 2000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let before = snapshot(&dir);
    let o = check(&dir);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.starts_with("damaged: "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("problem: ") && l.contains(&format!("page {leaf}"))),
        "{out}"
    );
    assert_eq!(snapshot(&dir), before, "check modified the directory");

    // Cannot run: missing directory, directory in use.
    let o = check(&tmp.path().join("absent"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
    let other = tmp.path().join("busy");
    let db = Db::open(&other, Options::default()).unwrap();
    let o = check(&other);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("in use by another process"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("panicked"));
    drop(db);
}
