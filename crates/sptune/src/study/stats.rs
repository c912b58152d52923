//! Intervals for a study's aggregates: the two-sided 95 % Student-t interval of a mean, and of
//! the mean of paired differences (one pair per seed).
//!
//! For values `v_1 … v_n`:
//!
//! - mean `m = (1/n) Σ v_i`,
//! - sample standard deviation `s = √( Σ (v_i − m)² / (n − 1) )`,
//! - half-width `h = t_{0.975, n−1} · s / √n`,
//!
//! where `t_{0.975, df}` is the 0.975 quantile of Student's t distribution with `df` degrees of
//! freedom (computed with `statrs`, for any `df`, not read from a table). The interval is
//! `m ± h`.

use statrs::distribution::{ContinuousCDF, StudentsT};

use super::results::Interval;

/// The 0.975 quantile `t_{0.975, df}` of Student's t distribution with `df` degrees of freedom
/// (location 0, scale 1): the factor of a two-sided 95 % interval. NaN for `df = 0`.
///
/// E.g. 12.706 for `df = 1`, 2.776 for 4, 2.228 for 10, 2.086 for 20, 2.042 for 30; it tends
/// to the normal 1.960 as `df` grows.
pub fn t_quantile_975(df: usize) -> f64 {
    if df == 0 {
        return f64::NAN;
    }
    match StudentsT::new(0.0, 1.0, df as f64) {
        Ok(t) => t.inverse_cdf(0.975),
        Err(_) => f64::NAN,
    }
}

/// Mean of `v` and the half-width of its two-sided 95 % Student-t interval:
/// `m = (1/n) Σ v_i`, `s = √( Σ (v_i − m)² / (n − 1) )`, `half_width = t_{0.975, n−1} · s / √n`.
///
/// `n = 1`: the mean and a NaN half-width; `n = 0`: both NaN.
pub fn mean_ci95(v: &[f64]) -> Interval {
    let n = v.len();
    if n == 0 {
        return Interval {
            mean: f64::NAN,
            half_width: f64::NAN,
            n,
        };
    }
    let nf = n as f64;
    let mean = v.iter().sum::<f64>() / nf;
    if n == 1 {
        return Interval {
            mean,
            half_width: f64::NAN,
            n,
        };
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let half_width = t_quantile_975(n - 1) * var.sqrt() / nf.sqrt();
    Interval {
        mean,
        half_width,
        n,
    }
}

/// The 95 % interval ([`mean_ci95`]) of the paired differences `d_i = a_i − b_i` (e.g. one
/// scheme's accuracy minus L2's, seed by seed). None when the lengths differ or are 0.
pub fn paired_diff(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    Some(mean_ci95(&d))
}

/// The share of the variance between groups (one-way random-effects ANOVA, the ICC(1)
/// estimator): `σ²_b / (σ²_b + σ²_w)` with `σ²_w = MSW` and `σ²_b = max(0, (MSB − MSW) / n0)`,
/// `n0 = (N − Σ n_i² / N) / (k − 1)` (unequal group sizes allowed). For a study's sources:
/// how much of a figure's spread is the pretrained source rather than the fine-tuning seed.
/// None with fewer than two groups, no degree of freedom within groups, or no variance.
pub fn between_group_share(groups: &[Vec<f64>]) -> Option<f64> {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    let k = groups.len();
    let n: usize = groups.iter().map(|g| g.len()).sum();
    if k < 2 || n <= k {
        return None;
    }
    let (kf, nf) = (k as f64, n as f64);
    let grand = groups.iter().flat_map(|g| g.iter()).sum::<f64>() / nf;
    let mut ssb = 0.0;
    let mut ssw = 0.0;
    for g in &groups {
        let m = g.iter().sum::<f64>() / g.len() as f64;
        ssb += g.len() as f64 * (m - grand).powi(2);
        ssw += g.iter().map(|x| (x - m).powi(2)).sum::<f64>();
    }
    let msb = ssb / (kf - 1.0);
    let msw = ssw / (nf - kf);
    let n0 = (nf
        - groups
            .iter()
            .map(|g| (g.len() * g.len()) as f64)
            .sum::<f64>()
            / nf)
        / (kf - 1.0);
    let between = ((msb - msw) / n0).max(0.0);
    let total = between + msw;
    (total > 0.0).then(|| between / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Expected values from a standard printed t table (two-sided 95 %, i.e. the 0.975
    /// column), to 3 decimals.
    #[test]
    fn t_quantile_matches_standard_table() {
        for (df, want) in [(1, 12.706), (4, 2.776), (10, 2.228), (30, 2.042)] {
            let got = t_quantile_975(df);
            assert!(close(got, want, 5e-4), "df {df}: {got} vs table {want}");
        }
    }

    /// df = 20 is past where a short hand table would stop (and fall back to the normal
    /// 1.960); the table gives 2.086.
    #[test]
    fn t_quantile_df20_is_not_normal() {
        let got = t_quantile_975(20);
        assert!(close(got, 2.086, 5e-4), "{got}");
        assert!(got - 1.96 > 0.1);
    }

    /// Large df tends to the normal quantile 1.959964; df = 0 has none.
    #[test]
    fn t_quantile_limits() {
        assert!(close(t_quantile_975(100_000), 1.959964, 1e-4));
        assert!(t_quantile_975(0).is_nan());
    }

    /// [1, 2, 3, 4, 5] by hand: mean 3, squared deviations 4+1+0+1+4 = 10, s² = 10/4 = 2.5,
    /// half = 2.776 · √2.5 / √5 = 2.776 · 0.70711 = 1.963.
    #[test]
    fn mean_ci95_of_one_to_five_by_hand() {
        let ci = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(ci.n, 5);
        assert!(close(ci.mean, 3.0, 1e-12));
        assert!(close(ci.half_width, 1.963, 1e-3), "{}", ci.half_width);
    }

    /// n = 1: the mean, no width; n = 0: nothing.
    #[test]
    fn mean_ci95_small_n() {
        let one = mean_ci95(&[7.5]);
        assert_eq!(one.n, 1);
        assert_eq!(one.mean, 7.5);
        assert!(one.half_width.is_nan());
        let none = mean_ci95(&[]);
        assert_eq!(none.n, 0);
        assert!(none.mean.is_nan() && none.half_width.is_nan());
    }

    /// Constant values: zero spread, zero width.
    #[test]
    fn mean_ci95_constant_has_zero_width() {
        let ci = mean_ci95(&[4.0, 4.0, 4.0]);
        assert_eq!(ci.mean, 4.0);
        assert_eq!(ci.half_width, 0.0);
    }

    /// a = [80, 82, 85], b = [78, 81, 81] by hand: d = [2, 1, 4], mean 7/3 = 2.3333,
    /// deviations (−1/3, −4/3, 5/3), squares sum (1 + 16 + 25)/9 = 42/9, s² = 21/9 = 7/3,
    /// s = 1.52753; t_{0.975, 2} = 4.303 (table); half = 4.303 · 1.52753 / √3 = 3.795.
    #[test]
    fn paired_diff_by_hand() {
        let ci = paired_diff(&[80.0, 82.0, 85.0], &[78.0, 81.0, 81.0]).unwrap();
        assert_eq!(ci.n, 3);
        assert!(close(ci.mean, 7.0 / 3.0, 1e-12));
        assert!(close(ci.half_width, 3.795, 1e-3), "{}", ci.half_width);
    }

    /// Pairing removes the shared seed effect: the unpaired widths are large, the paired one
    /// is 0 when the difference is the same every seed.
    #[test]
    fn paired_diff_constant_difference() {
        let a = [70.0, 80.0, 90.0];
        let b = [69.0, 79.0, 89.0];
        let ci = paired_diff(&a, &b).unwrap();
        assert!(close(ci.mean, 1.0, 1e-12));
        assert!(close(ci.half_width, 0.0, 1e-12));
        assert!(mean_ci95(&a).half_width > 10.0);
    }

    /// Different lengths or no pairs: None.
    #[test]
    fn paired_diff_none() {
        assert!(paired_diff(&[1.0, 2.0], &[1.0]).is_none());
        assert!(paired_diff(&[], &[]).is_none());
    }

    #[test]
    fn between_group_share_by_hand() {
        // {1,2,3} and {7,8,9}: MSB = 54, MSW = 1, n0 = 3, σ²_b = 53/3: share 53/56
        let s = between_group_share(&[vec![1.0, 2.0, 3.0], vec![7.0, 8.0, 9.0]]).unwrap();
        assert!(close(s, 53.0 / 56.0, 1e-12), "{s}");
        // unequal sizes {1,2} and {4,5,6}: MSB = 14.7, MSW = 2.5/3, n0 = (5 - 13/5) = 2.4
        let msw = 2.5 / 3.0;
        let b = (14.7 - msw) / 2.4;
        let s = between_group_share(&[vec![1.0, 2.0], vec![4.0, 5.0, 6.0]]).unwrap();
        assert!(close(s, b / (b + msw), 1e-12), "{s}");
        // the same spread in every group and equal means: nothing between groups
        let s = between_group_share(&[vec![1.0, 3.0], vec![3.0, 1.0]]).unwrap();
        assert_eq!(s, 0.0);
        // all the spread between groups
        let s = between_group_share(&[vec![2.0, 2.0], vec![5.0, 5.0]]).unwrap();
        assert_eq!(s, 1.0);
        assert_eq!(between_group_share(&[vec![1.0, 2.0]]), None);
        assert_eq!(between_group_share(&[vec![1.0], vec![2.0]]), None);
        assert_eq!(between_group_share(&[vec![1.0, 1.0], vec![1.0, 1.0]]), None);
    }
}
