#!/usr/bin/env python3
"""Writes the reference fixtures for cambio's `model` module (read by `tests/model_reference.rs`).

Run from the crate root:  python3 tests/reference/model_fixtures.py

Every fixture records the library and version that produced it. Everything is seeded, so re-running with the
same library versions reproduces the files byte for byte.
"""
import json
import os
from fractions import Fraction

import numpy as np
import padasip
import statsmodels
import statsmodels.api as sm
import filterpy
from filterpy.kalman import KalmanFilter
from statsmodels.tsa.statespace.structural import UnobservedComponents

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "model")
os.makedirs(OUT, exist_ok=True)


def padasip_version():
    try:
        from importlib.metadata import version

        return version("padasip")
    except Exception:  # pragma: no cover
        return "unknown"


def dump(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def rows(a):
    return [[float(v) for v in r] for r in np.asarray(a)]


def vec(a):
    return [float(v) for v in np.asarray(a)]


# 1. RLS with lambda = 1 vs statsmodels RecursiveLS (exact diffuse init) on macrodata cpi ~ const + m1.
data = sm.datasets.macrodata.load_pandas().data
X = sm.add_constant(data["m1"]).to_numpy()
y = data["cpi"].to_numpy()
res = sm.RecursiveLS(y, X).fit()


def exact_ols_path(X, y, k):
    """OLS on the first t+1 observations, t >= k-1, in exact rational arithmetic (a k = 2 closed form)."""
    assert k == 2
    a = b = d = u = v = Fraction(0)
    out = []
    for (x0, x1), yt in zip(X, y):
        x0, x1, yt = Fraction(x0), Fraction(x1), Fraction(yt)
        a, b, d, u, v = a + x0 * x0, b + x0 * x1, d + x1 * x1, u + x0 * yt, v + x1 * yt
        det = a * d - b * b
        out.append([float((d * u - b * v) / det), float((a * v - b * u) / det)] if det != 0 else [0.0, 0.0])
    return out


dump(
    "rls_statsmodels_macrodata.json",
    {
        "produced_by": f"statsmodels {statsmodels.__version__} RecursiveLS(cpi ~ const + m1), macrodata",
        "nobs_diffuse": int(res.nobs_diffuse),
        "x": rows(X),
        "y": vec(y),
        # filtered coefficients after observation t, shape (nobs, k)
        "coefficients": rows(res.recursive_coefficients.filtered.T),
        # resid_recursive: e_t / sqrt(1 + x_t' P_{t-1} x_t) (statsmodels: standardized forecast error * sqrt(scale))
        "resid_recursive": vec(res.resid_recursive),
        "final_params": vec(res.params),
        # Not from statsmodels: the same path in exact rational arithmetic (Python fractions), because
        # statsmodels' exact diffuse recursion carries ~1e-8 relative error through its first steps.
        "exact_ols_coefficients": exact_ols_path(X, y, 2),
    },
)

# 2. RLS with forgetting vs padasip FilterRLS (mu is the forgetting factor, P0 = I/eps, weights start at 0).
rng = np.random.default_rng(20240611)
n, N = 3, 150
xs = rng.normal(size=(N, n))
w_true = np.array([0.7, -1.2, 0.3])
drift = np.linspace(0.0, 0.8, N)  # a slowly moving first coefficient, so forgetting matters
ds = xs @ w_true + drift * xs[:, 0] + 0.05 * rng.normal(size=N)
cases = []
for lam in (0.98, 0.995):
    eps = 0.01
    f = padasip.filters.FilterRLS(n=n, mu=lam, eps=eps, w="zeros")
    ws, preds = [], []
    for k in range(N):
        preds.append(float(f.predict(xs[k])))
        f.adapt(ds[k], xs[k])  # predicts with the old weights, then updates
        ws.append(vec(f.w))
    cases.append({"forgetting": lam, "eps": eps, "predictions": preds, "weights": ws})
dump(
    "rls_padasip_forgetting.json",
    {
        "produced_by": f"padasip {padasip_version()} FilterRLS(n=3, mu=lambda, eps, w='zeros'), numpy seed 20240611",
        "x": rows(xs),
        "y": vec(ds),
        "cases": cases,
    },
)

# 3. Local level model vs statsmodels UnobservedComponents('local level') (exact diffuse) and filterpy.
rng = np.random.default_rng(7)
T = 200
obs_var, level_var = 0.04, 0.01
level = 3.0 + np.cumsum(np.sqrt(level_var) * rng.normal(size=T))
yy = level + np.sqrt(obs_var) * rng.normal(size=T)
uc = UnobservedComponents(yy, "local level", use_exact_diffuse=True)
params = np.array([obs_var, level_var])  # [sigma2.irregular, sigma2.level]
# tolerance = 0 disables statsmodels' steady-state shortcut (it freezes P once it has converged to within
# the tolerance, which leaves ~1e-8 relative differences); we always run the full recursion.
uc.ssm.tolerance = 0
ucr = uc.filter(params)
H = 10
fc = ucr.get_forecast(steps=H)

kf = KalmanFilter(dim_x=1, dim_z=1)
kf.F = np.array([[1.0]])
kf.H = np.array([[1.0]])
kf.Q = np.array([[level_var]])
kf.R = np.array([[obs_var]])
# The exact diffuse prior, after the first observation, is N(y_0, obs_var): start filterpy there.
kf.x = np.array([[yy[0]]])
kf.P = np.array([[obs_var]])
fp_states, fp_vars, fp_ll = [float(yy[0])], [obs_var], 0.0
for t in range(1, T):
    kf.predict()
    kf.update(yy[t])
    fp_states.append(float(kf.x[0, 0]))
    fp_vars.append(float(kf.P[0, 0]))
    fp_ll += float(kf.log_likelihood)

dump(
    "local_level.json",
    {
        "produced_by": (
            f"statsmodels {statsmodels.__version__} UnobservedComponents('local level', use_exact_diffuse=True,"
            " ssm.tolerance=0)"
            f".filter([obs_var, level_var]); filterpy {filterpy.__version__} KalmanFilter(dim_x=1) started at"
            " x=y0, P=obs_var; numpy seed 7"
        ),
        "obs_var": obs_var,
        "level_var": level_var,
        "y": vec(yy),
        "statsmodels_llf": float(ucr.llf),
        "statsmodels_filtered_level": vec(ucr.filtered_state[0]),
        "statsmodels_filtered_level_var": vec(ucr.filtered_state_cov[0, 0]),
        "statsmodels_forecast_mean": vec(fc.predicted_mean),
        "statsmodels_forecast_var": vec(fc.var_pred_mean),
        "filterpy_filtered_level": fp_states,
        "filterpy_filtered_level_var": fp_vars,
        "filterpy_loglik": fp_ll,
    },
)
