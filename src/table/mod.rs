//! Table functions, called in `FROM` with positional constant arguments.

pub mod association_rules;
pub(crate) mod customer_groups;
pub(crate) mod customer_metrics;
pub mod next_best_offer;
mod pair_rules;
pub mod rfm_customers;
pub mod rfm_segment_check;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue, TableReference, plan_datafusion_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::args::{logical_literal, scalar_text};

/// The constant text of table-function argument `n` (1-based).
pub(crate) fn text_arg(
    function: &str,
    exprs: &[Expr],
    n: usize,
    name: &str,
) -> Result<String> {
    let value = exprs.get(n - 1).and_then(logical_literal);
    match value.as_ref().and_then(scalar_text) {
        Some(text) => Ok(text.to_string()),
        None => Err(plan_datafusion_err!(
            "{function}: argument {n} ({name}) must be a constant string; got {}. \
             Quote it, e.g. '{name}'.",
            exprs
                .get(n - 1)
                .map_or("nothing".to_string(), |e| e.to_string())
        )),
    }
}

/// The constant text of optional table-function argument `n` (1-based), `''`
/// when it is not given.
pub(crate) fn optional_text(
    function: &str,
    exprs: &[Expr],
    n: usize,
    name: &str,
) -> Result<String> {
    if exprs.len() < n {
        return Ok(String::new());
    }
    text_arg(function, exprs, n, name)
}

/// Days since 1970-01-01 of constant date argument `n` (1-based), named as_of.
pub(crate) fn as_of_arg(function: &str, exprs: &[Expr], n: usize) -> Result<i32> {
    let value = value_arg(exprs, n).ok_or_else(|| {
        plan_datafusion_err!(
            "{function}: argument {n} (as_of) must be a constant date such as \
             '2024-06-01'; got {}.",
            exprs
                .get(n - 1)
                .map_or("nothing".to_string(), |e| e.to_string())
        )
    })?;
    crate::args::constant_days(function, n, "as_of", &value)
}

/// The constant value of table-function argument `n` (1-based), if present.
pub(crate) fn value_arg(exprs: &[Expr], n: usize) -> Option<ScalarValue> {
    exprs.get(n - 1).and_then(logical_literal)
}

/// Looks up a table by (possibly qualified) name in the session's catalogs.
///
/// Table functions are planned synchronously while catalog lookups are async.
/// In-memory catalogs (what `SessionContext` uses) answer at once, so the
/// lookup is polled once; a catalog that would have to wait (a remote one)
/// gets a clear error instead of a blocked thread.
pub(crate) fn resolve_table(
    function: &str,
    session: &dyn Session,
    name: &str,
) -> Result<Arc<dyn TableProvider>> {
    let reference = TableReference::from(name);
    let options = &session.config_options().catalog;
    let resolved = reference.resolve(&options.default_catalog, &options.default_schema);
    let schema = session
        .catalog_list()
        .catalog(&resolved.catalog)
        .and_then(|c| c.schema(&resolved.schema));
    let table = match schema {
        Some(schema) => right_away(function, schema.table(&resolved.table))??,
        None => None,
    };
    table.ok_or_else(|| {
        plan_datafusion_err!(
            "{function}: argument 1 (table) names no table: '{name}'. Register it first \
             (CREATE EXTERNAL TABLE, CREATE VIEW, or rfm sql --table {name}=PATH)."
        )
    })
}

/// What a column named by an option must hold.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Holds {
    Number,
    /// A date, a timestamp or a date string, as `CAST(... AS DATE)` takes.
    Date,
}

/// Checks that `column` of `table` (argument `argument`), named by `option`,
/// holds what the query casts it to, so a wrong column is a planning error
/// that names it rather than a cast error halfway through the data.
pub(crate) fn check_column_type(
    function: &str,
    schema: &Schema,
    (argument, table): (usize, &str),
    option: &str,
    column: &str,
    holds: Holds,
) -> Result<()> {
    let data_type = schema.field_with_name(column)?.data_type();
    let (fits, what, fix) = match holds {
        Holds::Number => (
            data_type.is_numeric(),
            "a number",
            format!("cast it in a view, e.g. CAST(\"{column}\" AS DOUBLE)"),
        ),
        Holds::Date => (
            matches!(
                data_type,
                DataType::Date32
                    | DataType::Date64
                    | DataType::Timestamp(..)
                    | DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
            ),
            "a date",
            format!(
                "give a date, timestamp or ISO date string column, or convert it in a \
                 view, e.g. to_timestamp_seconds(\"{column}\")"
            ),
        ),
    };
    if fits || *data_type == DataType::Null {
        return Ok(());
    }
    Err(plan_datafusion_err!(
        "{function}: option {option} names column '{column}' of argument {argument} \
         ('{table}'), of type {data_type}, which is not {what}; {fix}."
    ))
}

/// A SQL identifier, quoted so any column name is taken literally.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A possibly qualified table name, each part quoted.
pub(crate) fn quote_table(name: &str) -> String {
    TableReference::from(name)
        .to_vec()
        .iter()
        .map(|part| quote_ident(part))
        .collect::<Vec<_>>()
        .join(".")
}

/// Plans SQL text in the calling session, so a table function can be written
/// as the query it stands for. Planning is polled once, as in
/// [`resolve_table`]; table functions may nest.
pub(crate) fn plan_sql(
    function: &str,
    session: &dyn Session,
    sql: &str,
) -> Result<LogicalPlan> {
    let state = session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| {
            plan_datafusion_err!(
                "{function}: needs a DataFusion SessionState to plan its query"
            )
        })?;
    log::debug!("{function} plans: {sql}");
    right_away(function, state.create_logical_plan(sql))?.map_err(|e| {
        // A planning error inside reads as a chain of functions, without
        // "Error during planning" at every level.
        let inner = match e.find_root() {
            datafusion::common::DataFusionError::Plan(message) => message.clone(),
            other => other.strip_backtrace(),
        };
        plan_datafusion_err!("{function}: {inner}")
    })
}

/// The output of a future that completes without waiting.
fn right_away<F: std::future::Future>(function: &str, future: F) -> Result<F::Output> {
    use futures::FutureExt;

    future.now_or_never().ok_or_else(|| {
        plan_datafusion_err!(
            "{function}: the session's catalog answers asynchronously, which table \
             functions cannot wait for. Register the tables in the session's memory \
             catalog (CREATE VIEW or register_table) and call again."
        )
    })
}
