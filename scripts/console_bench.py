"""What the console benchmarks share (bench-list.py, bench-usage.py): `maas serve` started on
127.0.0.1 (port 0) for the time of a `with`, a logged-in client on one connection, and bounded
timed series printed as median and p95. Loopback only."""
import contextlib, http.client, re, statistics, subprocess, time, urllib.parse


@contextlib.contextmanager
def serve(bin_path, env, start_timeout=60):
    """Yields the port of a `maas serve` started with `env`; stops it afterwards."""
    proc = subprocess.Popen([bin_path, "serve"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.time() + start_timeout
        while time.time() < deadline and port is None:
            m = re.search(r"MaaS console: http://127\.0\.0\.1:(\d+)", proc.stdout.readline())
            if m:
                port = int(m.group(1))
        assert port, "server did not start"
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Console:
    """One keep-alive connection, logged in as `user`."""

    def __init__(self, port, user, password):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = None
        r, data = self.post("/api/login", {"username": user, "password": password})
        assert r.status == 200, data
        self.cookie = r.getheader("set-cookie").split(";")[0]

    def post(self, path, body):
        """A server function call (form-encoded): (response, body)."""
        h = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
        if self.cookie:
            h["cookie"] = self.cookie
        self.conn.request("POST", path, urllib.parse.urlencode(body), h)
        r = self.conn.getresponse()
        return r, r.read()

    def get(self, path):
        """A page: (response, body)."""
        self.conn.request("GET", path, headers={"cookie": self.cookie, "accept": "text/html"})
        r = self.conn.getresponse()
        return r, r.read()


def timed(label, fn, runs):
    """Runs `fn` once to warm up, then `runs` times; prints median and p95 in ms."""
    fn()
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    xs.sort()
    print(f"{label:<46} median {statistics.median(xs):8.2f} ms   p95 {xs[max(0, int(len(xs) * 0.95) - 1)]:8.2f} ms")
