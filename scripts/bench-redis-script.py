#!/usr/bin/env python3
"""Redis CPU per shared rate-limit check, for the Lua script of the working tree and of earlier
revisions, measured by Redis itself (INFO commandstats: usec per EVALSHA) under redis-benchmark
on 127.0.0.1; each script is run twice, interleaved. Deterministic enough to tell a 10 % change,
where the gateway load bench's "redis µs/req" moves ±10 % run to run.

Usage: scripts/bench-redis-script.py [REV ...]   (default: HEAD; the working tree is always run)
Each check is a key rule and a workspace rule with 1 s windows and limits never reached, from 16
connections, 200,000 calls (bounded).
"""
import re
import subprocess
import sys
import time

REPO = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
PATH = "server/src/gateway/redis_limiter.rs"


def script(src):
    """(text, keys and args for a key rule and a workspace rule): the request-only script of
    earlier revisions, or the library + CHECK script of every rule kind."""
    old = re.search(r'const CHECK_AND_RECORD: &str = r#"(.*?)"#;', src, re.S)
    if old:
        keys = ["{ws:1}m1:key:1:1000:ticks", "{ws:1}m1:key:1:1000:counts", "{ws:1}m1:ws:1:1000:ticks", "{ws:1}m1:ws:1:1000:counts"]
        return old.group(1), ["4", *keys, "1000000000", "1000", "1000000000", "1000"]
    lib = re.search(r'const LIB: &str = r#"(.*?)"#;', src, re.S).group(1)
    check = re.search(r'const CHECK: &str = r#"(.*?)"#;', src, re.S).group(1)
    keys = [f"{{ws:1}}m1:{t}:1:1000:{s}" for t in ("key", "ws") for s in ("ticks", "counts", "leases", "held")]
    return lib + check, ["8", *keys, "0", "0", "60000", "0", "1000000000", "1000", "0", "1000000000", "1000"]


versions = [(rev, script(subprocess.run(["git", "-C", REPO, "show", f"{rev}:{PATH}"], capture_output=True, text=True, check=True).stdout)) for rev in (sys.argv[1:] or ["HEAD"])]
versions.append(("working tree", script(open(f"{REPO}/{PATH}").read())))

port = 16391
server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)


def cli(*args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()


try:
    for _ in range(50):
        if cli("PING") == "PONG":
            break
        time.sleep(0.1)
    for _ in range(2):
        for name, (text, args) in versions:
            cli("FLUSHALL")
            cli("CONFIG", "RESETSTAT")
            sha = cli("SCRIPT", "LOAD", text)
            subprocess.run(["redis-benchmark", "-p", str(port), "-n", "200000", "-c", "16", "-q", "EVALSHA", sha, *args], capture_output=True, check=True)
            stat = next(l for l in cli("INFO", "commandstats").splitlines() if l.startswith("cmdstat_evalsha"))
            per_call = re.search(r"usec_per_call=([0-9.]+)", stat).group(1)
            print(f"{name:>14}: {per_call} us of Redis CPU per check (2 rules)")
finally:
    server.kill()
