#!/usr/bin/env python3
"""Tests of the command-line tools, driven as a user would drive them.

Spawns the real `shmlease` and `shmlease-dump` binaries (and lease-helper, a
small program that uses the library directly to hold leases with arbitrary
bytes and to report the library's own view), parses `--json` with Python's
json module, and checks the text columns.

    test_tools.py --shmlease BIN --dump BIN --helper BIN [--man-dir DIR] TEST

Exit 0 pass, 1 fail, 77 skipped (ctest SKIP_RETURN_CODE). Each test uses
tables named tt<pid>.<tag> and unlinks them at the end.
"""
import argparse
import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

SHM = "/dev/shm/shmlease."
LK = "/dev/shm/shmlease-lk."   # a table's lock file


class Skip(Exception):
    pass


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def show(p):
    """A CompletedProcess as text, for failure messages."""
    out = p.stdout.decode(errors="replace") if isinstance(p.stdout, bytes) else p.stdout
    err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
    return f"exit {p.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


class Ctx:
    def __init__(self, args):
        self.shmlease = args.shmlease
        self.dump_bin = args.dump
        self.helper = args.helper
        self.man_dir = args.man_dir
        self.shim = args.shim
        self.tables = []
        self.procs = []
        self.files = []

    # ---- resources ------------------------------------------------------
    def table(self, tag):
        name = f"tt{os.getpid()}.{tag}"
        self.tables.append(name)
        self.unlink(name)
        return name

    def unlink(self, name):
        path = SHM + name
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            os.unlink(LK + name)
        except FileNotFoundError:
            pass

    def spawn(self, argv, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
        for t in self.tables:
            self.unlink(t)
        for f in self.files:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass

    # ---- running the tools -------------------------------------------------
    def run(self, argv, timeout=15, input=None, env=None):
        """Runs argv to its end; a hang fails the test with where it hung."""
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None
                             else subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
        try:
            out, err = p.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            where = diagnose(p.pid)
            p.kill()
            out, err = p.communicate()
            raise Fail(f"{argv} did not finish in {timeout}s\n{where}\n"
                       f"stdout {out[-3000:]!r}\nstderr {err[-3000:]!r}")
        return subprocess.CompletedProcess(argv, p.returncode, out, err)

    def communicate(self, p, timeout):
        """Popen.communicate that says where the process hung."""
        try:
            return p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"{p.args} did not end in {timeout}s\n{diagnose(p.pid)}")

    def tool(self, *args, timeout=15, **kw):
        return self.run([self.shmlease, *args], timeout=timeout, **kw)

    def dump(self, *args, timeout=10):
        p = self.run([self.dump_bin, *args], timeout=timeout)
        check(p.returncode >= 0,
              f"shmlease-dump {' '.join(args)} died of signal {-p.returncode}\n{show(p)}")
        check(b"caught SIG" not in p.stderr,
              f"the library faulted inside shmlease-dump {' '.join(args)}\n{show(p)}")
        return p

    def dump_json(self, *args, expect=0):
        p = self.dump("--json", *args)
        check(p.returncode == expect, f"dump --json {args}: expected exit {expect}\n{show(p)}")
        try:
            doc = json.loads(p.stdout)
        except ValueError as e:
            raise Fail(f"dump --json output is not JSON ({e})\n{show(p)}")
        check(all(b < 0x80 for b in p.stdout), "JSON output is not pure ASCII")
        return doc

    def table_json(self, name):
        doc = self.dump_json(name)
        check(len(doc["tables"]) == 1 and doc["tables"][0]["name"] == name,
              f"dump --json {name}: one table expected: {doc}")
        t = doc["tables"][0]
        check(t["status"] == "ok", f"table {name} not ok: {t}")
        return t

    def lease_json(self, name, key):
        for l in self.table_json(name)["leases"]:
            if l["key"] == key:
                return l
        return None

    # ---- the helper ----------------------------------------------------------
    def hold(self, table, key, ttl_ms=30000, meta=b""):
        kb = key.encode("latin-1") if isinstance(key, str) else key
        p = self.spawn([self.helper, "hold", table, kb.hex(), str(ttl_ms), meta.hex()],
                       stdin=subprocess.PIPE)
        line = p.stdout.readline()
        if not line:
            p.wait(timeout=5)
            raise Fail(f"lease-helper hold {key!r}: no output, exit {p.returncode}; "
                       f"stderr {p.stderr.read()!r}")
        j = json.loads(line)
        check(j["rc"] == "OK", f"lease-helper hold {key!r}: {j}")
        return p, j["token"]

    def helper_json(self, *args, ok=True):
        p = self.run([self.helper, *args], timeout=10)
        check(p.returncode >= 0, f"lease-helper {args} died\n{show(p)}")
        j = json.loads(p.stdout.splitlines()[-1])
        if ok:
            check(j["rc"] == "OK", f"lease-helper {args}: {j}")
        return j

    def inspect(self, table, key):
        kb = key.encode("latin-1") if isinstance(key, str) else key
        return self.helper_json("inspect", table, kb.hex(), ok=False)

    def wait_until(self, what, fn, timeout=5.0, step=0.05):
        end = time.monotonic() + timeout
        while True:
            v = fn()
            if v:
                return v
            if time.monotonic() > end:
                raise Fail(f"timed out waiting for {what}")
            time.sleep(step)


# ---- parsing the text output -------------------------------------------------

RIGHT_ALIGNED = {"TOKEN", "PID", "LEFT", "EXPIRES", "WAITERS", "METALEN", "START", "HANDLE",
                 "HOLDERS"}


def split_row(row, heads):
    """Cells of one row, by the headings' positions: a left-aligned cell starts
    under its heading, a right-aligned one ends under its heading."""
    cells, pos = {}, 0
    for i, (name, s, e) in enumerate(heads):
        nxt = heads[i + 1] if i + 1 < len(heads) else None
        if name in RIGHT_ALIGNED:
            cell, pos = row[pos:e], e
        elif nxt is None:
            cell = row[pos:]
        elif nxt[0] not in RIGHT_ALIGNED:
            cell, pos = row[pos:nxt[1]], nxt[1]
        else:
            # left-aligned then right-aligned: the right one is the last word
            region = row[pos:nxt[2]].rstrip()
            parts = region.rsplit(None, 1)
            if len(parts) == 2 and region[:-len(parts[1])].strip():
                cell = parts[0]
                pos += len(region) - len(parts[1])
            else:
                cell = ""
        cells[name] = cell.strip()
    return cells


def parse_rows(text):
    """Rows of the lease table of a one-table text dump, as dicts by heading."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("KEY "):
            heads = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", line)]
            rows = []
            for row in lines[i + 1:]:
                if not row.strip() or re.match(r"^(dead|unknown|reserved|\*):", row):
                    break
                rows.append(split_row(row, heads))
            return rows
    raise Fail(f"no lease table in:\n{text}")


def left_seconds(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)s", s)
    if m:
        return float(m.group(1))
    m = re.fullmatch(r"(\d+)m(\d+)s", s)
    if m:
        return int(m.group(1)) * 60 + int(m.group(2))
    raise Fail(f"unexpected LEFT value {s!r}")


def summary_field(text, label):
    m = re.search(rf"^{label}:\s+(.*)$", text, re.M)
    check(m, f"no '{label}:' line in:\n{text}")
    return m.group(1)


def diagnose(pid):
    """State, kernel wait channel, system call and stack of a hung process."""
    lines = []
    for f in ("stat", "wchan", "syscall"):
        try:
            with open(f"/proc/{pid}/{f}") as fh:
                lines.append(f"/proc/{pid}/{f}: {fh.read().strip()}")
        except OSError as e:
            lines.append(f"/proc/{pid}/{f}: {e}")
    if shutil.which("gdb"):
        try:
            g = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt", "-p", str(pid)],
                               capture_output=True, timeout=20)
            lines.append(g.stdout.decode(errors="replace")[-4000:])
        except subprocess.TimeoutExpired:
            lines.append("gdb timed out")
    try:
        lines.append("tables: " + " ".join(sorted(os.listdir("/dev/shm"))))
    except OSError:
        pass
    return "\n".join(lines)


def read_until(p, done, what, timeout=20.0):
    """Reads P's stdout (raw, unbuffered) until done(bytes so far) holds;
    fails with what was read if P ends or TIMEOUT passes first."""
    import select
    buf, fd = b"", p.stdout.fileno()
    end = time.monotonic() + timeout
    while not done(buf):
        left = end - time.monotonic()
        if left <= 0:
            raise Fail(f"timed out waiting for {what}; read {buf[-2000:]!r}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise Fail(f"{p.args} ended before {what}; read {buf[-2000:]!r}")
            buf += chunk
    return buf


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def pid_gone(pid):
    st = proc_state(pid)
    return st is None or st == "Z"


# ---- tests: shmlease-dump ------------------------------------------------------

def test_dump_columns(c):
    """Every column of the text dump against the library's view: an alive
    holder with a waiter, a grace period, a SIGKILLed (dead) holder."""
    t = c.table("cols")
    p = c.tool("create", t, "--capacity", "64")
    check(p.returncode == 0, f"create: {show(p)}")

    alive, tok_a = c.hold(t, "alpha", 30000, b"job A")
    g = c.helper_json("grace", t, b"charlie".hex(), "30000", b"grace meta".hex(), "20000")
    tok_c = g["token"]
    waiter = c.spawn([c.helper, "wait", t, b"alpha".hex(), "1000", "15000"])
    c.wait_until("a waiter on alpha",
                 lambda: c.inspect(t, "alpha").get("waiters") == 1)
    # The dead holder last: a later read-write open may sweep its lease away.
    victim, tok_b = c.hold(t, "bravo", 30000, b"victim\tjob")
    victim.kill()
    victim.wait()

    p = c.dump(t)
    check(p.returncode == 0, f"dump: {show(p)}")
    text = p.stdout.decode()
    rows = {r["KEY"]: r for r in parse_rows(text)}
    check(set(rows) == {"alpha", "bravo", "charlie"}, f"keys: {sorted(rows)}\n{text}")

    a, b, ch = rows["alpha"], rows["bravo"], rows["charlie"]
    check(a["TOKEN"] == str(tok_a) and a["PID"] == str(alive.pid), f"alpha row {a}")
    check(a["STATE"] == "alive", f"alpha state {a}")
    check(20 < left_seconds(a["LEFT"]) <= 30, f"alpha LEFT {a}")
    check(a["WAITERS"] == "1", f"alpha WAITERS {a}")
    check(a["METADATA"] == "job A", f"alpha METADATA {a}")

    check(b["TOKEN"] == str(tok_b) and b["PID"] == str(victim.pid), f"bravo row {b}")
    check(b["STATE"] == "dead", f"a SIGKILLed holder must show dead: {b}\n{text}")
    check(b["WAITERS"] == "0", f"bravo WAITERS {b}")
    check(b["METADATA"] == "victim\\tjob", f"bravo METADATA escaped {b}")
    check(re.search(r"^dead: 1 lease held by an exited process: free for the next acquirer", text, re.M),
          f"no dead-holder note:\n{text}")

    check(ch["TOKEN"] == str(tok_c) and ch["PID"] == "-", f"charlie row {ch}")
    check(ch["STATE"] == "grace", f"charlie STATE {ch}")
    check(10 < left_seconds(ch["LEFT"]) <= 20, f"charlie LEFT {ch}")
    check(ch["METADATA"] == "grace meta", f"charlie METADATA {ch}")

    # The summary against the library's counters.
    st = c.helper_json("stats", t)
    check(summary_field(text, "format").startswith(str(st["format_version"])), "format")
    cap = summary_field(text, "capacity")
    check(cap.startswith("64 keys; 3 held"), f"capacity line {cap!r}")
    fen = summary_field(text, "fencing")
    check(fen.split()[0] == str(st["fencing_counter"]) and
          st["fencing_counter"] >= max(tok_a, tok_b, tok_c), f"fencing line {fen!r} vs {st}")
    stats_line = re.search(r"^stats:(.*?)(?:\n\n|\Z)", text, re.M | re.S).group(1)
    for k in ("acquisitions", "contended", "renewals", "lost"):
        check(re.search(rf"\b{k} {st[k]}\b", stats_line), f"stats {k}={st[k]} in {stats_line!r}")

    # The library's own view of each live key, field by field (after the dump:
    # these read-write opens may reclaim the dead holder's lease).
    for key, row, pid in (("alpha", a, alive.pid), ("charlie", ch, None)):
        lib = c.inspect(t, key)
        check(lib["rc"] == "OK", f"inspect {key}: {lib}")
        check(row["TOKEN"] == str(lib["fencing_token"]), f"{key} token vs library {lib}")
        if pid is None:
            check(lib["holder_pid"] == 0 and lib["in_grace"] == 1, f"{key} library {lib}")
        else:
            check(lib["holder_pid"] == pid and lib["holder_alive"] == 1, f"{key} library {lib}")
        check(row["WAITERS"] == str(lib["waiters"]), f"{key} waiters vs {lib}")
        check(abs(left_seconds(row["LEFT"]) * 1000 - lib["remaining_ms"]) < 3000,
              f"{key} LEFT {row['LEFT']} vs remaining_ms {lib['remaining_ms']}")

    # -o chooses columns; '+' adds to the default; unknown column: usage.
    p = c.dump("-o", "key,pidns,handle,metahex,metalen,expires,start", "--no-summary", t)
    check(p.returncode == 0, show(p))
    rows2 = {r["KEY"]: r for r in parse_rows(p.stdout.decode())}
    lib = c.inspect(t, "alpha")
    ra = rows2["alpha"]
    check(ra["PIDNS"] == "same" and ra["HANDLE"] == str(lib["holder_handle"]) and
          ra["METAHEX"] == b"job A".hex() and ra["METALEN"] == "5" and
          ra["EXPIRES"] == str(lib["expires_at_ms"]) and
          ra["START"] == str(lib["holder_start_time"]), f"-o row {ra} vs {lib}")
    check(rows2["charlie"]["PIDNS"] == "-", f"grace PIDNS {rows2['charlie']}")
    p = c.dump("-o", "+EXPIRES", "-s", t)
    heads = p.stdout.decode().splitlines()[0].split()
    check(heads == ["KEY", "TOKEN", "COMMAND", "PID", "MODE", "STATE", "LEFT", "WAITERS",
                     "METADATA", "EXPIRES"],
          f"-o +EXPIRES headings {heads}")
    p = c.dump("-n", "-s", t)
    check(not p.stdout.startswith(b"KEY"), f"--noheadings printed headings\n{show(p)}")
    p = c.dump("-o", "KEY,NOPE", t)
    check(p.returncode == 64, f"unknown column must be usage (64)\n{show(p)}")

    # --key: one lease; a free key exits 3.
    p = c.dump("--key", "alpha", "-s", t)
    rows3 = parse_rows(p.stdout.decode())
    check(p.returncode == 0 and [r["KEY"] for r in rows3] == ["alpha"], f"--key\n{show(p)}")
    p = c.dump("--key", "nobody-holds-this", t)
    check(p.returncode == 3 and b"not held" in p.stdout, f"--key free key\n{show(p)}")

    alive.stdin.close()
    alive.wait(timeout=5)
    waiter.wait(timeout=10)

    # A holder in another PID namespace: PID "N*", a note, PIDNS "other".
    if os.geteuid() != 0 or not shutil.which("unshare"):
        print("note: not root or no unshare(1): the other-PID-namespace case is skipped")
        return
    ns = c.spawn(["unshare", "--pid", "--fork", "--kill-child", c.helper, "hold", t,
                  b"in-ns".hex(), "30000", ""], stdin=subprocess.PIPE)
    line = ns.stdout.readline()
    if not line:
        print("note: unshare --pid refused here: the other-PID-namespace case is skipped")
        return
    inner_pid = json.loads(line)["pid"]
    p = c.dump("-o", "+PIDNS", "-s", t)
    text = p.stdout.decode()
    row = {r["KEY"]: r for r in parse_rows(text)}["in-ns"]
    check(row["PID"] == f"{inner_pid}*" and row["PIDNS"] == "other" and
          row["STATE"] == "alive", f"other-namespace holder row {row}\n{text}")
    check(re.search(r"^\*: PID of another PID namespace", text, re.M), f"no '*' note\n{text}")
    l = c.lease_json(t, "in-ns")
    check(l["holder_other_pidns"] is True and l["holder_pid"] == inner_pid, f"json {l}")
    ns.kill()
    ns.wait()
    c.wait_until("the namespace's holder to die",
                 lambda: c.lease_json(t, "in-ns") is None or
                 c.lease_json(t, "in-ns")["state"] in ("dead", "unknown"), timeout=3)


def test_dump_json(c):
    """JSON: keys and metadata with every kind of byte, numbers as numbers,
    every field equal to the library's view, jq can read it."""
    t = c.table("json")
    key = b'k\x01\x1b[31m "q" \\ \x7f\xc3\xa9/end'
    meta = bytes([0, 1, 2, 9, 10, 13, 31, 34, 92, 127, 128, 255]) + "päß ✓".encode()
    holder, tok = c.hold(t, key, 30000, meta)
    g = c.helper_json("grace", t, b"graced".hex(), "30000", b"".hex(), "25000")

    doc = c.dump_json(t)
    check(doc["json_version"] == 1 and isinstance(doc["tables"], list), f"document {doc}")
    tab = doc["tables"][0]
    leases = {l["key"]: l for l in tab["leases"]}
    check(set(leases) == {key.decode("latin-1"), "graced"}, f"keys {list(leases)}")
    l = leases[key.decode("latin-1")]
    check(bytes.fromhex(l["key_hex"]) == key, f"key_hex {l['key_hex']}")
    check(l["metadata"].encode("latin-1") == meta, f"metadata {l['metadata']!r}")
    check(bytes.fromhex(l["metadata_hex"]) == meta, "metadata_hex")
    check(base64.b64decode(l["metadata_base64"]) == meta, "metadata_base64")
    check(l["metadata_len"] == len(meta), "metadata_len")
    # every non-printable byte as \u00XX in the raw text
    raw = c.dump("--json", t).stdout.decode("ascii")
    check("\\u0000\\u0001\\u0002\\u0009\\u000a\\u000d\\u001f\\\"\\\\\\u007f\\u0080\\u00ff"
          in raw, f"metadata escapes in raw JSON: {raw}")
    check("k\\u0001\\u001b[31m \\\"q\\\" \\\\ \\u007f\\u00c3\\u00a9/end" in raw,
          f"key escapes in raw JSON: {raw}")

    for field in ("fencing_token", "holder_pid", "remaining_ms", "waiters", "expires_at_ms",
                  "holder_start_time", "holder_handle", "metadata_len"):
        check(type(l[field]) is int, f"{field} is not a JSON number: {l[field]!r}")
    for field in ("format_version", "capacity", "held", "live_keys", "attached",
                  "fencing_counter", "segment_bytes", "created_at_ms", "now_ms"):
        check(type(tab[field]) is int, f"table {field} is not a JSON number: {tab[field]!r}")
    for field, v in tab["stats"].items():
        check(type(v) is int, f"stats {field} is not a number")

    lib = c.inspect(t, key)
    check(lib["rc"] == "OK", f"inspect: {lib}")
    check(l["fencing_token"] == lib["fencing_token"] == tok, f"token {l} {lib}")
    check(l["holder_pid"] == lib["holder_pid"] == holder.pid, "holder_pid")
    check(l["holder_alive"] is True and l["state"] == "alive", f"alive {l}")
    check(l["holder_other_pidns"] is (lib["holder_other_pidns"] == 1), "other pidns")
    check(l["in_grace"] is False and l["expired"] is False, "grace/expired")
    for f in ("waiters", "expires_at_ms", "holder_start_time", "holder_handle", "metadata_len"):
        check(l[f] == lib[f], f"{f}: dump {l[f]} library {lib[f]}")
    check(l["metadata_hex"] == lib["metadata_hex"], "metadata vs library")
    check(abs(l["remaining_ms"] - lib["remaining_ms"]) < 2000, "remaining_ms vs library")
    check(l["expires_at_ms"] - tab["now_ms"] == l["remaining_ms"] or
          abs(l["expires_at_ms"] - tab["now_ms"] - l["remaining_ms"]) < 50,
          "remaining_ms = expires_at_ms - now_ms")

    gl = leases["graced"]
    check(gl["holder_pid"] is None and gl["state"] == "grace" and gl["in_grace"] is True and
          gl["holder_alive"] is None and gl["fencing_token"] == g["token"], f"grace {gl}")

    st = c.helper_json("stats", t)
    for k, v in tab["stats"].items():
        check(v == st[k], f"stats.{k}: dump {v} library {st[k]}")
    for k in ("capacity", "held", "live_keys", "format_version", "fencing_counter",
              "segment_bytes", "created_at_ms", "table_epoch"):
        check(tab[k] == st[k], f"{k}: dump {tab[k]} library {st[k]}")

    # jq reads it too, and its numbers are numbers there.
    if shutil.which("jq"):
        p = c.run(["jq", "-e", ".tables[0].leases | map(.fencing_token) | add > 0"],
                  input=raw.encode())
        check(p.returncode == 0, f"jq: {show(p)}")

    # Several tables: one document; a missing one is an error entry, exit 1.
    doc = c.dump_json(t, f"tt{os.getpid()}.missing", expect=1)
    check([x["status"] for x in doc["tables"]] == ["ok", "error"] and
          doc["tables"][1]["error"] == "ENOENT", f"two tables {doc}")

    # Text mode escapes the same key.
    p = c.dump("-s", t)
    check(b"k\\x01\\x1b[31m \"q\" \\\\ \\x7f\\xc3\\xa9/end" in p.stdout, f"text key\n{show(p)}")
    holder.stdin.close()
    holder.wait(timeout=5)


def test_dump_order(c):
    """Leases in key order as strcmp sorts bytes (unsigned, a prefix first),
    also for keys that share 15, 16 or more bytes; columns aligned."""
    t = c.table("order")
    base = b"0123456789abcdef"
    keys = [base, base + b"\x01", base + b"\xff", base + b"a", base[:15], base[:15] + b"g",
            base + b"\x80x", base + b"\x80", b"\xff", b"z" * 127, b"z" * 126 + b"y", b"A"]
    holders = [c.hold(t, k, 30000, b"m" * (i % 3))[0] for i, k in enumerate(keys)]
    want = sorted(keys)

    leases = c.dump_json(t)["tables"][0]["leases"]
    got = [l["key"].encode("latin-1") for l in leases]
    check(got == want, f"JSON order {got} != {want}")

    p = c.dump("-o", "KEY,TOKEN", "-s", t)
    check(p.returncode == 0, show(p))
    lines = p.stdout.decode("ascii").splitlines()
    check(len(lines) == len(keys) + 1 and lines[0].startswith("KEY"), f"rows\n{show(p)}")
    check(len({len(line) for line in lines}) == 1, f"TOKEN (right-aligned, last) not aligned\n{show(p)}")
    text_keys = [line.rsplit(None, 1)[0].rstrip() for line in lines[1:]]
    esc = [k.decode("latin-1").encode("unicode_escape").decode("ascii") for k in want]
    check(text_keys == esc, f"text order {text_keys} != {esc}")
    for h in holders:
        h.stdin.close()
        h.wait(timeout=5)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_dump_reader(c):
    """A user who may only read a table (0644, not the owner) runs the dump:
    it cannot open the lock file, and still tells live holders from dead
    ones (/proc/locks)."""
    if os.geteuid() != 0:
        raise Skip("needs root to run the dump as another user")
    t = c.table("reader")
    p = c.tool("create", "--mode", "0644", t)
    check(p.returncode == 0, f"create: {show(p)}")
    check(os.stat(LK + t).st_mode & 0o777 == 0o600, "lock file mode for a 0644 table")
    live, _ = c.hold(t, "live-key")
    dead, _ = c.hold(t, "dead-key")
    dead.kill()
    dead.wait(timeout=5)
    p = subprocess.run([c.dump_bin, "--json", t], capture_output=True, timeout=20, preexec_fn=as_nobody)
    if p.returncode != 0 and b"ermission denied" in p.stderr:
        raise Skip(f"the dump cannot run as nobody here: {show(p)}")
    check(p.returncode == 0, f"dump as nobody\n{show(p)}")
    doc = json.loads(p.stdout)
    leases = {l["key"]: l for l in doc["tables"][0]["leases"]}
    check(leases["live-key"]["holder_alive"] is True and leases["live-key"]["state"] == "alive",
          f"live holder seen by nobody: {leases['live-key']}")
    check(leases["dead-key"]["holder_alive"] is False and leases["dead-key"]["state"] == "dead",
          f"dead holder seen by nobody: {leases['dead-key']}")
    # It may not open the lock file, so it locks nothing there.
    q = subprocess.run(["cat", LK + t], capture_output=True, timeout=5, preexec_fn=as_nobody)
    check(q.returncode != 0 and b"ermission denied" in q.stderr, f"nobody read the lock file: {show(q)}")
    live.stdin.close()


def test_dump_errors(c):
    """Missing, invalid, garbage, truncated, corrupted, inaccessible tables;
    a structural mutex held by a stopped, then dead, process."""
    p = c.dump(f"tt{os.getpid()}.nope")
    check(p.returncode == 1 and b"no such table" in p.stderr, f"missing: {show(p)}")
    p = c.dump("bad/name")
    check(p.returncode == 64, f"invalid name: {show(p)}")
    p = c.dump("--bogus")
    check(p.returncode == 64, f"bad option: {show(p)}")
    p = c.dump("--watch", "x", "t")
    check(p.returncode == 64, f"bad --watch: {show(p)}")

    rnd = random.Random(1234)
    cases = {
        "empty": b"",
        "tiny": b"shml",
        "garbage": bytes(rnd.randrange(256) for _ in range(8192)),
        "zeros": bytes(65536),
        "text": b"this is not a shmlease table\n" * 200,
    }
    for tag, data in cases.items():
        t = c.table("bad-" + tag)
        with open(SHM + t, "wb") as f:
            f.write(data)
        p = c.dump(t)
        check(p.returncode == 2, f"{tag} segment: expected exit 2\n{show(p)}")
        check(p.stderr.strip() and t.encode() in p.stderr, f"{tag}: no clear message {show(p)}")
        p = c.dump("--json", t)
        check(p.returncode == 2, f"{tag} --json: {show(p)}")
        e = json.loads(p.stdout)["tables"][0]
        check(e["status"] == "error" and e["exit_code"] == 2, f"{tag} json {e}")

    # Not regular files: a FIFO (opening it would block), a directory.
    for tag, make in (("fifo", os.mkfifo), ("dir", os.mkdir)):
        t = c.table("bad-" + tag)
        make(SHM + t)
        t0 = time.monotonic()
        p = c.dump(t, timeout=5)
        check(p.returncode == 2 and b"not a regular file" in p.stderr and
              time.monotonic() - t0 < 3, f"{tag}: {show(p)}")
        p = c.dump("--list", timeout=5)
        check(p.returncode == 0 and t.encode() in p.stdout, f"--list with a {tag}: {show(p)}")
        p = c.tool("run", "-n", "-t", t, "k", "--", "true", timeout=5)
        check(p.returncode == 69, f"run on a {tag}: {show(p)}")

    # A real table, truncated to a part of itself.
    t = c.table("trunc")
    check(c.tool("create", t, "--capacity", "32").returncode == 0, "create")
    size = os.path.getsize(SHM + t)
    with open(SHM + t, "rb") as f:
        image = f.read()
    for cut in (64, size // 2, size - 1):
        with open(SHM + t, "wb") as f:
            f.write(image[:cut])
        p = c.dump(t)
        check(p.returncode == 2, f"truncated to {cut}/{size}: {show(p)}")

    # Truncated by someone else while the dump has it mapped (SIGBUS on
    # access): the dump's guard reports it, exit 2, no signal death.
    if c.shim:
        t = c.table("sigbus")
        check(c.tool("create", t, "--capacity", "32").returncode == 0, "create")
        c.helper_json("grace", t, b"k".hex(), "60000", "", "60000")
        for mode in ((), ("--json",), ("--key", "k")):
            env = dict(os.environ, LD_PRELOAD=c.shim, SHMLEASE_TEST_TRUNCATE=t)
            p = c.run([c.dump_bin, *mode, t], env=env, timeout=10)
            check(p.returncode == 2 and b"caught SIGBUS" in p.stderr,
                  f"segment truncated while mapped {mode}: {show(p)}")
            check(os.path.getsize(SHM + t) == 0, "the shim did not truncate")
            # An empty file is no table: shmlease unlink leaves it alone.
            check(c.tool("unlink", t).returncode == 69, "unlink of an emptied table")
            c.unlink(t)
            check(c.tool("create", t, "--capacity", "32").returncode == 0, "create")
            c.helper_json("grace", t, b"k".hex(), "60000", "", "60000")

    # A real table with leases whose body is then scribbled on: the dump may
    # read it (0) or refuse it (2), never crash or hang.
    t = c.table("scribble")
    check(c.tool("create", t, "--capacity", "32").returncode == 0, "create")
    for i in range(4):
        c.helper_json("grace", t, f"key{i}".encode().hex(), "60000", b"meta".hex(), "60000")
    with open(SHM + t, "rb") as f:
        image = f.read()
    codes = set()
    for i in range(40):
        data = bytearray(image)
        start = rnd.randrange(0, len(data))
        for _ in range(rnd.choice((1, 8, 64, 512))):
            data[(start + rnd.randrange(4096)) % len(data)] = rnd.randrange(256)
        with open(SHM + t, "wb") as f:
            f.write(data)
        for mode in ((), ("--json",), ("--key", "key1")):
            p = c.dump(*mode, t)
            check(p.returncode in (0, 2, 3), f"scribbled segment #{i} {mode}: {show(p)}")
            codes.add(p.returncode)
            if mode == ("--json",) and p.returncode in (0, 2):
                json.loads(p.stdout)

    # Permission: a 0600 table of root read by another user: exit 2, EACCES.
    if os.geteuid() == 0 and shutil.which("setpriv"):
        t = c.table("perm")
        check(c.tool("create", t, "--mode", "0600").returncode == 0, "create")
        p = c.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   c.dump_bin, t])
        check(p.returncode == 2 and b"EACCES" in p.stderr, f"no access: {show(p)}")

    # The structural mutex held by a stopped process (fault points only).
    t = c.table("stopped")
    check(c.tool("create", t).returncode == 0, "create")
    env = dict(os.environ, SHMLEASE_FAULT="index.locked:stop:1")
    p = c.spawn([c.helper, "hold", t, b"stuck".hex(), "30000", ""],
                stdin=subprocess.PIPE, env=env)
    stopped = False
    end = time.monotonic() + 3
    while time.monotonic() < end:
        if proc_state(p.pid) == "T":
            stopped = True
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    if not stopped:
        print("note: library built without fault points; the stopped-mutex case is skipped")
        return
    for state in ("stopped", "dead"):
        p2 = c.dump(t, timeout=5)
        check(p2.returncode == 0, f"dump with the index mutex held by a {state} process\n"
              f"{show(p2)}")
        p2 = c.dump("--json", t, timeout=5)
        check(p2.returncode == 0, f"dump --json, mutex of a {state} process: {show(p2)}")
        p.kill()
        p.wait()


def test_dump_list_watch(c):
    """--list sees tables (and shows unusable ones), --all, --watch redraws."""
    t1, t2, bad = c.table("list1"), c.table("list2"), c.table("listbad")
    check(c.tool("create", t1, "--capacity", "8").returncode == 0, "create t1")
    check(c.tool("create", t2).returncode == 0, "create t2")
    with open(SHM + bad, "wb") as f:
        f.write(b"\xde\xad\xbe\xef" * 64)
    holder, tok = c.hold(t1, "listed")

    p = c.dump("--list")
    check(p.returncode == 0, f"--list: {show(p)}")
    lines = {l.split()[0]: l for l in p.stdout.decode().splitlines()[1:] if l.strip()}
    check(t1 in lines and t2 in lines and bad in lines, f"--list misses tables\n{show(p)}")
    f1 = lines[t1].split()
    check(f1[2] == "8" and f1[3] == "1" and f1[-1] == "ok", f"--list row {lines[t1]!r}")
    check("EPROTO" in lines[bad], f"unusable table status {lines[bad]!r}")
    p = c.dump()
    check(p.returncode == 0 and t1.encode() in p.stdout, f"no args = --list\n{show(p)}")

    doc = c.dump_json("--list")
    ent = {e["name"]: e for e in doc["tables"]}
    check(ent[t1]["status"] == "ok" and ent[t1]["capacity"] == 8 and ent[t1]["held"] == 1
          and "leases" not in ent[t1], f"--list --json {ent[t1]}")
    check(ent[bad]["status"] == "error" and ent[bad]["error"] == "EPROTO", f"{ent[bad]}")

    # A file whose name is no valid table name: listed as unusable, not a usage error.
    odd = c.table("odd name")
    with open(SHM + odd, "wb") as f:
        f.write(b"x")
    p = c.dump("--list")
    check(p.returncode == 0 and b"odd name" in p.stdout and b"EINVAL" in p.stdout,
          f"--list with an invalid name in /dev/shm\n{show(p)}")
    p = c.dump("--all")
    check(p.returncode == 2, f"--all with an unusable table exits 2\n{show(p)}")
    check(b"listed" in p.stdout and f"table:     {t2}".encode() in p.stdout, f"--all\n{show(p)}")

    # --watch: redraws until interrupted (SIGINT: exit 0). The signal is sent
    # once two whole draws have been read, not after a sleep: a loaded
    # machine may not have drawn twice by then.
    w = c.spawn([c.dump_bin, "--watch", "0.3", t1])
    head = read_until(w, lambda b: b.count(b"Every 0.3s:") >= 2 and b.count(b"listed") >= 2,
                      "two --watch draws")
    w.send_signal(signal.SIGINT)
    out, err = c.communicate(w, 15)
    out = head + out
    check(w.returncode == 0, f"--watch after SIGINT: exit {w.returncode} {err!r}")
    draws = out.decode().count("Every 0.3s:")
    check(draws >= 2, f"--watch drew {draws} times:\n{out.decode()}")
    check(out.decode().count("listed") == draws, "each draw shows the lease")

    w = c.spawn([c.dump_bin, "--watch", "200ms", "--json", t1])
    head = read_until(w, lambda b: b.count(b"\n") >= 2, "two --watch --json documents")
    w.terminate()
    out, err = c.communicate(w, 15)
    out = head + out
    docs = [json.loads(l) for l in out.decode().splitlines() if l.strip()]
    check(len(docs) >= 2 and all(d["tables"][0]["held"] == 1 for d in docs),
          f"--watch --json: {len(docs)} documents")
    holder.stdin.close()
    holder.wait(timeout=5)


# ---- tests: shmlease run --------------------------------------------------------

def test_run_basic(c):
    """Environment, exit status, no inherited fd, dump during the run,
    conflicts (-n, -E, -w), renewal, waiting, exec errors, --grace."""
    t = c.table("run")
    check(c.tool("create", t).returncode == 0, "create run")   # -t: the table must exist
    p = c.tool("run", "-t", t, "k1", "--", "sh", "-c",
               'echo "$SHMLEASE_FENCING_TOKEN $SHMLEASE_KEY $SHMLEASE_TABLE";'
               'for f in /proc/$$/fd/*; do readlink "$f"; done; exit 7')
    check(p.returncode == 7, f"child status 7 expected: {show(p)}")
    out = p.stdout.decode().splitlines()
    tok, key, table = out[0].split()
    check(tok.isdigit() and int(tok) > 0 and key == "k1" and table == t, f"env {out[0]!r}")
    check(not any("shmlease." in l for l in out[1:]), f"child inherited a table fd: {out}")
    p = c.dump("--key", "k1", t)
    check(p.returncode == 3, f"released after the run: {show(p)}")

    # While it runs: the dump shows it, alive, with the command line as metadata.
    # The command runs until the test closes its stdin: its lifetime is the
    # test's to decide, not a sleep's.
    r = c.spawn([c.shmlease, "run", "--table", t, "--ttl", "0.6", "job", "--",
                 "sh", "-c", "echo ready; read x"], stdin=subprocess.PIPE)
    check(r.stdout.readline() == b"ready\n", "child did not start")
    t_ready = time.monotonic()
    l = c.lease_json(t, "job")
    check(l and l["holder_pid"] == r.pid and l["state"] == "alive", f"held by run: {l}")
    check(l["metadata"] == "sh -c echo ready; read x", f"default metadata {l}")
    first_token = l["fencing_token"]
    # conflicts: -n is refused without waiting (the table counts a busy try,
    # no wait); a -n that waited would wait for ever: the job holds the key.
    s0 = c.table_json(t)["stats"]
    p = c.tool("run", "-n", "-t", t, "job", "--", "true")
    check(p.returncode == 1, f"-n conflict: {show(p)}")
    s1 = c.table_json(t)["stats"]
    check(s1["busy"] == s0["busy"] + 1 and s1["waits"] == s0["waits"] and
          s1["timeouts"] == s0["timeouts"], f"-n must try once, not wait: {s0} -> {s1}")
    p = c.tool("run", "-n", "-E", "42", "-t", t, "job", "--", "true")
    check(p.returncode == 42, f"-E 42: {show(p)}")
    p = c.tool("run", "-n", "-v", "-t", t, "job", "--", "true")
    check(p.returncode == 1 and f"held by pid {r.pid}".encode() in p.stderr, f"-v: {show(p)}")
    # -w 0.4: waits (counted), then times out; never before 0.4 s. The job
    # holds the key until told, so only the timeout can end this wait.
    s0 = c.table_json(t)["stats"]
    t0 = time.monotonic()
    p = c.tool("run", "-w", "0.4", "-t", t, "job", "--", "true")
    el = time.monotonic() - t0
    check(p.returncode == 1 and el >= 0.4, f"-w 0.4 timed out after {el:.2f}s: {show(p)}")
    s1 = c.table_json(t)["stats"]
    check(s1["waits"] == s0["waits"] + 1 and s1["timeouts"] == s0["timeouts"] + 1,
          f"-w 0.4 must wait and time out: {s0} -> {s1}")
    # renewal: after 1.5 s (2.5 TTLs) the lease is still held, same token
    time.sleep(max(0.0, t_ready + 1.5 - time.monotonic()))
    l = c.lease_json(t, "job")
    check(l and l["fencing_token"] == first_token and 0 < l["remaining_ms"] <= 600,
          f"renewed lease {l}")
    # a waiter (wait forever, the default) gets it when the job ends: it is
    # seen waiting, it is still waiting, then the job is told to end.
    w = c.spawn([c.shmlease, "run", "-t", t, "job", "--", "printenv", "SHMLEASE_FENCING_TOKEN"])
    c.wait_until("the waiter to wait on the job",
                 lambda: (c.lease_json(t, "job") or {}).get("waiters") == 1, timeout=15)
    check(w.poll() is None, f"the waiter did not wait: exit {w.returncode}")
    r.stdin.write(b"end\n")
    r.stdin.close()
    out, err = c.communicate(w, 15)
    check(w.returncode == 0 and int(out) > first_token, f"waiter: exit {w.returncode} {out!r} {err!r}")
    check(r.wait(timeout=5) == 0, "job exit status")

    # exec errors and signal deaths, like a shell; the lease is released.
    p = c.tool("run", "-t", t, "k2", "--", "/nonexistent/command")
    check(p.returncode == 127 and b"not found" in p.stderr, f"127: {show(p)}")
    noexec = f"/tmp/shmlease-noexec-{os.getpid()}"
    c.files.append(noexec)
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(noexec, 0o644)
    p = c.tool("run", "-t", t, "k2", "--", noexec)
    check(p.returncode == 126, f"126: {show(p)}")
    p = c.tool("run", "-t", t, "k2", "--", "sh", "-c", "kill -TERM $$")
    check(p.returncode == 128 + signal.SIGTERM, f"signal death: {show(p)}")
    check(c.dump("--key", "k2", t).returncode == 3, "k2 released after exec errors")

    # --grace keeps the key held (by nobody) after the command: a long grace
    # for what the dump shows and what it refuses ...
    p = c.tool("run", "--grace", "60", "-t", t, "cron", "--", "true")
    check(p.returncode == 0, show(p))
    l = c.lease_json(t, "cron")
    check(l and l["state"] == "grace" and l["holder_pid"] is None and
          0 < l["remaining_ms"] <= 60000, f"grace lease {l}")
    p = c.tool("run", "-n", "-t", t, "cron", "--", "true")
    check(p.returncode == 1, f"grace blocks -n: {show(p)}")
    # ... and a short one that a waiter waits out (it is counted as a wait,
    # and it cannot end before the grace that began after t0).
    t0 = time.monotonic()
    p = c.tool("run", "--grace", "1.2", "-t", t, "cron2", "--", "true")
    check(p.returncode == 0, show(p))
    s0 = c.table_json(t)["stats"]
    p = c.tool("run", "-w", "30", "-t", t, "cron2", "--", "true")
    el = time.monotonic() - t0
    check(p.returncode == 0 and el >= 1.2, f"after the grace period ({el:.2f}s): {show(p)}")
    s1 = c.table_json(t)["stats"]
    check(s1["waits"] == s0["waits"] + 1, f"the waiter did not wait out the grace: {s0} -> {s1}")

    # metadata: explicit, truncated default, too long
    p = c.tool("run", "-t", t, "-m", "explicit meta", "k3", "--", "sh", "-c", "sleep 0.5")
    check(p.returncode == 0, show(p))
    long_arg = "x" * 300
    r = c.spawn([c.shmlease, "run", "-t", t, "k4", "sh", "-c", "echo ready; read x", long_arg],
                stdin=subprocess.PIPE)
    check(r.stdout.readline() == b"ready\n", "k4 child")
    l = c.lease_json(t, "k4")
    check(l and l["metadata_len"] == 128 and
          l["metadata"].startswith("sh -c echo ready; read x xx"), f"truncated metadata {l}")
    r.stdin.write(b"end\n")
    r.stdin.close()
    check(r.wait(timeout=15) == 0, "k4 exit status")
    p = c.tool("run", "-t", t, "-m", "y" * 129, "k5", "--", "true")
    check(p.returncode == 64, f"metadata too long: {show(p)}")


def test_run_lost(c):
    """A broken lease terminates the command (exit 75); SIGKILL after
    --kill-after; a paused supervisor loses its lease; a killed supervisor
    shows up as a dead holder and takes its command down."""
    t = c.table("lost")
    check(c.tool("create", t).returncode == 0, "create lost")   # -t: the table must exist
    r = c.spawn([c.shmlease, "run", "-t", t, "--ttl", "30", "jobL", "--", "sh", "-c",
                 'trap "echo got-term; exit 0" TERM; echo $SHMLEASE_FENCING_TOKEN; '
                 'while :; do sleep 0.1; done'])
    tok = int(r.stdout.readline())
    t0 = time.monotonic()
    p = c.tool("break", "--table", t, "jobL")
    check(p.returncode == 0 and f"pid {r.pid}".encode() in p.stdout, f"break: {show(p)}")
    rest, err = c.communicate(r, 5)
    el = time.monotonic() - t0
    check(r.returncode == 75, f"lost lease: exit {r.returncode}, stderr {err!r}")
    check(b"got-term" in rest, f"child not terminated with SIGTERM: {rest!r}")
    check(b"lost" in err, f"no message about the lost lease: {err!r}")
    check(el < 2.5, f"the break was noticed after {el:.2f}s (tick must be <= 1 s)")
    p = c.tool("run", "-n", "-t", t, "jobL", "--", "printenv", "SHMLEASE_FENCING_TOKEN")
    check(p.returncode == 0 and int(p.stdout) > tok, f"next token after a break: {show(p)}")

    # A command that ignores SIGTERM gets SIGKILL after --kill-after; -L sets the code.
    # Only the SIGKILL can end this command, so its end is the proof that one
    # came (a missing one is a hang, caught by communicate); the break came
    # before the SIGTERM, so the end cannot come sooner than 0.5 s after it.
    r = c.spawn([c.shmlease, "run", "-t", t, "-k", "0.5", "-L", "99", "jobK", "--", "sh", "-c",
                 'trap "" TERM; echo ready; while :; do sleep 0.1; done'])
    check(r.stdout.readline() == b"ready\n", "jobK child")
    t0 = time.monotonic()
    check(c.tool("break", "-q", "-t", t, "jobK").returncode == 0, "break jobK")
    _, err = c.communicate(r, 15)
    el = time.monotonic() - t0
    check(r.returncode == 99 and b"SIGKILL" in err, f"kill-after: {r.returncode} {err!r}")
    check(0 <= err.find(b"sending SIGTERM") < err.find(b"sending SIGKILL"),
          f"SIGTERM, then SIGKILL: {err!r}")
    check(el >= 0.5, f"SIGKILL came {el:.2f}s after the break, before --kill-after")

    # Paused past the TTL (SIGSTOP on the supervisor): the lease expires, the
    # renewal fails with ESTALE after SIGCONT, the command is terminated.
    r = c.spawn([c.shmlease, "run", "-t", t, "--ttl", "0.5", "jobP", "--", "sh", "-c",
                 "echo ready; exec sleep 20"])
    check(r.stdout.readline() == b"ready\n", "jobP child")
    os.kill(r.pid, signal.SIGSTOP)
    time.sleep(1.2)
    l = c.lease_json(t, "jobP")
    check(l is None or l["expired"], f"lease of a paused holder past its TTL: {l}")
    os.kill(r.pid, signal.SIGCONT)
    _, err = c.communicate(r, 5)
    check(r.returncode == 75 and b"ESTALE" in err, f"paused: exit {r.returncode} {err!r}")

    # SIGKILL the supervisor: the dump says dead; the command gets SIGTERM.
    r = c.spawn([c.shmlease, "run", "-t", t, "jobD", "--", "sh", "-c", "echo $$; exec sleep 20"])
    child = int(r.stdout.readline())
    r.kill()
    r.wait()
    l = c.lease_json(t, "jobD")
    check(l and l["state"] == "dead" and l["holder_pid"] == r.pid, f"dead supervisor: {l}")
    rows = parse_rows(c.dump("-s", t).stdout.decode())
    check([x["STATE"] for x in rows if x["KEY"] == "jobD"] == ["dead"], f"text: {rows}")
    c.wait_until("the orphaned command to end", lambda: pid_gone(child), timeout=3)
    p = c.tool("run", "-n", "-t", t, "jobD", "--", "true")
    check(p.returncode == 0, f"a dead holder's key is free at once: {show(p)}")


def test_run_signals(c):
    """TERM, INT, HUP, QUIT, USR1, USR2 sent to shmlease reach the command."""
    t = c.table("sig")
    check(c.tool("create", t).returncode == 0, "create sig")   # -t: the table must exist
    for name in ("TERM", "INT", "HUP", "QUIT", "USR1", "USR2"):
        signo = getattr(signal, "SIG" + name)
        r = c.spawn([c.shmlease, "run", "-t", t, "sig" + name, "--", "sh", "-c",
                     f'trap "echo caught-{name}; exit 40" {name}; echo ready; '
                     'while :; do sleep 0.05; done'])
        check(r.stdout.readline() == b"ready\n", f"{name}: child did not start")
        os.kill(r.pid, signo)
        out, err = c.communicate(r, 5)
        check(f"caught-{name}".encode() in out and r.returncode == 40,
              f"{name} not forwarded: exit {r.returncode} out {out!r} err {err!r}")
    # An untrapped SIGTERM kills the command: 128+15.
    r = c.spawn([c.shmlease, "run", "-t", t, "sigdefault", "--", "sh", "-c",
                 "echo ready; exec sleep 20"])
    check(r.stdout.readline() == b"ready\n", "child did not start")
    os.kill(r.pid, signal.SIGTERM)
    c.communicate(r, 5)
    check(r.returncode == 143, f"untrapped SIGTERM: exit {r.returncode}")
    check(c.dump("--key", "sigdefault", t).returncode == 3, "released after a signal death")


def test_admin(c):
    """create, unlink, break, help texts, usage errors, full and corrupt tables."""
    t = c.table("adm")
    p = c.tool("create", t, "--capacity", "16", "--mode", "0640")
    check(p.returncode == 0, f"create: {show(p)}")
    check(os.stat(SHM + t).st_mode & 0o777 == 0o640, "mode 0640")
    tab = c.table_json(t)
    check(tab["capacity"] == 16 and tab["held"] == 0 and tab["mode"] == "0640",
          f"created table {tab}")
    p = c.tool("create", t)
    check(p.returncode == 1 and b"already exists" in p.stderr, f"create twice: {show(p)}")
    for bad in (["create", "a/b"], ["create", t + "x", "--mode", "999"],
                ["create", t + "x", "--capacity", "0"], ["create"], ["frobnicate"],
                ["run", "keyonly"], ["run"], ["run", "--ttl", "0", "k", "--", "true"],
                ["run", "--ttl", "-1", "k", "true"], ["run", "-E", "300", "k", "true"],
                ["run", "-w", "abc", "k", "true"], ["break"], ["unlink"]):
        p = c.tool(*bad)
        check(p.returncode == 64, f"usage error expected for {bad}: {show(p)}")
    check(not os.path.exists(SHM + t + "x"), "a refused create made a table")
    p = c.tool("run", "-t", t, "", "--", "true")
    check(p.returncode == 64, f"empty key: {show(p)}")
    p = c.tool("run", "-t", t, "k" * 128, "--", "true")
    check(p.returncode == 64, f"key too long: {show(p)}")

    for args in (["--help"], ["run", "--help"], ["create", "--help"], ["unlink", "--help"],
                 ["break", "--help"]):
        p = c.tool(*args)
        check(p.returncode == 0 and b"Exit status" in p.stdout, f"{args}: {show(p)}")
    p = c.tool("run", "--help")
    check(b"*/5 * * * * shmlease run -n --ttl 600 report -- /usr/local/bin/report"
          in p.stdout, "cron example in run --help")
    p = c.dump("--help")
    check(p.returncode == 0 and b"Exit status" in p.stdout, f"dump --help {show(p)}")

    # break: a held key, a grace period, a free key, a missing table.
    holder, tok = c.hold(t, "victim")
    p = c.tool("break", "-t", t, "victim")
    check(p.returncode == 0, f"break: {show(p)}")
    holder.stdin.close()
    check(json.loads(holder.stdout.readline())["released"] == "ESTALE",
          "the broken holder's release must fail with ESTALE")
    g = c.helper_json("grace", t, b"graced".hex(), "30000", "", "30000")
    check(c.tool("break", "-t", t, "graced").returncode == 0, "break a grace period")
    check(c.dump("--key", "graced", t).returncode == 3, "grace ended by break")
    p = c.tool("run", "-n", "-t", t, "graced", "--", "printenv", "SHMLEASE_FENCING_TOKEN")
    check(p.returncode == 0 and int(p.stdout) > g["token"], f"after break {show(p)}")
    ctl, _ = c.hold(t, b"ctl\x01key")
    p = c.tool("break", "-t", t, "ctl\x01key")
    check(p.returncode == 0 and b"broke ctl\\x01key" in p.stdout, f"escaped key: {show(p)}")
    ctl.stdin.close()
    ctl.wait(timeout=5)
    p = c.tool("break", "-t", t, "free-key")
    check(p.returncode == 1 and b"not held" in p.stderr, f"break a free key: {show(p)}")
    p = c.tool("break", "-t", f"tt{os.getpid()}.none", "k")
    check(p.returncode == 1 and b"no such table" in p.stderr, f"break, no table: {show(p)}")
    check(not os.path.exists(SHM + f"tt{os.getpid()}.none"), "break created a table")

    # A full table: 69.
    full = c.table("full")
    check(c.tool("create", full, "--capacity", "1").returncode == 0, "create full")
    h1, _ = c.hold(full, "one")
    p = c.tool("run", "-n", "-t", full, "two", "--", "true")
    check(p.returncode == 69 and b"ENOSPC" in p.stderr, f"full table: {show(p)}")
    h1.stdin.close()
    h1.wait(timeout=5)

    # A corrupt table: run and break refuse it with 69 and leave it alone.
    bad = c.table("corrupt")
    junk = b"\x00garbage\xff" * 500
    with open(SHM + bad, "wb") as f:
        f.write(junk)
    p = c.tool("run", "-t", bad, "k", "--", "true")
    check(p.returncode == 69 and b"EPROTO" in p.stderr, f"run on a corrupt table: {show(p)}")
    p = c.tool("break", "-t", bad, "k")
    check(p.returncode == 69, f"break on a corrupt table: {show(p)}")
    with open(SHM + bad, "rb") as f:
        check(f.read() == junk, "a corrupt table was modified")

    # unlink
    p = c.tool("unlink", t)
    check(p.returncode == 0 and not os.path.exists(SHM + t), f"unlink: {show(p)}")
    check(not os.path.exists(LK + t), "unlink left the lock file")
    p = c.tool("unlink", t)
    check(p.returncode == 1 and b"no such table" in p.stderr, f"unlink twice: {show(p)}")
    p = c.tool("unlink", SHM + full)
    check(p.returncode == 0 and not os.path.exists(SHM + full), f"unlink by path: {show(p)}")


def test_man_pages(c):
    """Both man pages render without groff warnings and document what they must."""
    if not c.man_dir or not shutil.which("groff"):
        raise Skip("groff not installed")
    for page, must in (("shmlease.1", ["EXIT STATUS", "EXAMPLES", "SEE ALSO",
                                       "*/5 * * * * shmlease run -n --ttl 600 report",
                                       "SHMLEASE_FENCING_TOKEN", "75", "--kill-after",
                                       "--share", "--create", "--group", "user-UID"]),
                       ("shmlease-dump.1", ["EXIT STATUS", "EXAMPLES", "SEE ALSO",
                                            "--watch", "--json", "grace", "dead"])):
        path = os.path.join(c.man_dir, page)
        p = c.run(["groff", "-man", "-ww", "-z", path])
        check(p.returncode == 0 and not p.stderr.strip(), f"groff warnings for {page}: {show(p)}")
        p = c.run(["groff", "-man", "-Tutf8", "-rLL=80n", "-P-cbou", path],
                  env=dict(os.environ, LC_ALL="C.UTF-8"))
        text = p.stdout.decode()
        text = text.replace("\u2010", "-").replace("\u2212", "-").replace("\u2019", "'")
        for m in must:
            check(m in text, f"{page}: '{m}' missing from the rendered page")
        check(all(len(l) <= 80 for l in text.splitlines()), f"{page}: lines wider than 80")


TESTS = {name[5:]: fn for name, fn in globals().items() if name.startswith("test_")}


def run_tests(tests, add_args=None, configure=None, after=None):
    """The command line of a tool test file: the binaries' options, ADD_ARGS's
    (a function of the argparse parser), and the test's name. Runs it on a
    Ctx (CONFIGURE(c, args) first), cleans up (then AFTER()), and returns
    the exit status: 0 pass, 1 fail, 77 skipped."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--shmlease", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--helper", required=True)
    ap.add_argument("--man-dir")
    ap.add_argument("--shim")
    if add_args:
        add_args(ap)
    ap.add_argument("test", choices=sorted(tests))
    args = ap.parse_args()
    c = Ctx(args)
    if configure:
        configure(c, args)
    t0 = time.monotonic()
    try:
        tests[args.test](c)
    except Skip as e:
        print(f"SKIP {args.test}: {e}")
        return 77
    except (Fail, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError, OSError) as e:
        import traceback
        traceback.print_exc()
        print(f"FAIL {args.test}: {e}")
        return 1
    finally:
        c.cleanup()
        if after:
            after()
    print(f"PASS {args.test} ({time.monotonic() - t0:.1f}s)")
    return 0


def main():
    return run_tests(TESTS)

if __name__ == "__main__":
    sys.exit(main())
