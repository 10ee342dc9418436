#!/usr/bin/env python3
"""Gateway load benchmark, loopback only, every run bounded in time.

Starts `maas mock-upstream` and `maas serve` (release build, throwaway SQLite, demo model on the
mock with a rate-limit rule that never fires), then measures with `oha` in the same run:
  - req/s at 16 and 64 connections, direct to the mock and through the gateway;
  - p50/p99 latency at a fixed 1,000 req/s, direct and through the gateway (added latency);
  - gateway CPU ms per request (from /proc utime+stime) and peak RSS (VmHWM);
  - references in the same run, each when its Debian package is installed: nginx as a plain
    reverse proxy, and socat as a bare TCP relay (no HTTP at all: the floor any extra hop costs
    here in wake-ups); and the gateway again with its rate limits shared through redis-server.
Anthropic's Messages API (translated to chat completions) is measured beside chat on the same
server, streamed and not. The gateway also runs with its usage meter off (MAAS_USAGE_METERING=false, same database),
measured beside the metered one, non-streamed and streamed: what metering costs.
With MAAS_BIN_BASELINE set (an earlier build), that binary's gateway is measured beside this
one in the same run, alternating (feature on vs off for a change on the request path).
Figures go in the session notes; nothing here asserts a wall-clock number.
"""
import json, os, re, shutil, sqlite3, subprocess, sys, tempfile, time

BIN = os.environ.get("MAAS_BIN") or os.path.expanduser("~/.cache/maas-target/release/maas")
OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
DURATION = os.environ.get("BENCH_SECONDS", "8")
BODY = json.dumps({"model": "demo-chat", "messages": [{"role": "user", "content": "Hello"}]})
STREAM_BODY = json.dumps({"model": "demo-chat", "stream": True, "messages": [{"role": "user", "content": "Hello"}]})
# Anthropic's Messages API on the same model, translated to chat completions by the gateway.
MESSAGES_BODY = json.dumps({"model": "demo-chat", "max_tokens": 100, "messages": [{"role": "user", "content": "Hello"}]})
MESSAGES_STREAM_BODY = json.dumps({"model": "demo-chat", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "Hello"}]})
# demo-agent's endpoint speaks Messages and Responses natively (passed through); demo-chat's
# speaks only chat completions (translated).
NATIVE_MESSAGES_BODY = MESSAGES_BODY.replace("demo-chat", "demo-agent")
NATIVE_MESSAGES_STREAM_BODY = MESSAGES_STREAM_BODY.replace("demo-chat", "demo-agent")
RESPONSES_BODY = json.dumps({"model": "demo-chat", "input": "Hello"})
RESPONSES_STREAM_BODY = json.dumps({"model": "demo-chat", "stream": True, "input": "Hello"})
NATIVE_RESPONSES_BODY = RESPONSES_BODY.replace("demo-chat", "demo-agent")
NATIVE_RESPONSES_STREAM_BODY = RESPONSES_STREAM_BODY.replace("demo-chat", "demo-agent")


def start(args, env, pattern, binary=None):
    err = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([binary or BIN, *args], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(pattern, p.stdout.readline())
        if m:
            return p, m.group(1)
    p.kill()
    err.seek(0)
    # What it said last: why it did not start.
    sys.exit(f"{binary or BIN} {args[0]} did not start:\n" + "".join(err.readlines()[-40:]))


def cpu_ms(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def tree_cpu_ms(pid):
    """CPU of a process and its children (nginx's workers)."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return cpu_ms(pid) + sum(cpu_ms(int(k)) for k in kids)


def start_nginx(upstream, tmp):
    """nginx from Debian as a reference reverse proxy (same 2 workers, keep-alive upstream)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not nginx:
        return None, None
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = f"""worker_processes 2; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np; fastcgi_temp_path {tmp}/nf;
  uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
  upstream mock {{ server {upstream.split('//')[1]}; keepalive 128; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://mock; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_buffering off; }} }}
}}"""
    open(f"{tmp}/nginx.conf", "w").write(conf)
    p = subprocess.Popen([nginx, "-c", f"{tmp}/nginx.conf", "-p", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p, f"http://127.0.0.1:{port}"


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_socat(upstream):
    """A bare TCP relay (socat, Debian): a connection per client connection, bytes copied both
    ways, no parsing. What an extra hop costs on this machine before any proxy logic."""
    socat = shutil.which("socat")
    if not socat:
        return None, None
    port = free_port()
    target = upstream.split("//")[1]
    p = subprocess.Popen([socat, f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay", f"TCP:{target},nodelay"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p, f"http://127.0.0.1:{port}"


def start_redis():
    redis = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if not redis:
        return None, None
    port = free_port()
    p = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p, f"redis://127.0.0.1:{port}"


def hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


def oha(url, key, conns, rate=None, body=BODY):
    cmd = [OHA, "-z", f"{DURATION}s", "-c", str(conns), "-m", "POST", "-H", "content-type: application/json",
           "-H", f"authorization: Bearer {key}", "-d", body, "--no-tui", "--output-format", "json", url]
    if rate:
        cmd[1:1] = ["-q", str(rate)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=int(DURATION) + 60)
    r = json.loads(out.stdout)
    codes = r.get("statusCodeDistribution", {})
    return r["summary"]["requestsPerSec"], r["latencyPercentiles"]["p50"] * 1e6, r["latencyPercentiles"]["p99"] * 1e6, codes


tmp = tempfile.mkdtemp(prefix="maas-gw-bench-")
env = dict(os.environ, RUST_LOG="error")  # MAAS_WORKERS=n passes through to the server
mock, mock_url = start(["mock-upstream", "--listen", "127.0.0.1:0", "--no-record"], env, r"mock upstream: (http://\S+)/v1")
senv = dict(env, DATABASE_URL=f"sqlite://{tmp}/maas.db?mode=rwc", MAAS_DATA_DIR=tmp, MAAS_LISTEN="127.0.0.1:0")
server, base = start(["serve", "--demo-upstream", mock_url], senv, r"MaaS console: (http://\S+)")
# A rule that is checked on every request but never fires: 10^9 per 1 s.
server.terminate(); server.wait()
db = sqlite3.connect(f"{tmp}/maas.db")
db.execute("UPDATE rate_limit_rules SET limit_value = 1000000000, duration_secs = 1")
# Scale for the RSS figure: SEED_KEYS platform keys and SEED_MODELS enabled models (2 endpoints
# and a workspace rule each) in the snapshot besides the demo model.
SEED_KEYS = int(os.environ.get("SEED_KEYS", "10000"))
SEED_MODELS = int(os.environ.get("SEED_MODELS", "1000"))
now = int(time.time())
db.executemany("INSERT INTO api_keys (workspace_id, public_id, name, secret_hash, created_at) VALUES (1, ?, 'bench', ?, ?)",
               [(f"key_bench{i}", f"{i:064x}", now) for i in range(SEED_KEYS)])
mm0 = db.execute("SELECT COALESCE(MAX(id), 0) FROM marketplace_models").fetchone()[0]
db.executemany("INSERT INTO marketplace_models (name, provider, description, tags, published, created_at) VALUES (?, 'bench', '', '[]', 1, ?)",
               [(f"bench-{i}", now) for i in range(SEED_MODELS)])
db.executemany("INSERT INTO maas_models (marketplace_model_id, cluster_id, policy, enabled, revision, created_at, updated_at) VALUES (?, 1, 'weighted', 1, 1, ?, ?)",
               [(mm0 + 1 + i, now, now) for i in range(SEED_MODELS)])
m0 = db.execute("SELECT MIN(id) FROM maas_models WHERE marketplace_model_id > ?", (mm0,)).fetchone()[0]
db.executemany("INSERT INTO endpoints (maas_model_id, position, model_id, url, api_key_enc, weight) VALUES (?, ?, 'up', ?, NULL, 50)",
               [(m0 + i, p, f"{mock_url}/name/e{p}") for i in range(SEED_MODELS) for p in range(2)])
db.executemany("INSERT INTO rate_limit_rules (maas_model_id, position, target, workspace_id, api_key_id, limit_value, duration_secs) VALUES (?, 0, 'workspace', 1, NULL, 1000, 60)",
               [(m0 + i,) for i in range(SEED_MODELS)])
# demo-big: a model whose endpoint answers chat with 1,000,000 characters (RSS with big answers).
db.execute("INSERT INTO marketplace_models (name, provider, description, tags, published, created_at) VALUES ('demo-big', 'bench', '', '[]', 1, ?)", (now,))
big_mm = db.execute("SELECT id FROM marketplace_models WHERE name = 'demo-big'").fetchone()[0]
db.execute("INSERT INTO maas_models (marketplace_model_id, cluster_id, policy, enabled, revision, created_at, updated_at) VALUES (?, 1, 'round_robin', 1, 1, ?, ?)", (big_mm, now, now))
big_m = db.execute("SELECT id FROM maas_models WHERE marketplace_model_id = ?", (big_mm,)).fetchone()[0]
db.execute("INSERT INTO endpoints (maas_model_id, position, model_id, url, api_key_enc, weight) VALUES (?, 0, 'up', ?, NULL, 100)", (big_m, f"{mock_url}/size/1000000/v1"))
db.commit(); db.close()
BASELINE = os.environ.get("MAAS_BIN_BASELINE")
baseline = None
if BASELINE:
    # Its own copy of the database, without this build's newer migrations (an older binary
    # refuses a database with migrations it does not know; the extra columns have defaults).
    known = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "show", f"{os.environ.get('BASELINE_REV', 'HEAD')}:migrations/src/lib.rs"], capture_output=True, text=True).stdout

    def for_baseline(src, dst):
        shutil.copy(src, dst)
        bdb = sqlite3.connect(dst)
        for (v,) in bdb.execute("SELECT version FROM seaql_migrations").fetchall():
            if known and v not in known:
                bdb.execute("DELETE FROM seaql_migrations WHERE version = ?", (v,))
        bdb.commit(); bdb.close()

    for_baseline(f"{tmp}/maas.db", f"{tmp}/base.db")
    baseline, base_url = start(["serve"], dict(senv, DATABASE_URL=f"sqlite://{tmp}/base.db?mode=rwc"), r"MaaS console: (http://\S+)", BASELINE)
    via_base = f"{base_url}/v1/chat/completions"
# Rules on vs off (issue 12): the demo key with no rule at all, and with one token rule and one
# concurrency rule that never fire, each served from its own copy of the database.
rules_db = {}
# Issue 29: a budget in money on the key (never reached) prices every call's estimate at
# admission and settles it at the end: "money budget" against "none".
for name, rules in (("none", []), ("tokens+concurrent", [("tokens", 10**12, 60), ("concurrent", 100000, 0)]), ("money budget", [])):
    path = f"{tmp}/rules-{len(rules_db)}.db"
    shutil.copy(f"{tmp}/maas.db", path)
    rdb = sqlite3.connect(path)
    demo = rdb.execute("SELECT maas_model_id, workspace_id, api_key_id FROM rate_limit_rules WHERE api_key_id IS NOT NULL ORDER BY id LIMIT 1").fetchone()
    rdb.execute("DELETE FROM rate_limit_rules WHERE maas_model_id = ?", (demo[0],))
    rdb.executemany("INSERT INTO rate_limit_rules (maas_model_id, position, kind, target, workspace_id, api_key_id, limit_value, duration_secs) VALUES (?, ?, ?, 'api_key', ?, ?, ?, ?)",
                    [(demo[0], i, kind, demo[1], demo[2], limit, secs) for i, (kind, limit, secs) in enumerate(rules)])
    if name == "money budget":
        rdb.execute("INSERT INTO quotas (target, workspace_id, api_key_id, period, spend_nanos, unpriced) VALUES ('api_key', ?, ?, 'month', ?, 'refuse')",
                    (demo[1], demo[2], 10**18))
    rdb.commit(); rdb.close()
    rules_db[name] = path
# Routing policies (issue 28): demo-chat over two endpoints of the mock under each policy, each
# from its own copy of the database; the calls carry a conversation key (what cache affinity
# hashes; the other policies ignore it).
policy_db = {}
if os.environ.get("BENCH_POLICIES", "1") == "1":
    for policy in ("round_robin", "least_busy", "fastest", "affinity"):
        path = f"{tmp}/policy-{policy}.db"
        shutil.copy(f"{tmp}/maas.db", path)
        pdb = sqlite3.connect(path)
        demo = pdb.execute("SELECT m.id FROM maas_models m JOIN marketplace_models mm ON mm.id = m.marketplace_model_id WHERE mm.name = 'demo-chat'").fetchone()[0]
        routing = None if policy == "round_robin" else policy
        pdb.execute("UPDATE maas_models SET policy = 'round_robin', routing_policy = ? WHERE id = ?", (routing, demo))
        pdb.execute("DELETE FROM endpoints WHERE maas_model_id = ?", (demo,))
        pdb.executemany("INSERT INTO endpoints (maas_model_id, position, model_id, url, api_key_enc, weight) VALUES (?, ?, 'up', ?, NULL, 50)",
                        [(demo, p, f"{mock_url}/name/e{p}/v1") for p in range(2)])
        pdb.commit(); pdb.close()
        policy_db[policy] = path
POLICY_BODY = json.dumps({"model": "demo-chat", "prompt_cache_key": "bench-conversation", "messages": [{"role": "user", "content": "Hello"}]})
server, base = start(["serve"], senv, r"MaaS console: (http://\S+)")
by_policy = {name: start(["serve"], dict(senv, DATABASE_URL=f"sqlite://{path}?mode=rwc"), r"MaaS console: (http://\S+)") for name, path in policy_db.items()}
by_rules = {name: start(["serve"], dict(senv, DATABASE_URL=f"sqlite://{path}?mode=rwc"), r"MaaS console: (http://\S+)") for name, path in rules_db.items()}
if BASELINE:
    # The baseline build with the same token and concurrency rule, metering on: a change on the
    # request path measured where it costs most, alternated with this build's runs.
    for name in list(rules_db):
        if name == "tokens+concurrent":
            for_baseline(rules_db[name], f"{tmp}/base-{name}.db")
            by_rules[f"baseline {name}"] = start(["serve"], dict(senv, DATABASE_URL=f"sqlite://{tmp}/base-{name}.db?mode=rwc"), r"MaaS console: (http://\S+)", BASELINE)
unmetered, unmetered_base = start(["serve"], dict(senv, MAAS_USAGE_METERING="false"), r"MaaS console: (http://\S+)")
via_off = f"{unmetered_base}/v1/chat/completions"
key = open(f"{tmp}/demo.key").read().strip()
direct = f"{mock_url}/v1/chat/completions"
via = f"{base}/v1/chat/completions"
nginx, nginx_url = start_nginx(mock_url, tmp) if os.environ.get("BENCH_NGINX", "1") == "1" else (None, None)
socat, socat_url = start_socat(mock_url) if os.environ.get("BENCH_SOCAT", "1") == "1" else (None, None)
redis = shared = None
try:
    print(f"oha {DURATION}s per run; mock, gateway and oha share 2 cores")
    for c in (16, 64):
        m0 = cpu_ms(mock.pid)
        d = oha(direct, key, c)
        mock_us = 1000 * (cpu_ms(mock.pid) - m0) / (d[0] * int(DURATION))
        c0 = cpu_ms(server.pid)
        prof = None
        if os.environ.get("PERF_OUT") and c == 16:
            # A CPU profile of the gateway during this run (perf from Debian's linux-perf).
            prof = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-o", os.environ["PERF_OUT"], "-p", str(server.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g = oha(via, key, c)
        if prof:
            prof.send_signal(2); prof.wait(timeout=30)
        used = cpu_ms(server.pid) - c0
        n = g[0] * int(DURATION)
        print(f"c={c:<3} direct {d[0]:9.0f} req/s   gateway {g[0]:9.0f} req/s ({100 * g[0] / d[0]:.0f}% of direct)   "
              f"gateway CPU {1000 * used / n:6.1f} us/req (mock alone {mock_us:.1f})   statuses {g[3]}")
        c0 = cpu_ms(unmetered.pid)
        o = oha(via_off, key, c)
        used = cpu_ms(unmetered.pid) - c0
        print(f"c={c:<3} metering off     {o[0]:9.0f} req/s ({100 * o[0] / d[0]:.0f}% of direct)   "
              f"CPU {1000 * used / (o[0] * int(DURATION)):6.1f} us/req   statuses {o[3]}")
        if baseline:
            c0 = cpu_ms(baseline.pid)
            b = oha(via_base, key, c)
            used = cpu_ms(baseline.pid) - c0
            print(f"c={c:<3} baseline gateway {b[0]:9.0f} req/s ({100 * b[0] / d[0]:.0f}% of direct)   "
                  f"CPU {1000 * used / (b[0] * int(DURATION)):6.1f} us/req   statuses {b[3]}")
    # Rule kinds: no rule vs a token and a concurrency rule on the key, alternated, twice each.
    def compare_rules(servers, label, redis_proc=None):
        for c in (16, 64):
            got = {name: [] for name in servers}
            for _ in range(2):
                for name, (proc, url) in servers.items():
                    c0 = cpu_ms(proc.pid)
                    r0 = cpu_ms(redis_proc.pid) if redis_proc else 0
                    r = oha(f"{url}/v1/chat/completions", key, c)
                    n = r[0] * int(DURATION)
                    redis_us = 1000 * (cpu_ms(redis_proc.pid) - r0) / n if redis_proc else None
                    got[name].append((r[0], 1000 * (cpu_ms(proc.pid) - c0) / n, redis_us, r[3]))
            for name, runs in got.items():
                print(f"c={c:<3} {label}: {name:<18} " + "  ".join(
                    f"{rps:9.0f} req/s CPU {us:5.1f} us/req" + (f" (redis {rus:4.1f})" if rus is not None else "") + f" {codes}"
                    for rps, us, rus, codes in runs))
    compare_rules(by_rules, "rules")
    # Each routing policy vs round-robin, alternated, twice each, at 16 connections.
    got = {name: [] for name in by_policy}
    for _ in range(2):
        for name, (proc, url) in by_policy.items():
            c0 = cpu_ms(proc.pid)
            r = oha(f"{url}/v1/chat/completions", key, 16, body=POLICY_BODY)
            got[name].append((r[0], 1000 * (cpu_ms(proc.pid) - c0) / (r[0] * int(DURATION)), r[3]))
    for name, runs in got.items():
        print(f"c=16  policy {name:<12} " + "  ".join(f"{rps:9.0f} req/s CPU {us:5.1f} us/req {codes}" for rps, us, codes in runs))
    # Streams (3 chunks, the usage event injected and cut when metering): metered vs not.
    for name, proc, url in (("metering on ", server, via), ("metering off", unmetered, via_off)):
        c0 = cpu_ms(proc.pid)
        st = oha(url, key, 16, body=STREAM_BODY)
        print(f"c=16  streamed, {name} {st[0]:9.0f} req/s   CPU {1000 * (cpu_ms(proc.pid) - c0) / (st[0] * int(DURATION)):6.1f} us/req   statuses {st[3]}")
    # The agents' APIs, translated to chat (demo-chat) and passed through (demo-agent), beside chat
    # itself, same server, alternated: what each costs per call (CPU) and to the first token (p50
    # at a fixed rate, streamed).
    via_messages, via_responses = f"{base}/v1/messages", f"{base}/v1/responses"
    apis = (("chat              ", via, BODY, STREAM_BODY),
            ("messages (tr.)    ", via_messages, MESSAGES_BODY, MESSAGES_STREAM_BODY),
            ("messages (native) ", via_messages, NATIVE_MESSAGES_BODY, NATIVE_MESSAGES_STREAM_BODY),
            ("responses (tr.)   ", via_responses, RESPONSES_BODY, RESPONSES_STREAM_BODY),
            ("responses (native)", via_responses, NATIVE_RESPONSES_BODY, NATIVE_RESPONSES_STREAM_BODY))
    for _ in range(2):
        for streamed in (False, True):
            for name, url, body, stream_body in apis:
                c0 = cpu_ms(server.pid)
                r = oha(url, key, 16, body=stream_body if streamed else body)
                what = name + (", str." if streamed else "      ")
                print(f"c=16  {what} {r[0]:9.0f} req/s   CPU {1000 * (cpu_ms(server.pid) - c0) / (r[0] * int(DURATION)):6.1f} us/req   statuses {r[3]}")
    for name, url, _, stream_body in apis:
        r = oha(url, key, 16, rate=1000, body=stream_body)
        print(f"1000 req/s {name}, streamed: p50 {r[1]:7.0f} us p99 {r[2]:7.0f} us   statuses {r[3]}")
    d = oha(direct, key, 16, rate=1000)
    c0 = cpu_ms(server.pid)
    g = oha(via, key, 16, rate=1000)
    low_cpu = 1000 * (cpu_ms(server.pid) - c0) / (g[0] * int(DURATION))
    print(f"1000 req/s: direct p50 {d[1]:7.0f} us p99 {d[2]:7.0f} us | gateway p50 {g[1]:7.0f} us p99 {g[2]:7.0f} us | "
          f"added p50 {g[1] - d[1]:6.0f} us p99 {g[2] - d[2]:6.0f} us | gateway CPU {low_cpu:5.1f} us/req at this rate")
    if baseline:
        c0 = cpu_ms(baseline.pid)
        b = oha(via_base, key, 16, rate=1000)
        low_cpu = 1000 * (cpu_ms(baseline.pid) - c0) / (b[0] * int(DURATION))
        print(f"1000 req/s: baseline gateway p50 {b[1]:7.0f} us p99 {b[2]:7.0f} us | added p50 {b[1] - d[1]:6.0f} us p99 {b[2] - d[2]:6.0f} us | "
              f"CPU {low_cpu:5.1f} us/req at this rate")
    if nginx:
        # The same measurements through nginx: what any proxy hop costs on this machine.
        for c in (16, 64):
            c0 = tree_cpu_ms(nginx.pid)
            n_ = oha(f"{nginx_url}/v1/chat/completions", key, c)
            used = tree_cpu_ms(nginx.pid) - c0
            print(f"c={c:<3} nginx (reference, no auth/limits/rewrite) {n_[0]:9.0f} req/s   CPU {1000 * used / (n_[0] * int(DURATION)):6.1f} us/req")
        d = oha(direct, key, 16, rate=1000)
        c0 = tree_cpu_ms(nginx.pid)
        n_ = oha(f"{nginx_url}/v1/chat/completions", key, 16, rate=1000)
        low_cpu = 1000 * (tree_cpu_ms(nginx.pid) - c0) / (n_[0] * int(DURATION))
        print(f"1000 req/s: nginx p50 {n_[1]:7.0f} us p99 {n_[2]:7.0f} us | added p50 {n_[1] - d[1]:6.0f} us p99 {n_[2] - d[2]:6.0f} us | "
              f"nginx CPU {low_cpu:5.1f} us/req at this rate")
    if socat:
        d = oha(direct, key, 16, rate=1000)
        n_ = oha(f"{socat_url}/v1/chat/completions", key, 16, rate=1000)
        print(f"1000 req/s: socat TCP relay (floor of any hop) p50 {n_[1]:7.0f} us p99 {n_[2]:7.0f} us | "
              f"added p50 {n_[1] - d[1]:6.0f} us p99 {n_[2] - d[2]:6.0f} us")
    print(f"gateway peak RSS {hwm_mib(server.pid):.1f} MiB with {SEED_KEYS} extra keys and {SEED_MODELS} extra models loaded")
    # 1 MB answers (demo-big): chat streamed (the reference), Messages translated and streamed
    # (translated event by event: the peak should not move), Messages translated, not streamed
    # (read whole to be translated: the peak grows with the answers in flight). Peak RSS before
    # and after each run.
    # With a baseline build, the same runs on it, in the same order, each after this build's.
    big_runs = (("chat, streamed", "/v1/chat/completions", STREAM_BODY), ("messages (tr.), streamed", "/v1/messages", MESSAGES_STREAM_BODY),
                ("responses (tr.), streamed", "/v1/responses", RESPONSES_STREAM_BODY),
                ("messages (tr.), not streamed", "/v1/messages", MESSAGES_BODY))
    for name, path, body in big_runs:
        for label, proc, root in (("", server, base),) + ((("baseline ", baseline, base_url),) if baseline else ()):
            before = hwm_mib(proc.pid)
            r = oha(f"{root}{path}", key, 16, body=body.replace("demo-chat", "demo-big"))
            print(f"c=16  1 MB answers, {label}{name:<30} {r[0]:7.0f} req/s   peak RSS {before:6.1f} -> {hwm_mib(proc.pid):6.1f} MiB   statuses {r[3]}")
    if os.environ.get("BENCH_REDIS", "1") == "1":
        redis, redis_url = start_redis()
    if redis:
        # The same gateway with its counters in Redis (what replicas of a cluster do): one Lua
        # script round trip per request. Redis's own CPU is reported beside the gateway's.
        server.terminate(); server.wait()
        shared, base = start(["serve"], dict(senv, REDIS_URL=redis_url), r"MaaS console: (http://\S+)")
        via = f"{base}/v1/chat/completions"
        for c in (16, 64):
            d = oha(direct, key, c)
            c0, r0 = cpu_ms(shared.pid), cpu_ms(redis.pid)
            g = oha(via, key, c)
            n = g[0] * int(DURATION)
            print(f"c={c:<3} shared limits (redis): gateway {g[0]:9.0f} req/s ({100 * g[0] / d[0]:.0f}% of direct)   "
                  f"gateway CPU {1000 * (cpu_ms(shared.pid) - c0) / n:6.1f} us/req, redis {1000 * (cpu_ms(redis.pid) - r0) / n:5.1f} us/req   statuses {g[3]}")
        d = oha(direct, key, 16, rate=1000)
        g = oha(via, key, 16, rate=1000)
        print(f"1000 req/s, shared limits (redis): p50 {g[1]:7.0f} us p99 {g[2]:7.0f} us | added p50 {g[1] - d[1]:6.0f} us p99 {g[2] - d[2]:6.0f} us")
        # Rule kinds in Redis: the same two databases, their limits shared (one script per call,
        # plus the pipelined lease end for the token and concurrency rules).
        for proc, _ in by_rules.values():
            proc.terminate(); proc.wait()
        by_rules = {name: start(["serve"], dict(senv, DATABASE_URL=f"sqlite://{path}?mode=rwc", REDIS_URL=redis_url), r"MaaS console: (http://\S+)") for name, path in rules_db.items()}
        compare_rules(by_rules, "shared rules (redis)", redis)
finally:
    for p in (server, unmetered, shared, mock, nginx, socat, redis, baseline, *(p for p, _ in by_rules.values()), *(p for p, _ in by_policy.values())):
        if p is None:
            continue
        p.terminate(); p.wait(timeout=10)
