//! Command-line flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Customer-value analytics (RFM scores, segments) as SQL over Parquet, CSV and
/// NDJSON files.
#[derive(Debug, Parser)]
#[command(name = "rfm", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 a query or the report failed, \
2 bad usage or unreadable input, 130 interrupted (no partial output is left). \
Logs go to stderr; set RUST_LOG=debug for more.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL (from an argument, --file, or stdin; a shell on a terminal)
    /// over tables registered from files.
    Sql(SqlArgs),
    /// Score and segment every customer of a transactions table, write one row
    /// per customer to Parquet and print a segment summary.
    Report(Box<ReportArgs>),
    /// Run the report on the embedded CDNOW sample.
    Demo(DemoArgs),
    /// Write synthetic transactions and products (Parquet) for benchmarks:
    /// skewed customers, Zipf-like products, planted pairs, returns and NULL
    /// customer ids, the same for the same seed.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Transaction rows to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,

    /// Customers to draw order owners from.
    #[arg(long, default_value_t = 100_000)]
    pub customers: u64,

    /// Products (50 per category).
    #[arg(long, default_value_t = 10_000)]
    pub products: u64,

    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Folder to create: transactions/part-*.parquet and products.parquet.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

/// Where input tables come from.
#[derive(Debug, Args, Clone)]
pub struct TableArgs {
    /// Register a table: NAME=PATH, where PATH is a file, a folder or a glob,
    /// local or an s3://, gs://, az://, abfs:// or http(s):// URL. The format
    /// comes from the file extension unless --input-format says; folders
    /// laid out as key=value/ give partition columns.
    #[arg(short = 't', long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<String>,

    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub run: RunArgs,
}

/// How input files are read.
#[derive(Debug, Args, Clone)]
pub struct ReadArgs {
    /// Format of the input files.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub input_format: InputFormat,

    /// CSV field delimiter (one character) [default: ',', or a tab for .tsv].
    #[arg(long)]
    pub csv_delimiter: Option<char>,

    /// CSV files have no header row (columns are named column_1, column_2, ...).
    #[arg(long)]
    pub csv_no_header: bool,

    /// CSV quote character.
    #[arg(long, default_value = "\"")]
    pub csv_quote: char,

    /// A regular expression for CSV values that mean NULL besides empty
    /// fields, e.g. '^(NA|NULL)$'.
    #[arg(long, value_name = "REGEX")]
    pub csv_null: Option<String>,

    /// Rows of each CSV file that type inference reads; a later value of
    /// another type fails the run (or, in the report, is a bad row).
    #[arg(long, value_name = "ROWS", default_value_t = 10_000)]
    pub csv_infer_rows: usize,

    /// Object-store option KEY=VALUE over the environment (AWS_*, GOOGLE_*,
    /// AZURE_*), in the object_store spelling: aws_endpoint, aws_region,
    /// aws_allow_http, aws_access_key_id, google_service_account,
    /// azure_storage_account_name, ... Repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE")]
    pub storage_options: Vec<String>,
}

/// How queries run.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Memory the query may use, e.g. 2g or 500m; beyond it, sorts and
    /// aggregations spill to the system temporary folder [default: no limit].
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// By extension: .parquet, .csv/.tsv, .json/.ndjson/.jsonl
    Auto,
    Parquet,
    Csv,
    Ndjson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table
    Table,
    Csv,
    /// Newline-delimited JSON, one object per row
    Json,
    /// Parquet; needs --output
    Parquet,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub tables: TableArgs,

    /// Read the SQL from this file ('-' for stdin).
    #[arg(short, long, value_name = "FILE", conflicts_with = "sql")]
    pub file: Option<PathBuf>,

    /// Output format of query results [default: from the --output extension
    /// (.parquet, .csv, .json, .ndjson), else table].
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,

    /// Write the last query's result to this file instead of stdout: a local
    /// path or an object-store URL, written whole or not at all.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<String>,

    /// SQL statements separated by ';'.
    pub sql: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Transactions: a file, folder or glob of Parquet, CSV or NDJSON, local
    /// or in an object store (s3://, gs://, az://, abfs://, http(s)://).
    #[arg(short, long, value_name = "PATH")]
    pub input: String,

    #[command(flatten)]
    pub read: ReadArgs,

    #[command(flatten)]
    pub run: RunArgs,

    /// File to write, one row per customer: Parquet, or CSV when the name
    /// ends with .csv; a local path or an object-store URL. Written whole or
    /// not at all.
    #[arg(short, long, value_name = "PATH")]
    pub output: String,

    /// Write the output as a folder of Parquet files partitioned by these
    /// columns (e.g. segment), laid out as segment=Champions/FILE.parquet;
    /// customers without a segment go to segment=(no purchase)/.
    #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
    pub partition_by: Vec<String>,

    #[command(flatten)]
    pub scoring: ScoringArgs,

    /// What to do with a row whose customer id, date, amount or order id does
    /// not parse: fail the run, or skip the row and count it by column.
    #[arg(long, value_enum, default_value_t = BadRows::Fail)]
    pub bad_rows: BadRows,

    #[command(flatten)]
    pub offers: OfferArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BadRows {
    /// Stop with an error naming the value
    Fail,
    /// Leave the row out and count it; the report says how many and why
    Skip,
}

/// Next-best offers written beside the report (`next_best_offer`).
#[derive(Debug, Args, Clone)]
pub struct OfferArgs {
    /// Also write the top offers per customer to this Parquet file (a local
    /// path or an object-store URL); needs --products.
    #[arg(long, value_name = "PATH")]
    pub offers: Option<String>,

    /// Products: a file, folder or glob with a product id and a category
    /// column (and optionally a price).
    #[arg(long, value_name = "PATH", requires = "offers")]
    pub products: Option<String>,

    /// Product id column, in both the transactions and the products.
    #[arg(long, default_value = "product_id", requires = "offers")]
    pub product: String,

    /// Category column of the products.
    #[arg(long, default_value = "category", requires = "offers")]
    pub category: String,

    /// Price column of the products; without it, the mean unit price paid.
    #[arg(long, value_name = "COLUMN", requires = "offers")]
    pub price: Option<String>,

    /// Quantity column of the transactions, for unit prices.
    #[arg(long, value_name = "COLUMN", requires = "offers")]
    pub quantity: Option<String>,

    /// Offers per customer.
    #[arg(long, default_value_t = 3, requires = "offers")]
    pub k: usize,
}

#[derive(Debug, Args, Clone)]
pub struct ScoringArgs {
    /// The date the metrics are computed at (YYYY-MM-DD); rows after it are
    /// excluded and counted.
    #[arg(long, value_name = "DATE")]
    pub as_of: String,

    /// Customer id column.
    #[arg(long, default_value = "customer_id")]
    pub customer: String,

    /// Purchase date or timestamp column.
    #[arg(long, default_value = "order_ts")]
    pub ts: String,

    /// Chrono format of a string date column, e.g. '%m/%d/%Y'.
    #[arg(long, value_name = "FORMAT")]
    pub ts_format: Option<String>,

    /// Unit of an integer date column of epoch numbers: s, ms, us or ns.
    #[arg(long, value_name = "UNIT")]
    pub ts_unit: Option<String>,

    /// Time zone whose calendar days purchases fall on (IANA name such as
    /// Europe/Berlin, or +05:30); timestamps without a zone are taken as UTC.
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,

    /// Amount column (negative lines are returns).
    #[arg(long, default_value = "amount")]
    pub amount: String,

    /// Order id column; without it, frequency counts purchase days.
    #[arg(long, value_name = "COLUMN")]
    pub order_id: Option<String>,

    /// Number of scores per dimension (2-9).
    #[arg(long)]
    pub bins: Option<u32>,

    /// Scoring method: quantile, ntile or fixed (fixed needs --cuts).
    #[arg(long)]
    pub method: Option<String>,

    /// Cut points for method fixed: 'r_cuts=30|90|180|365, f_cuts=..., m_cuts=...'.
    #[arg(long, value_name = "CUTS")]
    pub cuts: Option<String>,

    /// Segment map: default, pymc, rf10 or a rule list.
    #[arg(long)]
    pub map: Option<String>,

    /// pymc: reproduce PyMC-Marketing's rfm_segments.
    #[arg(long)]
    pub preset: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Parquet file to write (default: rfm-demo-customers.parquet in the
    /// system temporary folder).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}
