//! Turning one column of recency, frequency or monetary values into scores.
//!
//! [`ScoreSpec`] is what the options string of `rfm_score`, `rfm_thresholds`
//! and `rfm_score_fixed` says (bins, method, cut points); [`score_column`]
//! applies it to the values of one window partition or aggregate group and
//! also returns the cut points that reproduce the result, so thresholds can
//! be shown and frozen.

use std::fmt::Write as _;

use datafusion::common::{HashMap, Result, exec_datafusion_err};

use crate::binning::{
    cuts_ascending, cuts_recency, distinct_counts, ntile_scores, qcut_codes,
    quantile_scores, score_ascending, score_recency,
};
use crate::options::Options;
use crate::segments::MAX_BINS;

/// The three RFM dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Days since the last purchase: fewer is better.
    Recency,
    /// Number of purchases: more is better.
    Frequency,
    /// Money spent: more is better.
    Monetary,
}

impl Dim {
    /// All three, in R, F, M order.
    pub const ALL: [Dim; 3] = [Dim::Recency, Dim::Frequency, Dim::Monetary];

    /// The argument name used in SQL and in messages.
    pub fn arg_name(self) -> &'static str {
        match self {
            Dim::Recency => "recency_days",
            Dim::Frequency => "frequency",
            Dim::Monetary => "monetary",
        }
    }

    /// The option key holding this dimension's cut points.
    pub fn cuts_key(self) -> &'static str {
        match self {
            Dim::Recency => "r_cuts",
            Dim::Frequency => "f_cuts",
            Dim::Monetary => "m_cuts",
        }
    }

    /// Larger-is-better value used for ranking.
    fn goodness(self, v: f64) -> f64 {
        if self == Dim::Recency { -v } else { v }
    }
}

/// How scores are assigned.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Tie-aware balanced quantiles ([`quantile_scores`]).
    Quantile,
    /// SQL standard `NTILE` buckets; ties follow the input order.
    Ntile,
    /// Caller's cut points, one list of `bins - 1` per dimension.
    Fixed([Vec<f64>; 3]),
    /// pandas `qcut` with tied edges merged ([`qcut_codes`]), as
    /// PyMC-Marketing's `rfm_segments` scores: with `k` bins left, scores run
    /// 1..k (recency k..1), so merged bins lower the top score.
    Qcut,
}

/// Parsed scoring options.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSpec {
    /// Number of scores, 2..=9; 5 by default.
    pub bins: usize,
    /// The method; quantile by default.
    pub method: Method,
}

/// The option keys scoring functions accept.
pub const SCORE_KEYS: [&str; 5] = ["bins", "method", "r_cuts", "f_cuts", "m_cuts"];

impl ScoreSpec {
    /// Reads `bins`, `method` and, for `method=fixed`, the three cut lists.
    pub fn from_options(options: &Options) -> Result<Self> {
        let bins = options.integer("bins", 5, 2, MAX_BINS as usize)?;
        let method = options.choice(
            "method",
            "quantile",
            &["quantile", "ntile", "fixed", "qcut"],
        )?;
        let method = match method {
            "ntile" => Method::Ntile,
            "qcut" => Method::Qcut,
            "fixed" => {
                let mut lists: [Vec<f64>; 3] = Default::default();
                for (dim, list) in Dim::ALL.iter().zip(lists.iter_mut()) {
                    let key = dim.cuts_key();
                    let cuts = options.numbers(key)?.ok_or_else(|| {
                        options.bad_value(
                            key,
                            "(missing)",
                            &format!("given with method=fixed: {} numbers", bins - 1),
                        )
                    })?;
                    if cuts.len() != bins - 1 || cuts.windows(2).any(|w| w[0] > w[1]) {
                        let raw = options.get(key).unwrap_or_default();
                        return Err(options.bad_value(
                            key,
                            raw,
                            &format!(
                                "{} non-decreasing numbers for bins={bins}",
                                bins - 1
                            ),
                        ));
                    }
                    *list = cuts;
                }
                Method::Fixed(lists)
            }
            _ => Method::Quantile,
        };
        if !matches!(method, Method::Fixed(_))
            && let Some(key) = ["r_cuts", "f_cuts", "m_cuts"]
                .iter()
                .find(|k| options.get(k).is_some())
        {
            let raw = options.get(key).unwrap_or_default();
            return Err(options.bad_value(
                key,
                raw,
                "given only with method=fixed (add method=fixed or drop it)",
            ));
        }
        Ok(Self { bins, method })
    }

    /// The options string that scores with these cut points as `method=fixed`.
    pub fn fixed_options(bins: usize, cuts: &[Vec<f64>; 3]) -> String {
        let mut out = format!("method=fixed, bins={bins}");
        for (dim, list) in Dim::ALL.iter().zip(cuts) {
            let _ = write!(out, ", {}=", dim.cuts_key());
            for (i, c) in list.iter().enumerate() {
                let sep = if i == 0 { "" } else { "|" };
                let _ = write!(out, "{sep}{c}");
            }
        }
        out
    }
}

/// Scores of one dimension, one per input value (`None` stays `None`), and the
/// cut points that reproduce them.
///
/// `values` must hold no NaN; callers check and report it. For `Ntile`, rows
/// with equal values keep their input order.
pub fn score_column(
    values: &[Option<f64>],
    dim: Dim,
    spec: &ScoreSpec,
) -> (Vec<Option<u32>>, Vec<f64>) {
    match rank(values, dim, spec, None) {
        Ranking::Fixed(cuts) => (fixed_scores(values, dim, cuts), cuts.clone()),
        Ranking::Sorted(ranked) => {
            (ranked.scores(values.len()), ranked.cuts(dim, spec.bins))
        }
    }
}

/// Sorts the positions of rows with equal values (given in ascending order)
/// into the order [`score_column_by`] gives them under `Ntile`.
pub type TieOrder<'a> = &'a (dyn Fn(&mut [usize]) + Sync);

/// The scores of [`score_column`] without its cut points, with `Ntile`
/// ordering rows of equal value by `ties` (then by position) instead of by
/// position alone.
///
/// Only a run of equal values that straddles a bucket edge is ordered: the
/// rows of a run inside one bucket get its score in any order. So a tie key
/// costs a sort of a few runs, not of every row.
pub fn score_column_by(
    values: &[Option<f64>],
    dim: Dim,
    spec: &ScoreSpec,
    ties: Option<TieOrder<'_>>,
) -> Vec<Option<u32>> {
    match rank(values, dim, spec, ties) {
        Ranking::Fixed(cuts) => fixed_scores(values, dim, cuts),
        Ranking::Sorted(ranked) => ranked.scores(values.len()),
    }
}

/// How a dimension is scored: by the caller's cut points, or by rank.
enum Ranking<'a> {
    Fixed(&'a Vec<f64>),
    Sorted(Ranked),
}

/// The present values in ascending order of goodness with their positions,
/// and the score of each.
struct Ranked {
    rows: Vec<(f64, usize)>,
    scores: Vec<u32>,
}

impl Ranked {
    /// The score of each of `len` input rows.
    fn scores(&self, len: usize) -> Vec<Option<u32>> {
        let mut scores = vec![None; len];
        for ((_, i), s) in self.rows.iter().zip(&self.scores) {
            scores[*i] = Some(*s);
        }
        scores
    }

    /// Cut points on the raw values in ascending order that reproduce the
    /// scores.
    fn cuts(self, dim: Dim, bins: usize) -> Vec<f64> {
        let mut raw: Vec<f64> = self.rows.iter().map(|(g, _)| dim.goodness(*g)).collect();
        let mut raw_scores = self.scores;
        if dim == Dim::Recency {
            raw.reverse();
            raw_scores.reverse();
            cuts_recency(&raw, &raw_scores, bins)
        } else {
            cuts_ascending(&raw, &raw_scores, bins)
        }
    }
}

fn fixed_scores(values: &[Option<f64>], dim: Dim, cuts: &[f64]) -> Vec<Option<u32>> {
    values
        .iter()
        .map(|v| v.map(|v| score_with(dim, v, cuts)))
        .collect()
}

fn rank<'a>(
    values: &[Option<f64>],
    dim: Dim,
    spec: &'a ScoreSpec,
    ties: Option<TieOrder<'_>>,
) -> Ranking<'a> {
    let bins = spec.bins;
    if let Method::Fixed(lists) = &spec.method {
        return Ranking::Fixed(
            &lists[Dim::ALL.iter().position(|d| *d == dim).unwrap_or(0)],
        );
    }

    let goodness: Vec<Option<f64>> =
        values.iter().map(|v| v.map(|v| dim.goodness(v))).collect();
    let mut rows = sorted_with_index(&goodness);
    drop(goodness);
    let scores = match spec.method {
        Method::Ntile => ntile_scores(rows.len(), bins),
        Method::Qcut => {
            // Bins are cut on the raw values; recency runs the other way.
            let mut raw: Vec<f64> = rows.iter().map(|(g, _)| dim.goodness(*g)).collect();
            if dim == Dim::Recency {
                raw.reverse();
            }
            let (codes, k) = qcut_codes(&raw, bins);
            let mut scores: Vec<u32> = codes
                .iter()
                .map(|c| {
                    if dim == Dim::Recency {
                        k as u32 - c
                    } else {
                        c + 1
                    }
                })
                .collect();
            if dim == Dim::Recency {
                scores.reverse();
            }
            scores
        }
        _ => {
            let goodness: Vec<f64> = rows.iter().map(|r| r.0).collect();
            let (_, counts) = distinct_counts(&goodness);
            let per_value = quantile_scores(&counts, bins);
            counts
                .iter()
                .zip(per_value)
                .flat_map(|(n, s)| std::iter::repeat_n(s, *n))
                .collect()
        }
    };
    if let (Method::Ntile, Some(ties)) = (&spec.method, ties) {
        order_straddling_runs(&mut rows, &scores, ties);
    }
    Ranking::Sorted(Ranked { rows, scores })
}

/// The present values with their positions, sorted by value (in `f64`'s
/// total order) and then by position.
///
/// Recency and frequency take few distinct values (days, purchase counts),
/// so they are placed by a counting sort: count each value, sort the
/// distinct ones, and drop every position into its value's run in input
/// order, two passes over the rows. Values with more distinct values than
/// [`COUNTING_SORT_VALUES`] (money) are sorted as packed `u128` keys, the
/// value's order-preserving bits above the position: the sort compares plain
/// integers, and as every key is distinct an unstable sort gives the one
/// stable order.
fn sorted_with_index(values: &[Option<f64>]) -> Vec<(f64, usize)> {
    if let Some(sorted) = counting_sorted(values) {
        return sorted;
    }
    let mut keys: Vec<u128> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (u128::from(ordered_bits(v)) << 64) | i as u128))
        .collect();
    keys.sort_unstable();
    keys.into_iter()
        .map(|k| (from_ordered_bits((k >> 64) as u64), k as u64 as usize))
        .collect()
}

/// Distinct values up to which [`sorted_with_index`] counts instead of
/// sorting; their table stays in the processor's cache.
const COUNTING_SORT_VALUES: usize = 1 << 14;

/// [`sorted_with_index`] by counting, or `None` when `values` holds more than
/// [`COUNTING_SORT_VALUES`] distinct values.
fn counting_sorted(values: &[Option<f64>]) -> Option<Vec<(f64, usize)>> {
    // Distinct values (as ordered bits) with their counts, then their starts.
    let mut runs: HashMap<u64, usize> = HashMap::new();
    let mut present = 0;
    for v in values.iter().flatten() {
        *runs.entry(ordered_bits(*v)).or_default() += 1;
        present += 1;
        if runs.len() > COUNTING_SORT_VALUES {
            return None;
        }
    }
    let mut distinct: Vec<u64> = runs.keys().copied().collect();
    distinct.sort_unstable();
    let mut start = 0;
    for bits in distinct {
        let count = runs.get_mut(&bits)?;
        (*count, start) = (start, start + *count);
    }
    let mut sorted = vec![(0.0, 0); present];
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let next = runs.get_mut(&ordered_bits(*v))?;
            sorted[*next] = (*v, i);
            *next += 1;
        }
    }
    Some(sorted)
}

/// Reorders the rows of each run of equal values in `rows` whose scores
/// differ by `ties`, so the run's lower scores go to the rows that come
/// first.
fn order_straddling_runs(rows: &mut [(f64, usize)], scores: &[u32], ties: TieOrder<'_>) {
    let mut start = 0;
    while start < rows.len() {
        let bits = rows[start].0.to_bits();
        let end = start
            + rows[start..]
                .iter()
                .position(|(v, _)| v.to_bits() != bits)
                .unwrap_or(rows.len() - start);
        if scores[start] != scores[end - 1] {
            let mut run: Vec<usize> = rows[start..end].iter().map(|r| r.1).collect();
            ties(&mut run);
            for (row, position) in rows[start..end].iter_mut().zip(run) {
                row.1 = position;
            }
        }
        start = end;
    }
}

/// Bits of `v` whose unsigned order is `f64::total_cmp`'s order.
fn ordered_bits(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_ordered_bits(bits: u64) -> f64 {
    f64::from_bits(if bits >> 63 == 1 {
        bits & !(1 << 63)
    } else {
        !bits
    })
}

/// The score of one value against cut points.
pub fn score_with(dim: Dim, value: f64, cuts: &[f64]) -> u32 {
    if dim == Dim::Recency {
        score_recency(value, cuts)
    } else {
        score_ascending(value, cuts)
    }
}

/// The error for a NaN or infinite input value.
pub fn non_finite_error(
    function: &str,
    dim: Dim,
    source: &str,
    value: f64,
) -> datafusion::common::DataFusionError {
    let n = Dim::ALL.iter().position(|d| *d == dim).unwrap_or(0) + 1;
    exec_datafusion_err!(
        "{function}: argument {n} ({}, {source}) must be a finite number; got {value}. \
         Filter or coalesce it first.",
        dim.arg_name()
    )
}

/// The fields of a score struct: `r`, `f`, `m` (INT) and `code` (VARCHAR,
/// the three scores as digits, e.g. `'545'`).
pub fn score_fields() -> datafusion::arrow::datatypes::Fields {
    use datafusion::arrow::datatypes::{DataType, Field};
    datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("r", DataType::Int32, true),
        Field::new("f", DataType::Int32, true),
        Field::new("m", DataType::Int32, true),
        Field::new("code", DataType::Utf8, true),
    ])
}

/// Builds the score struct array; the code is NULL when any score is NULL.
pub fn score_struct(
    scores: [Vec<Option<u32>>; 3],
) -> Result<datafusion::arrow::array::ArrayRef> {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int32Array, StringBuilder, StructArray};

    let [r, f, m] = scores;
    let mut code = StringBuilder::with_capacity(r.len(), 3 * r.len());
    let mut digits = String::with_capacity(3);
    for ((r, f), m) in r.iter().zip(&f).zip(&m) {
        let (Some(r), Some(f), Some(m)) = (r, f, m) else {
            code.append_null();
            continue;
        };
        digits.clear();
        for score in [r, f, m] {
            match char::from_digit(*score, 10) {
                Some(digit) => digits.push(digit),
                None => {
                    let _ = write!(digits, "{score}");
                }
            }
        }
        code.append_value(&digits);
    }
    let code = code.finish();
    let int = |v: Vec<Option<u32>>| -> ArrayRef {
        Arc::new(
            v.into_iter()
                .map(|s| s.map(|s| s as i32))
                .collect::<Int32Array>(),
        )
    };
    let columns = vec![int(r), int(f), int(m), Arc::new(code) as ArrayRef];
    Ok(Arc::new(StructArray::try_new(
        score_fields(),
        columns,
        None,
    )?))
}

/// The values of a `Float64` argument, rejecting NaN and infinities with an
/// error that names the function, the argument and its source.
pub fn finite_values(
    function: &str,
    dim: Dim,
    array: &datafusion::arrow::array::ArrayRef,
    source: &str,
) -> Result<Vec<Option<f64>>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Float64Type;

    let array =
        crate::args::cast_input(array, &datafusion::arrow::datatypes::DataType::Float64)?;
    let values = array.as_primitive::<Float64Type>();
    values
        .iter()
        .map(|v| match v {
            Some(x) if !x.is_finite() => Err(non_finite_error(function, dim, source, x)),
            other => Ok(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Both the counting sort (few distinct values) and the packed sort
    /// (many) order by value, then position.
    #[test]
    fn sorts_order_by_value_then_position() {
        let few = vec![
            Some(2.5),
            None,
            Some(-0.0),
            Some(0.0),
            Some(-7.25),
            Some(2.5),
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            Some(1e-300),
        ];
        assert!(super::counting_sorted(&few).is_some());
        let many: Vec<Option<f64>> = (0..3 * super::COUNTING_SORT_VALUES)
            .map(|i| (i % 7 != 0).then(|| ((i * 7919) % 40_000) as f64 - 0.5))
            .chain(few.iter().copied())
            .collect();
        assert!(super::counting_sorted(&many).is_none());
        for values in [few, many] {
            check_sorted(values);
        }
    }

    fn check_sorted(values: Vec<Option<f64>>) {
        let mut expected: Vec<(f64, usize)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (v, i)))
            .collect();
        expected.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let got = super::sorted_with_index(&values);
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!((g.0.to_bits(), g.1), (e.0.to_bits(), e.1));
        }
    }

    use super::*;

    fn spec(text: &str) -> ScoreSpec {
        ScoreSpec::from_options(&Options::parse("t", text, &SCORE_KEYS).unwrap()).unwrap()
    }

    #[test]
    fn recency_scores_fewest_days_best_and_cuts_reproduce_them() {
        let days = [Some(1.0), Some(300.0), None, Some(20.0), Some(1.0)];
        let (scores, cuts) = score_column(&days, Dim::Recency, &spec("bins=3"));
        assert_eq!(scores, vec![Some(3), Some(1), None, Some(2), Some(3)]);
        let fixed = ScoreSpec {
            bins: 3,
            method: Method::Fixed([cuts.clone(), vec![0.0; 2], vec![0.0; 2]]),
        };
        let (again, _) = score_column(&days, Dim::Recency, &fixed);
        assert_eq!(again, scores);
    }

    #[test]
    fn ntile_breaks_ties_by_input_order() {
        let values: Vec<Option<f64>> = (1..=10).map(|v| Some(f64::from(v))).collect();
        let (scores, _) =
            score_column(&values, Dim::Frequency, &spec("bins=4, method=ntile"));
        let scores: Vec<u32> = scores.into_iter().flatten().collect();
        assert_eq!(scores, vec![1, 1, 1, 2, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn fixed_options_round_trip() {
        let text = ScoreSpec::fixed_options(
            3,
            &[vec![30.0, 90.0], vec![1.0, 2.0], vec![10.5, 99.0]],
        );
        assert_eq!(
            text,
            "method=fixed, bins=3, r_cuts=30|90, f_cuts=1|2, m_cuts=10.5|99"
        );
        let parsed = spec(&text);
        assert_eq!(parsed.bins, 3);
        assert!(matches!(parsed.method, Method::Fixed(_)));
    }

    #[test]
    fn bad_fixed_options_say_what_is_expected() {
        let err = |t: &str| {
            ScoreSpec::from_options(&Options::parse("t", t, &SCORE_KEYS).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(err("method=fixed, bins=3, r_cuts=1|2, f_cuts=1|2").contains("m_cuts"));
        assert!(
            err("method=fixed, bins=3, r_cuts=2|1, f_cuts=1|2, m_cuts=1|2")
                .contains("non-decreasing")
        );
        assert!(err("r_cuts=1|2").contains("given only with method=fixed"));
    }
}
