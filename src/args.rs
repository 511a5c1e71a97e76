//! Argument plumbing shared by every function: literal extraction, type
//! coercion, date conversion, error messages and documentation sections.
//!
//! Errors follow one shape so a user can act on them:
//! `<function>: argument <n> (<name>, <where>) <problem>; got <value>. <fix>.`

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Date32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_datafusion_err};
use datafusion::logical_expr::{DocSection, Expr, Signature, TypeSignature, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

/// The section every function of this crate documents itself under.
pub const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Customer-value analytics (datafusion-rfm)",
    description: Some("RFM metrics, scores and segments"),
};

/// A signature whose coercion is the function's own `coerce_types`, listing
/// `examples` so `SHOW FUNCTIONS` and `information_schema` show the function.
///
/// DataFusion lists a function only when its signature yields example types,
/// which a bare user-defined signature does not. Each function's
/// `coerce_types` therefore never fails (an unusable type is passed through
/// unchanged, so the user-defined variant always matches first) and the same
/// check runs again where the return type is computed, where its error
/// message reaches the user intact.
pub fn documented_signature(examples: Vec<Vec<DataType>>) -> Signature {
    let variants = std::iter::once(TypeSignature::UserDefined)
        .chain(examples.into_iter().map(TypeSignature::Exact))
        .collect();
    Signature::one_of(variants, Volatility::Immutable)
}

/// The value of a physical argument that must be a constant, if it is one.
pub fn physical_literal(expr: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

/// The value of a logical argument that must be a constant (table functions),
/// looking through casts that SQL wraps around typed literals such as
/// `DATE '2024-06-01'`.
pub fn logical_literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        Expr::Cast(c) => logical_literal(&c.expr)?.cast_to(c.field.data_type()).ok(),
        Expr::TryCast(c) => logical_literal(&c.expr)?.cast_to(c.field.data_type()).ok(),
        Expr::Alias(a) => logical_literal(&a.expr),
        _ => None,
    }
}

/// A short description of where an argument's values come from, for errors:
/// `column orders.amount`, or the expression itself.
pub fn describe(expr: &Arc<dyn PhysicalExpr>) -> String {
    match physical_literal(expr) {
        Some(v) => format!("literal {}", sql_literal(v)),
        None => format!("column {}", without_indexes(&expr.to_string())),
    }
}

/// Drops the `@<index>` that physical column names carry (`amount@1`).
fn without_indexes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A value as a SQL literal for messages: strings quoted, NULL as `NULL`.
pub fn sql_literal(value: &ScalarValue) -> String {
    if value.is_null() {
        return "NULL".to_string();
    }
    match scalar_text(value) {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => value.to_string(),
    }
}

/// Text of a string scalar (any string type), or `None` for NULL.
pub fn scalar_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_deref()
        }
        _ => None,
    }
}

/// Whether `t` is a string type.
pub fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether `t` is an integer type.
pub fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

/// The coerced type of a date-like argument: dates and timestamps keep their
/// calendar meaning, strings are parsed as ISO timestamps.
pub fn coerce_date_like(
    function: &str,
    n: usize,
    name: &str,
    t: &DataType,
) -> Result<DataType> {
    match t {
        DataType::Date32 | DataType::Date64 | DataType::Null => Ok(DataType::Date32),
        DataType::Timestamp(_, _) => Ok(t.clone()),
        // Strings are parsed in `to_days`, where a bad value can be reported
        // with the function and argument it belongs to.
        t if is_string(t) => Ok(DataType::Utf8),
        other => Err(plan_datafusion_err!(
            "{function}: argument {n} ({name}) must be a date, a timestamp or an ISO date \
             string; got type {other}. Convert it first, e.g. with \
             to_date(col, '%m/%d/%Y') or to_timestamp_seconds(col)."
        )),
    }
}

/// The coerced type of a numeric argument that becomes `Float64`.
pub fn coerce_number(
    function: &str,
    n: usize,
    name: &str,
    t: &DataType,
) -> Result<DataType> {
    if t.is_numeric() || t == &DataType::Null {
        Ok(DataType::Float64)
    } else {
        Err(plan_datafusion_err!(
            "{function}: argument {n} ({name}) must be numeric; got type {t}. \
             Cast it, e.g. CAST(col AS DOUBLE)."
        ))
    }
}

/// `array` as `data_type`, cast only when it is not already. Functions call
/// this on their inputs instead of trusting coercion, so an unexpected input
/// type is a clean cast or cast error, never a panic.
pub fn cast_input(array: &ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        Ok(Arc::clone(array))
    } else {
        Ok(cast(array, data_type)?)
    }
}

/// Calendar days since 1970-01-01 of a date or timestamp array. Timestamps
/// with a time zone fall on their local calendar day in that zone.
pub fn to_days(array: &ArrayRef) -> Result<Date32Array> {
    use datafusion::arrow::datatypes::{
        TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
        TimestampNanosecondType, TimestampSecondType,
    };
    // Timestamps without a zone: integer division, not a calendar per value.
    fn floor_days<T>(array: &ArrayRef, per_day: i64) -> Result<Date32Array>
    where
        T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = i64>,
    {
        Ok(array.as_primitive::<T>().try_unary(|v| {
            i32::try_from(v.div_euclid(per_day)).map_err(|_| {
                datafusion::arrow::error::ArrowError::ComputeError(format!(
                    "timestamp {v} is out of the date range"
                ))
            })
        })?)
    }
    match array.data_type() {
        DataType::Date32 => {
            return Ok(array
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .clone());
        }
        DataType::Timestamp(TimeUnit::Second, None) => {
            return floor_days::<TimestampSecondType>(array, 86_400);
        }
        DataType::Timestamp(TimeUnit::Millisecond, None) => {
            return floor_days::<TimestampMillisecondType>(array, 86_400_000);
        }
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            return floor_days::<TimestampMicrosecondType>(array, 86_400_000_000);
        }
        DataType::Timestamp(TimeUnit::Nanosecond, None) => {
            return floor_days::<TimestampNanosecondType>(array, 86_400_000_000_000);
        }
        _ => {}
    }
    let days = if is_string(array.data_type()) {
        // Unsafe casting: a string that is no date is an error, not a NULL.
        let strict = datafusion::arrow::compute::CastOptions {
            safe: false,
            ..Default::default()
        };
        let nanos =
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Nanosecond, None);
        let timestamps =
            datafusion::arrow::compute::cast_with_options(array, &nanos, &strict)?;
        cast(&timestamps, &DataType::Date32)?
    } else {
        cast(array, &DataType::Date32)?
    };
    days.as_any()
        .downcast_ref::<Date32Array>()
        .cloned()
        .ok_or_else(|| {
            DataFusionError::Internal("cast to Date32 gave another type".into())
        })
}

/// Days since 1970-01-01 of a constant date argument (date, timestamp or
/// ISO string).
pub fn constant_days(
    function: &str,
    n: usize,
    name: &str,
    value: &ScalarValue,
) -> Result<i32> {
    let bad = |why: &str| {
        plan_datafusion_err!(
            "{function}: argument {n} ({name}) {why}; got {}. \
             Pass a constant date such as DATE '2024-06-01'.",
            sql_literal(value)
        )
    };
    if value.is_null() {
        return Err(bad("must not be NULL"));
    }
    let date_like = matches!(
        value.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    ) || scalar_text(value).is_some();
    if !date_like {
        return Err(bad("must be a date, a timestamp or a 'YYYY-MM-DD' string"));
    }
    let target = if let Some(text) = scalar_text(value) {
        ScalarValue::Utf8(Some(text.trim().to_string())).cast_to(&DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Nanosecond,
            None,
        ))
    } else {
        Ok(value.clone())
    };
    match target.and_then(|v| v.cast_to(&DataType::Date32)) {
        Ok(ScalarValue::Date32(Some(d))) => Ok(d),
        _ => Err(bad("is not a date")),
    }
}

/// A plan error for a wrong number of arguments.
pub fn arity_error(function: &str, got: usize, syntax: &str) -> DataFusionError {
    plan_datafusion_err!("{function}: takes {syntax}; got {got} argument(s).")
}

/// The options text of physical argument `index` (0-based), which must be a
/// constant string when present; `''` when absent or NULL.
pub fn constant_options(
    function: &str,
    exprs: &[Arc<dyn PhysicalExpr>],
    index: usize,
) -> Result<String> {
    let Some(expr) = exprs.get(index) else {
        return Ok(String::new());
    };
    let value = physical_literal(expr).ok_or_else(|| {
        plan_datafusion_err!(
            "{function}: argument {} (options) must be a constant string; got {}.",
            index + 1,
            describe(expr)
        )
    })?;
    options_text(function, index + 1, Some(value))
}

/// The options text of a constant string argument (`''` when NULL).
pub fn options_text(
    function: &str,
    n: usize,
    value: Option<&ScalarValue>,
) -> Result<String> {
    match value {
        None => Ok(String::new()),
        Some(v) if v.is_null() => Ok(String::new()),
        Some(v) => scalar_text(v).map(str::to_string).ok_or_else(|| {
            plan_datafusion_err!(
                "{function}: argument {n} (options) must be a constant string such as \
                 'bins=5, method=quantile'; got {}.",
                sql_literal(v)
            )
        }),
    }
}
