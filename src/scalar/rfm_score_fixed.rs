//! `rfm_score_fixed`: scores against frozen thresholds, row by row.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, plan_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl,
    Signature,
};

use crate::args::{DOC_SECTION, cast_input};
use crate::options::Options;
use crate::scoring::{
    Dim, Method, SCORE_KEYS, ScoreSpec, score_fields, score_struct, score_with,
};
use crate::window::rfm_score::{coerce_score_args, score_signature};

const NAME: &str = "rfm_score_fixed";
const SYNTAX: &str = "rfm_score_fixed(recency_days, frequency, monetary, thresholds)";

/// `rfm_score_fixed(recency_days, frequency, monetary, thresholds)`: the scores
/// of one row against fixed cut points, as `STRUCT<r, f, m INT, code VARCHAR>`,
/// with no window.
///
/// `thresholds` is an options string with `method=fixed` and the three cut
/// lists, usually the frozen output of `rfm_thresholds`; it may be a column
/// (e.g. joined from a table of stored thresholds). Binning is as for
/// `rfm_score`'s fixed method. NULL, NaN or infinite metrics give NULL scores
/// (a scalar may be evaluated on rows a `WHERE` later drops, so it does not
/// fail on them); a NULL thresholds value gives NULL scores and code; a
/// malformed thresholds value is an execution error.
///
/// It is a separate name because DataFusion's SQL planner resolves a scalar
/// function before a window function of the same name, even with `OVER`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmScoreFixed {
    signature: Signature,
}

impl RfmScoreFixed {
    /// Creates the function.
    pub fn new() -> Self {
        Self {
            signature: score_signature(true),
        }
    }
}

impl Default for RfmScoreFixed {
    fn default() -> Self {
        Self::new()
    }
}

/// The three cut lists of a thresholds string.
fn parse_thresholds(text: &str) -> Result<[Vec<f64>; 3]> {
    match ScoreSpec::from_options(&Options::parse(NAME, text, &SCORE_KEYS)?)?.method {
        Method::Fixed(cuts) => Ok(cuts),
        _ => Err(plan_datafusion_err!(
            "{NAME}: argument 4 (thresholds) must say method=fixed with r_cuts, f_cuts and \
             m_cuts; got '{text}'. Use the output of rfm_thresholds."
        )),
    }
}

impl ScalarUDFImpl for RfmScoreFixed {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(coerce_score_args(NAME, SYNTAX, arg_types, true)
            .unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        coerce_score_args(NAME, SYNTAX, arg_types, true)?;
        Ok(DataType::Struct(score_fields()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        coerce_score_args(NAME, SYNTAX, &types, true)?;
        Ok(Arc::new(Field::new(
            NAME,
            DataType::Struct(score_fields()),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let thresholds = cast_input(&arrays[3], &DataType::Utf8)?;
        let thresholds = thresholds.as_string::<i32>();
        let columns = Dim::ALL
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let values = cast_input(&arrays[i], &DataType::Float64)?;
                Ok(values
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.filter(|x| x.is_finite()))
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut parsed: Option<(&str, [Vec<f64>; 3])> = None;
        let mut scores: [Vec<Option<u32>>; 3] = Default::default();
        for (row, text) in thresholds.iter().enumerate() {
            let Some(text) = text else {
                scores.iter_mut().for_each(|s| s.push(None));
                continue;
            };
            if parsed.as_ref().is_none_or(|(t, _)| *t != text) {
                let cuts = parse_thresholds(text)
                    .map_err(|e| exec_datafusion_err!("{}", e.strip_backtrace()))?;
                parsed = Some((text, cuts));
            }
            if let Some((_, cuts)) = &parsed {
                for (i, dim) in Dim::ALL.iter().enumerate() {
                    scores[i]
                        .push(columns[i][row].map(|v| score_with(*dim, v, &cuts[i])));
                }
            }
        }
        let array = score_struct(scores)?;
        if all_scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &array, 0,
            )?));
        }
        Ok(ColumnarValue::Array(array))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "R, F and M scores of a row against fixed cut points (usually frozen from \
         rfm_thresholds), with no window; thresholds may be a constant or a column.",
        SYNTAX,
    )
    .with_argument("recency_days", "Days since the last purchase.")
    .with_argument("frequency", "Number of purchases.")
    .with_argument("monetary", "Money spent.")
    .with_argument(
        "thresholds",
        "'method=fixed, bins=B, r_cuts=.., f_cuts=.., m_cuts=..' (rfm_thresholds output).",
    )
    .with_sql_example(
        r#"```sql
> SELECT rfm_score_fixed(12, 3, 250.0,
    'method=fixed, bins=5, r_cuts=30|90|180|365, f_cuts=1|2|3|5, m_cuts=50|100|250|500');
+-------------------------------+
| {r: 5, f: 3, m: 3, code: 533} |
+-------------------------------+
```"#,
    )
    .build()
});
