#!/usr/bin/env python3
"""The live archive end to end: a real nats-server with JetStream, N ticks published into the FX stream
(`cambio replay SCENARIO --nats URL`, as many times as needed), then `cambio archive` started and timed
while it drains them into Parquet. The rate is read from the archive's own metrics
(`cambio_archive_rows_total`), sampled every 100 ms.

    python3 benches/archive_drain.py [--cambio target/release/cambio] [--scenario DIR] [--times 2] [--floor BIN]

Prints the messages in the stream, the floor (`cambio floor --drain`: the same stream read once through
a durable consumer set up as the archive's, nothing done with the messages, on the same server and
client, in the same run), the wall time from the archive's start to the last row durable, the rate while
it was draining (rows between the first and last file, over the time between them) and its ratio to the
floor.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rows(url):
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None
    m = re.search(r'^cambio_archive_rows_total\{kind="ticks"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cambio", default="target/release/cambio")
    ap.add_argument("--scenario", default="scenarios/eurusd_ticks_201405")
    ap.add_argument("--times", type=int, default=2)
    ap.add_argument("--floor", default=None, help="the cambio that runs `floor --drain` (default: --cambio)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cambio-drain-")
    port, mport, sport = free_port(), free_port(), free_port()
    url = f"nats://127.0.0.1:{port}"
    server = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(sport), "-sd",
         os.path.join(tmp, "store")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        lake = os.path.join(tmp, "lake")
        # A first run creates the streams and the durable consumers, then stops.
        a = subprocess.Popen([args.cambio, "archive", "--dir", lake, "--nats", url],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=30)
        total = 0
        t_pub = time.monotonic()
        for _ in range(args.times):
            out = subprocess.run([args.cambio, "replay", args.scenario, "--nats", url, "--max"],
                                 check=True, capture_output=True, text=True).stdout
            total += int(re.search(r"published (\d+) ticks", out).group(1))
        print(f"published {total} ticks in {time.monotonic() - t_pub:.1f} s", flush=True)
        # A publisher flat out on core NATS can outrun the stream's ingest: what counts is what it holds.
        def held():
            jsz = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sport}/jsz?streams=true", timeout=5))
            return sum(sd["state"]["messages"] for a in jsz["account_details"] for sd in a["stream_detail"]
                       if sd["name"] == "FX")
        total, before = held(), -1
        while total != before:
            # The server may still be storing what was published: wait until the count holds still.
            time.sleep(1)
            before, total = total, held()
        print(f"the FX stream holds {total} messages", flush=True)
        out = subprocess.run([args.floor or args.cambio, "floor", "--drain", "--nats", url, "--stream", "FX",
                              "--durable", "floor-drain"], check=True, capture_output=True, text=True,
                             timeout=600).stdout
        print(f"floor: {out.strip()}", flush=True)
        m = re.search(r"drained (\d+) messages in \S+ s: (\d+) messages/s", out)
        floor_rate = int(m.group(2)) if m and int(m.group(1)) == total else None
        murl = f"http://127.0.0.1:{mport}/metrics"
        start = time.monotonic()
        a = subprocess.Popen([args.cambio, "archive", "--dir", lake, "--nats", url, "--metrics",
                              f"127.0.0.1:{mport}", "--max-age", "1s"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples = []
        deadline = start + 600
        while time.monotonic() < deadline:
            n = rows(murl)
            t = time.monotonic() - start
            if n is not None:
                samples.append((t, n))
                if len(samples) % 10 == 0:
                    print(f"  {t:.1f} s: {n} rows", flush=True)
                if n >= total:
                    break
            time.sleep(0.1)
        a.send_signal(signal.SIGTERM)
        a.wait(timeout=60)
        t_end, n_end = samples[-1]
        moved = [(t, n) for (t, n) in samples if n > 0]
        t0, n0 = moved[0]
        # The last file before the end of the stream (the remainder rolls by age, 1 s later).
        steady = [(t, n) for (t, n) in moved if n < total] or moved
        t1, n1 = steady[-1]
        print(f"archived {n_end} rows in {t_end:.2f} s from start ({n_end / t_end:,.0f} rows/s overall)")
        if t1 > t0:
            rate = (n1 - n0) / (t1 - t0)
            print(f"draining rate between the first and the last full file: {rate:,.0f} rows/s")
            if floor_rate:
                print(f"archive / floor: {rate / floor_rate:.2f}")
        return 0 if n_end == total else 1
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
