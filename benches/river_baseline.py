"""The Python baseline cambio is compared against: a River pipeline doing less work than cambio's engine.

Per tick: parse a JSON line, check it (finite, positive, not crossed, in order), update a River
LinearRegression (SGD) on lagged returns, and feed ADWIN and PageHinkley with the return. Prints ticks/s.

Usage (same machine, same run as `cargo bench --bench pipeline`, so the ratio is meaningful):
    python3 benches/river_baseline.py [ticks.jsonl] [max_ticks]
Without a file it builds JSON lines from ../shared/data/ticks/oanda_eurusd_ticks_201405.csv.
"""

import json
import math
import os
import sys
import time

import river
from river import drift, linear_model, optim

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.join(HERE, "..", "..", "shared", "data", "ticks", "oanda_eurusd_ticks_201405.csv")


def lines_from_csv(path, limit):
    out = []
    with open(path) as f:
        next(f)
        for i, row in enumerate(f):
            if i >= limit:
                break
            ts, bid, ask = row.strip().split(",")
            out.append(json.dumps({"pair": "EURUSD", "ts": ts, "bid": float(bid), "ask": float(ask),
                                   "source": "oanda", "seq": i + 1}))
    return out


def main():
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    if len(sys.argv) > 1 and sys.argv[1].endswith(".jsonl"):
        with open(sys.argv[1]) as f:
            lines = [l for _, l in zip(range(limit), f)]
    else:
        lines = lines_from_csv(DEFAULT_CSV, limit)
    model = linear_model.LinearRegression(optimizer=optim.SGD(0.01))
    adwin, ph = drift.ADWIN(), drift.PageHinkley()
    last_ts, last_mid, r1, r2 = "", None, 0.0, 0.0
    accepted = alarms = 0
    start = time.perf_counter()
    for line in lines:
        t = json.loads(line)
        bid, ask, ts = t.get("bid"), t.get("ask"), t.get("ts")
        if bid is None or ask is None or not (math.isfinite(bid) and math.isfinite(ask)):
            continue
        if bid <= 0 or ask <= 0 or bid > ask or ts < last_ts:
            continue
        last_ts = ts
        mid = 0.5 * (bid + ask)
        if last_mid is not None:
            r = math.log(mid / last_mid)
            x = {"r1": r1, "r2": r2}
            model.predict_one(x)
            model.learn_one(x, r * 1e4)
            r2, r1 = r1, r * 1e4
            adwin.update(r * 1e4)
            ph.update(r * 1e4)
            alarms += adwin.drift_detected + ph.drift_detected
        last_mid = mid
        accepted += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"river": river.__version__, "ticks": len(lines), "accepted": accepted,
                      "alarms": alarms, "seconds": round(elapsed, 3),
                      "ticks_per_sec": round(len(lines) / elapsed)}))


if __name__ == "__main__":
    main()
