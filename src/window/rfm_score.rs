//! `rfm_score`: R, F and M scores of every row of a window partition.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::array::{
    Array, AsArray, DynComparator, Int64Array, make_comparator,
};
use datafusion::arrow::compute::{CastOptions, SortOptions, cast_with_options};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{
    DataFusionError, Result, internal_datafusion_err, plan_datafusion_err,
};
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    Documentation, PartitionEvaluator, Signature, WindowUDFImpl,
};

use crate::args::{
    DOC_SECTION, arity_error, coerce_number, constant_options, describe,
    documented_signature,
};
use crate::options::Options;
use crate::scoring::{
    Dim, Method, SCORE_KEYS, ScoreSpec, TieOrder, finite_values, score_column_by,
    score_fields, score_struct,
};

const NAME: &str = "rfm_score";
const SYNTAX: &str =
    "rfm_score(recency_days, frequency, monetary [, options [, tie_key]]) OVER (...)";

/// `rfm_score(recency_days, frequency, monetary [, options [, tie_key]]) OVER
/// ([PARTITION BY ...] [ORDER BY ...])`: a window function giving each row a
/// `STRUCT<r INT, f INT, m INT, code VARCHAR>` of scores from 1 to `bins`,
/// where `bins` is the best (fewest days, most purchases, most money).
///
/// Options (`'bins=5, method=quantile'` by default):
/// - `method=quantile`: tie-aware balanced quantiles
///   ([`crate::binning::quantile_scores`]): equal values always share a score,
///   skewed data never fails, and all `bins` scores are used when there are at
///   least `bins` distinct values.
/// - `method=ntile`: SQL standard `NTILE` bucket sizes (the remainder goes to
///   the lowest buckets). Equal values are ordered by the window's `ORDER BY`,
///   so `OVER (ORDER BY customer_id)` makes reruns agree. A `tie_key`
///   argument (such as the customer id) orders them instead, ascending with
///   NULLs last, without sorting the partition's rows: the cheaper way to
///   score millions of customers.
/// - `method=qcut`: pandas `qcut` with tied edges merged, as PyMC-Marketing
///   scores ([`crate::binning::qcut_codes`]).
/// - `method=fixed, r_cuts=..., f_cuts=..., m_cuts=...`: the caller's cut
///   points, `bins - 1` non-decreasing numbers per dimension separated by `|`.
///   Recency scores `1 +` the number of cuts at or above the days; frequency
///   and monetary `1 +` the number of cuts strictly below the value.
///
/// NULL inputs get a NULL score in that dimension (and a NULL code); they do
/// not count towards the quantiles. NaN or infinite inputs are errors.
/// `rfm_thresholds` returns the cut points of the same scoring.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmScore {
    signature: Signature,
}

impl RfmScore {
    /// Creates the function.
    pub fn new() -> Self {
        Self {
            signature: score_signature(false),
        }
    }
}

impl Default for RfmScore {
    fn default() -> Self {
        Self::new()
    }
}

/// The signature of the scoring functions (see [`documented_signature`]).
pub fn score_signature(options_required: bool) -> Signature {
    // Examples equal the coerced types, so an exact match never skips coercion.
    let metrics = vec![DataType::Float64; 3];
    let mut with_options = metrics.clone();
    with_options.push(DataType::Utf8);
    let examples = if options_required {
        vec![with_options]
    } else {
        vec![metrics, with_options]
    };
    documented_signature(examples)
}

/// Checks the argument types of a scoring function: the three metrics become
/// `DOUBLE` and the options a string.
pub fn coerce_score_args(
    function: &str,
    syntax: &str,
    arg_types: &[DataType],
    options_required: bool,
) -> Result<Vec<DataType>> {
    let arity_ok = if options_required {
        arg_types.len() == 4
    } else {
        (3..=4).contains(&arg_types.len())
    };
    if !arity_ok {
        return Err(arity_error(function, arg_types.len(), syntax));
    }
    let mut out = Vec::with_capacity(arg_types.len());
    for (i, dim) in Dim::ALL.iter().enumerate() {
        out.push(coerce_number(
            function,
            i + 1,
            dim.arg_name(),
            &arg_types[i],
        )?);
    }
    if let Some(t) = arg_types.get(3) {
        if !crate::args::is_string(t) && t != &DataType::Null {
            return Err(plan_datafusion_err!(
                "{function}: argument 4 (options) must be a string such as \
                 'bins=5, method=quantile'; got type {t}."
            ));
        }
        out.push(DataType::Utf8);
    }
    Ok(out)
}

impl WindowUDFImpl for RfmScore {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let (scored, tie_key) = split_tie_key(arg_types);
        Ok(coerce_score_args(NAME, SYNTAX, scored, false)
            .map(|mut types| {
                types.extend(tie_key.cloned());
                types
            })
            .unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let exprs = args.input_exprs();
        let options = constant_options(NAME, exprs, 3)?;
        let spec =
            ScoreSpec::from_options(&Options::parse(NAME, &options, &SCORE_KEYS)?)?;
        let sources = exprs.iter().take(3).map(describe).collect();
        Ok(Box::new(RfmScoreEvaluator { spec, sources }))
    }

    fn field(&self, args: WindowUDFFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .input_fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        coerce_score_args(NAME, SYNTAX, split_tie_key(&types).0, false)?;
        Ok(Arc::new(Field::new(
            args.name(),
            DataType::Struct(score_fields()),
            true,
        )))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "R, F and M scores (1..bins, bins = best) of each row within its window \
         partition, with the code string such as '545'. Equal values share a score.",
        SYNTAX,
    )
    .with_argument(
        "recency_days",
        "Days since the last purchase; fewer is better.",
    )
    .with_argument("frequency", "Number of purchases; more is better.")
    .with_argument("monetary", "Money spent; more is better.")
    .with_argument(
        "options",
        "Optional: 'bins=5' (2..9), 'method=quantile|ntile|qcut|fixed', and for fixed \
         'r_cuts=30|90|180|365, f_cuts=..., m_cuts=...'.",
    )
    .with_argument(
        "tie_key",
        "Optional: a column ordering equal values for method=ntile (ascending, NULLs \
         last) in place of the window's ORDER BY; other methods ignore it.",
    )
    .with_sql_example(
        r#"```sql
> SELECT id, rfm_score(recency_days, frequency, monetary, 'bins=3')
    OVER (ORDER BY id) AS s FROM (VALUES (1, 10, 4, 90.0), (2, 200, 1, 5.0),
    (3, 40, 2, 30.0)) AS t(id, recency_days, frequency, monetary);
+----+-----------------------------+
| id | s                           |
+----+-----------------------------+
| 1  | {r: 3, f: 3, m: 3, code: 333} |
| 2  | {r: 1, f: 1, m: 1, code: 111} |
| 3  | {r: 2, f: 2, m: 2, code: 222} |
+----+-----------------------------+
```"#,
    )
    .build()
});

/// The scored arguments (metrics and options) and the tie key, if given as a
/// fifth argument.
fn split_tie_key(arg_types: &[DataType]) -> (&[DataType], Option<&DataType>) {
    match arg_types {
        [scored @ .., key] if arg_types.len() == 5 => (scored, Some(key)),
        _ => (arg_types, None),
    }
}

/// The order of a tie key: ascending, NULLs last, then by position.
struct TieKey {
    compare: DynComparator,
    /// The key as 64-bit integers, when it is an integer column: runs are then
    /// sorted as packed integers rather than through the comparator.
    integers: Option<Int64Array>,
}

impl TieKey {
    fn new(key: &ArrayRef) -> Result<Self> {
        let ascending = SortOptions::new(false, false);
        let compare = make_comparator(key.as_ref(), key.as_ref(), ascending)?;
        let integers = match key.data_type() {
            // An unsigned key beyond i64 fails the cast and uses the comparator.
            t if t.is_integer() => {
                let exact = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                cast_with_options(key, &DataType::Int64, &exact)
                    .ok()
                    .map(|k| k.as_primitive::<Int64Type>().clone())
            }
            _ => None,
        };
        Ok(Self { compare, integers })
    }

    /// Sorts positions (given ascending) by key, then position.
    fn sort(&self, run: &mut [usize]) {
        let Some(keys) = &self.integers else {
            run.sort_by(|a, b| (self.compare)(*a, *b).then(a.cmp(b)));
            return;
        };
        // NULL flag, the key's order-preserving bits, then the position.
        let mut packed: Vec<u128> = run
            .iter()
            .map(|&i| {
                let null = u128::from(keys.is_null(i)) << 127;
                let bits = (keys.value(i) as u64) ^ (1 << 63);
                null | u128::from(bits) << 63 | i as u128
            })
            .collect();
        packed.sort_unstable();
        for (slot, key) in run.iter_mut().zip(packed) {
            *slot = (key & ((1 << 63) - 1)) as usize;
        }
    }
}

/// Rows from which a partition's dimensions are scored on two threads.
const PARALLEL_ROWS: usize = 100_000;

/// Scores one partition at a time.
#[derive(Debug)]
struct RfmScoreEvaluator {
    spec: ScoreSpec,
    sources: Vec<String>,
}

impl PartitionEvaluator for RfmScoreEvaluator {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let key_order = match values.get(4) {
            Some(key) if self.spec.method == Method::Ntile => Some(TieKey::new(key)?),
            _ => None,
        };
        let sort_run = key_order
            .as_ref()
            .map(|key| move |run: &mut [usize]| key.sort(run));
        let ties = sort_run.as_ref().map(|f| f as TieOrder<'_>);
        let score = |i: usize| -> Result<Vec<Option<u32>>> {
            let dim = Dim::ALL[i];
            let column = finite_values(NAME, dim, &values[i], &self.sources[i])?;
            Ok(score_column_by(&column, dim, &self.spec, ties))
        };
        let scores = if num_rows < PARALLEL_ROWS {
            [score(0)?, score(1)?, score(2)?]
        } else {
            // Recency and frequency (counting sorts) beside money's sort, so
            // the other core is not idle while the window holds every row.
            std::thread::scope(|threads| {
                let rf =
                    threads.spawn(|| Ok::<_, DataFusionError>((score(0)?, score(1)?)));
                let m = score(2);
                let (r, f) = rf.join().map_err(|_| {
                    internal_datafusion_err!("{NAME}: a scoring thread panicked")
                })??;
                Ok::<_, DataFusionError>([r, f, m?])
            })?
        };
        score_struct(scores)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, StringArray, StructArray};

    use super::*;

    /// A partition large enough to be scored on two threads gets, in each
    /// dimension, the scores of that dimension scored alone, with tie key
    /// order and NULLs.
    #[test]
    fn dimensions_scored_in_parallel_match_each_scored_alone() {
        let n = PARALLEL_ROWS + 7;
        let column = |f: fn(usize) -> Option<f64>| -> ArrayRef {
            Arc::new((0..n).map(f).collect::<Float64Array>())
        };
        let values = [
            column(|i| Some((i * 7 % 365) as f64)),
            column(|i| (i % 11 != 0).then_some((i * 13 % 9) as f64)),
            column(|i| Some((i * 7919 % 100_003) as f64 / 100.0)),
            Arc::new(StringArray::from(vec!["method=ntile"; n])) as ArrayRef,
            Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| -i))) as ArrayRef,
        ];
        let spec = ScoreSpec::from_options(
            &Options::parse(NAME, "method=ntile", &SCORE_KEYS).unwrap(),
        )
        .unwrap();
        let mut evaluator = RfmScoreEvaluator {
            spec: spec.clone(),
            sources: vec!["r".into(), "f".into(), "m".into()],
        };
        let scored = evaluator.evaluate_all(&values, n).unwrap();
        let scored = scored.as_any().downcast_ref::<StructArray>().unwrap();
        let key = TieKey::new(&values[4]).unwrap();
        let ties = |run: &mut [usize]| key.sort(run);
        for (i, dim) in Dim::ALL.into_iter().enumerate() {
            let column = finite_values(NAME, dim, &values[i], "x").unwrap();
            let alone = score_column_by(&column, dim, &spec, Some(&ties));
            let parallel: Vec<Option<u32>> = scored
                .column(i)
                .as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .iter()
                .map(|s| s.map(|s| s as u32))
                .collect();
            assert_eq!(parallel, alone, "{dim:?}");
        }
    }
}
