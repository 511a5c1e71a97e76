//! Score assignment shared by `rfm_score`, `rfm_thresholds` and `rfm_score_fixed`.
//!
//! Everything here works in "goodness" order: a larger value is a better
//! customer. Recency is handled by the callers, which negate days before
//! binning and translate cut points back to days.
//!
//! Three methods:
//! - [`quantile_scores`]: tie-aware balanced quantiles. Distinct values are
//!   never split, skewed data never fails, and every score from 1 to `bins` is
//!   used whenever there are at least `bins` distinct values.
//! - [`ntile_scores`]: the SQL standard `NTILE` bucket sizes.
//! - fixed cut points, applied by [`score_ascending`] / [`score_recency`].

/// Scores for the distinct values of one dimension, by tie-aware balanced
/// quantiles.
///
/// `counts[i]` is how many rows hold the i-th smallest distinct value. The
/// result gives the score (1..=`bins`) of each distinct value, non-decreasing.
///
/// With `D` distinct values and `N` rows:
/// - `D >= bins`: the values are cut into exactly `bins` contiguous runs. Runs
///   are filled greedily from the worst value; each run takes the next value
///   while that brings its row count closer to an equal share of the rows not
///   yet placed (`remaining rows / remaining runs`), and always leaves at least
///   one distinct value for each run still to fill. Re-targeting after every run
///   keeps one heavy tie (most customers bought once) from starving the rest.
/// - `D < bins`: each distinct value is its own run and the runs spread evenly
///   over 1..=`bins`, worst at 1 and best at `bins` (two values score 1 and
///   `bins`).
/// - `D == 1`: every row scores 1, as there is nothing to rank.
pub fn quantile_scores(counts: &[usize], bins: usize) -> Vec<u32> {
    let distinct = counts.len();
    if distinct <= 1 {
        return vec![1; distinct];
    }
    if distinct < bins {
        return (0..distinct)
            .map(|i| {
                1 + (i * (bins - 1) + (distinct - 1) / 2).div_euclid(distinct - 1) as u32
            })
            .collect();
    }

    let total: usize = counts.iter().sum();
    let mut scores = Vec::with_capacity(distinct);
    let mut placed = 0usize;
    let mut next = 0usize;
    for run in 0..bins {
        let runs_left = bins - run;
        if runs_left == 1 {
            scores.resize(distinct, bins as u32);
            break;
        }
        let target = placed as f64 + (total - placed) as f64 / runs_left as f64;
        placed += counts[next];
        scores.push(run as u32 + 1);
        next += 1;
        while distinct - next > runs_left - 1 {
            let with_next = placed + counts[next];
            if (with_next as f64 - target).abs() < (placed as f64 - target).abs() {
                placed = with_next;
                scores.push(run as u32 + 1);
                next += 1;
            } else {
                break;
            }
        }
    }
    scores
}

/// SQL standard `NTILE` bucket numbers for `rows` rows already sorted from
/// worst to best: with `base = rows / bins` and `extra = rows % bins`, the first
/// `extra` buckets hold `base + 1` rows and the rest hold `base`.
pub fn ntile_scores(rows: usize, bins: usize) -> Vec<u32> {
    let base = rows / bins;
    let extra = rows % bins;
    let large = extra * (base + 1);
    (0..rows)
        .map(|i| {
            let bucket = if i < large {
                i / (base + 1)
            } else {
                extra + (i - large) / base.max(1)
            };
            bucket as u32 + 1
        })
        .collect()
}

/// pandas `qcut(values, q, duplicates="drop")` bin codes (0-based) for values
/// sorted ascending, and the number of bins left.
///
/// Edges are the linearly interpolated quantiles at `0, 1/q, ..., 1` (numpy's
/// default); equal edges merge, so heavy ties give fewer bins instead of an
/// error. Bins are right-closed, `(e[i], e[i+1]]`, and the first also holds
/// its lower edge. This is how PyMC-Marketing's `rfm_segments` makes quartiles.
pub fn qcut_codes(sorted: &[f64], q: usize) -> (Vec<u32>, usize) {
    let n = sorted.len();
    if n == 0 {
        return (Vec::new(), 0);
    }
    let quantile = |p: f64| {
        let pos = p * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    };
    let mut edges: Vec<f64> = (0..=q).map(|i| quantile(i as f64 / q as f64)).collect();
    edges.dedup();
    let bins = edges.len().saturating_sub(1).max(1);
    let codes = sorted
        .iter()
        .map(|v| {
            let above = edges[1..].iter().take_while(|e| v > *e).count();
            above.min(bins - 1) as u32
        })
        .collect();
    (codes, bins)
}

/// Cut points that reproduce `scores` for ascending-is-better values
/// (frequency, monetary): `cut[k-1]` is the largest value scoring `k` or less,
/// for `k` in `1..bins`. Applied by [`score_ascending`].
///
/// `values` and `scores` run in ascending value order.
pub fn cuts_ascending(values: &[f64], scores: &[u32], bins: usize) -> Vec<f64> {
    let lowest = values.first().copied().unwrap_or(0.0);
    (1..bins as u32)
        .map(|k| {
            values
                .iter()
                .zip(scores)
                .filter(|(_, s)| **s <= k)
                .map(|(v, _)| *v)
                .fold(lowest, f64::max)
        })
        .collect()
}

/// Cut points in days that reproduce recency `scores`, ascending: for each `k`
/// in `1..bins` the largest number of days that still scores above `k` (one
/// day below the smallest value when none does). Applied by [`score_recency`].
///
/// `days` and `scores` run in ascending day order.
pub fn cuts_recency(days: &[f64], scores: &[u32], bins: usize) -> Vec<f64> {
    let below = days.first().map_or(-1.0, |d| d - 1.0);
    (1..bins as u32)
        .rev()
        .map(|k| {
            days.iter()
                .zip(scores)
                .filter(|(_, s)| **s > k)
                .map(|(d, _)| *d)
                .fold(below, f64::max)
        })
        .collect()
}

/// Score of an ascending-is-better value against cut points: one plus the
/// number of cuts the value is strictly above, so bins are `(cut[k-1], cut[k]]`.
pub fn score_ascending(value: f64, cuts: &[f64]) -> u32 {
    1 + cuts.iter().filter(|c| value > **c).count() as u32
}

/// Score of a recency in days against cut points: one plus the number of cuts
/// the days are at or below, so with cuts `30|90|180|365` and 5 bins, 30 days or
/// fewer score 5 and more than 365 days score 1.
pub fn score_recency(days: f64, cuts: &[f64]) -> u32 {
    1 + cuts.iter().filter(|c| days <= **c).count() as u32
}

/// Groups a sorted slice into its distinct values and their counts.
pub fn distinct_counts(sorted: &[f64]) -> (Vec<f64>, Vec<usize>) {
    let mut values: Vec<f64> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    for &v in sorted {
        if values.last() == Some(&v) {
            if let Some(n) = counts.last_mut() {
                *n += 1;
            }
        } else {
            values.push(v);
            counts.push(1);
        }
    }
    (values, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores_of(mut rows: Vec<f64>, bins: usize) -> Vec<(f64, u32)> {
        rows.sort_by(f64::total_cmp);
        let (values, counts) = distinct_counts(&rows);
        values
            .into_iter()
            .zip(quantile_scores(&counts, bins))
            .collect()
    }

    #[test]
    fn skewed_frequencies_score_without_error_and_keep_order() {
        let eight = scores_of(vec![1., 1., 1., 1., 1., 1., 2., 5.], 5);
        assert_eq!(eight, vec![(1., 1), (2., 3), (5., 5)]);
        let six = scores_of(vec![1., 1., 1., 1., 1., 2.], 5);
        assert_eq!(six, vec![(1., 1), (2., 5)]);
    }

    #[test]
    fn distinct_values_use_the_whole_range_in_equal_runs() {
        let got = scores_of((1..=10).map(f64::from).collect(), 5);
        let scores: Vec<u32> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(scores, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn heavy_tie_does_not_starve_the_other_runs() {
        let mut rows = vec![1.0; 90];
        rows.extend((2..=11).map(f64::from));
        let got = scores_of(rows, 5);
        let mut per_score = [0usize; 5];
        for (v, s) in &got {
            per_score[*s as usize - 1] += if *v == 1.0 { 90 } else { 1 };
        }
        assert_eq!(per_score, [90, 2, 3, 2, 3]);
    }

    #[test]
    fn one_distinct_value_scores_one() {
        assert_eq!(quantile_scores(&[7], 5), vec![1]);
        assert!(quantile_scores(&[], 5).is_empty());
    }

    #[test]
    fn ntile_sizes_follow_the_sql_standard() {
        let sizes = |rows, bins| {
            let mut n = vec![0; bins];
            for s in ntile_scores(rows, bins) {
                n[s as usize - 1] += 1;
            }
            n
        };
        assert_eq!(sizes(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(sizes(32, 5), vec![7, 7, 6, 6, 6]);
        assert_eq!(sizes(3, 5), vec![1, 1, 1, 0, 0]);
    }

    #[test]
    fn qcut_merges_tied_edges_like_pandas() {
        // pandas.qcut([1,1,1,1,1,1,2,5], 4, duplicates="drop") has edges
        // [1, 1.25, 5]: two bins.
        let (codes, bins) = qcut_codes(&[1., 1., 1., 1., 1., 1., 2., 5.], 4);
        assert_eq!(bins, 2);
        assert_eq!(codes, vec![0, 0, 0, 0, 0, 0, 1, 1]);
        // Eight distinct values: edges [1, 2.75, 4.5, 6.25, 8], two per bin.
        let (codes, bins) = qcut_codes(&[1., 2., 3., 4., 5., 6., 7., 8.], 4);
        assert_eq!(bins, 4);
        assert_eq!(codes, vec![0, 0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(qcut_codes(&[3., 3.], 4), (vec![0, 0], 1));
    }

    #[test]
    fn cuts_reproduce_quantile_scores() {
        let values = [1.0, 2.0, 5.0];
        let scores = [1, 3, 5];
        let cuts = cuts_ascending(&values, &scores, 5);
        assert_eq!(cuts, vec![1.0, 1.0, 2.0, 2.0]);
        for (v, s) in values.iter().zip(scores) {
            assert_eq!(score_ascending(*v, &cuts), s);
        }
        let days = [3.0, 10.0, 40.0, 200.0];
        let r = [5, 4, 2, 1];
        let cuts = cuts_recency(&days, &r, 5);
        for (d, s) in days.iter().zip(r) {
            assert_eq!(score_recency(*d, &cuts), s, "days {d} cuts {cuts:?}");
        }
    }

    #[test]
    fn fixed_recency_cuts_are_inclusive() {
        let cuts = [30.0, 90.0, 180.0, 365.0];
        assert_eq!(score_recency(0.0, &cuts), 5);
        assert_eq!(score_recency(30.0, &cuts), 5);
        assert_eq!(score_recency(31.0, &cuts), 4);
        assert_eq!(score_recency(366.0, &cuts), 1);
        assert_eq!(score_ascending(1.0, &[1.0, 2.0]), 1);
        assert_eq!(score_ascending(1.5, &[1.0, 2.0]), 2);
    }
}
