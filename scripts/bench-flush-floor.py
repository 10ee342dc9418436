#!/usr/bin/env python3
"""The reference for the usage-flush benchmark (benches/usage_flush.rs): the same 10,000 minute
rows inserted into the same schema (made by `maas migrate`, every index included) by the bare
SQLite C library through Python's sqlite3, in one transaction per flush, on WAL with
synchronous=NORMAL as the server runs it; then the compaction's flagging of all those rows in one
transaction (where, with the partial indexes, they enter the filtered indexes). Each twice: the
schema as migrated, and with the minute rows' indexes as they were before m20261206_000001. What this takes is SQLite's own B-tree work, which no
code of ours can go under; the criterion figure is read against it, at the same table size (the
criterion run appends 10,000 rows per cycle, so its table grows to a few hundred thousand rows).

    MAAS_BIN=target/release/maas scripts/bench-flush-floor.py   [FLUSHES, default 30]
"""
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

BUCKETS = 14
SUMS = ["requests", "failovers", "usage_known", "input_tokens", "output_tokens", "total_tokens", "latency_ms_sum", "ttfb_ms_sum"] + [f"lat_b{i}" for i in range(BUCKETS)] + [f"ttfb_b{i}" for i in range(BUCKETS)]
FIXED = ["minute", "gateway_id", "maas_model_id", "model", "endpoint_id", "workspace_id", "api_key_id", "operation", "outcome", "status"]


def rows(minute):
    # As the criterion bench's calls: 10,000 keys, 1,000 models and endpoints, 100 keys a workspace.
    hist = lambda i: tuple(1 if b == i else 0 for b in range(BUCKETS))
    return [(minute, "bench", 1 + k % 1000, "bench-model", 1 + k % 1000, 1 + k // 100, k, "chat", "ok", 200, 1, 0, 1, 400, 120, 520, 900, 120) + hist(6) + hist(4) for k in range(10_000)]


# The indexes every minute row had before migration m20261206_000001 (its `FULL`, which
# benches/usage_flush.rs uses; names of their own here, beside the migrated schema's).
INDEXED_AT_FLUSH = [
    "CREATE INDEX old_minute ON usage_minutes (minute)",
    "CREATE INDEX old_model_minute ON usage_minutes (maas_model_id, minute)",
    "CREATE INDEX old_workspace_minute ON usage_minutes (workspace_id, minute)",
    "CREATE INDEX old_key_minute ON usage_minutes (api_key_id, minute)",
]


def run(maas, flushes, extra):
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        path = os.path.join(d, "maas.db")
        subprocess.run([maas, "migrate", "--database-url", f"sqlite://{path}?mode=rwc"], check=True, capture_output=True)
        c = sqlite3.connect(path, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        for sql in extra:
            c.execute(sql)
        cols = FIXED + SUMS
        sql = f"INSERT INTO usage_minutes ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        times = []
        for m in range(flushes):
            batch = rows(29_000_000 + m)
            t = time.perf_counter()
            c.execute("BEGIN")
            c.executemany(sql, batch)
            c.execute("COMMIT")
            times.append((time.perf_counter() - t) * 1000)
            c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        # What the hourly compaction adds: flagging the rows it folded, which with the partial
        # indexes is when they enter the model, workspace and key indexes.
        t = time.perf_counter()
        c.execute("BEGIN")
        c.execute("UPDATE usage_minutes SET compacted = TRUE WHERE compacted = FALSE")
        c.execute("COMMIT")
        flag = (time.perf_counter() - t) * 1000
        return times, flag


def main():
    flushes = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    maas = os.environ.get("MAAS_BIN", "target/release/maas")
    for label, extra in [("schema as migrated", []), ("every index on every row (before m20261206)", INDEXED_AT_FLUSH)]:
        times, flag = run(maas, flushes, extra)
        last = times[-10:]
        print(f"bare sqlite3, 10,000-row flush, {label}: first {times[0]:.0f} ms; median of the last 10 (table at {flushes * 10_000:,} rows) {statistics.median(last):.0f} ms; "
              f"then flagging all {flushes * 10_000:,} rows compacted {flag:.0f} ms")


if __name__ == "__main__":
    main()
