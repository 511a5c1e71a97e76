//! The report's segment summary, summed from the customer rows as they are
//! written, so the written file is not read back for it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::common::{HashMap, Result, plan_datafusion_err};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

/// Sums of one segment's customers.
#[derive(Debug, Default)]
struct Segment {
    customers: i64,
    revenue: f64,
    /// Customers with a monetary value.
    with_money: i64,
    recency_days: f64,
    with_recency: i64,
    frequency: f64,
    with_frequency: i64,
}

/// Per-segment sums and the report's totals over the customer rows seen.
#[derive(Debug, Default)]
pub struct SegmentSummary {
    /// In order of first appearance; a `None` name is the customers without
    /// a purchase.
    segments: Vec<(Option<String>, Segment)>,
    named: HashMap<String, usize>,
    unnamed: Option<usize>,
    pub rows_after_as_of: i64,
    pub rows_with_null: i64,
    /// Customers with no purchase up to the as-of date.
    pub no_purchase: i64,
}

/// The values of column `name` of `batch` as `to`.
fn column_as(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| plan_datafusion_err!("report summary: no column '{name}'"))?;
    Ok(cast(column, to)?)
}

fn sum(values: &ArrayRef) -> i64 {
    values.as_primitive::<Int64Type>().iter().flatten().sum()
}

impl SegmentSummary {
    /// Adds the customers of `batch`, which has the report's output columns.
    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let segment = column_as(batch, "segment", &DataType::Utf8)?;
        let segment = segment.as_string::<i32>();
        let float = |name| column_as(batch, name, &DataType::Float64);
        let int = |name| column_as(batch, name, &DataType::Int64);
        let (monetary, recency, frequency) = (
            float("monetary")?,
            float("recency_days")?,
            int("frequency")?,
        );
        let monetary = monetary.as_primitive::<Float64Type>();
        let recency = recency.as_primitive::<Float64Type>();
        let frequency = frequency.as_primitive::<Int64Type>();
        self.rows_after_as_of += sum(&int("rows_after_as_of")?);
        self.rows_with_null += sum(&int("rows_with_null")?);
        // Neighbouring customers often share a segment: reuse the last one.
        let mut last: Option<(Option<&str>, usize)> = None;
        for row in 0..batch.num_rows() {
            let name = segment.is_valid(row).then(|| segment.value(row));
            let i = match last {
                Some((n, i)) if n == name => i,
                _ => self.position(name),
            };
            last = Some((name, i));
            let entry = &mut self.segments[i].1;
            entry.customers += 1;
            if monetary.is_valid(row) {
                entry.revenue += monetary.value(row);
                entry.with_money += 1;
            }
            if recency.is_valid(row) {
                entry.recency_days += recency.value(row);
                entry.with_recency += 1;
            }
            if frequency.is_valid(row) {
                entry.frequency += frequency.value(row) as f64;
                entry.with_frequency += 1;
                self.no_purchase += i64::from(frequency.value(row) == 0);
            }
        }
        Ok(())
    }

    /// The index of segment `name`, added if new.
    fn position(&mut self, name: Option<&str>) -> usize {
        let known = match name {
            Some(name) => self.named.get(name).copied(),
            None => self.unnamed,
        };
        if let Some(i) = known {
            return i;
        }
        let i = self.segments.len();
        self.segments
            .push((name.map(str::to_owned), Segment::default()));
        match name {
            Some(name) => {
                self.named.insert(name.to_owned(), i);
            }
            None => self.unnamed = Some(i),
        }
        i
    }

    /// The summary table: per segment its customers and revenue, their
    /// shares, and the mean recency, frequency and monetary value, by
    /// revenue.
    pub async fn table(&self) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
        let int = |f: fn(&Segment) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                self.segments.iter().map(|(_, s)| f(s)),
            ))
        };
        let float = |f: fn(&Segment) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                self.segments.iter().map(|(_, s)| f(s)),
            ))
        };
        let names = self
            .segments
            .iter()
            .map(|(n, _)| n.as_deref().unwrap_or("(no purchase)"));
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("segment", Arc::new(StringArray::from_iter_values(names))),
            ("customers", int(|s| s.customers)),
            ("revenue_sum", float(|s| s.revenue)),
            ("with_money", int(|s| s.with_money)),
            ("recency_sum", float(|s| s.recency_days)),
            ("with_recency", int(|s| s.with_recency)),
            ("frequency_sum", float(|s| s.frequency)),
            ("with_frequency", int(|s| s.with_frequency)),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, c)| Field::new(*name, c.data_type().clone(), false))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|c| c.1).collect(),
        )?;
        let ctx = SessionContext::new();
        ctx.register_table(
            "segments",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
        )?;
        // Averages over no values are NULL, as SQL's avg gives them.
        let summary = ctx
            .sql(
                "WITH s AS (
                   SELECT segment, customers,
                          CASE WHEN with_money > 0 THEN revenue_sum END AS total,
                          recency_sum / nullif(with_recency, 0) AS recency,
                          frequency_sum / nullif(with_frequency, 0) AS frequency,
                          revenue_sum / nullif(with_money, 0) AS monetary
                   FROM segments)
                 SELECT segment, customers,
                        round(100.0 * customers / sum(customers) OVER (), 1) AS pct_customers,
                        round(total, 2) AS revenue,
                        round(100.0 * total / nullif(sum(total) OVER (), 0), 1) AS pct_revenue,
                        round(recency, 1) AS mean_recency_days,
                        round(frequency, 2) AS mean_frequency,
                        round(monetary, 2) AS mean_monetary
                 FROM s ORDER BY revenue DESC, segment",
            )
            .await?;
        let schema = Arc::new(summary.schema().as_arrow().clone());
        Ok((schema, summary.collect().await?))
    }
}
