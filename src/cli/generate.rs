//! `rfm generate`: synthetic transactions for benchmarks and load tests.
//!
//! The data has the shape the functions meet in real logs: a few customers
//! buy often and most rarely (order owners drawn with a quadratic skew),
//! product popularity is Zipf-like (ranks drawn log-uniformly, the s = 1
//! case), orders hold 1 to 6 lines, some product pairs are planted to be
//! bought together, about 2% of lines are returns (negative amounts) and
//! 0.5% have a NULL customer id. The same seed gives the same files, whatever
//! the number of threads.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

use super::args::GenerateArgs;
use super::output::{Staged, Target};

/// Whether a path in the output folder (as its parts) is one this command
/// writes: `products.parquet` and `transactions/part-*.parquet`.
fn generated(parts: &[String]) -> bool {
    match parts {
        [file] => file == "products.parquet",
        [folder, file] => {
            folder == "transactions"
                && file.starts_with("part-")
                && file.ends_with(".parquet")
        }
        _ => false,
    }
}
use super::{CliError, CliResult, say};

/// Rows per file, so files can be written and read in parallel.
const ROWS_PER_FILE: usize = 2_000_000;
/// Rows per record batch and Parquet row group slice.
const BATCH: usize = 250_000;
/// Products per category.
const PER_CATEGORY: usize = 50;
/// Planted pairs: product 2k is bought with 2k + 1 for k below this.
const PLANTED_PAIRS: u64 = 50;
/// Microseconds in a day, and the first day (2023-01-01) of the two years.
const DAY_MICROS: i64 = 86_400_000_000;
const FIRST_DAY: i64 = 19_358;

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast and good enough for
/// synthetic data; each file gets its own stream from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// A product's list price: log-normal-ish around 8, fixed by its id.
fn price(product: u64) -> f64 {
    let mut rng = Rng::new(0x5EED, product);
    let z: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
    ((2.0 + 0.9 * z).exp() * 100.0).round() / 100.0
}

fn transactions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, true),
        Field::new("order_id", DataType::Int64, false),
        Field::new(
            "order_ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("product_id", DataType::Int64, false),
        Field::new("quantity", DataType::Int32, false),
        Field::new("amount", DataType::Float64, false),
    ]))
}

/// The sizes of one run.
#[derive(Clone, Copy)]
struct Shape {
    customers: u64,
    products: u64,
    seed: u64,
}

/// Rows `[start, start + rows)` of the data set, as record batches. Orders
/// never straddle files: each file starts a new order stream of its own.
fn generate_file(shape: Shape, file: u64, rows: usize, path: &Path) -> CliResult<usize> {
    let mut rng = Rng::new(shape.seed, file);
    let schema = transactions_schema();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1_000_000))
        .build();
    let out = File::create(path).map_err(|e| {
        CliError::Failed(format!("cannot write '{}': {e}", path.display()))
    })?;
    let mut writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
    // Order ids are unique across files: file f numbers its orders from
    // f * ROWS_PER_FILE (an order has at least one line).
    let mut order = file * ROWS_PER_FILE as u64;
    let mut written = 0;
    let ln_products = (shape.products as f64 + 1.0).ln();
    while written < rows {
        let n = BATCH.min(rows - written);
        let mut customer = Vec::with_capacity(n);
        let mut order_id = Vec::with_capacity(n);
        let mut ts = Vec::with_capacity(n);
        let mut product = Vec::with_capacity(n);
        let mut quantity = Vec::with_capacity(n);
        let mut amount = Vec::with_capacity(n);
        while customer.len() < n {
            order += 1;
            let u = rng.unit();
            let who = (shape.customers as f64 * u * u) as u64 + 1;
            let who = (rng.below(200) != 0).then_some(who as i64);
            let when = (FIRST_DAY + rng.below(730) as i64) * DAY_MICROS
                + rng.below(DAY_MICROS as u64) as i64;
            let mut lines = 1 + rng.below(6) as usize;
            while lines > 0 && customer.len() < n {
                lines -= 1;
                let rank =
                    ((rng.unit() * ln_products).exp() as u64).clamp(1, shape.products);
                let mut items = vec![rank - 1];
                if rank - 1 < 2 * PLANTED_PAIRS
                    && (rank - 1).is_multiple_of(2)
                    && rng.below(2) == 0
                {
                    items.push(rank);
                }
                for item in items {
                    if customer.len() == n {
                        break;
                    }
                    let q = 1 + rng.below(3) as i32;
                    let sign = if rng.below(50) == 0 { -1.0 } else { 1.0 };
                    customer.push(who);
                    order_id.push(order as i64);
                    ts.push(when);
                    product.push(item as i64);
                    quantity.push(q);
                    amount.push(sign * price(item) * q as f64);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(customer)),
            Arc::new(Int64Array::from(order_id)),
            Arc::new(TimestampMicrosecondArray::from(ts)),
            Arc::new(Int64Array::from(product)),
            Arc::new(Int32Array::from(quantity)),
            Arc::new(Float64Array::from(amount)),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        writer.write(&batch)?;
        written += n;
    }
    writer.close()?;
    Ok(written)
}

/// The product table: id, category, list price.
fn write_products(shape: Shape, path: &Path) -> CliResult {
    let ids: Vec<i64> = (0..shape.products as i64).collect();
    let categories: Vec<String> = ids
        .iter()
        .map(|&p| format!("category-{:04}", p as usize / PER_CATEGORY))
        .collect();
    let prices: Vec<f64> = ids.iter().map(|&p| price(p as u64)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Int64, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(categories)),
            Arc::new(Float64Array::from(prices)),
        ],
    )?;
    let out = File::create(path).map_err(|e| {
        CliError::Failed(format!("cannot write '{}': {e}", path.display()))
    })?;
    let mut writer = ArrowWriter::try_new(out, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

pub async fn run(args: GenerateArgs) -> CliResult {
    if args.rows == 0 || args.customers == 0 || args.products < 2 {
        return Err(CliError::Usage(format!(
            "generate needs --rows and --customers of at least 1 and --products of at \
             least 2; got {}, {} and {}.",
            args.rows, args.customers, args.products
        )));
    }
    let shape = Shape {
        customers: args.customers,
        products: args.products,
        seed: args.seed,
    };
    let target = Target::Local(args.output.clone());
    // The folder is replaced whole: refuse one that holds anything but an
    // earlier output of this command.
    super::output::check_replaceable_by(&target, "rfm generate", generated).await?;
    let staged = Staged::create_dir(&target)?;
    let root = staged.temp_path().to_path_buf();
    let rows = args.rows;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let work = tokio::task::spawn_blocking(move || -> CliResult<usize> {
        let dir = root.join("transactions");
        std::fs::create_dir(&dir)?;
        write_products(shape, &root.join("products.parquet"))?;
        let files = rows.div_ceil(ROWS_PER_FILE);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<CliResult<usize>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.min(files))
                .map(|_| {
                    scope.spawn(|| -> CliResult<usize> {
                        let mut total = 0;
                        loop {
                            let f =
                                next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if f >= files {
                                return Ok(total);
                            }
                            let n = ROWS_PER_FILE.min(rows - f * ROWS_PER_FILE);
                            let path = dir.join(format!("part-{f:05}.parquet"));
                            total += generate_file(shape, f as u64, n, &path)?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(CliError::Failed("a generator thread failed".into()))
                    })
                })
                .collect()
        });
        results.into_iter().sum()
    });
    let written = work
        .await
        .map_err(|e| CliError::Failed(format!("generator failed: {e}")))??;
    staged.commit().await?;
    say(&format!(
        "Wrote {written} transaction rows ({} customers at most, {} products, seed {}) to \
         {}/transactions/ and the products to {}/products.parquet",
        args.customers,
        args.products,
        args.seed,
        args.output.display(),
        args.output.display()
    ))
}
