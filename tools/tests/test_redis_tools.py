#!/usr/bin/env python3
"""The tools on a Redis-backed table: the same `shmlease run` line on a local
table and on a table of a real redis-server, switched by SHMLEASE_BACKEND
alone; shmlease-dump --backend; break, unlink, a server that is down, a bad
URL, and what a Redis table does not offer.

    test_redis_tools.py --shmlease BIN --dump BIN --helper BIN TEST

Each test starts its own redis-server on a Unix socket in a temporary
directory (no TCP port) and stops it at the end, also on failure. Exit 0
pass, 1 fail, 77 skipped (redis-server not installed).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools as tt  # noqa: E402
from test_tools import Fail, Skip, check, parse_rows, show  # noqa: E402

SERVERS = []       # (Popen, directory) to stop and remove at the end


class Redis:
    """A redis-server of this test on DIR/redis.sock."""

    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise Skip("redis-server is not installed (Debian package redis-server)")
        self.dir = tempfile.mkdtemp(prefix="shmlease-rtools.")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.url = "unix://" + self.sock
        self.exe = exe
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [self.exe, "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        SERVERS.append(self)
        end = time.monotonic() + 20
        while not self.ping():
            if self.proc.poll() is not None:
                raise Fail(f"redis-server exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > end:
                raise Fail(f"redis-server did not answer on {self.sock}:\n{self.log()}")
            time.sleep(0.05)

    def ping(self):
        """PING over the socket, in Python: no redis-cli needed."""
        import socket
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            s.connect(self.sock)
            s.sendall(b"PING\r\n")
            ok = s.recv(64).startswith(b"+PONG")
            s.close()
            return ok
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis.log"), "rb") as f:
                return f.read().decode(errors="replace")[-3000:]
        except OSError:
            return ""


def stop_servers():
    for r in SERVERS:
        r.stop()
    for r in SERVERS:
        shutil.rmtree(r.dir, ignore_errors=True)


def env_with(backend):
    """The environment of the tools, with SHMLEASE_BACKEND set or unset."""
    e = dict(os.environ)
    e.pop("SHMLEASE_BACKEND", None)
    if backend is not None:
        e["SHMLEASE_BACKEND"] = backend
    return e


def tool(c, *args, backend=None, timeout=30):
    return c.run([c.shmlease, *args], timeout=timeout, env=env_with(backend))


def dump(c, *args, backend=None, timeout=30):
    return c.run([c.dump_bin, *args], timeout=timeout, env=env_with(backend))


# ---- the same `shmlease run` line, local and on Redis ------------------------

# The job: appends "start PID" and "end PID" to $LOG around a short sleep,
# and records its fencing token. Jobs that overlapped would leave two
# "start" lines in a row.
JOB = ('echo "start $$ $SHMLEASE_FENCING_TOKEN ${SHMLEASE_BACKEND:-local}" >> "$LOG"; '
       'sleep 0.2; echo "end $$" >> "$LOG"')
ONCE = ('echo "ran $$ $SHMLEASE_FENCING_TOKEN" >> "$LOG"')


def run_line(c, table, key, log, backend, n, extra=(), cmd=JOB):
    """Starts N copies of the same `shmlease run` line at once; waits for
    them; returns their exit statuses."""
    argv = [c.shmlease, "run", "-t", table, "--create", "--ttl", "20", *extra, key,
            "-c", cmd]
    env = env_with(backend)
    env["LOG"] = log
    ps = [c.spawn(argv, env=env) for _ in range(n)]
    codes = []
    for p in ps:
        out, err = c.communicate(p, timeout=120)
        codes.append((p.returncode, err.decode(errors="replace")))
    return codes


def check_no_overlap(log, n, backend_word):
    with open(log) as f:
        lines = f.read().splitlines()
    check(len(lines) == 2 * n, f"{n} jobs should leave {2 * n} lines: {lines}")
    tokens = []
    for i in range(0, len(lines), 2):
        s, e = lines[i].split(), lines[i + 1].split()
        check(s[0] == "start" and e[0] == "end" and s[1] == e[1],
              f"jobs overlapped (a start not followed by its own end) at line {i}: {lines}")
        check(s[3] == backend_word, f"the job saw SHMLEASE_BACKEND={s[3]}, not {backend_word}")
        tokens.append(int(s[2]))
    check(tokens == sorted(tokens) and len(set(tokens)) == len(tokens),
          f"fencing tokens not strictly increasing in the order the jobs ran: {tokens}")


def test_same_line(c):
    """The issue's "done when": the same `shmlease run` line, unchanged, on a
    local table and on a Redis-backed one, switched by SHMLEASE_BACKEND:
    jobs that must not overlap do not, and a once-only job (-n --grace) runs
    once."""
    r = Redis()
    table = c.table("same")
    d = tempfile.mkdtemp(prefix="shmlease-rtools-logs.")
    try:
        for backend in (None, r.url):
            word = backend or "local"
            tag = "redis" if backend else "local"
            # Jobs that must not overlap: 4 at once, each waits its turn.
            log = os.path.join(d, f"serial-{tag}.log")
            codes = run_line(c, table, "nightly", log, backend, 4)
            check(all(code == 0 for code, _ in codes), f"{tag}: run exits {codes}")
            check_no_overlap(log, 4, word)
            # A once-only job: -n, and a grace period keeps the others off.
            log = os.path.join(d, f"once-{tag}.log")
            codes = run_line(c, table, "once", log, backend, 4,
                             extra=("-n", "--grace", "30"), cmd=ONCE)
            with open(log) as f:
                ran = f.read().splitlines()
            check(len(ran) == 1, f"{tag}: the once-only job ran {len(ran)} times: {ran}")
            check(sorted(code for code, _ in codes) == [0, 1, 1, 1],
                  f"{tag}: one run exits 0, the others 1 (held): {codes}")
        # Where each table lives: the local one in /dev/shm, the Redis one not.
        check(os.path.exists(tt.SHM + table), "the local run made no local table")
        p = dump(c, "--json", table, backend=r.url)
        check(p.returncode == 0, f"dump of the Redis table: {show(p)}")
        doc = json.loads(p.stdout)
        t = doc["tables"][0]
        check(doc["backend"] == r.url and t["backend"] == r.url and t["path"] is None,
              f"the JSON dump names its backend: {doc}")
        keys = {l["key"]: l for l in t["leases"]}
        check(set(keys) == {"once"} and keys["once"]["in_grace"],
              f"the Redis table holds the once-only key in grace: {keys}")
        local = dump(c, "--json", table)        # SHMLEASE_BACKEND unset: local
        ld = json.loads(local.stdout)
        check(ld["backend"] == "local" and ld["tables"][0]["path"] == tt.SHM + table,
              f"the local dump says local: {ld}")
        # --local overrides the variable.
        p = dump(c, "--json", "--local", table, backend=r.url)
        check(p.returncode == 0 and json.loads(p.stdout)["backend"] == "local",
              f"--local with SHMLEASE_BACKEND set: {show(p)}")
        for backend in (None, r.url):
            p = tool(c, "unlink", table, backend=backend)
            check(p.returncode == 0, f"unlink ({backend}): {show(p)}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- shmlease-dump --backend ---------------------------------------------------

def test_dump(c):
    """shmlease-dump --backend shows a held key with its token, metadata and
    holder PID (text, JSON, Prometheus), what Redis lacks as n/a, and masks
    a password in the URL it shows."""
    r = Redis()
    table = c.table("dump")
    env = env_with(None)
    p = c.spawn([c.shmlease, "acquire", "--backend", r.url, "-t", table, "--create",
                 "-m", "backup of /srv", "--pid", str(os.getpid()), "job"], env=env)
    out, err = c.communicate(p, timeout=60)
    check(p.returncode == 0, f"acquire --backend: {show(p)}")
    token = out.decode().strip()
    m = re.fullmatch(r"shmlease:1:(\d+):\d+:(\d+)", token)
    check(m, f"acquire printed {token!r}")
    keeper, fencing = int(m.group(1)), int(m.group(2))
    try:
        p = dump(c, "--backend", r.url, table)
        check(p.returncode == 0, f"dump --backend: {show(p)}")
        text = p.stdout.decode()
        check(re.search(rf"^backend:\s+redis {re.escape(r.url)}$", text, re.M),
              f"no backend line:\n{text}")
        check(re.search(r"^capacity:\s+n/a", text, re.M), f"capacity not n/a:\n{text}")
        rows = {row["KEY"]: row for row in parse_rows(text)}
        row = rows.get("job")
        check(row is not None and row["TOKEN"] == str(fencing) and row["PID"] == str(keeper)
              and row["STATE"] == "alive" and row["METADATA"] == "backup of /srv",
              f"the held key's row: {row}\n{text}")
        # Columns Redis has no counterpart for: n/a, never numbers.
        p = dump(c, "--backend", r.url, "-o", "key,waitpids,handle,pidns", "-s", table)
        rows = {row["KEY"]: row for row in parse_rows(p.stdout.decode())}
        check(rows["job"]["WAITPIDS"] == "n/a" and rows["job"]["HANDLE"] == "n/a" and
              rows["job"]["PIDNS"] == "same", f"n/a columns: {rows}")
        # JSON: the same, with nulls where Redis has nothing.
        p = dump(c, "--json", table, backend=r.url)
        doc = json.loads(p.stdout)
        t = doc["tables"][0]
        lease = t["leases"][0]
        check(lease["key"] == "job" and lease["fencing_token"] == fencing and
              lease["holder_pid"] == keeper and lease["metadata"] == "backup of /srv" and
              lease["waiting"] is None and lease["holder_handle"] is None and
              t["capacity"] is None and t["attached"] is None, f"JSON lease: {t}")
        # Prometheus: the backend as an info series; no capacity of a Redis table.
        p = dump(c, "--prometheus", table, backend=r.url)
        prom = p.stdout.decode()
        check(f'shmlease_backend_info{{table="{table}",backend="{r.url}"}} 1' in prom,
              f"no backend info series:\n{prom}")
        check(f'shmlease_held_leases{{table="{table}"}} 1' in prom and
              "shmlease_capacity_keys{" not in prom, f"Prometheus series:\n{prom}")
        # A password in the URL is never shown (the server is unreachable here).
        p = dump(c, "--json", table, backend="redis://ops:s3cret@127.0.0.1:1/0?retry_ms=200")
        check(p.returncode == 2 and b"s3cret" not in p.stdout + p.stderr and
              b"redis://ops:***@127.0.0.1:1/0" in p.stdout + p.stderr, f"masked URL: {show(p)}")
        # A server's tables cannot be listed: a clear usage error.
        p = dump(c, backend=r.url)
        check(p.returncode == 64 and b"cannot be listed" in p.stderr, f"dump with no NAME: {show(p)}")
    finally:
        p = tool(c, "release", token)
        check(p.returncode == 0, f"release: {show(p)}")
    p = dump(c, "--key", "job", table, backend=r.url)
    check(p.returncode == 3, f"released key still shown: {show(p)}")
    tool(c, "unlink", table, backend=r.url)


# ---- break, unlink ---------------------------------------------------------------

def test_break_unlink(c):
    """shmlease break --backend ends the holder's lease (its run loses, 75);
    unlink deletes a Redis table (its holder loses), and a second unlink
    says there is none."""
    r = Redis()
    table = c.table("brk")
    p = tool(c, "create", table, backend=r.url)
    check(p.returncode == 0, f"create on Redis: {show(p)}")
    p = tool(c, "create", table, backend=r.url)
    check(p.returncode == 1 and b"exists" in p.stderr and r.url.encode() in p.stderr,
          f"second create: {show(p)}")
    check(not os.path.exists(tt.SHM + table), "create --backend made a local table")

    env = env_with(r.url)
    holder = c.spawn([c.shmlease, "run", "-t", table, "--ttl", "3", "-k", "2", "victim",
                      "--", "sleep", "60"], env=env)
    c.wait_until("the run to hold victim",
                 lambda: dump(c, "--key", "victim", table, backend=r.url).returncode == 0,
                 timeout=30)
    p = tool(c, "break", "-t", table, "victim", backend=r.url)
    check(p.returncode == 0 and b"broke victim on table " in p.stdout and
          f"holder pid {holder.pid}".encode() in p.stdout, f"break --backend: {show(p)}")
    out, err = c.communicate(holder, timeout=60)
    check(holder.returncode == 75 and b"lost" in err, f"the broken run: {show(holder)}")
    p = tool(c, "break", "-t", table, "victim", backend=r.url)
    check(p.returncode == 1 and b"not held" in p.stderr, f"break of a free key: {show(p)}")

    holder = c.spawn([c.shmlease, "run", "-t", table, "--ttl", "3", "-k", "2", "victim",
                      "--", "sleep", "60"], env=env)
    c.wait_until("the run to hold victim again",
                 lambda: dump(c, "--key", "victim", table, backend=r.url).returncode == 0,
                 timeout=30)
    p = tool(c, "unlink", table, backend=r.url)
    check(p.returncode == 0, f"unlink --backend: {show(p)}")
    out, err = c.communicate(holder, timeout=60)
    check(holder.returncode == 75, f"the run whose table was unlinked: {show(holder)}")
    p = tool(c, "unlink", "--backend", r.url, "nosuch" + table)
    check(p.returncode == 1 and b"no such table" in p.stderr, f"unlink of nothing: {show(p)}")


# ---- errors ----------------------------------------------------------------------

def test_errors(c):
    """A server that is down, a bad URL, and what a Redis table does not
    offer: clear errors naming the backend, non-zero exits, nothing run."""
    r = Redis()
    table = c.table("err")
    url = r.url + "?retry_ms=300&connect_timeout_ms=300"
    r.stop()                           # down: its socket is gone
    marker = os.path.join(r.dir, "ran")
    p = tool(c, "run", "-t", table, "--create", "k", "--", "touch", marker, backend=url)
    check(p.returncode == 69 and b"could not be reached" in p.stderr and
          r.sock.encode() in p.stderr and b"ECONNREFUSED" in p.stderr,
          f"run against a server that is down: {show(p)}")
    check(not os.path.exists(marker), "the command ran without a lease")
    p = dump(c, table, backend=url)
    check(p.returncode == 2 and b"could not be reached" in p.stderr, f"dump, server down: {show(p)}")
    p = tool(c, "unlink", table, backend=url)
    check(p.returncode == 69 and b"ECONNREFUSED" in p.stderr, f"unlink, server down: {show(p)}")

    for bad in ("redis//localhost", "http://localhost/", "redis://host:99999999/"):
        p = tool(c, "run", "-t", table, "--create", "k", "--", "touch", marker, backend=bad)
        check(p.returncode in (64, 69) and (b"invalid backend URL" in p.stderr or
                                            b"not supported" in p.stderr),
              f"run with backend {bad!r}: {show(p)}")
        check(not os.path.exists(marker), "the command ran without a lease")
    p = dump(c, table, backend="redis//x")
    check(p.returncode == 64 and b"invalid backend URL" in p.stderr, f"dump, bad URL: {show(p)}")
    p = tool(c, "run", "--backend", "", "k", "true")
    check(p.returncode == 64 and b"--local" in p.stderr, f"--backend '': {show(p)}")
    p = tool(c, "run", "--backend", url, "--local", "k", "true")
    check(p.returncode == 64 and b"exclude" in p.stderr, f"--backend with --local: {show(p)}")

    r.start()                          # up again: what Redis does not offer
    for args, word in ((("run", "-s", "-t", table, "--create", "k", "true"), b"shared"),
                       (("run", "--limit", "2", "-t", table, "--create", "k", "true"), b"shared"),
                       (("run", "--share", "-t", table, "k", "true"), b"--share"),
                       (("create", "--mode", "0660", table), b"--mode"),
                       (("create", "--capacity", "10", table), b"--capacity"),
                       (("doctor",), b"no segment")):
        p = tool(c, *args, backend=r.url)
        check(p.returncode == 64 and word in p.stderr and r.sock.encode() in p.stderr,
              f"{args} on Redis: {show(p)}")
    p = tool(c, "doctor", "--local", backend=r.url)
    check(p.returncode in (0, 1) and b"host:" in p.stdout, f"doctor --local: {show(p)}")


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}


def main():
    return tt.run_tests(TESTS, after=stop_servers)


if __name__ == "__main__":
    sys.exit(main())
