//! `rfm_customers`: metrics, scores and segment of every customer in one call.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_datafusion_err};

use crate::options::Options;
use crate::pipeline::{PIPELINE_KEYS, PipelineSpec, customer_scores, scan_table};
use crate::table::{as_of_arg, optional_text, resolve_table, text_arg};

const NAME: &str = "rfm_customers";

/// `rfm_customers(table, customer, order_ts, amount, as_of [, options])`: one
/// row per customer of `table` with `customer_id`, the `rfm_metrics` fields,
/// the scores `r`, `f`, `m`, `rfm_code` and `segment`.
///
/// Arguments are constants: the table's name, the names of its customer, date
/// and amount columns, the as-of date, and an options string with `order_id`
/// (column), `ts_format` (chrono format of a string date column, e.g.
/// `%m/%d/%Y`), `bins`, `method`, `r_cuts`/`f_cuts`/`m_cuts`, `map`, and
/// `preset=pymc`. Rows with a NULL customer id are left out; `rfm report`
/// counts them. Scoring runs over all customers at once.
#[derive(Debug, Default)]
pub struct RfmCustomers;

impl TableFunctionImpl for RfmCustomers {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(5..=6).contains(&exprs.len()) {
            return Err(plan_datafusion_err!(
                "{NAME}: takes (table, customer, order_ts, amount, as_of [, options]); \
                 got {} argument(s). Example: SELECT * FROM {NAME}('orders', \
                 'customer_id', 'order_ts', 'amount', '2024-06-01', 'order_id=invoice').",
                exprs.len()
            ));
        }
        let table = text_arg(NAME, exprs, 1, "table")?;
        let customer = text_arg(NAME, exprs, 2, "customer")?;
        let ts = text_arg(NAME, exprs, 3, "order_ts")?;
        let amount = text_arg(NAME, exprs, 4, "amount")?;
        let as_of = as_of_arg(NAME, exprs, 5)?;
        let options = optional_text(NAME, exprs, 6, "options")?;
        let options = Options::parse(NAME, &options, &PIPELINE_KEYS)?;
        let spec = PipelineSpec::new(NAME, [&customer, &ts, &amount], as_of, &options)?;
        let provider = resolve_table(NAME, args.session(), &table)?;
        let plan = customer_scores(scan_table(&table, provider)?, &spec)
            .map_err(|e| plan_datafusion_err!("{NAME}: {}", e.message()))?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}
