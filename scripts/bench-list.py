#!/usr/bin/env python3
"""Server time to render the management list with 10,000 MaaS models.

Migrates a fresh SQLite file, seeds N models (each with 2 endpoints and a rule) straight into
the schema, starts `maas serve` on 127.0.0.1 (port 0), logs in, then times bounded series of
requests: the list server function (first page, a deep page, a search) and the SSR page.
Prints median and p95 in milliseconds. Loopback only; every loop is bounded.
"""
import json, os, sqlite3, subprocess, tempfile, time
from console_bench import Console, serve, timed

N = int(os.environ.get("MODELS", "10000"))
RUNS = int(os.environ.get("RUNS", "50"))
BIN = os.environ.get("MAAS_BIN") or os.path.expanduser("~/.cache/maas-target/release/maas")

tmp = tempfile.mkdtemp(prefix="maas-bench-")
db_path = os.path.join(tmp, "maas.db")
env = dict(os.environ, DATABASE_URL=f"sqlite://{db_path}?mode=rwc", MAAS_DATA_DIR=tmp,
           MAAS_ADMIN_PASSWORD="bench-pass-1", MAAS_LISTEN="127.0.0.1:0", RUST_LOG="warn")
subprocess.run([BIN, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)

db = sqlite3.connect(db_path)
now = int(time.time())
db.execute("INSERT INTO clusters (name, entry_address, created_at) VALUES ('bench', 'http://127.0.0.1:3000', ?)", (now,))
db.execute("INSERT INTO workspaces (name, created_at) VALUES ('bench-ws', ?)", (now,))
db.executemany("INSERT INTO marketplace_models (name, provider, description, tags, published, created_at) VALUES (?, 'bench', '', ?, 1, ?)",
               [(f"model-{i:05}", json.dumps(["chat", f"t{i % 50}"]), now) for i in range(N)])
db.executemany("INSERT INTO maas_models (marketplace_model_id, cluster_id, policy, enabled, revision, created_at, updated_at) VALUES (?, 1, 'round_robin', ?, 1, ?, ?)",
               [(i + 1, i % 2, now, now) for i in range(N)])
db.executemany("INSERT INTO endpoints (maas_model_id, position, model_id, url, api_key_enc, weight) VALUES (?, ?, ?, 'https://u.example', NULL, 50)",
               [(i + 1, p, f"upstream-{i}-{p}") for i in range(N) for p in range(2)])
db.executemany("INSERT INTO rate_limit_rules (maas_model_id, position, target, workspace_id, api_key_id, limit_value, duration_secs) VALUES (?, 0, 'workspace', 1, NULL, 100, 60)",
               [(i + 1,) for i in range(N)])
db.commit(); db.close()

with serve(BIN, env, start_timeout=30) as port:
    c = Console(port, "admin", "bench-pass-1")

    def list_fn(search, page):
        def f():
            r, data = c.post("/api/models/list", {"search": search, "page": page})
            assert r.status == 200, data
        return f

    def page_fn():
        r, body = c.get("/models")
        assert r.status == 200 and b"model-" in body

    print(f"{N} models, {RUNS} requests each, one connection, loopback")
    timed("list server fn, page 1", list_fn("", 0), RUNS)
    timed("list server fn, page 400 (offset 7980)", list_fn("", 399), RUNS)
    timed("list server fn, search 'model-0999'", list_fn("model-0999", 0), RUNS)
    timed("list server fn, search by Model ID", list_fn("upstream-4242-1", 0), RUNS)
    timed("SSR GET /models (full HTML page)", page_fn, RUNS)
