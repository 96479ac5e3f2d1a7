#!/usr/bin/env python3
"""Tests of shmlease-dump as lslocks (holder's command, user, cgroup and
unit; -r, -J, --output-all, -H), of its Prometheus output, and of
`shmlease doctor`, driven as a user would drive them.

    test_dump2.py --shmlease BIN --dump BIN --helper BIN [--man-dir DIR] TEST

Same conventions as test_tools.py, whose helpers it uses: exit 0 pass, 1
fail, 77 skipped; tables named tt<pid>.<tag>, unlinked at the end.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_tools  # noqa: E402
from test_tools import LK, SHM, Fail, Skip, check, parse_rows, show  # noqa: E402


# ---- helpers -----------------------------------------------------------------

DIRS = []          # temporary directories, removed at the end

def proc_comm(pid):
    with open(f"/proc/{pid}/comm", "rb") as f:
        return f.read().rstrip(b"\n")


def escape(b):
    """The tools' escaping of bytes (tool_escape_text)."""
    out = []
    for x in b:
        if x == 0x5c:
            out.append("\\\\")
        elif x == 0x0a:
            out.append("\\n")
        elif x == 0x0d:
            out.append("\\r")
        elif x == 0x09:
            out.append("\\t")
        elif 0x20 <= x < 0x7f:
            out.append(chr(x))
        else:
            out.append(f"\\x{x:02x}")
    return "".join(out)


def unescape(s):
    """The inverse of escape(), with \\x20 as -r writes a space."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] != "\\":
            out.append(ord(s[i]))
            i += 1
            continue
        n = s[i + 1]
        if n == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out.append({"\\": 0x5c, "n": 0x0a, "r": 0x0d, "t": 0x09}[n])
            i += 2
    return bytes(out)


class Cgroup:
    """A cgroup named like a systemd unit, made for the test, with a process
    moved into it; removed at cleanup. Tries the unified hierarchy, then
    systemd's named v1 hierarchy (what /proc/PID/cgroup shows on a hybrid
    host)."""
    ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/systemd")

    def __init__(self, rel):
        self.rel = rel
        self.dirs = []
        self.root = None
        for root in self.ROOTS:
            if not os.path.exists(os.path.join(root, "cgroup.procs")):
                continue
            path = os.path.join(root, rel)
            try:
                os.makedirs(path)
            except OSError:
                continue
            self.root = root
            d = path
            while d != root:
                self.dirs.append(d)
                d = os.path.dirname(d)
            break

    def add(self, pid):
        with open(os.path.join(self.root, self.rel, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def cleanup(self):
        for d in self.dirs:           # deepest first
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # its last process is still exiting


# ---- the Prometheus text format ---------------------------------------------

METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_labels(s, where):
    """'{a="x",b="y"}' at the start of s: (dict, rest)."""
    labels, i = {}, 1
    while True:
        if s[i] == "}":
            return labels, s[i + 1:]
        m = LABEL.match(s, i)
        check(m, f"{where}: bad label name at {s[i:]!r}")
        name = m.group()
        i = m.end()
        check(s[i:i + 2] == '="', f"{where}: expected =\" after {name}")
        i += 2
        val = []
        while s[i] != '"':
            if s[i] == "\\":
                n = s[i + 1]
                check(n in '\\"n', f"{where}: bad escape \\{n} in a label value")
                val.append({"\\": "\\", '"': '"', "n": "\n"}[n])
                i += 2
            else:
                check(s[i] != "\n", f"{where}: newline in a label value")
                val.append(s[i])
                i += 1
        i += 1
        check(name not in labels, f"{where}: label {name} twice")
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        else:
            check(s[i] == "}", f"{where}: expected , or }} at {s[i:]!r}")


def parse_prometheus(text):
    """A strict reader of the text exposition format (version 0.0.4): every
    sample's family has a TYPE (and a HELP) before its first sample, a
    family's samples are contiguous, names and labels are well formed,
    values are numbers, no series appears twice, counters end in _total.
    Returns {family: {"type", "help", "samples": [(labels, value)]}}."""
    check(text.endswith("\n"), "the metrics do not end with a newline")
    fams, closed, current, series = {}, set(), None, set()

    def family(name):
        f = fams.setdefault(name, {"type": None, "help": None, "samples": []})
        return f

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                check(METRIC.fullmatch(name), f"{where}: bad metric name")
                check(name not in closed and (current is None or current == name or
                                              not fams.get(name, {}).get("samples")),
                      f"{where}: {parts[1]} after the family's samples")
                f = family(name)
                key = parts[1].lower()
                check(f[key] is None, f"{where}: second {parts[1]} for {name}")
                if parts[1] == "TYPE":
                    check(len(parts) == 4 and parts[3] in
                          ("counter", "gauge", "histogram", "summary", "untyped"),
                          f"{where}: bad type")
                    check(not f["samples"], f"{where}: TYPE after samples")
                f[key] = parts[3] if len(parts) == 4 else ""
                if current is not None and current != name:
                    closed.add(current)
                current = name
            continue
        m = METRIC.match(line)
        check(m, f"{where}: no metric name")
        name, rest = m.group(), line[m.end():]
        labels = {}
        if rest.startswith("{"):
            labels, rest = parse_labels(rest, where)
        check(rest.startswith(" "), f"{where}: no space before the value")
        fields = rest.split()
        check(1 <= len(fields) <= 2, f"{where}: expected a value and an optional timestamp")
        try:
            value = float(fields[0])
        except ValueError:
            raise Fail(f"{where}: value {fields[0]!r} is not a number")
        check(name in fams and fams[name]["type"] is not None,
              f"{where}: sample before its family's TYPE")
        check(name == current and name not in closed, f"{where}: family {name} not contiguous")
        ident = (name, tuple(sorted(labels.items())))
        check(ident not in series, f"{where}: series twice")
        series.add(ident)
        fams[name]["samples"].append((labels, value))
    for name, f in fams.items():
        check(f["help"], f"{name}: no HELP")
        check(f["type"], f"{name}: no TYPE")
        if f["type"] == "counter":
            check(name.endswith("_total"), f"counter {name} does not end in _total")
        check(name.startswith("shmlease_"), f"{name}: not shmlease_*")
    return fams


def sample(fams, name, **labels):
    """The value of one series, None if absent."""
    for lab, v in fams.get(name, {"samples": []})["samples"]:
        if all(lab.get(k) == v2 for k, v2 in labels.items()):
            return v
    return None


# ---- tests: shmlease-dump as lslocks -----------------------------------------

def test_dump2_holder(c):
    """COMMAND, USER, CGROUP, UNIT, UUNIT of a live holder against /proc; '-'
    for a grace period and a dead holder; the same in JSON."""
    t = c.table("holder")
    check(c.tool("create", t, "--capacity", "64").returncode == 0, "create")
    cg = Cgroup(f"shmltest{os.getpid()}.slice/shmltest-{os.getpid()}.service") \
        if os.geteuid() == 0 else None
    ucg = Cgroup(f"shmlutest{os.getpid()}.slice/user@4242.service/app.slice/"
                 f"shmltest-{os.getpid()}.service") if os.geteuid() == 0 else None
    try:
        alive, _ = c.hold(t, "alpha", 30000, b"job A")
        c.helper_json("grace", t, b"gamma".hex(), "30000", b"".hex(), "20000")
        victim, _ = c.hold(t, "bravo", 30000, b"victim")
        victim.kill()
        victim.wait()
        inuser = None
        if cg is not None and cg.root is not None:
            cg.add(alive.pid)
            if ucg.root is not None:
                inuser, _ = c.hold(t, "delta", 30000)
                ucg.add(inuser.pid)
        else:
            print("note: cannot make a cgroup here: UNIT is checked for the current cgroup only")

        cols = "KEY,COMMAND,PID,USER,CGROUP,UNIT,UUNIT,STATE"
        p = c.dump("-o", cols, "-s", t)
        check(p.returncode == 0, show(p))
        text = p.stdout.decode()
        rows = {r["KEY"]: r for r in parse_rows(text)}
        a = rows["alpha"]
        import pwd
        with open(f"/proc/{alive.pid}/cgroup") as f:
            lines = f.read().splitlines()
        v2 = [l[3:] for l in lines if l.startswith("0::")]
        v1 = [l.split(":", 2)[2] for l in lines if ":name=systemd:" in l]
        cgroup = v2[0] if v2 and not (v2[0] == "/" and v1 and v1[0] != "/") else v1[0]
        check(a["COMMAND"] == escape(proc_comm(alive.pid)), f"COMMAND {a} vs /proc\n{text}")
        check(a["USER"] == pwd.getpwuid(os.geteuid()).pw_name, f"USER {a}")
        check(a["CGROUP"] == cgroup, f"CGROUP {a} vs {cgroup}\n{text}")
        if cg is not None and cg.root is not None:
            check(a["UNIT"] == f"shmltest-{os.getpid()}.service" and a["UUNIT"] == "-",
                  f"UNIT of a process in {cg.rel}: {a}\n{text}")
        if inuser is not None:
            d = rows["delta"]
            check(d["UNIT"] == "user@4242.service" and
                  d["UUNIT"] == f"shmltest-{os.getpid()}.service",
                  f"UNIT, UUNIT of a user service: {d}\n{text}")
        for k in ("gamma", "bravo"):
            r = rows[k]
            check(all(r[x] == "-" for x in ("COMMAND", "USER", "CGROUP", "UNIT", "UUNIT")),
                  f"{k} ({r['STATE']}): no process to describe: {r}\n{text}")
        check(rows["bravo"]["STATE"] == "dead", f"bravo {rows['bravo']}")

        # The default columns: COMMAND beside PID, as lslocks has them.
        p = c.dump("-s", t)
        heads = p.stdout.decode().splitlines()[0].split()
        check(heads == ["KEY", "TOKEN", "COMMAND", "PID", "STATE", "LEFT", "WAITERS",
                        "METADATA"], f"default columns {heads}")

        # JSON: the same facts, raw bytes, null when there is nobody.
        leases = {l["key"]: l for l in c.table_json(t)["leases"]}
        la = leases["alpha"]
        check(la["holder_command"] == proc_comm(alive.pid).decode("latin-1") and
              la["holder_uid"] == os.geteuid() and la["holder_cgroup"] == cgroup,
              f"JSON holder {la}")
        for k in ("gamma", "bravo"):
            lk = leases[k]
            check(all(lk[x] is None for x in ("holder_command", "holder_uid", "holder_user",
                                              "holder_cgroup", "holder_unit",
                                              "holder_user_unit")), f"JSON {k}: {lk}")
        if inuser is not None:
            ld = leases["delta"]
            check(ld["holder_unit"] == "user@4242.service" and
                  ld["holder_user_unit"] == f"shmltest-{os.getpid()}.service", f"JSON {ld}")
            inuser.stdin.close()
            inuser.wait(timeout=5)

        alive.stdin.close()
        alive.wait(timeout=5)

        # A command name with a space, a backslash and a control byte (the
        # name of the file executed): escaped in the text, exact in JSON.
        d = tempfile.mkdtemp(prefix="shmlease-comm.")
        DIRS.append(d)
        odd = b"job \\ x\x01"
        os.symlink(os.path.abspath(c.helper), os.path.join(d.encode(), odd))
        h = c.spawn([os.path.join(d.encode(), odd), b"hold", t.encode(), b"odd".hex().encode(),
                     b"30000", b""], stdin=subprocess.PIPE)
        check(json.loads(h.stdout.readline())["rc"] == "OK", "hold through the odd name")
        check(proc_comm(h.pid) == odd, f"comm {proc_comm(h.pid)!r}")
        p = c.dump("-r", "-n", "-o", "KEY,COMMAND", "-s", t)
        row = [l for l in p.stdout.decode().splitlines() if l.startswith("odd ")]
        check(row == ["odd job\\x20\\\\\\x20x\\x01"], f"escaped COMMAND {row}\n{show(p)}")
        check(c.lease_json(t, "odd")["holder_command"] == odd.decode("latin-1"), "JSON command")
        h.stdin.close()
        h.wait(timeout=5)
    finally:
        for g in (cg, ucg):
            if g is not None:
                g.cleanup()


def test_dump2_raw(c):
    """-r: one line per lease, cells split by exactly one space, spaces and
    backslashes inside cells escaped, headings once across tables (-n: none);
    TABLE column; -J is --json; --output-all; -H lists the columns."""
    t1, t2 = c.table("raw1"), c.table("raw2")
    for t in (t1, t2):
        check(c.tool("create", t, "--capacity", "16").returncode == 0, "create")
    key = b"a key\\with \x01 bytes"
    meta = b"meta with  two spaces"
    h1, tok1 = c.hold(t1, key, 30000, meta)
    h2, tok2 = c.hold(t2, "plain", 30000, b"")
    cols = ["TABLE", "KEY", "TOKEN", "PID", "COMMAND", "METADATA", "WAITERS"]
    p = c.dump("-r", "-o", ",".join(cols), t1, t2)
    check(p.returncode == 0, show(p))
    lines = p.stdout.decode().split("\n")
    check(lines[-1] == "" and lines[0] == " ".join(cols), f"raw headings\n{show(p)}")
    body = [l.split(" ") for l in lines[1:-1]]
    check(len(body) == 2 and all(len(r) == len(cols) for r in body),
          f"raw rows must split into {len(cols)} cells\n{show(p)}")
    r1, r2 = ({k: v for k, v in zip(cols, r)} for r in body)
    check(r1["TABLE"] == t1 and unescape(r1["KEY"]) == key and r1["TOKEN"] == str(tok1) and
          r1["PID"] == str(h1.pid) and unescape(r1["METADATA"]) == meta and
          unescape(r1["COMMAND"]) == proc_comm(h1.pid), f"raw row {r1}")
    check(r2["TABLE"] == t2 and r2["KEY"] == "plain" and r2["METADATA"] == "",
          f"raw row with empty metadata {r2}")
    check(b"table:" not in p.stdout and b"dead:" not in p.stdout, "raw printed a summary")
    p = c.dump("-r", "-n", "-o", "key", t1, t2)
    check(p.stdout.decode().split("\n") == [escape(key).replace(" ", "\\x20"), "plain", ""],
          f"raw -n\n{show(p)}")
    # --list -r: one table per line, split by one space.
    p = c.dump("--list", "-r")
    lines = p.stdout.decode().splitlines()
    n = len(lines[0].split(" "))
    mine = [l.split(" ") for l in lines[1:] if l.split(" ")[0] in (t1, t2)]
    check(len(mine) == 2 and all(len(r) == n for r in mine), f"list -r\n{show(p)}")

    # -J is --json.
    p = c.dump("-J", t1)
    doc = json.loads(p.stdout)
    check(doc["tables"][0]["leases"][0]["fencing_token"] == tok1, f"-J\n{show(p)}")
    # --output-all: every column -H lists, in that order.
    p = c.dump("-H")
    names = [l.split()[0] for l in p.stdout.decode().splitlines()]
    check(p.returncode == 0 and {"COMMAND", "USER", "CGROUP", "UNIT", "UUNIT", "TABLE"} <= set(names),
          f"-H\n{show(p)}")
    p = c.dump("--output-all", "-r", t2)
    check(p.stdout.decode().splitlines()[0].split(" ") == names, f"--output-all\n{show(p)}")
    # Outputs exclude each other.
    for args in (("-r", "-J"), ("--prometheus", "-r"), ("--prometheus", "--list")):
        p = c.dump(*args, t1)
        check(p.returncode == 64, f"{args}: usage error expected\n{show(p)}")
    h1.stdin.close()
    h2.stdin.close()
    h1.wait(timeout=5)
    h2.wait(timeout=5)


# ---- tests: --prometheus -------------------------------------------------------

def metrics(c, *args, expect=0):
    p = c.dump("--prometheus", *args)
    check(p.returncode == expect, f"--prometheus {args}: exit {expect} expected\n{show(p)}")
    return parse_prometheus(p.stdout.decode()), p


def test_dump2_prometheus(c):
    """The metrics parse, carry each table's counters, and move with real
    acquires, contention, waits, dead holders; per-key series with --key;
    every table with no NAME, an unusable one as shmlease_up 0."""
    t = c.table("prom")
    check(c.tool("create", t, "--capacity", "64").returncode == 0, "create")
    fams, _ = metrics(c, t)
    st = c.helper_json("stats", t)
    for name, key in (("acquisitions", "acquisitions"), ("contended", "contended"),
                      ("waits", "waits"), ("busy", "busy"), ("timeouts", "timeouts"),
                      ("expirations", "expirations"), ("reclaimed_dead", "reclaimed_dead"),
                      ("renewals", "renewals"), ("lost", "lost"), ("broken", "broken"),
                      ("recoveries", "recoveries")):
        check(fams[f"shmlease_{name}_total"]["type"] == "counter" and
              sample(fams, f"shmlease_{name}_total", table=t) == st[key],
              f"shmlease_{name}_total vs the library's {key}={st[key]}")
    check(sample(fams, "shmlease_up", table=t) == 1, "shmlease_up")
    check(sample(fams, "shmlease_capacity_keys", table=t) == 64, "capacity")
    check(sample(fams, "shmlease_held_leases", table=t) == 0, "held")
    a0 = sample(fams, "shmlease_acquisitions_total", table=t)

    # Three real runs: three acquisitions.
    for _ in range(3):
        p = c.tool("run", "-t", t, "job", "--", "true")
        check(p.returncode == 0, f"run: {show(p)}")
    fams, _ = metrics(c, t)
    check(sample(fams, "shmlease_acquisitions_total", table=t) == a0 + 3,
          f"acquisitions after 3 runs: {sample(fams, 'shmlease_acquisitions_total', table=t)} "
          f"vs {a0} + 3")

    # Held by a live process; a refused try (busy, contended); a waiter.
    holder, tok = c.hold(t, "job", 120000, b"held")
    p = c.tool("run", "-n", "-t", t, "job", "--", "true")
    check(p.returncode == 1, f"run -n on a held key: {show(p)}")
    waiter = c.spawn([c.shmlease, "run", "-w", "60", "-t", t, "job", "--", "true"])
    c.wait_until("the waiter to sleep on job",
                 lambda: sample(metrics(c, t)[0], "shmlease_waiters", table=t) == 1, timeout=20)
    fams, _ = metrics(c, t, "--key", "job")
    check(sample(fams, "shmlease_busy_total", table=t) == 1 and
          sample(fams, "shmlease_contended_total", table=t) >= 2,
          f"busy/contended after a refused try and a waiter: "
          f"{sample(fams, 'shmlease_busy_total', table=t)}, "
          f"{sample(fams, 'shmlease_contended_total', table=t)}")
    check(sample(fams, "shmlease_held_leases", table=t) == 1 and
          sample(fams, "shmlease_leases", table=t, state="alive") == 1, "held gauges")
    check(sample(fams, "shmlease_lease_held", table=t, key="job") == 1 and
          sample(fams, "shmlease_lease_waiters", table=t, key="job") == 1 and
          sample(fams, "shmlease_lease_fencing_token", table=t, key="job") == tok and
          sample(fams, "shmlease_lease_state", table=t, key="job", state="alive") == 1 and
          sample(fams, "shmlease_lease_state", table=t, key="job", state="dead") == 0 and
          60 < sample(fams, "shmlease_lease_remaining_seconds", table=t, key="job") <= 120,
          f"per-key series: {[(n, f['samples']) for n, f in fams.items() if 'lease_' in n]}")
    holder.stdin.close()
    holder.wait(timeout=5)
    out, err = c.communicate(waiter, 20)
    check(waiter.returncode == 0, f"waiter: {out!r} {err!r}")
    fams, _ = metrics(c, t, "--key", "job")
    check(sample(fams, "shmlease_waits_total", table=t) >= 1, "waits_total after a wait")
    check(sample(fams, "shmlease_lease_held", table=t, key="job") == 0 and
          sample(fams, "shmlease_lease_waiters", table=t, key="job") is None,
          "a free key: held 0 and no other per-key series")
    check(sample(fams, "shmlease_waiters", table=t) == 0, "no waiter left")

    # A SIGKILLed holder: a dead lease; then a key with a quote and a
    # backslash, as a label.
    victim, _ = c.hold(t, 'q"uo\\te', 60000)
    victim.kill()
    victim.wait()
    fams, p = metrics(c, t, "--key", 'q"uo\\te')
    check(sample(fams, "shmlease_leases", table=t, state="dead") == 1, "dead gauge")
    check(sample(fams, "shmlease_lease_held", table=t, key='q"uo\\\\te') == 1,
          f"escaped key label\n{p.stdout.decode()}")
    check(b'key="q\\"uo\\\\\\\\te"' in p.stdout, f"label escaping\n{p.stdout.decode()}")

    # No NAME: every table; a corrupt one is shmlease_up 0, exit 0.
    bad = c.table("promcorrupt")
    with open(SHM + bad, "wb") as f:
        f.write(b"\x00garbage\xff" * 500)
    fams, _ = metrics(c)
    check(sample(fams, "shmlease_up", table=t) == 1 and sample(fams, "shmlease_up", table=bad) == 0,
          f"no NAME: shmlease_up {fams['shmlease_up']['samples']}")
    check(sample(fams, "shmlease_acquisitions_total", table=bad) is None,
          "an unusable table has no counters")
    # Named, the corrupt table is an error (exit 2), the metrics still printed.
    fams, p = metrics(c, t, bad, expect=2)
    check(sample(fams, "shmlease_up", table=bad) == 0 and b"EPROTO" in p.stderr, show(p))


def test_dump2_prometheus_file(c):
    """--prometheus=FILE replaces FILE atomically: a reader never sees a
    partial file while --watch rewrites it; the mode follows the umask; no
    temporary file is left; a directory that cannot be written leaves the
    old file and exits 2."""
    t = c.table("promfile")
    check(c.tool("create", t, "--capacity", "256", "--mode", "0644").returncode == 0, "create")
    holders = [c.hold(t, f"key-{i}", 60000)[0] for i in range(40)]
    d = tempfile.mkdtemp(prefix="shmlease-prom.")
    DIRS.append(d)
    path = os.path.join(d, "shmlease.prom")
    p = subprocess.run([c.dump_bin, f"--prometheus={path}", t], capture_output=True,
                       timeout=20, preexec_fn=lambda: os.umask(0o022))
    check(p.returncode == 0 and p.stdout == b"", f"--prometheus=FILE\n{show(p)}")
    check(os.stat(path).st_mode & 0o777 == 0o644, f"mode {oct(os.stat(path).st_mode)}")
    with open(path) as f:
        fams = parse_prometheus(f.read())
    check(sample(fams, "shmlease_held_leases", table=t) == 40, "held in the file")
    ino = os.stat(path).st_ino

    # A writer every 10 ms, a reader as fast as it can: every read complete.
    w = c.spawn([c.dump_bin, "--watch", "0.01", f"--prometheus={path}", t])
    reads, inodes, end = 0, set(), time.monotonic() + 3
    while time.monotonic() < end or len(inodes) < 5:
        check(time.monotonic() < end + 30, "the file was not replaced 5 times in 30 s")
        with open(path) as f:
            inodes.add(os.fstat(f.fileno()).st_ino)
            text = f.read()
        fams = parse_prometheus(text)          # fails on a partial file
        check(sample(fams, "shmlease_held_leases", table=t) == 40, f"read {reads}: {text[-200:]}")
        reads += 1
    w.terminate()
    c.communicate(w, 10)
    check(w.returncode == 0, f"--watch --prometheus=FILE ended with {w.returncode}")
    left = [f for f in os.listdir(d) if f != "shmlease.prom"]
    check(left == [], f"temporary files left: {left}")

    # A directory it may not write: exit 2, a message, the old file intact.
    if os.geteuid() == 0:
        os.chmod(d, 0o755)
        before = open(path).read()
        p = subprocess.run([c.dump_bin, f"--prometheus={path}", t], capture_output=True,
                           timeout=20, preexec_fn=test_tools.as_nobody)
        check(p.returncode == 2 and b"cannot create a temporary file" in p.stderr and
              b"Permission denied" in p.stderr, f"unwritable directory\n{show(p)}")
        check(open(path).read() == before, "the old file changed")
    p = c.dump(f"--prometheus={d}/missing-dir/x.prom", t)
    check(p.returncode == 2 and b"No such file or directory" in p.stderr, show(p))
    for h in holders:
        h.stdin.close()
    for h in holders:
        h.wait(timeout=5)


TESTS = {name[5:]: fn for name, fn in globals().items()
         if name.startswith("test_") and callable(fn)}


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--shmlease", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--helper", required=True)
    ap.add_argument("--man-dir")
    ap.add_argument("--shim")
    ap.add_argument("test", choices=sorted(TESTS))
    args = ap.parse_args()
    c = test_tools.Ctx(args)
    t0 = time.monotonic()
    try:
        TESTS[args.test](c)
    except Skip as e:
        print(f"SKIP {args.test}: {e}")
        return 77
    except (Fail, subprocess.TimeoutExpired, json.JSONDecodeError, KeyError) as e:
        import traceback
        traceback.print_exc()
        print(f"FAIL {args.test}: {e}")
        return 1
    finally:
        c.cleanup()
        for d in DIRS:
            shutil.rmtree(d, ignore_errors=True)
    print(f"PASS {args.test} ({time.monotonic() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
