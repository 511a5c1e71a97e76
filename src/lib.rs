//! Customer-value analytics for Apache DataFusion: RFM metrics, scores and
//! segments as SQL functions.
//!
//! RFM analysis ranks customers by **r**ecency (days since the last purchase),
//! **f**requency (how many purchases) and **m**onetary value (how much they
//! spent), scores each dimension from 1 to `bins` (best), and names the score
//! cells with a segment map (Champions, At Risk, Lost, ...). This crate adds
//! those steps to DataFusion as ordinary functions that compose in SQL, plus
//! one-call table functions:
//!
//! | function | kind | what it gives |
//! | --- | --- | --- |
//! | `rfm_metrics` | aggregate | recency, frequency, monetary, dates, excluded-row counts |
//! | `rfm_score` | window | r, f, m scores and the code, e.g. `'545'` |
//! | `rfm_thresholds` | aggregate | the cut points behind a scoring, to freeze |
//! | `rfm_score_fixed` | scalar | scores against frozen cut points, row by row |
//! | `rfm_segment` | scalar | the segment name of a score cell |
//! | `rfm_customers` | table | every customer scored and segmented in one call |
//! | `rfm_segment_check` | table | unreachable rules, overlaps, fall-through cells |
//! | `association_rules` | table | item-to-item rules over baskets with their metrics |
//! | `next_best_offer` | table | top cross-sell and up-sell offers per customer, by RFM tier |
//!
//! Every function is fully described by its name and arguments (options are a
//! trailing constant string such as `'bins=4, method=ntile'`), so plans that
//! call them can be serialized and run elsewhere; `rfm_customers`, which plans
//! execution nodes of its own, is the exception.
//!
//! # Quickstart
//!
//! ```
//! use datafusion::prelude::SessionContext;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::new();
//! datafusion_rfm::register_all(&ctx)?;
//! let batches = ctx
//!     .sql(
//!         "SELECT customer, m.frequency, m.monetary
//!          FROM (SELECT customer,
//!                       rfm_metrics(day, amount, DATE '2024-06-01') AS m
//!                FROM (VALUES ('a', DATE '2024-01-10', 100.0),
//!                             ('a', DATE '2024-05-31', -20.0))
//!                     AS orders(customer, day, amount)
//!                GROUP BY customer)",
//!     )
//!     .await?
//!     .collect()
//!     .await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```

pub mod aggregate;
pub mod args;
pub mod binning;
pub mod exact_sum;
pub mod options;
pub mod pipeline;
mod prefetch;
pub mod scalar;
pub mod scoring;
pub mod segments;
pub mod storage;
pub mod table;
pub mod window;

use std::sync::Arc;

use datafusion::catalog::TableFunctionImpl;
use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::prelude::SessionContext;

/// The scalar functions: `rfm_segment`, `rfm_score_fixed`.
pub fn all_scalar_functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::from(scalar::rfm_segment::RfmSegment::new())),
        Arc::new(ScalarUDF::from(
            scalar::rfm_score_fixed::RfmScoreFixed::new(),
        )),
    ]
}

/// The aggregate functions: `rfm_metrics`, `rfm_thresholds`.
pub fn all_aggregate_functions() -> Vec<Arc<AggregateUDF>> {
    vec![
        Arc::new(AggregateUDF::from(aggregate::rfm_metrics::RfmMetrics::new())),
        Arc::new(AggregateUDF::from(
            aggregate::rfm_thresholds::RfmThresholds::new(),
        )),
    ]
}

/// The window functions: `rfm_score`.
pub fn all_window_functions() -> Vec<Arc<WindowUDF>> {
    vec![Arc::new(
        WindowUDF::from(window::rfm_score::RfmScore::new()),
    )]
}

/// The table functions with their SQL names: `association_rules`,
/// `next_best_offer`, `rfm_customers`, `rfm_segment_check`.
pub fn all_table_functions() -> Vec<(&'static str, Arc<dyn TableFunctionImpl>)> {
    vec![
        (
            "association_rules",
            Arc::new(table::association_rules::AssociationRules),
        ),
        (
            "next_best_offer",
            Arc::new(table::next_best_offer::NextBestOffer),
        ),
        (
            "rfm_customers",
            Arc::new(table::rfm_customers::RfmCustomers),
        ),
        (
            "rfm_segment_check",
            Arc::new(table::rfm_segment_check::RfmSegmentCheck),
        ),
    ]
}

/// Registers the scalar, aggregate and window functions on any
/// [`FunctionRegistry`] (a `SessionContext`, a `SessionState`, or an executor's
/// registry). Table functions need a context: see [`register_all`].
pub fn register_functions(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for udf in all_scalar_functions() {
        if registry.register_udf(udf)?.is_some() {
            log::debug!("re-registered a scalar function");
        }
    }
    for udaf in all_aggregate_functions() {
        if registry.register_udaf(udaf)?.is_some() {
            log::debug!("re-registered an aggregate function");
        }
    }
    for udwf in all_window_functions() {
        if registry.register_udwf(udwf)?.is_some() {
            log::debug!("re-registered a window function");
        }
    }
    Ok(())
}

/// Registers every function of this crate, table functions included, on a
/// `SessionContext`.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    for udf in all_scalar_functions() {
        ctx.register_udf(udf.as_ref().clone());
    }
    for udaf in all_aggregate_functions() {
        ctx.register_udaf(udaf.as_ref().clone());
    }
    for udwf in all_window_functions() {
        ctx.register_udwf(udwf.as_ref().clone());
    }
    for (name, function) in all_table_functions() {
        ctx.register_udtf(name, function);
    }
    Ok(())
}
