#!/usr/bin/env python3
"""Stalled-reader flood against examples/calc (Linux, 127.0.0.1 only).

One run:

1. starts the given calc binary (`--addr 127.0.0.1:0 --backend B
   [--trigger T] --idle-timeout 0`);
2. (flood mode) an attacker connection with SO_RCVBUF 4096 pipelines `1+1X`
   requests without ever reading, in increments, until the replies the
   *server itself* holds queued (not the kernel) are within --min-queued and
   --max-queued. That is measured from /proc/net/tcp: each processed request
   adds a 2-byte reply `2X`; a request counts as processed once the server
   socket's rx_queue is 0 (and the attacker's tx_queue is 0); the kernel
   holds the server socket's tx_queue plus the attacker's rx_queue; the
   server's own queue is the rest;
3. the attacker then streams empty frames `X` at --rate bytes/s (chunks
   every 10 ms). After --lead seconds, for --duration seconds:
   `perf stat -e syscalls:sys_enter_sendto -p SERVER_PID -- sleep DURATION`
   counts the server's sendto calls, the server's CPU time is read from
   /proc/PID/stat before and after, and a well-behaved client does
   sequential round trips `i+1X` -> `(i+1)X` and records their latency;
4. prints one line of key=value fields, kills the server (SIGTERM, wait).

Baseline mode (`--mode baseline`) is the same without the attacker.
`--summarize FILE...` reads such lines and prints medians per
(label, mode, backend, trigger) as a Markdown table.

Stdlib only. Every loop is bounded in count and time.
"""

import argparse
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
REQUEST = b"1+1X"
REPLY_LEN = 2  # b"2X"


def die(msg):
    raise SystemExit(f"stalled_reader: {msg}")


# ---------------------------------------------------------------- /proc


def hexaddr(port):
    # /proc/net/tcp prints an IPv4 address as the 32-bit value in host
    # order (little endian here): 127.0.0.1 -> 0100007F.
    return "0100007F:%04X" % port


def tcp_queues(local_port, remote_port):
    """(tx_queue, rx_queue) of the 127.0.0.1 socket local_port -> remote_port."""
    want_l, want_r = hexaddr(local_port), hexaddr(remote_port)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[1] == want_l and fields[2] == want_r:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16)
    die(f"no socket {HOST}:{local_port} -> {remote_port} in /proc/net/tcp")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- server


class Server:
    def __init__(self, binary, backend, trigger):
        cmd = [binary, "--addr", f"{HOST}:0", "--backend", backend]
        if trigger:
            cmd += ["--trigger", trigger]
        cmd += ["--idle-timeout", "0"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = b""
        deadline = time.monotonic() + 10
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    break
                line += ch
        m = re.match(rb"listening on 127\.0\.0\.1:(\d+) backend=(\S+) trigger=(\S+)",
                     line)
        if not m:
            self.stop()
            die(f"unexpected server announcement {line!r}")
        self.port = int(m.group(1))
        self.backend = m.group(2).decode()
        self.trigger = m.group(3).decode()
        # Drain its output so it can never block on a full pipe.
        self.stderr = []
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream):
        for _ in range(100000):
            data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not data:
                return
            if stream is self.proc.stderr and len(self.stderr) < 100:
                self.stderr.append(data)

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---------------------------------------------------------------- attacker


class Attacker:
    """A connection that sends and never reads."""

    def __init__(self, port):
        self.server_port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect, so the advertised window is small from the start.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.requests = 0

    def queues(self):
        """Returns (settled, server_tx, attacker_rx). Settled: the server
        has read everything sent (its rx_queue and the attacker's tx_queue
        are 0) and two readings 20 ms apart agree (so a delayed ACK, which
        counts bytes in both queues at once, has gone out). Bounded: 5 s."""
        deadline = time.monotonic() + 5
        last = None
        while True:
            srv_tx, srv_rx = tcp_queues(self.server_port, self.port)
            att_tx, att_rx = tcp_queues(self.port, self.server_port)
            now = (srv_tx, att_rx)
            if srv_rx == 0 and att_tx == 0 and now == last:
                return True, srv_tx, att_rx
            if time.monotonic() > deadline:
                return False, srv_tx, att_rx
            last = now if srv_rx == 0 and att_tx == 0 else None
            time.sleep(0.02)

    def server_queued(self):
        """(bytes of replies the server holds in user space, or None if it
        has not read all the requests; server kernel tx; attacker rx)."""
        done, srv_tx, att_rx = self.queues()
        if not done:
            return None, srv_tx, att_rx
        return self.requests * REPLY_LEN - srv_tx - att_rx, srv_tx, att_rx

    def send_requests(self, n):
        self.sock.settimeout(5)
        self.sock.sendall(REQUEST * n)
        self.requests += n

    def fill(self, lo, hi, max_steps=100, max_requests=8_000_000):
        """Pipelines requests in increments until the server's own queue is
        in [lo, hi]. Returns (queued, server kernel tx, attacker rx).

        The kernel takes replies first (the server socket's send buffer
        grows to about 2.9 MB here before it refuses any), so while the
        server holds nothing the step is `lo` bytes of replies; once it
        holds some, half the gap to the middle of the range."""
        target = (lo + hi) // 2
        for _ in range(max_steps):
            queued, srv_tx, att_rx = self.server_queued()
            if queued is None:
                die("server stopped reading requests while filling")
            if lo <= queued <= hi:
                return queued, srv_tx, att_rx
            if queued > hi:
                die(f"overshot: server holds {queued} bytes (> {hi})")
            if queued <= 0:
                step = lo // REPLY_LEN
            else:
                step = max(256, (target - queued) // REPLY_LEN // 2)
            if self.requests + step > max_requests:
                die(f"server queue not in range after {self.requests} requests")
            self.send_requests(step)
        die(f"server queue not in range after {max_steps} steps")

    def flood(self, rate, stop, interval=0.01):
        """Sends empty frames at `rate` bytes/s until `stop` is set (bounded
        by 120 s). Returns (bytes sent, bytes it could not send on time)."""
        self.sock.setblocking(False)
        chunk = b"X" * int(rate * interval)
        sent = dropped = 0
        t0 = time.monotonic()
        next_t = t0
        for _ in range(int(120 / interval)):
            if stop.is_set():
                break
            try:
                n = self.sock.send(chunk)
            except BlockingIOError:
                n = 0
            sent += n
            dropped += len(chunk) - n
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                stop.wait(delay)
        return sent, dropped, time.monotonic() - t0

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- good client


def good_client(port, duration, max_requests=10_000_000):
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    errors = 0
    end = time.monotonic() + duration
    try:
        for i in range(max_requests):
            if time.monotonic() >= end:
                break
            want = b"%dX" % (i + 1)
            t0 = time.perf_counter_ns()
            sock.sendall(b"%d+1X" % i)
            got = b""
            for _ in range(64):
                data = sock.recv(64)
                if not data:
                    die("good client: server closed the connection")
                got += data
                if got.endswith(b"X"):
                    break
            lat.append(time.perf_counter_ns() - t0)
            if got != want:
                errors += 1
    finally:
        sock.close()
    return lat, errors


def perf_sendto(pid, duration):
    return subprocess.Popen(
        ["perf", "stat", "-x", ",", "-e", "syscalls:sys_enter_sendto",
         "-p", str(pid), "--", "sleep", str(duration)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def perf_count(proc, duration):
    try:
        _, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        die("perf stat did not finish")
    for line in err.decode().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_sendto"):
            return int(fields[0]) if fields[0].isdigit() else -1
    die(f"no count in perf output: {err.decode()!r}")


def pct(sorted_ns, p):
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, int(round(p / 100 * (len(sorted_ns) - 1))))
    return sorted_ns[k] / 1e6


# ---------------------------------------------------------------- one run


def run(args):
    server = Server(args.binary, args.backend, args.trigger)
    attacker = None
    fields = {"label": args.label, "mode": args.mode,
              "backend": server.backend, "trigger": server.trigger}
    try:
        if args.mode == "flood":
            attacker = Attacker(server.port)
            queued, srv_tx, att_rx = attacker.fill(args.min_queued, args.max_queued)
            fields.update(queued_before=queued, kernel_before=srv_tx + att_rx)

        stop = threading.Event()
        flood_result = {}
        if attacker:
            def flood():
                flood_result["r"] = attacker.flood(args.rate, stop)
            flooder = threading.Thread(target=flood, daemon=True)
            flooder.start()
            time.sleep(args.lead)

        perf = perf_sendto(server.pid, args.duration)
        cpu0 = cpu_seconds(server.pid)
        lat, errors = good_client(server.port, args.duration)
        count = perf_count(perf, args.duration)
        cpu1 = cpu_seconds(server.pid)

        if attacker:
            stop.set()
            flooder.join(timeout=10)
            sent, dropped, secs = flood_result.get("r", (0, 0, 0))
            fields.update(flood_bytes=sent, flood_unsent=dropped,
                          flood_s=round(secs, 2))
            attacker.sock.setblocking(True)
            queued, srv_tx, att_rx = attacker.server_queued()
            fields.update(queued_after=queued if queued is not None else "unread",
                          kernel_after=srv_tx + att_rx)

        lat.sort()
        fields.update(sendto=count, cpu_s=round(cpu1 - cpu0, 2),
                      p50_ms=round(pct(lat, 50), 3), p99_ms=round(pct(lat, 99), 3),
                      p999_ms=round(pct(lat, 99.9), 3),
                      max_ms=round(lat[-1] / 1e6 if lat else float("nan"), 3),
                      requests=len(lat), errors=errors)
    finally:
        if attacker:
            attacker.close()
        server.stop()
    print(" ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


# ---------------------------------------------------------------- summary


def summarize(paths):
    rows = {}
    order = []
    for path in paths:
        with open(path) as f:
            for line in f:
                kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
                if "sendto" not in kv:
                    continue
                key = (kv["mode"], kv["backend"], kv["trigger"], kv["label"])
                if key not in rows:
                    rows[key] = []
                    order.append(key)
                rows[key].append(kv)
    print("| mode | backend | trigger | code | runs | sendto in 4 s | server CPU s"
          " | good p50 ms | good p99 ms | good p99.9 ms | good requests"
          " | server queue KiB |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(order, key=lambda k: (k[0] != "baseline", k[1], k[2], k[3])):
        rs = rows[key]

        def med(name, fmt, spread=False):
            vals = sorted(float(r[name]) for r in rs if name in r)
            if not vals:
                return "-"
            text = fmt.format(statistics.median(vals))
            if spread and len(vals) > 1:
                text += f" ({fmt.format(vals[0])}-{fmt.format(vals[-1])})"
            return text
        q = [int(r["queued_before"]) / 1024 for r in rs if "queued_before" in r]
        qs = f"{min(q):.0f}-{max(q):.0f}" if q else "-"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {len(rs)} "
              f"| {med('sendto', '{:,.0f}', True)} | {med('cpu_s', '{:.2f}', True)} "
              f"| {med('p50_ms', '{:.3f}', True)} | {med('p99_ms', '{:.3f}', True)} "
              f"| {med('p999_ms', '{:.2f}', True)} "
              f"| {med('requests', '{:,.0f}', True)} | {qs} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", help="path to a built examples/calc")
    ap.add_argument("--backend", default="epoll", choices=["epoll", "poll", "select"])
    ap.add_argument("--trigger", choices=["level", "edge"])
    ap.add_argument("--mode", default="flood", choices=["flood", "baseline"])
    ap.add_argument("--label", default="-", help="tag printed with the result")
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--lead", type=float, default=0.25,
                    help="seconds of flood before measuring starts")
    ap.add_argument("--rate", type=float, default=2_000_000, help="flood bytes/s")
    ap.add_argument("--min-queued", type=int, default=128 * 1024)
    ap.add_argument("--max-queued", type=int, default=900 * 1024)
    ap.add_argument("--summarize", nargs="+", metavar="FILE",
                    help="print medians of result lines in FILEs and exit")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if not args.binary:
        ap.error("--binary is required")
    if not 0 < args.duration <= 60:
        ap.error("--duration must be in (0, 60]")
    run(args)


if __name__ == "__main__":
    main()
