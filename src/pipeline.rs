//! The whole scoring pipeline as one logical plan: metrics per customer, scores
//! and segments, built from the same functions a user calls in SQL.
//!
//! `rfm_customers` and the `rfm report` command both use [`customer_scores`],
//! so the one-call table function, the batch report and a hand-written query
//! give the same rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{
    Column, Result, ScalarValue, TableReference, plan_datafusion_err,
};
use datafusion::logical_expr::{
    AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, ScalarUDF, WindowUDF, cast, lit,
};

use crate::aggregate::rfm_metrics::RfmMetrics;
use crate::options::Options;
use crate::scalar::rfm_segment::RfmSegment;
use crate::scoring::{Method, SCORE_KEYS, ScoreSpec};
use crate::segments::SegmentMap;
use crate::table::customer_metrics::CustomerMetricsTable;
use crate::window::rfm_score::RfmScore;

/// The output columns of [`customer_scores`], in order.
pub const OUTPUT_COLUMNS: [&str; 14] = [
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "first_purchase",
    "last_purchase",
    "tenure_days",
    "rows_after_as_of",
    "rows_with_null",
    "r",
    "f",
    "m",
    "rfm_code",
    "segment",
];

/// Lines read by the customer aggregation, and those left out because their
/// customer is NULL, counted as they pass (over every run of the plan).
#[derive(Debug, Default)]
pub struct InputCounts {
    rows: AtomicU64,
    null_keys: AtomicU64,
}

impl InputCounts {
    /// All lines read.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Lines left out for a NULL customer.
    pub fn null_keys(&self) -> u64 {
        self.null_keys.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, rows: usize, null_keys: usize) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.null_keys
            .fetch_add(null_keys as u64, Ordering::Relaxed);
    }
}

/// What to score: the input's column names, the date and the options.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSpec {
    /// Customer id column; rows where it is NULL are left out (count them with
    /// [`null_customer_count`]).
    pub customer: String,
    /// Purchase date or timestamp column.
    pub ts: String,
    /// Amount column.
    pub amount: String,
    /// Order id column; without it frequency counts purchase days.
    pub order_id: Option<String>,
    /// Optional chrono format (e.g. `%m/%d/%Y`) for a string date column.
    pub ts_format: Option<String>,
    /// The unit of an integer date column holding epoch numbers.
    pub ts_unit: Option<TimeUnit>,
    /// The time zone whose calendar days purchases fall on (an IANA name such
    /// as `Europe/Berlin`, or an offset such as `+05:30`). Timestamps without
    /// a zone are taken as UTC; without this option they are used as they are.
    pub tz: Option<String>,
    /// The as-of date, in days since 1970-01-01.
    pub as_of: i32,
    /// Scoring options as given to `rfm_score`.
    pub score_options: String,
    /// Metrics options as given to `rfm_metrics`.
    pub metrics_options: String,
    /// Segment map as given to `rfm_segment`.
    pub map: String,
}

/// The option keys of the one-call functions and the report.
pub const PIPELINE_KEYS: [&str; 11] = [
    "order_id",
    "ts_format",
    "ts_unit",
    "tz",
    "bins",
    "method",
    "map",
    "preset",
    "r_cuts",
    "f_cuts",
    "m_cuts",
];

impl PipelineSpec {
    /// A spec from column names, an as-of date and an options string with the
    /// keys in [`PIPELINE_KEYS`]. `preset=pymc` means PyMC-Marketing's
    /// `rfm_segments`: purchase days as frequency, mean spend per purchase day
    /// as monetary, 4 bins, tied quartile edges merged, and the `pymc` map.
    pub fn new(
        function: &'static str,
        columns: [&str; 3],
        as_of: i32,
        o: &Options,
    ) -> Result<Self> {
        let pymc = o.choice("preset", "none", &["none", "pymc"])? == "pymc";
        let mut score_parts: Vec<String> =
            ["bins", "method", "r_cuts", "f_cuts", "m_cuts"]
                .iter()
                .filter_map(|k| o.get(k).map(|v| format!("{k}={v}")))
                .collect();
        if pymc && o.get("bins").is_none() {
            score_parts.push("bins=4".into());
        }
        if pymc && o.get("method").is_none() {
            score_parts.push("method=qcut".into());
        }
        let score_options = score_parts.join(", ");
        ScoreSpec::from_options(&Options::parse(function, &score_options, &SCORE_KEYS)?)?;
        let map = o
            .get("map")
            .unwrap_or(if pymc { "pymc" } else { "default" })
            .to_string();
        let segments = SegmentMap::parse(&map, 5)?;
        let bins = o.integer("bins", if pymc { 4 } else { 5 }, 2, 9)?;
        if segments.is_built_in() && segments.bins() as usize != bins {
            return Err(plan_datafusion_err!(
                "{function}: map '{}' is written for bins={}; got bins={bins}. Use \
                 bins={} or a rule list written for {bins} bins.",
                segments.label(),
                segments.bins(),
                segments.bins()
            ));
        }
        let order_id = o.get("order_id").map(str::to_string);
        if pymc && order_id.is_some() {
            return Err(plan_datafusion_err!(
                "{function}: preset=pymc counts purchase days, as PyMC-Marketing does; \
                 drop order_id from the options."
            ));
        }
        let ts_unit =
            match o.choice("ts_unit", "none", &["none", "s", "ms", "us", "ns"])? {
                "s" => Some(TimeUnit::Second),
                "ms" => Some(TimeUnit::Millisecond),
                "us" => Some(TimeUnit::Microsecond),
                "ns" => Some(TimeUnit::Nanosecond),
                _ => None,
            };
        let tz = o.get("tz").map(str::to_string);
        if let Some(zone) = &tz {
            zone.parse::<Tz>().map_err(|e| {
                plan_datafusion_err!(
                    "{function}: tz '{zone}' is not a time zone ({e}). Use an IANA name \
                     such as Europe/Berlin or an offset such as +05:30."
                )
            })?;
        }
        let [customer, ts, amount] = columns;
        Ok(Self {
            customer: customer.to_string(),
            ts: ts.to_string(),
            amount: amount.to_string(),
            order_id,
            ts_format: o.get("ts_format").map(str::to_string),
            ts_unit,
            tz,
            as_of,
            score_options,
            metrics_options: if pymc {
                "preset=pymc".into()
            } else {
                String::new()
            },
            map,
        })
    }

    /// Whether the scoring method orders ties by customer id.
    fn needs_order(&self) -> Result<bool> {
        let spec = ScoreSpec::from_options(&Options::parse(
            "rfm",
            &self.score_options,
            &SCORE_KEYS,
        )?)?;
        Ok(spec.method == Method::Ntile)
    }
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The plan that scores every customer of `input` as of `spec.as_of`, with the
/// columns in [`OUTPUT_COLUMNS`]; one row per non-NULL customer id.
pub fn customer_scores(input: LogicalPlan, spec: &PipelineSpec) -> Result<LogicalPlan> {
    Ok(customer_scores_counted(input, spec)?.0)
}

/// [`customer_scores`], and the counts of the input rows it reads and of
/// those it leaves out for a NULL customer id, filled in as the plan runs:
/// the same numbers as [`null_customer_count`] without reading the input
/// again.
pub fn customer_scores_counted(
    input: LogicalPlan,
    spec: &PipelineSpec,
) -> Result<(LogicalPlan, Arc<InputCounts>)> {
    let schema = input.schema().clone();
    for name in [&spec.customer, &spec.ts, &spec.amount]
        .into_iter()
        .chain(&spec.order_id)
    {
        if schema.field_with_unqualified_name(name).is_err() {
            let names: Vec<&str> =
                schema.fields().iter().map(|f| f.name().as_str()).collect();
            if names.is_empty() {
                return Err(plan_datafusion_err!(
                    "column '{name}' is not in the input, which has no columns at all. \
                     Check that the file is not empty."
                ));
            }
            return Err(plan_datafusion_err!(
                "column '{name}' is not in the input; it has {}. Name the right column.",
                names.join(", ")
            ));
        }
    }
    let ts = purchase_time(spec, schema.field_with_unqualified_name(&spec.ts)?)?;
    let order_id = match &spec.order_id {
        Some(name) => column(name),
        None => lit(ScalarValue::Null),
    };
    let as_of = lit(ScalarValue::Date32(Some(spec.as_of)));
    let metrics_udaf = Arc::new(AggregateUDF::from(RfmMetrics::new()));
    let metrics = metrics_udaf
        .call(vec![
            ts,
            column(&spec.amount),
            order_id,
            as_of,
            lit(spec.metrics_options.clone()),
        ])
        .alias("metrics");

    let get = |name: &str| {
        datafusion::functions::core::expr_fn::get_field(column("metrics"), name)
            .alias(name)
    };
    let metric_names = &OUTPUT_COLUMNS[1..9];
    let score_udwf = Arc::new(WindowUDF::from(RfmScore::new()));
    // A customer with no purchase up to as_of (NULL recency) is not scored, and
    // its zero frequency must not shift everyone else's quantiles.
    let if_bought = |name: &str| {
        Expr::Case(datafusion::logical_expr::Case::new(
            None,
            vec![(
                Box::new(column("recency_days").is_not_null()),
                Box::new(column(name)),
            )],
            None,
        ))
    };
    let mut score_args = vec![
        column("recency_days"),
        if_bought("frequency"),
        if_bought("monetary"),
        lit(spec.score_options.clone()),
    ];
    // ntile orders equal values by customer id, which rfm_score does
    // without sorting the customers' rows.
    if spec.needs_order()? {
        score_args.push(column("customer_id"));
    }
    let score = score_udwf.call(score_args);
    let segment_udf = Arc::new(ScalarUDF::from(RfmSegment::new()));
    let score_field = |name: &str| {
        datafusion::functions::core::expr_fn::get_field(column("scores"), name)
    };

    // The table drops the lines without a customer, counting them.
    let aggregate = LogicalPlanBuilder::from(input)
        .aggregate(
            vec![column(&spec.customer).alias("customer_id")],
            vec![metrics],
        )?
        .build()?;
    let counts = Arc::new(InputCounts::default());
    let metrics_table = CustomerMetricsTable::new(aggregate, Arc::clone(&counts));
    let plan = LogicalPlanBuilder::scan(
        "customer_metrics",
        datafusion::datasource::provider_as_source(Arc::new(metrics_table)),
        None,
    )?
    .project(
        std::iter::once(column("customer_id"))
            .chain(metric_names.iter().map(|n| get(n)))
            .collect::<Vec<_>>(),
    )?
    .window(vec![score.alias("scores")])?
    .project(
        OUTPUT_COLUMNS[..9]
            .iter()
            .map(|n| column(n))
            .chain([
                score_field("r").alias("r"),
                score_field("f").alias("f"),
                score_field("m").alias("m"),
                score_field("code").alias("rfm_code"),
                segment_udf
                    .call(vec![
                        score_field("r"),
                        score_field("f"),
                        score_field("m"),
                        lit(spec.map.clone()),
                    ])
                    .alias("segment"),
            ])
            .collect::<Vec<_>>(),
    )?
    .build()?;
    Ok((plan, counts))
}

/// The purchase date or time of `spec.ts` as `rfm_metrics` takes it: strings
/// parsed with the declared format, epoch numbers in the declared unit, and
/// times moved to the declared zone, so the calendar day is that zone's.
fn purchase_time(spec: &PipelineSpec, field: &Field) -> Result<Expr> {
    let nanos = |zone: Option<&str>| {
        DataType::Timestamp(TimeUnit::Nanosecond, zone.map(Into::into))
    };
    let mut ts = column(&spec.ts);
    let mut data_type = field.data_type().clone();
    if let Some(format) = &spec.ts_format {
        return Ok(datafusion::functions::datetime::to_date()
            .call(vec![ts, lit(format.clone())]));
    }
    if let Some(unit) = spec.ts_unit {
        if !data_type.is_integer() && !data_type.is_floating() {
            return Err(plan_datafusion_err!(
                "ts_unit: column '{}' holds {data_type}, not epoch numbers; drop ts_unit.",
                spec.ts
            ));
        }
        ts = cast(cast(ts, DataType::Int64), DataType::Timestamp(unit, None));
        data_type = DataType::Timestamp(unit, None);
    }
    let Some(zone) = &spec.tz else {
        return Ok(ts);
    };
    ts = match data_type {
        DataType::Timestamp(_, Some(_)) => ts,
        DataType::Timestamp(_, None) => cast(ts, nanos(Some("UTC"))),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            cast(cast(ts, nanos(None)), nanos(Some("UTC")))
        }
        // A calendar date has no time to move.
        _ => return Ok(ts),
    };
    Ok(cast(ts, nanos(Some(zone))))
}

/// A plan counting the input rows whose customer id is NULL (left out of
/// [`customer_scores`]) and all rows: columns `rows` and `rows_null_customer`.
pub fn null_customer_count(input: LogicalPlan, customer: &str) -> Result<LogicalPlan> {
    use datafusion::functions_aggregate::expr_fn::count;

    let null_flag = Expr::Case(datafusion::logical_expr::Case::new(
        None,
        vec![(Box::new(column(customer).is_null()), Box::new(lit(1i64)))],
        Some(Box::new(lit(0i64))),
    ));
    LogicalPlanBuilder::from(input)
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                count(lit(1i64)).alias("rows"),
                datafusion::functions_aggregate::expr_fn::sum(null_flag)
                    .alias("rows_null_customer"),
            ],
        )?
        .build()
}

/// A plan scanning a table registered in the session by name.
pub fn scan_table(
    name: &str,
    provider: Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<LogicalPlan> {
    let source = datafusion::datasource::provider_as_source(provider);
    LogicalPlanBuilder::scan(TableReference::from(name), source, None)?.build()
}
