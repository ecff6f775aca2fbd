//! The statistics `eval` prints: a confidence interval for an accuracy and a paired test between two
//! decodings of the same problems.

/// The Wilson score interval for `successes` out of `n` at 95% (z = 1.959964): unlike the normal
/// approximation it stays inside [0, 1] and is usable at 0% or 100% (Wilson, JASA 1927).
pub fn wilson95(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The exact two-sided McNemar test: with `b` problems only the first decoding got right and `c` only
/// the second, the p-value of "both are equally accurate" is `min(1, 2 P[X <= min(b, c)])` for
/// `X ~ Binomial(b + c, 1/2)` (McNemar 1947, exact form).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P[X = i] = C(n, i) / 2^n, summed in log space so n in the thousands does not overflow.
    let ln_choose = |i: usize| -> f64 { ln_factorial(n) - ln_factorial(i) - ln_factorial(n - i) };
    let tail: f64 = (0..=b.min(c))
        .map(|i| (ln_choose(i) - n as f64 * std::f64::consts::LN_2).exp())
        .sum();
    (2.0 * tail).min(1.0)
}

/// A p-value to three decimals, or in scientific notation below 0.001 (never a bare "0.000").
pub fn format_p(p: f64) -> String {
    if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // 8 of 10: 0.490..0.943 (Newcombe, Stat. Med. 1998, table I, method 3).
        let (lo, hi) = wilson95(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        // 0 of 10 keeps a non-empty upper side; 10 of 10 a non-empty lower side.
        let (lo, hi) = wilson95(0, 10);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson95(10, 10);
        assert!(
            (lo - 0.7225).abs() < 1e-4 && (hi - 1.0).abs() < 1e-12,
            "{lo} {hi}"
        );
    }

    #[test]
    fn mcnemar_is_the_two_sided_binomial_tail() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 0 vs 5: 2 / 2^5.
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-12);
        // 2 vs 8: 2 (1 + 10 + 45) / 2^10, and symmetric.
        assert!((mcnemar_exact(2, 8) - 0.109375).abs() < 1e-12);
        assert!((mcnemar_exact(8, 2) - 0.109375).abs() < 1e-12);
        // Equal counts: p = 1 (capped).
        assert_eq!(mcnemar_exact(6, 6), 1.0);
    }
}
