//! Micro-benchmarks per function family, through SQL on in-memory tables:
//! `rfm_metrics` update (one partition) and update + merge (two), scoring,
//! segment mapping and pair counting. `cargo bench --bench functions`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::arrow::array::{Date32Array, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use tokio::runtime::Runtime;

const ROWS: usize = 1_000_000;
const CUSTOMERS: u64 = 100_000;

/// A deterministic stream of numbers (SplitMix64).
struct Numbers(u64);

impl Numbers {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Transaction lines: customer, order, day, product, amount (2% returns).
fn lines() -> RecordBatch {
    let mut n = Numbers(7);
    let (mut customer, mut order, mut day, mut product, mut amount) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..ROWS {
        let o = (i / 3) as i64;
        customer.push((o as u64 * 2_654_435_761 % CUSTOMERS) as i64);
        order.push(o);
        day.push(19_000 + (n.next() % 730) as i32);
        product.push(((n.next() % 1000) as f64).sqrt() as i64);
        let sign = if n.next().is_multiple_of(50) {
            -1.0
        } else {
            1.0
        };
        amount.push(sign * (n.next() % 10_000) as f64 / 100.0);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("order_id", DataType::Int64, false),
        Field::new("day", DataType::Date32, false),
        Field::new("product_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(customer)),
            Arc::new(Int64Array::from(order)),
            Arc::new(Date32Array::from(day)),
            Arc::new(Int64Array::from(product)),
            Arc::new(Float64Array::from(amount)),
        ],
    )
    .expect("a valid batch")
}

fn context(partitions: usize, batch: &RecordBatch) -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(partitions);
    let ctx = SessionContext::new_with_config(config);
    datafusion_rfm::register_all(&ctx).expect("functions register");
    let slices: Vec<Vec<RecordBatch>> = (0..partitions)
        .map(|p| {
            let len = batch.num_rows() / partitions;
            vec![batch.slice(p * len, len)]
        })
        .collect();
    let table = MemTable::try_new(batch.schema(), slices).expect("a table");
    ctx.register_table("t", Arc::new(table))
        .expect("registered");
    ctx
}

fn run(rt: &Runtime, ctx: &SessionContext, sql: &str) {
    rt.block_on(async {
        let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        std::hint::black_box(rows);
    });
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a runtime");
    let batch = lines();
    let metrics = "SELECT customer_id, \
        rfm_metrics(day, amount, order_id, DATE '2021-01-01') FROM t GROUP BY customer_id";
    let mut group = c.benchmark_group("rfm_metrics");
    group.sample_size(10);
    let one = context(1, &batch);
    group.bench_function("update, 1M lines, 100k customers", |b| {
        b.iter(|| run(&rt, &one, metrics))
    });
    let two = context(2, &batch);
    group.bench_function("update and merge, 2 partitions", |b| {
        b.iter(|| run(&rt, &two, metrics))
    });
    group.finish();

    rt.block_on(async {
        let scored = format!(
            "CREATE TABLE m AS SELECT customer_id, (metrics).* FROM \
             ({metrics}) AS x(customer_id, metrics)"
        );
        one.sql(&scored).await.unwrap().collect().await.unwrap();
        one.sql(
            "CREATE TABLE s AS SELECT (rfm_score(recency_days, frequency, monetary) \
             OVER ()).* FROM m",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    });
    let mut group = c.benchmark_group("scoring");
    group.sample_size(10);
    for method in ["quantile", "ntile"] {
        let sql = format!(
            "SELECT rfm_score(recency_days, frequency, monetary, 'method={method}') \
             OVER () FROM m"
        );
        group.bench_function(format!("{method}, 100k customers"), |b| {
            b.iter(|| run(&rt, &one, &sql))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("segments");
    group.sample_size(10);
    for map in ["default", "rf10"] {
        let sql = format!("SELECT rfm_segment(r, f, m, '{map}') FROM s");
        group.bench_function(format!("{map} map, 100k customers"), |b| {
            b.iter(|| run(&rt, &one, &sql))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("association_rules");
    group.sample_size(10);
    let pairs = "SELECT count(*) FROM association_rules('t', 'order_id', 'product_id', \
                 'min_count=20, min_confidence=0')";
    group.bench_function("pairs, 333k baskets", |b| b.iter(|| run(&rt, &two, pairs)));
    group.finish();
}

criterion_group!(functions, benches);
criterion_main!(functions);
