#!/usr/bin/env python3
"""Prints the markdown table of the storage benchmark (cargo bench -p
treestore-storage --bench kv): criterion medians per engine and workload, the
one-shot removal time and file sizes, and the ratios TreeStore/redb and
TreeStore/LMDB. Run from the repository root after the benchmark."""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
ENGINES = ["treestore", "redb", "lmdb"]
GROUPS = [
    ("bulk_load", "bulk load, 1M pairs, one txn"),
    ("random_get_x1000", "1,000 random gets (warm)"),
    ("scan10_x1000", "1,000 scans of 10 keys"),
    ("put_100_batches_x1000", "100 durable batches of 1,000 puts"),
]


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def median(group: str, engine: str):
    path = ROOT / group / engine / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def row(label, values, fmt):
    t, r, l = values
    cells = [fmt(v) if v is not None else "n/a" for v in values]
    ratio = lambda a, b: f"{a / b:.2f}x" if a is not None and b else "n/a"
    return f"| {label} | {' | '.join(cells)} | {ratio(t, r)} | {ratio(t, l)} |"


def main() -> int:
    print("| workload | TreeStore | redb | LMDB | TreeStore/redb | TreeStore/LMDB |")
    print("|---|---|---|---|---|---|")
    for group, label in GROUPS:
        print(row(label, [median(group, e) for e in ENGINES], fmt_time))
    shot_path = ROOT / "kv-oneshot.json"
    if shot_path.exists():
        shots = json.loads(shot_path.read_text())
        get = lambda key: [shots.get(e, {}).get(key) for e in ENGINES]
        print(row("remove half the keys, one txn", [v * 1e9 if v is not None else None for v in get("removal_s")], fmt_time))
        mib = lambda b: f"{b / 2**20:.0f} MiB"
        print(row("file size after bulk load", get("size_after_load"), mib))
        print(row("file size before the removal", get("size_before_removal"), mib))
        print(row("file size at the end", get("size_after_removal"), mib))
        payload = shots.get("payload_bytes")
        if payload:
            print()
            print(f"Live payload after the bulk load: {payload / 2**20:.0f} MiB "
                  f"({shots['n']} x 174 bytes); at the end: "
                  f"{shots['treestore']['live_payload_after_removal'] / 2**20:.0f} MiB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
