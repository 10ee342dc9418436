#!/usr/bin/env python3
"""Server time of the Usage page with 30 days of rollups for 1,000 models and 10,000 keys.

Migrates a fresh SQLite file and seeds it straight into the schema: 1,000 models (one endpoint
each), 100 workspaces of 100 keys, and usage as a busy platform leaves it, as minute rows the
gateways flushed: HOURLY_ROWS over the last 30 days (ACTIVE keys calling some model each hour)
plus MINUTE_ROWS over the last 8 days, none compacted yet. Starts `maas serve` on 127.0.0.1
(port 0), whose first upkeep pass compacts them all into hourly rows, quarters and day blocks
(timed: the worst pass there is, 30 days at once), logs in, and times bounded series of
requests: the report server function for each period, the SSR page, and the management list
(its per-model 24 h figures). Prints median and p95 in milliseconds. Loopback only; every loop
is bounded.
"""
import os, sqlite3, subprocess, tempfile, time
from console_bench import Console, serve, timed

MODELS, KEYS, WS = 1000, 10000, 100
ACTIVE = int(os.environ.get("ACTIVE", "500"))            # keys active in an hour
HOURLY_ROWS = 30 * 24 * ACTIVE
MINUTE_ROWS = int(os.environ.get("MINUTE_ROWS", "200000"))
RUNS = int(os.environ.get("RUNS", "20"))
BIN = os.environ.get("MAAS_BIN") or os.path.expanduser("~/.cache/maas-target/release/maas")

tmp = tempfile.mkdtemp(prefix="maas-bench-usage-")
db_path = os.path.join(tmp, "maas.db")
env = dict(os.environ, DATABASE_URL=f"sqlite://{db_path}?mode=rwc", MAAS_DATA_DIR=tmp,
           MAAS_ADMIN_PASSWORD="bench-pass-1", MAAS_LISTEN="127.0.0.1:0", RUST_LOG="warn")
subprocess.run([BIN, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)

t0 = time.time()
db = sqlite3.connect(db_path)
now = int(time.time())
now_min, now_hour = now // 60, now // 3600
db.execute("INSERT INTO clusters (name, entry_address, created_at) VALUES ('bench', 'http://127.0.0.1:1', ?)", (now,))
db.executemany("INSERT INTO workspaces (name, created_at) VALUES (?, ?)", [(f"ws-{i:03}", now) for i in range(WS)])
db.executemany("INSERT INTO marketplace_models (name, provider, description, tags, published, created_at) VALUES (?, 'bench', '', '[]', 1, ?)",
               [(f"model-{i:04}", now) for i in range(MODELS)])
db.executemany("INSERT INTO maas_models (marketplace_model_id, cluster_id, policy, enabled, revision, created_at, updated_at) VALUES (?, 1, 'round_robin', 1, 1, ?, ?)",
               [(i + 1, now, now) for i in range(MODELS)])
db.executemany("INSERT INTO endpoints (maas_model_id, position, model_id, url, api_key_enc, weight) VALUES (?, 0, ?, 'https://u.example', NULL, 100)",
               [(i + 1, f"up-{i}") for i in range(MODELS)])
db.executemany("INSERT INTO api_keys (workspace_id, public_id, name, secret_hash, created_by, created_at) VALUES (?, ?, ?, ?, NULL, ?)",
               [(k // (KEYS // WS) + 1, f"key_{k:06}", f"key-{k}", f"{k:064x}", now) for k in range(KEYS)])
cols = "maas_model_id, model, endpoint_id, workspace_id, api_key_id, operation, outcome, status, requests, failovers, usage_known, input_tokens, output_tokens, total_tokens, latency_ms_sum, ttfb_ms_sum, lat_b4, lat_b6, ttfb_b3, ttfb_b4"
# Row n: key n*7919 % KEYS, model (key % MODELS), a few ok calls with tokens, 1 in 20 rows a 429.
vals = """(n * 7919) % {K} % {M} + 1, 'model-' || printf('%04d', (n * 7919) % {K} % {M}), (n * 7919) % {K} % {M} + 1,
          (n * 7919) % {K} / {KW} + 1, (n * 7919) % {K} + 1, 'chat', CASE WHEN n % 20 = 0 THEN 'rate_limited' ELSE 'ok' END,
          CASE WHEN n % 20 = 0 THEN 429 ELSE 200 END, 1 + n % 9, 0, CASE WHEN n % 20 = 0 THEN 0 ELSE 1 + n % 9 END,
          (1 + n % 9) * 400, (1 + n % 9) * 120, (1 + n % 9) * 520, (1 + n % 9) * 800, (1 + n % 9) * 90,
          (1 + n % 9) / 2, (1 + n % 9) - (1 + n % 9) / 2, (1 + n % 9) / 2, (1 + n % 9) - (1 + n % 9) / 2""".format(K=KEYS, M=MODELS, KW=KEYS // WS)
db.execute(f"""WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n + 1 < {HOURLY_ROWS})
               INSERT INTO usage_minutes (minute, gateway_id, {cols})
               SELECT ({now_hour} - 1 - n / {ACTIVE} % (30 * 24)) * 60 + n % 60, 'bench', {vals} FROM c""")
db.execute(f"""WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n + 1 < {MINUTE_ROWS})
               INSERT INTO usage_minutes (minute, gateway_id, {cols})
               SELECT {now_min} - n * (8 * 1440) / {MINUTE_ROWS}, 'bench', {vals} FROM c""")
db.commit()
db.close()
print(f"seeded {HOURLY_ROWS} + {MINUTE_ROWS} minute rows, {MODELS} models, {KEYS} keys in {time.time() - t0:.1f} s "
      f"({os.path.getsize(db_path) / 2**20:.0f} MiB)")

with serve(BIN, env) as port:
    # The first upkeep pass, started with the server: wait (bounded) until it has compacted
    # every complete hour.
    t0 = time.time()
    watch = sqlite3.connect(db_path, timeout=60)
    for _ in range(1200):
        pending = watch.execute("SELECT COUNT(*) FROM usage_minutes WHERE compacted = 0 AND minute < ?", (now_hour * 60,)).fetchone()[0]
        if pending == 0:
            break
        time.sleep(0.25)
    assert pending == 0, f"{pending} minute rows still not compacted"
    # Statistics of the data as it is from now on (most minute rows compacted), as a database
    # that has served a while has them.
    watch.execute("ANALYZE")
    counts = [watch.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ["usage_hours", "usage_quarters", "usage_model_blocks", "usage_key_blocks"]]
    watch.close()
    print(f"first compaction pass: {time.time() - t0:.1f} s -> {counts[0]} hourly rows, {counts[1]} quarters, "
          f"{counts[2]} model and {counts[3]} key block rows")
    c = Console(port, "admin", "bench-pass-1")

    def report(rng, **f):
        def go():
            r, data = c.post("/api/usage/page", dict({"range": rng, "model": "", "workspace": "", "key": ""}, **f))
            assert r.status == 200, data[:300]
        return go

    def page(path, must):
        def go():
            r, body = c.get(path)
            assert r.status == 200 and must in body, body[:300]
        return go

    def models_list():
        r, data = c.post("/api/models/list", {"search": "", "page": 0})
        assert r.status == 200, data[:300]

    print(f"{RUNS} requests each, one connection, loopback")
    for rng in ["1h", "24h", "7d", "30d"]:
        timed(f"report server fn, {rng}", report(rng), RUNS)
    timed("report server fn, 30d, one model", report("30d", model="7"), RUNS)
    timed("report server fn, 30d, one workspace", report("30d", workspace="3"), RUNS)
    timed("SSR GET /usage?range=30d (full page)", page("/usage?range=30d", b"figure"), RUNS)
    timed("list server fn, page 1 (24 h figures)", models_list, RUNS)
