#!/usr/bin/env python3
"""Memory under a login flood, loopback only, bounded: `maas serve` (release, throwaway SQLite)
gets ROUNDS bursts of CONCURRENT logins with unknown usernames at once (the abuse of issue 10:
each Argon2 hash holds 19 MiB). Reports RSS before, peak (VmHWM) and after, and the statuses.
With MAAS_BIN_BASELINE set, the same against that binary in the same run. Figures go in notes.
"""
import concurrent.futures, os, re, subprocess, sys, tempfile, time, urllib.error, urllib.parse, urllib.request

BINS = [("this build", os.environ.get("MAAS_BIN") or os.path.expanduser("~/.cache/maas-target/release/maas"))]
if os.environ.get("MAAS_BIN_BASELINE"):
    BINS.append(("baseline", os.environ["MAAS_BIN_BASELINE"]))
CONCURRENT = int(os.environ.get("CONCURRENT", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))


def status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


def login(base, i):
    body = urllib.parse.urlencode({"username": f"nobody{i}", "password": "guess-guess"}).encode()
    req = urllib.request.Request(f"{base}/api/login", data=body, headers={"content-type": "application/x-www-form-urlencoded"})
    try:
        return urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e:
        return e.code


for name, binary in BINS:
    tmp = tempfile.mkdtemp(prefix="maas-login-bench-")
    env = dict(os.environ, RUST_LOG="error", DATABASE_URL=f"sqlite://{tmp}/maas.db?mode=rwc", MAAS_DATA_DIR=tmp, MAAS_LISTEN="127.0.0.1:0")
    p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = None
    deadline = time.time() + 30
    while time.time() < deadline and not base:
        m = re.search(r"MaaS console: (http://\S+)", p.stdout.readline())
        base = m and m.group(1)
    if not base:
        p.kill(); sys.exit(f"{binary} did not start")
    try:
        time.sleep(0.5)
        before = status(p.pid, "VmRSS")
        codes = {}
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
            for r in range(ROUNDS):
                for c in pool.map(lambda i: login(base, i), range(r * CONCURRENT, (r + 1) * CONCURRENT)):
                    codes[c] = codes.get(c, 0) + 1
        took = time.time() - started
        time.sleep(1)
        print(f"{name}: {ROUNDS} x {CONCURRENT} concurrent logins in {took:.1f} s: RSS {before:.0f} MiB before, "
              f"peak {status(p.pid, 'VmHWM'):.0f} MiB, {status(p.pid, 'VmRSS'):.0f} MiB after; statuses {dict(sorted(codes.items()))}")
    finally:
        p.terminate(); p.wait(timeout=10)
