//! `rfm report --bad-rows skip`: rows whose customer id, date, amount or
//! order id does not parse are left out and counted by column, instead of
//! failing the run.
//!
//! CSV and NDJSON inputs read those columns as text (so the scan itself never
//! fails on them); each value is then cast to the type inference found, or to
//! the type the pipeline needs, with `TRY_CAST`. A value that is present but
//! does not cast marks its row as bad, under the name of the first such
//! column.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, Date32Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::{Column, Result};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{
    Case, ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, Volatility,
    create_udf, lit,
};
use datafusion_rfm::pipeline::PipelineSpec;

/// The name of the column that says why a row is bad (NULL when it is not).
pub const BAD_COLUMN: &str = "__rfm_bad_column";

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The columns the report reads, which `--bad-rows skip` checks.
pub fn checked_columns(spec: &PipelineSpec) -> Vec<String> {
    [&spec.customer, &spec.ts, &spec.amount]
        .into_iter()
        .chain(&spec.order_id)
        .cloned()
        .collect()
}

/// `input` with every checked column parsed and a [`BAD_COLUMN`] column.
/// `inferred` is the input's schema as type inference saw it. A declared
/// date format is applied here, so it is cleared from `spec`.
pub fn mark_bad_rows(
    input: LogicalPlan,
    spec: &mut PipelineSpec,
    inferred: &Schema,
) -> Result<LogicalPlan> {
    let checked = checked_columns(spec);
    let mut parsed = Vec::new();
    let mut reasons = Vec::new();
    for name in &checked {
        let Ok(field) = inferred.field_with_name(name) else {
            continue; // the pipeline names the missing column
        };
        let inferred_type = field.data_type();
        let value = if *name == spec.ts && spec.ts_format.is_some() {
            let format = spec.ts_format.clone().unwrap_or_default();
            Arc::new(lenient_date(format)).call(vec![column(name)])
        } else {
            let target = if *name == spec.amount && !inferred_type.is_numeric() {
                DataType::Float64
            } else if *name == spec.ts && is_text(inferred_type) {
                DataType::Timestamp(TimeUnit::Nanosecond, None)
            } else {
                inferred_type.clone()
            };
            Expr::TryCast(datafusion::logical_expr::TryCast::new(
                Box::new(column(name)),
                target,
            ))
        };
        let bad = column(name).is_not_null().and(value.clone().is_null());
        reasons.push((Box::new(bad), Box::new(lit(name.clone()))));
        parsed.push((name.clone(), value));
    }
    spec.ts_format = None;
    let reason = Expr::Case(Case::new(None, reasons, None)).alias(BAD_COLUMN);
    let projection: Vec<Expr> = input
        .schema()
        .fields()
        .iter()
        .map(|f| match parsed.iter().find(|(n, _)| n == f.name()) {
            Some((name, value)) => value.clone().alias(name),
            None => column(f.name()),
        })
        .chain(std::iter::once(reason))
        .collect();
    LogicalPlanBuilder::from(input).project(projection)?.build()
}

/// The good rows of a [`mark_bad_rows`] plan.
pub fn good_rows(marked: LogicalPlan) -> Result<LogicalPlan> {
    LogicalPlanBuilder::from(marked)
        .filter(column(BAD_COLUMN).is_null())?
        .build()
}

/// Bad rows per column of a [`mark_bad_rows`] plan: `column`, `rows`.
pub fn bad_row_counts(marked: LogicalPlan) -> Result<LogicalPlan> {
    LogicalPlanBuilder::from(marked)
        .filter(column(BAD_COLUMN).is_not_null())?
        .aggregate(
            vec![column(BAD_COLUMN).alias("column")],
            vec![count(lit(1i64)).alias("rows")],
        )?
        .sort(vec![column("column").sort(true, true)])?
        .build()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A date parser with a chrono format that gives NULL for text it cannot
/// parse, where `to_date` fails the query.
fn lenient_date(format: String) -> ScalarUDF {
    let parse = move |args: &[ColumnarValue]| -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let text = cast(&arrays[0], &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .cloned()
            .unwrap_or_else(|| StringArray::new_null(text.len()));
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        let days: Date32Array = text
            .iter()
            .map(|value| {
                let value = value?.trim();
                let date =
                    NaiveDate::parse_from_str(value, &format).ok().or_else(|| {
                        NaiveDateTime::parse_from_str(value, &format)
                            .ok()
                            .map(|t| t.date())
                    })?;
                i32::try_from((date - epoch).num_days()).ok()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(days) as ArrayRef))
    };
    create_udf(
        "rfm_lenient_date",
        vec![DataType::Utf8],
        DataType::Date32,
        Volatility::Immutable,
        Arc::new(parse),
    )
}
