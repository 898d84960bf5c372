//! `exp` for the small arguments of forecast intervals, as a fixed polynomial.
//!
//! Every forecast needs `exp` of a few log-returns (the mean shift and the interval half-widths), all
//! well inside ±1 on any real exchange rate and horizon. A Taylor polynomial evaluated by Horner's rule is
//! several times cheaper than libm's general `exp`, gives the same bits on every platform (libm's last
//! bit may differ between versions), and for |x| ≤ 1/8 the truncation error of the degree-11 polynomial
//! is below (1/8)¹²/12! ≈ 3e-20, far under rounding. Outside that range it defers to `f64::exp`.

/// Largest |x| taken by the polynomial.
const RANGE: f64 = 0.125;

/// 1/k! for k = 0..=11.
const INV_FACT: [f64; 12] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
];

/// `e^x`, exact to rounding level for |x| ≤ 1/8 (where it uses the polynomial), `f64::exp` elsewhere.
#[inline]
pub fn exp(x: f64) -> f64 {
    if !(-RANGE..=RANGE).contains(&x) {
        return x.exp();
    }
    let mut acc = INV_FACT[11];
    for &c in INV_FACT[..11].iter().rev() {
        acc = acc * x + c;
    }
    acc
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_libm_to_rounding_level() {
        let mut worst: f64 = 0.0;
        for i in -20_000..=20_000 {
            let x = i as f64 / 10_000.0;
            let (a, b) = (super::exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 1e-15, "{worst}");
        assert_eq!(super::exp(3.0), 3.0f64.exp());
        assert!(super::exp(f64::NAN).is_nan());
    }
}
