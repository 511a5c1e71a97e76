//! `rfm_segment_check`: what a segment map does with every score cell.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{
    MemTable, TableFunctionArgs, TableFunctionImpl, TableProvider,
};
use datafusion::common::{Result, ScalarValue, plan_datafusion_err};

use crate::segments::{MAX_BINS, SegmentMap};
use crate::table::{text_arg, value_arg};

const NAME: &str = "rfm_segment_check";

/// `rfm_segment_check(map [, bins])`: one row per finding about a segment map
/// over every cell with scores in `1..=bins`: columns `kind`, `segment`,
/// `cells` (BIGINT) and `detail`.
///
/// Kinds: `unreachable` (a rule that never names a cell), `overlap` (cells a
/// rule matches but an earlier rule takes), `fallback` (cells that only a
/// catch-all rule or the implicit `Other` names). `bins` defaults to the
/// built-in map's bins, or 5 for a rule list. A map with no findings gives
/// no rows.
#[derive(Debug, Default)]
pub struct RfmSegmentCheck;

impl TableFunctionImpl for RfmSegmentCheck {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(1..=2).contains(&exprs.len()) {
            return Err(plan_datafusion_err!(
                "{NAME}: takes (map [, bins]); got {} argument(s).",
                exprs.len()
            ));
        }
        let map_text = text_arg(NAME, exprs, 1, "map")?;
        let bins = match value_arg(exprs, 2) {
            None if exprs.len() == 1 => None,
            Some(v) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(b)))
                    if (2..=i64::from(MAX_BINS)).contains(&b) =>
                {
                    Some(b as u32)
                }
                _ => None.ok_or_else(|| {
                    plan_datafusion_err!(
                        "{NAME}: argument 2 (bins) must be a whole number from 2 to \
                         {MAX_BINS}; got {v}."
                    )
                })?,
            },
            None => {
                return Err(plan_datafusion_err!(
                    "{NAME}: argument 2 (bins) must be a constant; got {}.",
                    exprs[1]
                ));
            }
        };
        let mut map = SegmentMap::parse(&map_text, bins.unwrap_or(5))?;
        if let Some(b) = bins {
            map = map.with_bins(b)?;
        }
        let findings = map.check();
        let schema = Arc::new(Schema::new(vec![
            Field::new("kind", DataType::Utf8, false),
            Field::new("segment", DataType::Utf8, false),
            Field::new("cells", DataType::Int64, false),
            Field::new("detail", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                findings.iter().map(|f| f.kind),
            )),
            Arc::new(StringArray::from_iter_values(
                findings.iter().map(|f| &f.segment),
            )),
            Arc::new(Int64Array::from_iter_values(
                findings.iter().map(|f| f.cells as i64),
            )),
            Arc::new(StringArray::from_iter_values(
                findings.iter().map(|f| &f.detail),
            )),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
