//! Tables and outputs by location: local files, folders and globs, and URLs of
//! object stores (`s3://`, `gs://`, `az://`, `abfs://`, `http(s)://`).
//!
//! [`register_table`] is the one entry point: it registers the object store a
//! location needs, detects the format from the file names, infers hive-style
//! partition columns (`.../year=2024/month=05/part-0.parquet` gives the
//! columns `year` and `month`, usable in SQL and pruned when filtered) and
//! registers a listing table under the name given.
//!
//! Stores are configured from the usual environment variables (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), overridden by explicit options in the spelling
//! of the `object_store` crate (`aws_endpoint`, `aws_region`,
//! `aws_allow_http`, `google_service_account`, `azure_storage_account_name`,
//! ...). No store ever falls back to a cloud metadata address on its own:
//! without credentials, building the store fails with a message saying what
//! to set, unless `allow_instance_metadata=true` asks for the instance's role.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, ScalarValue};
use datafusion::common::{DataFusionError, Result, plan_datafusion_err};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::functions::expr_fn::regexp_like;
use datafusion::logical_expr::{Case, Expr, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use url::Url;

/// File formats a table can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// From the file extension: `.parquet`; `.csv`, `.tsv` (optionally
    /// `.gz`, `.zst`, `.bz2`, `.xz`); `.json`, `.ndjson`, `.jsonl`.
    #[default]
    Auto,
    Parquet,
    Csv,
    Ndjson,
}

/// How CSV files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field delimiter; `None` means `,`, or a tab for `.tsv` files.
    pub delimiter: Option<u8>,
    /// Whether the first line names the columns.
    pub header: bool,
    /// Quote character.
    pub quote: u8,
    /// How many rows schema inference reads from each file.
    pub infer_rows: usize,
    /// A regular expression for values that mean NULL besides empty fields
    /// (for example `^(NA|NULL)$`).
    pub null_regex: Option<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            header: true,
            quote: b'"',
            infer_rows: 1000,
            null_regex: None,
        }
    }
}

/// How a table is read: format, CSV options and object-store options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    pub format: Format,
    pub csv: CsvOptions,
    /// Object-store options (`key`, `value`), applied over the environment.
    pub storage: Vec<(String, String)>,
    /// Columns of CSV files read as text whatever type inference finds, so a
    /// value that does not parse reaches the query (which can count and skip
    /// it) instead of failing the scan.
    pub text_columns: Vec<String>,
}

/// The URL schemes that name an object store.
const REMOTE_SCHEMES: [&str; 9] = [
    "s3", "s3a", "gs", "gcs", "az", "adl", "azure", "abfs", "abfss",
];

/// Whether `location` is a URL of an object store rather than a local path.
pub fn is_remote(location: &str) -> bool {
    remote_url(location).is_some()
}

fn remote_url(location: &str) -> Option<Url> {
    let url = Url::parse(location).ok()?;
    let scheme = url.scheme();
    (REMOTE_SCHEMES.contains(&scheme) || scheme == "http" || scheme == "https")
        .then_some(url)
}

/// The store for `url`, configured from the environment and `options`.
pub fn build_store(
    url: &Url,
    options: &[(String, String)],
) -> Result<Arc<dyn ObjectStore>> {
    let location = url.as_str();
    let mut allow_metadata = false;
    let mut pairs = Vec::new();
    for (key, value) in options {
        if key == "allow_instance_metadata" {
            allow_metadata = parse_bool(location, key, value)?;
        } else {
            pairs.push((key.as_str(), value.as_str()));
        }
    }
    let bad_key = |key: &str, e: object_store::Error| {
        plan_datafusion_err!(
            "'{location}': unknown storage option '{key}' ({e}). Use the object_store \
             spelling, e.g. aws_endpoint, aws_region, google_service_account, \
             azure_storage_account_name."
        )
    };
    let failed = |e: object_store::Error| {
        plan_datafusion_err!("'{location}': cannot set up the object store: {e}")
    };
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as Key};
            let mut b = AmazonS3Builder::from_env().with_url(location);
            for (k, v) in pairs {
                b = b.with_config(k.parse().map_err(|e| bad_key(k, e))?, v);
            }
            let has = |key: Key| b.get_config_value(&key).is_some();
            let signed_by_env = [
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
            if !(has(Key::AccessKeyId)
                || skip_signature(&b.get_config_value(&Key::SkipSignature))
                || signed_by_env
                || allow_metadata)
            {
                return Err(no_credentials(
                    location,
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the options \
                     aws_access_key_id and aws_secret_access_key), or \
                     aws_skip_signature=true for a public bucket",
                ));
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "gs" | "gcs" => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as Key};
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(location);
            for (k, v) in pairs {
                b = b.with_config(k.parse().map_err(|e| bad_key(k, e))?, v);
            }
            let has = |key: Key| b.get_config_value(&key).is_some();
            if !(has(Key::ServiceAccount)
                || has(Key::ServiceAccountKey)
                || has(Key::ApplicationCredentials)
                || skip_signature(&b.get_config_value(&Key::SkipSignature))
                || allow_metadata)
            {
                return Err(no_credentials(
                    location,
                    "GOOGLE_SERVICE_ACCOUNT (a key file) or GOOGLE_SERVICE_ACCOUNT_KEY \
                     (its JSON), or google_skip_signature=true for a public bucket",
                ));
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "az" | "adl" | "azure" | "abfs" | "abfss" => {
            use object_store::azure::{AzureConfigKey as Key, MicrosoftAzureBuilder};
            let mut b = MicrosoftAzureBuilder::from_env().with_url(location);
            for (k, v) in pairs {
                b = b.with_config(k.parse().map_err(|e| bad_key(k, e))?, v);
            }
            let has = |key: Key| b.get_config_value(&key).is_some();
            let emulator = b
                .get_config_value(&Key::UseEmulator)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if !(has(Key::AccessKey)
                || has(Key::SasKey)
                || has(Key::Token)
                || has(Key::ClientSecret)
                || has(Key::FederatedTokenFile)
                || emulator
                || skip_signature(&b.get_config_value(&Key::SkipSignature))
                || allow_metadata)
            {
                return Err(no_credentials(
                    location,
                    "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or a SAS \
                     token, or a client secret), or azure_storage_use_emulator=true",
                ));
            }
            Arc::new(b.build().map_err(failed)?)
        }
        "http" | "https" => {
            // DataFusion asks the store for paths below its root, so the
            // store is built on the root, not on the file's URL.
            let root = &url[url::Position::BeforeScheme..url::Position::BeforePath];
            let mut b = object_store::http::HttpBuilder::new().with_url(root);
            if url.scheme() == "http" {
                b = b.with_config(object_store::ClientConfigKey::AllowHttp, "true");
            }
            for (k, v) in pairs {
                b = b.with_config(k.parse().map_err(|e| bad_key(k, e))?, v);
            }
            Arc::new(b.build().map_err(failed)?)
        }
        other => {
            return Err(plan_datafusion_err!(
                "'{location}': unsupported URL scheme '{other}'. Use a local path or an \
                 s3://, gs://, az://, abfs:// or http(s):// URL."
            ));
        }
    };
    Ok(store)
}

/// The message of `e` without the "Error during planning: " its display
/// starts with, for errors wrapped in another message.
pub fn plain(e: &DataFusionError) -> String {
    match e {
        DataFusionError::Plan(message) => message.clone(),
        other => other.strip_backtrace(),
    }
}

fn skip_signature(value: &Option<String>) -> bool {
    value
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_bool(location: &str, key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(plan_datafusion_err!(
            "'{location}': option {key} must be true or false; got '{value}'."
        )),
    }
}

fn no_credentials(location: &str, what: &str) -> DataFusionError {
    plan_datafusion_err!(
        "'{location}': no credentials. Set {what}. The client never asks a cloud \
         metadata address unless allow_instance_metadata=true is given."
    )
}

/// The root URL of the store behind `url`: scheme and authority.
fn store_root(url: &Url) -> Result<ObjectStoreUrl> {
    let root = &url[url::Position::BeforeScheme..url::Position::BeforePath];
    ObjectStoreUrl::parse(root)
}

/// Registers the object store `location` needs on `ctx` (nothing for a local
/// path) and returns the store with the root URL it is registered under.
pub fn register_store(
    ctx: &SessionContext,
    location: &str,
    options: &[(String, String)],
) -> Result<Option<(Arc<dyn ObjectStore>, ObjectStoreUrl)>> {
    let Some(url) = remote_url(location) else {
        return Ok(None);
    };
    let store = build_store(&url, options)?;
    let root = store_root(&url)?;
    ctx.runtime_env()
        .register_object_store(root.as_ref(), Arc::clone(&store));
    Ok(Some((store, root)))
}

/// Where a table's files are: a listing URL, with the glob of a URL split off
/// (DataFusion reads globs in local paths only).
fn listing_url(location: &str) -> Result<ListingTableUrl> {
    let Some(url) = remote_url(location) else {
        if !has_glob(location) && !std::path::Path::new(location).exists() {
            return Err(plan_datafusion_err!(
                "'{location}' does not exist. Check the path."
            ));
        }
        return ListingTableUrl::parse(location);
    };
    let path = url.path();
    match path.find(['*', '?', '[']) {
        None => ListingTableUrl::parse(location),
        Some(at) => {
            let cut = path[..at].rfind('/').map_or(0, |i| i + 1);
            let mut base = url.clone();
            base.set_path(&path[..cut]);
            // DataFusion matches the glob against the path below the base.
            let pattern = glob::Pattern::new(&path[cut..]).map_err(|e| {
                plan_datafusion_err!("'{location}': bad glob pattern: {e}")
            })?;
            ListingTableUrl::try_new(base, Some(pattern))
        }
    }
}

fn has_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Extensions recognised, longest first, with the format and compression.
const EXTENSIONS: [(&str, Format, FileCompressionType); 14] = [
    (
        ".parquet",
        Format::Parquet,
        FileCompressionType::UNCOMPRESSED,
    ),
    (".csv.gz", Format::Csv, FileCompressionType::GZIP),
    (".csv.zst", Format::Csv, FileCompressionType::ZSTD),
    (".csv.bz2", Format::Csv, FileCompressionType::BZIP2),
    (".csv.xz", Format::Csv, FileCompressionType::XZ),
    (".tsv.gz", Format::Csv, FileCompressionType::GZIP),
    (".tsv.zst", Format::Csv, FileCompressionType::ZSTD),
    (".csv", Format::Csv, FileCompressionType::UNCOMPRESSED),
    (".tsv", Format::Csv, FileCompressionType::UNCOMPRESSED),
    (".ndjson.gz", Format::Ndjson, FileCompressionType::GZIP),
    (".ndjson", Format::Ndjson, FileCompressionType::UNCOMPRESSED),
    (".jsonl", Format::Ndjson, FileCompressionType::UNCOMPRESSED),
    (".json.gz", Format::Ndjson, FileCompressionType::GZIP),
    (".json", Format::Ndjson, FileCompressionType::UNCOMPRESSED),
];

/// The extension of `name` that [`EXTENSIONS`] knows, with its format and
/// compression.
fn known_extension(name: &str) -> Option<(&'static str, Format, FileCompressionType)> {
    let lower = name.to_ascii_lowercase();
    EXTENSIONS
        .iter()
        .find(|(ext, _, _)| lower.ends_with(ext))
        .copied()
}

/// Whether a file under the table's root is data rather than a marker or a
/// temporary file (`_SUCCESS`, `.part-0.parquet.tmp`, ...). A table that names
/// one file reads it whatever its name.
fn is_data_file(url: &ListingTableUrl, path: &ObjectPath) -> bool {
    if !url.is_collection() {
        return true;
    }
    url.strip_prefix(path).is_none_or(|mut parts| {
        parts.all(|p| !(p.starts_with('.') || p.starts_with('_')))
    })
}

/// Registers the files at `location` as table `name`.
///
/// `location` is a local file, folder or glob, or an object-store URL (a
/// folder ends with `/`; a glob such as `s3://b/sales/*.parquet` is allowed).
/// Files of several formats in one folder are not mixed: the first data file
/// decides, and only files with its extension are read.
pub async fn register_table(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    options: &ReadOptions,
) -> Result<()> {
    let table = open_table(ctx, name, location, options).await?;
    ctx.register_table(name, table)?;
    Ok(())
}

/// The files of a table and how to read them.
struct Listing {
    url: ListingTableUrl,
    store: Arc<dyn ObjectStore>,
    files: Vec<object_store::ObjectMeta>,
    format: Format,
    extension: &'static str,
    file_format: Arc<dyn FileFormat>,
}

/// Lists the data files at `location` and picks their format.
async fn list(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    options: &ReadOptions,
) -> Result<Listing> {
    let context =
        |e: DataFusionError| plan_datafusion_err!("table '{name}': {}", plain(&e));
    register_store(ctx, location, &options.storage).map_err(context)?;
    let url = listing_url(location).map_err(context)?;
    let state = ctx.state();
    let store = state.runtime_env().object_store(&url).map_err(context)?;

    let listed: Vec<_> = url
        .list_all_files(&state, store.as_ref(), "")
        .await
        .map_err(|e| {
            plan_datafusion_err!(
                "table '{name}': cannot list '{location}': {}",
                plain(&e)
            )
        })?
        .try_collect()
        .await
        .map_err(|e: DataFusionError| {
            plan_datafusion_err!(
                "table '{name}': cannot list '{location}': {}",
                plain(&e)
            )
        })?;
    let (files, markers): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .partition(|meta| is_data_file(&url, &meta.location));
    let Some(first) = files.iter().min_by(|a, b| a.location.cmp(&b.location)) else {
        return Err(plan_datafusion_err!(
            "table '{name}': '{location}' holds no data files. Check the path (a folder \
             URL ends with '/')."
        ));
    };
    let found = known_extension(first.location.as_ref());
    let (format, extension, compression) = match (options.format, found) {
        (Format::Auto, None) => {
            return Err(plan_datafusion_err!(
                "table '{name}': cannot tell the format of '{}' from its name. Pass the \
                 format (parquet, csv or ndjson).",
                shown(&url, &first.location)
            ));
        }
        (Format::Auto, Some((ext, format, compression))) => (format, ext, compression),
        (given, Some((ext, format, compression))) if given == format => {
            (format, ext, compression)
        }
        // A declared format reads every file, whatever its name.
        (given, _) => (given, "", FileCompressionType::UNCOMPRESSED),
    };
    check_files(name, location, &url, &files, extension)?;
    check_markers(name, location, &url, &markers, extension)?;
    let file_format: Arc<dyn FileFormat> = match format {
        Format::Parquet | Format::Auto => Arc::new(ParquetFormat::default()),
        Format::Csv => {
            let csv = &options.csv;
            let delimiter = csv.delimiter.unwrap_or(if extension.starts_with(".tsv") {
                b'\t'
            } else {
                b','
            });
            let f = CsvFormat::default()
                .with_has_header(csv.header)
                .with_delimiter(delimiter)
                .with_quote(csv.quote)
                .with_schema_infer_max_rec(csv.infer_rows)
                .with_file_compression_type(compression)
                .with_null_regex(csv.null_regex.clone());
            Arc::new(f)
        }
        Format::Ndjson => {
            Arc::new(JsonFormat::default().with_file_compression_type(compression))
        }
    };
    Ok(Listing {
        url,
        store,
        files,
        format,
        extension,
        file_format,
    })
}

/// The file of table `name` (read from `location` with `options`, as
/// [`register_table`] does) whose `column` does not read with the table's
/// `schema`: where a parse error that DataFusion reports without a file name
/// comes from. `None` when every file reads.
pub async fn find_unreadable_file(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    options: &ReadOptions,
    schema: &SchemaRef,
    column: &str,
) -> Result<Option<String>> {
    let listing = list(ctx, name, location, options).await?;
    let file_schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| {
                listing.files.iter().all(|meta| {
                    !meta.location.as_ref().contains(&format!("{}=", f.name()))
                })
            })
            .cloned()
            .collect::<Vec<_>>(),
    ));
    for meta in &listing.files {
        let shown = shown(&listing.url, &meta.location);
        let url = ListingTableUrl::parse(&shown)?;
        let options = ListingOptions::new(Arc::clone(&listing.file_format))
            .with_file_extension(listing.extension);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(Arc::clone(&file_schema));
        let table = Arc::new(ListingTable::try_new(config)?);
        let read = async {
            ctx.read_table(table)?
                .aggregate(
                    vec![],
                    vec![datafusion::functions_aggregate::expr_fn::count(col(
                        Column::new_unqualified(column),
                    ))],
                )?
                .collect()
                .await
        };
        if read.await.is_err() {
            return Ok(Some(shown));
        }
    }
    Ok(None)
}

/// The listing table at `location`, as [`register_table`] reads it.
pub async fn open_table(
    ctx: &SessionContext,
    name: &str,
    location: &str,
    options: &ReadOptions,
) -> Result<Arc<dyn TableProvider>> {
    let context =
        |e: DataFusionError| plan_datafusion_err!("table '{name}': {}", plain(&e));
    if let Some(regex) = &options.csv.null_regex {
        regex::Regex::new(regex).map_err(|e| {
            plan_datafusion_err!(
                "table '{name}': the NULL pattern '{regex}' is not a regular expression \
                 ({e}). Example: '^(NA|NULL)$'."
            )
        })?;
    }
    let Listing {
        url,
        store,
        files,
        format,
        extension,
        file_format,
    } = list(ctx, name, location, options).await?;
    let state = ctx.state();
    let mut listing =
        ListingOptions::new(Arc::clone(&file_format)).with_file_extension(extension);
    let partitions = listing
        .infer_partitions(&state, &url)
        .await
        .map_err(context)?;
    if !partitions.is_empty() {
        check_layout(name, &url, &files, partitions.len())?;
        log::debug!("table {name}: hive partition columns {partitions:?}");
        listing = listing.with_table_partition_cols(
            partitions
                .into_iter()
                .map(|p| (p, DataType::Utf8))
                .collect(),
        );
    }
    let mut schema = match listing.infer_schema(&state, &url).await {
        Ok(schema) => schema,
        Err(e) => {
            return Err(explain_schema_failure(
                name,
                &url,
                &state,
                &store,
                &file_format,
                &files,
                e,
            )
            .await);
        }
    };
    if format == Format::Csv && options.csv.header && files.len() > 1 {
        check_headers(name, &url, &state, &store, &file_format, &files).await?;
    }
    let null_regex = options
        .csv
        .null_regex
        .as_ref()
        .filter(|_| format == Format::Csv);
    let typed = schema.clone();
    if null_regex.is_some() {
        // DataFusion 55's CSV reader uses the NULL pattern for inference
        // only: read every column as text and apply it in a view.
        let all: Vec<String> = typed.fields().iter().map(|f| f.name().clone()).collect();
        schema = as_text(&schema, &all);
    } else if format == Format::Csv && !options.text_columns.is_empty() {
        // NDJSON is left as inferred: its reader cannot read a JSON number as
        // text, and a column inferred as numbers holds only numbers.
        schema = as_text(&schema, &options.text_columns);
    }
    let partition_names: Vec<String> = listing
        .table_partition_cols
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing)
        .with_schema(schema);
    let table = Arc::new(ListingTable::try_new(config).map_err(context)?);
    let Some(regex) = null_regex else {
        return Ok(table);
    };
    // The columns the reader sees as text, typed back after the NULL pattern.
    let scan =
        LogicalPlanBuilder::scan(name, provider_as_source(table), None)?.build()?;
    let columns: Vec<Expr> = typed
        .fields()
        .iter()
        .map(|f| {
            let c = col(Column::new_unqualified(f.name()));
            if partition_names.contains(f.name()) {
                return c;
            }
            // A column whose every value matched the pattern was inferred
            // as Null: it stays text, all NULL.
            let keep_text = options.text_columns.contains(f.name())
                || matches!(f.data_type(), DataType::Utf8 | DataType::Null);
            let value = if keep_text {
                c.clone()
            } else {
                cast(c.clone(), f.data_type().clone())
            };
            Expr::Case(Case::new(
                None,
                vec![(
                    Box::new(regexp_like(c, lit(regex.clone()), None)),
                    Box::new(lit(ScalarValue::Null)),
                )],
                Some(Box::new(value)),
            ))
            .alias(f.name())
        })
        .collect();
    let plan = LogicalPlanBuilder::from(scan).project(columns)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Refuses a table whose files would be read in part: data files with
/// another extension (or the same one in other letter case) than the one
/// that decides the format.
fn check_files(
    name: &str,
    location: &str,
    url: &ListingTableUrl,
    files: &[object_store::ObjectMeta],
    extension: &str,
) -> Result<()> {
    if extension.is_empty() {
        return Ok(());
    }
    let other = files.iter().find(|f| {
        let path = f.location.as_ref();
        !path.ends_with(extension) && known_extension(path).is_some()
    });
    match other {
        Some(file) => Err(plan_datafusion_err!(
            "table '{name}': '{location}' mixes file types: '{}' is not a {extension} \
             file like the others, and would be left out. Read each type as its own \
             table, or pass a glob such as '{}*{extension}'.",
            shown(url, &file.location),
            location.trim_end_matches('/').to_string() + "/"
        )),
        None => Ok(()),
    }
}

/// Refuses a folder holding a file whose name marks it as not data (it starts
/// with `.` or `_`) but which the reader would read, because it ends with
/// the data files' extension (or any name, when the format was declared):
/// its rows would be counted with the others.
fn check_markers(
    name: &str,
    location: &str,
    url: &ListingTableUrl,
    markers: &[object_store::ObjectMeta],
    extension: &str,
) -> Result<()> {
    match markers
        .iter()
        .find(|f| f.location.as_ref().ends_with(extension))
    {
        Some(file) => Err(plan_datafusion_err!(
            "table '{name}': '{location}' holds '{}', whose name (starting with '.' or \
             '_') marks a marker or temporary file, but the reader would read its rows \
             with the others. Move or rename it, or name only the data files with a \
             glob that leaves it out (such as 'part-*{extension}').",
            shown(url, &file.location)
        )),
        None => Ok(()),
    }
}

/// Refuses a partitioned folder with files outside its `key=value/` layout,
/// which DataFusion would leave out.
fn check_layout(
    name: &str,
    url: &ListingTableUrl,
    files: &[object_store::ObjectMeta],
    depth: usize,
) -> Result<()> {
    for file in files {
        let Some(parts) = url.strip_prefix(&file.location) else {
            continue;
        };
        let parts: Vec<&str> = parts.collect();
        let folders = &parts[..parts.len().saturating_sub(1)];
        if folders.len() != depth || !folders.iter().all(|p| p.contains('=')) {
            return Err(plan_datafusion_err!(
                "table '{name}': '{}' is outside the key=value/ folder layout of the \
                 other files and would be left out. Move it, or read it as its own \
                 table.",
                shown(url, &file.location)
            ));
        }
    }
    Ok(())
}

/// Refuses CSV files whose headers name the columns in another order: the
/// reader matches columns by position, so their values would land in the
/// wrong columns.
async fn check_headers(
    name: &str,
    url: &ListingTableUrl,
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    format: &Arc<dyn FileFormat>,
    files: &[object_store::ObjectMeta],
) -> Result<()> {
    let mut first: Option<(Vec<String>, &object_store::ObjectMeta)> = None;
    for meta in files.iter().take(1000) {
        let Ok(schema) = format
            .infer_schema(state, store, std::slice::from_ref(meta))
            .await
        else {
            continue; // schema inference of the table names the file
        };
        let names: Vec<String> =
            schema.fields().iter().map(|f| f.name().clone()).collect();
        match &first {
            None => first = Some((names, meta)),
            Some((expected, seen)) if *expected != names => {
                return Err(plan_datafusion_err!(
                    "table '{name}': the CSV headers differ: '{}' has columns {} and \
                     '{}' has {}. Columns are read by position, so rewrite the files \
                     with one header or read them as separate tables.",
                    shown(url, &seen.location),
                    expected.join(", "),
                    shown(url, &meta.location),
                    names.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An object's location as the user would write it: a local path, or a URL.
fn shown(url: &ListingTableUrl, path: &ObjectPath) -> String {
    if url.scheme() == "file" {
        format!("/{path}")
    } else {
        format!("{}{path}", url.object_store().as_str())
    }
}

/// `schema` with `columns` turned into strings.
fn as_text(schema: &SchemaRef, columns: &[String]) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| {
            if columns.contains(f.name()) {
                Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8))
            } else {
                Arc::clone(f)
            }
        })
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// When the schema of a table cannot be inferred, finds the file at fault: one
/// that cannot be read, or one whose schema does not fit the others.
async fn explain_schema_failure(
    name: &str,
    url: &ListingTableUrl,
    state: &dyn Session,
    store: &Arc<dyn ObjectStore>,
    format: &Arc<dyn FileFormat>,
    files: &[object_store::ObjectMeta],
    error: DataFusionError,
) -> DataFusionError {
    let mut first: Option<(SchemaRef, &object_store::ObjectMeta)> = None;
    for meta in files.iter().take(1000) {
        match format
            .infer_schema(state, store, std::slice::from_ref(meta))
            .await
        {
            Err(e) => {
                return plan_datafusion_err!(
                    "table '{name}': cannot read file '{}': {}. Replace or remove the \
                     file.",
                    shown(url, &meta.location),
                    plain(&e)
                );
            }
            Ok(schema) => match &first {
                None => first = Some((schema, meta)),
                Some((expected, seen)) => {
                    if let Some(diff) = schema_difference(expected, &schema) {
                        return plan_datafusion_err!(
                            "table '{name}': the files do not share one schema: '{}' \
                             and '{}' differ ({diff}). Read them as separate tables or \
                             rewrite one.",
                            shown(url, &seen.location),
                            shown(url, &meta.location)
                        );
                    }
                }
            },
        }
    }
    plan_datafusion_err!("table '{name}': {}", error.strip_backtrace())
}

/// How two file schemas clash, if they do: a column with two types.
fn schema_difference(a: &SchemaRef, b: &SchemaRef) -> Option<String> {
    b.fields().iter().find_map(|field| {
        let other = a.field_with_name(field.name()).ok()?;
        (other.data_type() != field.data_type()).then(|| {
            format!(
                "column '{}' is {} in one and {} in the other",
                field.name(),
                other.data_type(),
                field.data_type()
            )
        })
    })
}
