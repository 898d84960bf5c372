#!/usr/bin/env python3
"""Writes the reference fixtures for cambio's drift module to tests/fixtures/drift/.

Run from the crate root:  python3 tests/reference/drift_fixtures.py
Needs river (0.26.1), scipy, statsmodels (0.15), numpy. Every fixture records the library and version
that produced it. Streams are stored in the fixture (rounded *before* being fed to the reference), so the
Rust tests feed exactly the values the reference saw.
"""
import json
import os
import random

import numpy as np
import river
import scipy
import statsmodels
from river import drift, linear_model, preprocessing
from river.datasets import synth
from scipy import stats
from statsmodels.regression.recursive_ls import RecursiveLS

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "drift")


def detections(detector, stream):
    out = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


def write(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
    print(path, os.path.getsize(path), "bytes")


def river_streams():
    rng = random.Random(12345)
    docstring = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    docstring = [float(v) for v in docstring]

    friedman = synth.FriedmanDrift(drift_type="gra", position=(1000, 2000), seed=42)
    friedman_y = [round(y, 4) for _, y in friedman.take(3000)]

    # Absolute prequential error of a linear model on the local-expanding-abrupt Friedman stream.
    lea = synth.FriedmanDrift(drift_type="lea", position=(1000, 2000, 3000), seed=7)
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    abs_err = []
    for x, y in lea.take(3000):
        abs_err.append(round(abs(y - model.predict_one(x)), 4))
        model.learn_one(x, y)

    streams = {"docstring": docstring, "friedman_gra_y": friedman_y, "friedman_lea_abs_error": abs_err}
    return streams


def main():
    os.makedirs(OUT, exist_ok=True)
    streams = river_streams()
    adwin_cases = []
    ph_cases = []
    adwin_params = [
        {},
        {"delta": 0.01, "clock": 1, "max_buckets": 3, "min_window_length": 10, "grace_period": 30},
        {"delta": 0.5, "clock": 4},
    ]
    ph_params = [{}, {"threshold": 20.0, "delta": 0.05, "mode": "up"}, {"threshold": 30.0, "mode": "down"}]
    for name, s in streams.items():
        for p in adwin_params:
            adwin_cases.append({"stream": name, "params": p, "detections": detections(drift.ADWIN(**p), s)})
        for p in ph_params:
            ph_cases.append({"stream": name, "params": p, "detections": detections(drift.PageHinkley(**p), s)})
    write(
        "river.json",
        {
            "library": "river",
            "version": river.__version__,
            "note": "docstring = river ADWIN/PageHinkley docstring stream (random.Random(12345)); "
            "friedman_gra_y = synth.FriedmanDrift(gra, (1000, 2000), seed=42) targets rounded to 4 dp; "
            "friedman_lea_abs_error = |y - y_hat| of StandardScaler|LinearRegression, predict-then-learn, "
            "on FriedmanDrift(lea, (1000, 2000, 3000), seed=7), rounded to 4 dp",
            "streams": streams,
            "adwin": adwin_cases,
            "page_hinkley": ph_cases,
        },
    )

    # statsmodels: CUSUM / CUSUM of squares of recursive residuals of a constant-mean model.
    rng = np.random.default_rng(2024)
    y = np.round(np.concatenate([rng.standard_normal(80), 1.5 + 2.0 * rng.standard_normal(40)]), 6)
    res = RecursiveLS(y, np.ones(len(y))).fit()
    d = int(max(res.nobs_diffuse, res.loglikelihood_burn))
    sm = {
        "library": "statsmodels",
        "version": statsmodels.__version__,
        "note": "RecursiveLS(y, ones).fit(); bounds at points [d, nobs]",
        "y": y.tolist(),
        "d": d,
        "resid_recursive": res.resid_recursive[d:].tolist(),
        "cusum": res.cusum.tolist(),
        "cusum_squares": res.cusum_squares.tolist(),
        "cusum_bounds": {
            str(a): res._cusum_significance_bounds(a)[1].tolist() for a in (0.01, 0.05, 0.10)
        },
        "cusum_squares_bounds": {
            str(a): [v.tolist() for v in res._cusum_squares_significance_bounds(a)] for a in (0.01, 0.05, 0.1)
        },
    }
    write("statsmodels.json", sm)

    # scipy: KS and Wasserstein; numpy for PSI on reference deciles.
    rng = np.random.default_rng(99)
    ref = np.round(rng.standard_t(4, 300), 6)
    cur = np.round(0.3 + 1.3 * rng.standard_t(4, 200), 6)
    ks = stats.ks_2samp(ref, cur, method="asymp")
    en = len(ref) * len(cur) / (len(ref) + len(cur))
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    eps = 1e-4
    p_ref = np.maximum(np.bincount(np.digitize(ref, edges), minlength=10) / len(ref), eps)
    p_cur = np.maximum(np.bincount(np.digitize(cur, edges), minlength=10) / len(cur), eps)
    psi = float(np.sum((p_cur - p_ref) * np.log(p_cur / p_ref)))
    write(
        "scipy.json",
        {
            "library": "scipy",
            "version": scipy.__version__,
            "numpy_version": np.__version__,
            "note": "ks_2samp(method='asymp'); kstwobign.sf(D*sqrt(nm/(n+m))) is the Kolmogorov-limit p-value "
            "cambio computes; PSI with numpy quantile deciles, digitize, eps 1e-4",
            "reference": ref.tolist(),
            "current": cur.tolist(),
            "ks_statistic": float(ks.statistic),
            "ks_pvalue_scipy_asymp": float(ks.pvalue),
            "ks_pvalue_kstwobign": float(stats.kstwobign.sf(ks.statistic * np.sqrt(en))),
            "wasserstein": float(stats.wasserstein_distance(ref, cur)),
            "reference_std": float(np.std(ref)),
            "psi_edges": edges.tolist(),
            "psi": psi,
        },
    )


if __name__ == "__main__":
    main()
