//! `rfm_segment`: the segment name of an R, F, M score cell.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, exec_datafusion_err, plan_datafusion_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};

use crate::args::{
    DOC_SECTION, arity_error, cast_input, documented_signature, scalar_text,
};
use crate::segments::{MAX_BINS, SegmentMap};

const NAME: &str = "rfm_segment";
const SYNTAX: &str = "rfm_segment(r, f, m [, map])";

/// `rfm_segment(r, f, m [, map])`: the name of the segment that `map` gives the
/// score cell (r, f, m), as `VARCHAR`.
///
/// `map` is a constant: `'default'` (11 named R x F segments with Lost split by
/// M, for 5 bins), `'pymc'` (PyMC-Marketing's default, 4 bins), `'rf10'` (the
/// 10-segment R x F map, 5 bins), or a rule list in the language of
/// [`crate::segments`], e.g. `'Champions: r4-5 f4-5 m4-5; Others: *'`. The
/// first matching rule wins; a cell no rule matches is `'Other'`.
///
/// NULL in any score gives NULL. A score outside the built-in map's range
/// (or outside 1..9 for rule lists) is an error that names the score.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmSegment {
    signature: Signature,
}

impl RfmSegment {
    /// Creates the function.
    pub fn new() -> Self {
        let scores = vec![DataType::Int64; 3];
        let mut with_map = scores.clone();
        with_map.push(DataType::Utf8);
        Self {
            signature: documented_signature(vec![scores, with_map]),
        }
    }
}

impl Default for RfmSegment {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for RfmSegment {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(coerce(arg_types).unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        coerce(arg_types)?;
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let map = match args.args.get(3) {
            None => SegmentMap::parse("default", 5)?,
            Some(ColumnarValue::Scalar(s)) => match scalar_text(s) {
                Some(text) => SegmentMap::parse(text, 5)?,
                None => {
                    return Err(plan_datafusion_err!(
                        "{NAME}: argument 4 (map) must not be NULL. Pass 'default', \
                         'pymc', 'rf10' or a rule list."
                    ));
                }
            },
            Some(ColumnarValue::Array(_)) => {
                return Err(plan_datafusion_err!(
                    "{NAME}: argument 4 (map) must be a constant string, not a column. \
                     Pass 'default', 'pymc', 'rf10' or a rule list."
                ));
            }
        };
        let limit = if map.is_built_in() {
            map.bins()
        } else {
            MAX_BINS
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args[..3])?
            .iter()
            .map(|a| cast_input(a, &DataType::Int64))
            .collect::<Result<Vec<_>>>()?;
        let [r, f, m] =
            [&arrays[0], &arrays[1], &arrays[2]].map(|a| a.as_primitive::<Int64Type>());
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if r.is_null(row) || f.is_null(row) || m.is_null(row) {
                out.push(None);
                continue;
            }
            let mut code = [0u32; 3];
            for (i, (array, name)) in [r, f, m].iter().zip(["r", "f", "m"]).enumerate() {
                let score = array.value(row);
                if !(1..=i64::from(limit)).contains(&score) {
                    return Err(exec_datafusion_err!(
                        "{NAME}: argument {} ({name}) is {score}, outside 1..{limit} of \
                         map '{}'. Score with bins={limit} or use a map written for your bins.",
                        i + 1,
                        map.label()
                    ));
                }
                code[i] = score as u32;
            }
            out.push(Some(map.segment(code)));
        }
        let array = StringArray::from(out);
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            let value = datafusion::common::ScalarValue::try_from_array(&array, 0)?;
            return Ok(ColumnarValue::Scalar(value));
        }
        Ok(ColumnarValue::Array(Arc::new(array) as Arc<dyn Array>))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

/// Checks the argument types: integer scores and a string map.
fn coerce(arg_types: &[DataType]) -> Result<Vec<DataType>> {
    if !(3..=4).contains(&arg_types.len()) {
        return Err(arity_error(NAME, arg_types.len(), SYNTAX));
    }
    let mut out = Vec::with_capacity(arg_types.len());
    for (i, (t, name)) in arg_types.iter().zip(["r", "f", "m"]).enumerate() {
        if !(t.is_integer() || t == &DataType::Null) {
            return Err(plan_datafusion_err!(
                "{NAME}: argument {} ({name}) must be an integer score; got type {t}. \
                 Pass the r, f, m fields of rfm_score.",
                i + 1
            ));
        }
        out.push(DataType::Int64);
    }
    if arg_types.len() == 4 {
        out.push(DataType::Utf8);
    }
    Ok(out)
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Segment name of an R, F, M score cell under a segment map: 'default' (11 \
         segments, 5 bins), 'pymc' (4 bins), 'rf10' (5 bins) or a rule list such as \
         'Champions: r4-5 f4-5 m4-5; Others: *'. First matching rule wins; unmatched \
         cells are 'Other'.",
        SYNTAX,
    )
    .with_argument("r", "Recency score.")
    .with_argument("f", "Frequency score.")
    .with_argument("m", "Monetary score.")
    .with_argument("map", "Optional constant map; 'default' when omitted.")
    .with_sql_example(
        r#"```sql
> SELECT rfm_segment(5, 5, 5), rfm_segment(1, 1, 1), rfm_segment(4, 4, 4, 'pymc');
+-----------+------+------------------+
| Champions | Lost | Premium Customer |
+-----------+------+------------------+
```"#,
    )
    .build()
});
