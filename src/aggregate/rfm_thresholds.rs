//! `rfm_thresholds`: the cut points behind `rfm_score`, ready to freeze.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{Result, ScalarValue, internal_err, plan_datafusion_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDFImpl, Documentation, Signature};

use crate::args::{DOC_SECTION, constant_options, describe};
use crate::options::Options;
use crate::scoring::{Dim, Method, SCORE_KEYS, ScoreSpec, finite_values, score_column};
use crate::window::rfm_score::{coerce_score_args, score_signature};

const NAME: &str = "rfm_thresholds";
const SYNTAX: &str = "rfm_thresholds(recency_days, frequency, monetary [, options])";

/// `rfm_thresholds(recency_days, frequency, monetary [, options])`: an
/// aggregate returning the options string
/// `'method=fixed, bins=B, r_cuts=..., f_cuts=..., m_cuts=...'` whose cut
/// points reproduce `rfm_score` with the same options over the same rows.
///
/// Store the string to freeze a scoring, then score a later batch against it
/// with `rfm_score_fixed(r, f, m, thresholds)` or
/// `rfm_score(r, f, m, '<thresholds>') OVER ()`. Quantile scores are
/// reproduced exactly; ntile scores are reproduced except where equal values
/// straddle a bucket edge (they all take the lower score). NULL inputs are
/// ignored; a group with no values gives NULL; NaN or infinite inputs are
/// errors.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmThresholds {
    signature: Signature,
}

impl RfmThresholds {
    /// Creates the function.
    pub fn new() -> Self {
        Self {
            signature: score_signature(false),
        }
    }
}

impl Default for RfmThresholds {
    fn default() -> Self {
        Self::new()
    }
}

impl AggregateUDFImpl for RfmThresholds {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(coerce_score_args(NAME, SYNTAX, arg_types, false)
            .unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        coerce_score_args(NAME, SYNTAX, arg_types, false)?;
        Ok(DataType::Utf8)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let options = constant_options(NAME, args.exprs, 3)?;
        let spec =
            ScoreSpec::from_options(&Options::parse(NAME, &options, &SCORE_KEYS)?)?;
        if matches!(spec.method, Method::Fixed(_)) {
            return Err(plan_datafusion_err!(
                "{NAME}: method=fixed already states its thresholds; got '{options}'. \
                 Use method=quantile or method=ntile."
            ));
        }
        let sources = args.exprs.iter().take(3).map(describe).collect();
        Ok(Box::new(RfmThresholdsAccumulator {
            spec,
            sources,
            values: Default::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(Dim::ALL
            .iter()
            .map(|d| {
                let list = DataType::new_list(DataType::Float64, true);
                Arc::new(Field::new(
                    format!("{}[{}]", args.name, d.arg_name()),
                    list,
                    true,
                ))
            })
            .collect())
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "The cut points rfm_score uses for these rows, as an options string \
         'method=fixed, bins=.., r_cuts=.., f_cuts=.., m_cuts=..' that scores a later \
         batch the same way (rfm_score_fixed).",
        SYNTAX,
    )
    .with_argument("recency_days", "Days since the last purchase.")
    .with_argument("frequency", "Number of purchases.")
    .with_argument("monetary", "Money spent.")
    .with_argument("options", "Optional: 'bins=5, method=quantile|ntile'.")
    .with_sql_example(
        r#"```sql
> SELECT rfm_thresholds(recency_days, frequency, monetary, 'bins=3')
  FROM (VALUES (10, 4, 90.0), (200, 1, 5.0), (40, 2, 30.0))
    AS t(recency_days, frequency, monetary);
+------------------------------------------------------------------+
| method=fixed, bins=3, r_cuts=40|10, f_cuts=1|2, m_cuts=5|30      |
+------------------------------------------------------------------+
```"#,
    )
    .build()
});

#[derive(Debug)]
struct RfmThresholdsAccumulator {
    spec: ScoreSpec,
    sources: Vec<String>,
    values: [Vec<f64>; 3],
}

impl Accumulator for RfmThresholdsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for (i, dim) in Dim::ALL.iter().enumerate() {
            let column = finite_values(NAME, *dim, &values[i], &self.sources[i])?;
            self.values[i].extend(column.into_iter().flatten());
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.values.iter().all(Vec::is_empty) {
            return Ok(ScalarValue::Utf8(None));
        }
        let mut cuts: [Vec<f64>; 3] = Default::default();
        for (i, dim) in Dim::ALL.iter().enumerate() {
            self.values[i].sort_by(f64::total_cmp);
            let column: Vec<Option<f64>> =
                self.values[i].iter().map(|v| Some(*v)).collect();
            cuts[i] = score_column(&column, *dim, &self.spec).1;
        }
        Ok(ScalarValue::Utf8(Some(ScoreSpec::fixed_options(
            self.spec.bins,
            &cuts,
        ))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.values.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self
            .values
            .iter()
            .map(|v| {
                let array: ArrayRef = Arc::new(Float64Array::from(v.clone()));
                SingleRowListArrayBuilder::new(array).build_list_scalar()
            })
            .collect())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        if states.len() != 3 {
            return internal_err!(
                "{NAME}: expected 3 state columns, got {}",
                states.len()
            );
        }
        for (i, state) in states.iter().enumerate() {
            let lists = state.as_list::<i32>();
            for row in lists.iter().flatten() {
                self.values[i].extend(row.as_primitive::<Float64Type>().iter().flatten());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(r: &[f64], f: &[f64], m: &[f64]) -> Vec<ArrayRef> {
        [r, f, m]
            .iter()
            .map(|v| Arc::new(Float64Array::from(v.to_vec())) as ArrayRef)
            .collect()
    }

    fn accumulator() -> RfmThresholdsAccumulator {
        RfmThresholdsAccumulator {
            spec: ScoreSpec {
                bins: 3,
                method: Method::Quantile,
            },
            sources: vec!["r".into(), "f".into(), "m".into()],
            values: Default::default(),
        }
    }

    #[test]
    fn state_merge_round_trip_gives_the_same_thresholds() {
        let (r, f, m) = (
            [10.0, 200.0, 40.0, 7.0],
            [4.0, 1.0, 2.0, 9.0],
            [90.0, 5.0, 30.0, 1.0],
        );
        let mut whole = accumulator();
        whole.update_batch(&batch(&r, &f, &m)).unwrap();

        let mut left = accumulator();
        left.update_batch(&batch(&r[..1], &f[..1], &m[..1]))
            .unwrap();
        let mut right = accumulator();
        right
            .update_batch(&batch(&r[1..], &f[1..], &m[1..]))
            .unwrap();
        crate::aggregate::test_support::merge_state(&mut left, &mut right);

        assert_eq!(right.evaluate().unwrap(), whole.evaluate().unwrap());
        assert_eq!(accumulator().evaluate().unwrap(), ScalarValue::Utf8(None));
    }
}
