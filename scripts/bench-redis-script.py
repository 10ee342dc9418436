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
    return re.search(r'const CHECK_AND_RECORD: &str = r#"(.*?)"#;', src, re.S).group(1)


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
    keys = ["{ws:1}m1:key:1:1000:ticks", "{ws:1}m1:key:1:1000:counts", "{ws:1}m1:ws:1:1000:ticks", "{ws:1}m1:ws:1:1000:counts"]
    for _ in range(2):
        for name, text in versions:
            cli("FLUSHALL")
            cli("CONFIG", "RESETSTAT")
            sha = cli("SCRIPT", "LOAD", text)
            subprocess.run(["redis-benchmark", "-p", str(port), "-n", "200000", "-c", "16", "-q", "EVALSHA", sha, "4", *keys, "1000000000", "1000", "1000000000", "1000"], capture_output=True, check=True)
            stat = next(l for l in cli("INFO", "commandstats").splitlines() if l.startswith("cmdstat_evalsha"))
            per_call = re.search(r"usec_per_call=([0-9.]+)", stat).group(1)
            print(f"{name:>14}: {per_call} us of Redis CPU per check (2 rules)")
finally:
    server.kill()
