//! Printing results and writing them to files whole or not at all.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::display::FormatOptions;
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::physical_plan::SendableRecordBatchStream;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion_rfm::storage;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::args::OutputFormat;
use super::{CliError, CliResult};

/// Where an output goes: a local path, or an object in a store.
#[derive(Debug, Clone)]
pub enum Target {
    Local(PathBuf),
    Remote {
        url: String,
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
    },
}

impl Target {
    /// The target `location` names: an object-store URL or a local path.
    pub fn parse(location: &str, storage: &[(String, String)]) -> CliResult<Self> {
        if !storage::is_remote(location) {
            return Ok(Target::Local(PathBuf::from(location)));
        }
        let url = url::Url::parse(location)
            .map_err(|e| CliError::Usage(format!("bad output URL '{location}': {e}")))?;
        let store = storage::build_store(&url, storage)
            .map_err(|e| CliError::Usage(storage::plain(&e)))?;
        let path = ObjectPath::from_url_path(url.path())
            .map_err(|e| CliError::Usage(format!("bad output URL '{location}': {e}")))?;
        if path.as_ref().is_empty() {
            return Err(CliError::Usage(format!(
                "output URL '{location}' names a bucket, not an object; add a path."
            )));
        }
        Ok(Target::Remote {
            url: location.to_string(),
            store,
            path,
        })
    }

    /// The target as the user wrote it.
    pub fn display(&self) -> String {
        match self {
            Target::Local(path) => path.display().to_string(),
            Target::Remote { url, .. } => url.clone(),
        }
    }

    /// The local file or folder that holds the data until the commit: beside
    /// the target for a local one (so the commit is a rename), in the system
    /// temporary folder for an object.
    fn staging(&self) -> CliResult<PathBuf> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        match self {
            Target::Local(target) => {
                let dir = match target.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if !dir.is_dir() {
                    return Err(CliError::Usage(format!(
                        "cannot write '{}': folder '{}' does not exist.",
                        target.display(),
                        dir.display()
                    )));
                }
                let name = target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("output");
                Ok(dir.join(format!(".{name}.rfm-tmp-{pid}-{n}")))
            }
            Target::Remote { .. } => {
                Ok(std::env::temp_dir().join(format!("rfm-upload-{pid}-{n}")))
            }
        }
    }
}

/// A file or folder being written under a temporary name; it becomes the
/// target only on [`Staged::commit`], and is removed if dropped first, so a
/// failed run leaves neither a partial output nor a damaged old one.
pub struct Staged {
    target: Target,
    temp: PathBuf,
    committed: bool,
}

/// A single output file being written.
pub type AtomicFile = Staged;

impl Staged {
    /// A new file to write, and its handle.
    pub fn create(target: &Target) -> CliResult<(Self, File)> {
        let shown = target.display();
        if shown.ends_with('/') {
            return Err(CliError::Usage(format!(
                "'{shown}' names a folder; this output is one file. Name the file, \
                 e.g. {shown}customers.parquet."
            )));
        }
        let temp = target.staging()?;
        let file = File::create(&temp).map_err(|e| {
            CliError::Usage(format!("cannot write '{}': {e}", target.display()))
        })?;
        Ok((Self::at(target, temp), file))
    }

    /// A new folder to fill, for a partitioned output.
    pub fn create_dir(target: &Target) -> CliResult<Self> {
        let temp = target.staging()?;
        std::fs::create_dir(&temp).map_err(|e| {
            CliError::Usage(format!("cannot write '{}': {e}", target.display()))
        })?;
        Ok(Self::at(target, temp))
    }

    fn at(target: &Target, temp: PathBuf) -> Self {
        Self {
            target: target.clone(),
            temp,
            committed: false,
        }
    }

    /// Where the data is until [`Staged::commit`].
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Makes the staged data the target. A local file or folder is renamed
    /// into place; an object is uploaded in parts and appears whole or not at
    /// all. A partitioned folder in a store is uploaded file by file, then the
    /// previous run's files are deleted.
    pub async fn commit(mut self) -> CliResult {
        let _shield = CommitShield::new();
        let shown = self.target.display();
        let failed = |e: &dyn std::fmt::Display| {
            CliError::Failed(format!("cannot write output '{shown}': {e}"))
        };
        match &self.target {
            Target::Local(target) if self.temp.is_dir() => {
                replace_dir(&self.temp, target).map_err(|e| failed(&e))?
            }
            Target::Local(target) => {
                std::fs::rename(&self.temp, target).map_err(|e| failed(&e))?
            }
            Target::Remote { store, path, .. } if self.temp.is_dir() => {
                upload_dir(store, &self.temp, path)
                    .await
                    .map_err(|e| failed(&e))?;
                let _ = std::fs::remove_dir_all(&self.temp);
            }
            Target::Remote { store, path, .. } => {
                upload(store, &self.temp, path)
                    .await
                    .map_err(|e| failed(&e))?;
                let _ = std::fs::remove_file(&self.temp);
            }
        }
        self.committed = true;
        Ok(())
    }
}

/// Marks a commit in progress, so a stop request lets it finish.
struct CommitShield;

impl CommitShield {
    fn new() -> Self {
        super::COMMITTING.fetch_add(1, Ordering::SeqCst);
        CommitShield
    }
}

impl Drop for CommitShield {
    fn drop(&mut self) {
        super::COMMITTING.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            if self.temp.is_dir() {
                let _ = std::fs::remove_dir_all(&self.temp);
            } else {
                let _ = std::fs::remove_file(&self.temp);
            }
        }
    }
}

/// Refuses to replace `target` with a folder partitioned by `columns` when
/// something other than an earlier such output is there: replacing the
/// folder would delete it.
pub async fn check_replaceable(target: &Target, columns: &[String]) -> CliResult {
    let layout = columns
        .iter()
        .map(|c| format!("{c}="))
        .collect::<Vec<_>>()
        .join("/");
    // A path relative to the folder fits when its folders are `column=value`
    // in order and a file sits below the last one.
    let fits = |parts: &[String]| {
        !columns.is_empty()
            && parts.len() == columns.len() + 1
            && parts
                .iter()
                .zip(columns)
                .all(|(part, column)| part.starts_with(&format!("{column}=")))
    };
    check_replaceable_by(target, &layout, fits).await
}

/// Refuses to replace folder `target` when it holds a file whose path
/// (relative to it, as its parts) does not `fit` the layout an earlier
/// output of the command would have, described as `layout`.
pub async fn check_replaceable_by(
    target: &Target,
    layout: &str,
    fits: impl Fn(&[String]) -> bool,
) -> CliResult {
    let foreign = |what: &str| {
        CliError::Usage(format!(
            "'{}' holds '{what}', which is not part of an earlier output laid out by \
             {layout}; replacing the folder would delete it. Write to a new or empty folder.",
            target.display(),
        ))
    };
    match target {
        Target::Local(root) => {
            if root.is_file() {
                return Err(CliError::Usage(format!(
                    "'{}' is a file; this output is a folder. Name a folder.",
                    root.display()
                )));
            }
            if !root.is_dir() {
                return Ok(());
            }
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)?.filter_map(Result::ok) {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                        continue;
                    }
                    let parts: Vec<String> = path
                        .strip_prefix(root)
                        .unwrap_or(&path)
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if !fits(&parts) {
                        return Err(foreign(&path.display().to_string()));
                    }
                }
            }
            Ok(())
        }
        Target::Remote { store, path, url } => {
            let objects: Vec<_> = store
                .list(Some(path))
                .try_collect()
                .await
                .map_err(|e| CliError::Usage(format!("cannot list '{url}': {e}")))?;
            for meta in objects {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(path)
                    .map(|parts| parts.map(|p| p.as_ref().to_string()).collect())
                    .unwrap_or_default();
                if !fits(&parts) {
                    return Err(foreign(meta.location.as_ref()));
                }
            }
            Ok(())
        }
    }
}

/// Puts folder `new` where `target` is: the old folder is moved aside first
/// and put back if the move fails, then removed.
fn replace_dir(new: &Path, target: &Path) -> std::io::Result<()> {
    if target.is_file() {
        return Err(std::io::Error::other(
            "it is a file; a partitioned output is a folder",
        ));
    }
    if !target.exists() {
        return std::fs::rename(new, target);
    }
    let old = new.with_extension("old");
    std::fs::rename(target, &old)?;
    if let Err(e) = std::fs::rename(new, target) {
        let _ = std::fs::rename(&old, target);
        return Err(e);
    }
    std::fs::remove_dir_all(&old)
}

/// Uploads one local file to `path` in parts: the object appears only when
/// the last part is in, and an aborted upload leaves nothing.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    file: &Path,
    path: &ObjectPath,
) -> Result<(), object_store::Error> {
    use tokio::io::AsyncReadExt;

    const PART: usize = 8 * 1024 * 1024;
    let mut reader =
        tokio::fs::File::open(file)
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })?;
    let upload = store.put_multipart(path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
    let mut buffer = vec![0u8; PART];
    loop {
        let n = match reader.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                });
            }
        };
        if let Err(e) = writer.wait_for_capacity(4).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.write(&buffer[..n]);
    }
    writer.finish().await?;
    Ok(())
}

/// Uploads every file of folder `dir` under `prefix`, then deletes the
/// objects under `prefix` that the upload did not write. If an upload fails,
/// the objects already uploaded are deleted and the previous ones stay.
async fn upload_dir(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    prefix: &ObjectPath,
) -> Result<(), object_store::Error> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| object_store::Error::Generic {
                store: "local",
                source: Box::new(e),
            })?;
        for entry in entries.filter_map(Result::ok) {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let key = |file: &Path| -> ObjectPath {
        let relative = file.strip_prefix(dir).unwrap_or(file);
        relative
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .fold(prefix.clone(), |p, part| p.join(part))
    };
    let mut written = HashSet::new();
    for file in &files {
        let path = key(file);
        if let Err(e) = upload(store, file, &path).await {
            for done in &written {
                let _ = store.delete(done).await;
            }
            return Err(e);
        }
        written.insert(path);
    }
    let old: Vec<_> = store
        .list(Some(prefix))
        .try_filter(|meta| futures::future::ready(!written.contains(&meta.location)))
        .try_collect()
        .await?;
    for meta in old {
        store.delete(&meta.location).await?;
    }
    Ok(())
}

/// Streams a result into a Parquet file under a temporary name; the caller
/// commits it once everything else that can fail has run. `on_batch` sees
/// each batch before it is written, with the rows so far.
pub async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    target: &Target,
    mut on_batch: impl FnMut(&RecordBatch, usize) -> CliResult,
) -> CliResult<(AtomicFile, usize)> {
    let (atomic, file) = AtomicFile::create(target)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer =
        ArrowWriter::try_new(BufWriter::new(file), stream.schema(), Some(props))?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        on_batch(&batch, rows)?;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok((atomic, rows))
}

/// Writes collected batches in `format` to `out`.
pub fn write_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut (dyn Write + Send),
) -> CliResult {
    let failed =
        |e: datafusion::arrow::error::ArrowError| CliError::Failed(e.to_string());
    match format {
        OutputFormat::Table => {
            if batches.iter().all(|b| b.num_rows() == 0) {
                let names: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                writeln!(out, "(0 rows; columns: {})", names.join(", "))?;
            } else {
                let options = FormatOptions::default().with_null("NULL");
                let table = pretty_format_batches_with_options(batches, &options)
                    .map_err(failed)?;
                writeln!(out, "{table}")?;
            }
        }
        OutputFormat::Csv => {
            let mut w = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(Arc::clone(schema)))
                    .map_err(failed)?;
            }
            for b in batches {
                w.write(b).map_err(failed)?;
            }
        }
        OutputFormat::Json => {
            let mut w = datafusion::arrow::json::LineDelimitedWriter::new(out);
            for b in batches {
                w.write(b).map_err(failed)?;
            }
            w.finish().map_err(failed)?;
        }
        OutputFormat::Parquet => {
            let mut w = ArrowWriter::try_new(out, Arc::clone(schema), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    Ok(())
}

/// Writes batches to `path` atomically, or to stdout when there is no path.
pub async fn emit(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    target: Option<&Target>,
) -> CliResult {
    match target {
        Some(target) => {
            let (atomic, file) = AtomicFile::create(target)?;
            let mut writer = BufWriter::new(file);
            write_batches(schema, batches, format, &mut writer)?;
            writer.flush()?;
            drop(writer);
            atomic.commit().await
        }
        None if format == OutputFormat::Parquet => Err(CliError::Usage(
            "--format parquet writes a file; add --output PATH.".into(),
        )),
        None => {
            let mut stdout = std::io::stdout();
            write_batches(schema, batches, format, &mut stdout)?;
            stdout.flush()?;
            Ok(())
        }
    }
}
