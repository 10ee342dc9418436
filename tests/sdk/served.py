"""`maas mock-upstream` and `maas serve` on free loopback ports with a throwaway database and the
demo model, for the SDK tests (each test file starts its own)."""
import os, re, subprocess, sys, tempfile, time, unittest

BIN = os.environ["MAAS_BIN"]


def start(args, env, pattern):
    p = subprocess.Popen([BIN, *args], env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(pattern, line)
        if m:
            return p, m.group(1)
    p.kill()
    raise RuntimeError(f"{args[0]} did not start")


class Served:
    """The mock (`--chunks 4`) and the gateway in front of it: `tmp` (data folder), `base` (the
    gateway's origin), `key` (the demo key)."""

    def __init__(self, prefix, env=None):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        env = dict(os.environ, RUST_LOG="warn", **(env or {}))
        self.mock, self.mock_url = start(["mock-upstream", "--listen", "127.0.0.1:0", "--chunks", "4"], env, r"mock upstream: (http://\S+)/v1")
        env.update(DATABASE_URL=f"sqlite://{self.tmp}/maas.db?mode=rwc", MAAS_DATA_DIR=self.tmp, MAAS_LISTEN="127.0.0.1:0")
        self.server, self.base = start(["serve", "--demo-upstream", self.mock_url], env, r"MaaS console: (http://\S+)")
        with open(os.path.join(self.tmp, "demo.key")) as f:
            self.key = f.read().strip()

    def stop(self):
        for p in (self.server, self.mock):
            p.terminate()
            p.wait(timeout=10)
            p.stdout.close()


class ServedCase(unittest.TestCase):
    """Tests sharing one `Served` (`cls.served`, its data folder prefixed `PREFIX`), started
    before the first and stopped after the last."""

    PREFIX = "maas-sdk-"
    ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.served = Served(cls.PREFIX, cls.ENV)

    @classmethod
    def tearDownClass(cls):
        cls.served.stop()


def main():
    """Runs the file's tests, prints `n passed, f failed`, and exits 1 on any failure."""
    result = unittest.main(exit=False, verbosity=2).result
    n, f = result.testsRun, len(result.failures) + len(result.errors)
    print(f"{n - f} passed, {f} failed")
    sys.exit(1 if f else 0)
