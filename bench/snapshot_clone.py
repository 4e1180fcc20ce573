#!/usr/bin/env python3
"""Cold boot against clone from a snapshot, for one HTTP image (issue #13, item 4).

Usage: bench/snapshot_clone.py MAYFLY IMAGE [N]

For each of N rounds, starts `mayfly run IMAGE --publish 127.0.0.1:0:80` (cold) and
`mayfly run IMAGE --from-snapshot SNAP --publish 127.0.0.1:0:80` (clone), and measures from the
spawn to the first complete HTTP response (median, p90), alternating the two. It keeps all of them alive and idle
(each has answered one request) and reports their mean PSS (/proc/PID/smaps_rollup). Only the
processes it started are stopped.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def first_response(mayfly, image, extra):
    start = time.monotonic()
    proc = subprocess.Popen(
        [mayfly, "run", image, "--publish", "127.0.0.1:0:80", "--timeout", "300", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()  # "mayfly: publishing 127.0.0.1:PORT -> guest port 80"
    host, port = line.split()[2].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    elapsed_ms = (time.monotonic() - start) * 1000
    if not reply.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"bad reply: {reply[:80]!r}")
    return proc, elapsed_ms


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def measure(mayfly, image, variants, rounds):
    """Alternates the variants round by round (so that load changes hit both alike)."""
    times = {name: [] for name, _ in variants}
    alive = {name: [] for name, _ in variants}
    for _ in range(rounds):
        for name, extra in variants:
            proc, ms = first_response(mayfly, image, extra)
            times[name].append(ms)
            alive[name].append(proc)
    time.sleep(0.5)  # let the last responses' work settle before reading memory
    results = {}
    for name, _ in variants:
        pss = [pss_kib(p.pid) for p in alive[name]]
        t = sorted(times[name])
        results[name] = (statistics.median(t), t[int(len(t) * 0.9) - 1], statistics.mean(pss))
    for procs in alive.values():
        for p in procs:
            p.kill()
            p.wait()
    return results


def main():
    mayfly, image = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with tempfile.TemporaryDirectory() as tmp:
        snap = os.path.join(tmp, "template.snap")
        subprocess.run([mayfly, "run", image, "--snapshot-out", snap], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        variants = [("cold boot", []), ("clone", ["--from-snapshot", snap])]
        for name, (p50, p90, pss) in measure(mayfly, image, variants, rounds).items():
            print(f"{name:10} spawn-to-first-response p50 {p50:.2f} ms p90 {p90:.2f} ms; "
                  f"PSS per idle instance (N={rounds}) {pss:.0f} KiB")


if __name__ == "__main__":
    main()
