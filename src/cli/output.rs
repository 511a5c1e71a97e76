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
use futures::StreamExt;

use super::args::OutputFormat;
use super::{CliError, CliResult};

/// A file being written under a temporary name beside its target; it becomes
/// the target only on [`AtomicFile::commit`], and is removed if dropped first,
/// so a failed run leaves neither a partial file nor a damaged old one.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl AtomicFile {
    pub fn create(target: &Path) -> CliResult<(Self, File)> {
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
        let temp = dir.join(format!(".{name}.rfm-tmp-{}", std::process::id()));
        let file = File::create(&temp).map_err(|e| {
            CliError::Usage(format!("cannot write '{}': {e}", target.display()))
        })?;
        Ok((
            Self {
                target: target.to_path_buf(),
                temp,
                committed: false,
            },
            file,
        ))
    }

    /// Where the data is until [`AtomicFile::commit`].
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    pub fn commit(mut self) -> CliResult {
        std::fs::rename(&self.temp, &self.target).map_err(|e| {
            CliError::Failed(format!(
                "cannot move output into '{}': {e}",
                self.target.display()
            ))
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Streams a result into a Parquet file under a temporary name; the caller
/// commits it once everything else that can fail has run.
pub async fn write_parquet(
    mut stream: SendableRecordBatchStream,
    path: &Path,
    mut on_batch: impl FnMut(usize),
) -> CliResult<(AtomicFile, usize)> {
    let (atomic, file) = AtomicFile::create(path)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer =
        ArrowWriter::try_new(BufWriter::new(file), stream.schema(), Some(props))
            .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        on_batch(rows);
        writer
            .write(&batch)
            .map_err(|e| CliError::Failed(e.to_string()))?;
    }
    writer
        .close()
        .map_err(|e| CliError::Failed(e.to_string()))?;
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
            let mut w = ArrowWriter::try_new(out, Arc::clone(schema), None)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            for b in batches {
                w.write(b).map_err(|e| CliError::Failed(e.to_string()))?;
            }
            w.close().map_err(|e| CliError::Failed(e.to_string()))?;
        }
    }
    Ok(())
}

/// Writes batches to `path` atomically, or to stdout when there is no path.
pub fn emit(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    path: Option<&Path>,
) -> CliResult {
    match path {
        Some(path) => {
            let (atomic, file) = AtomicFile::create(path)?;
            let mut writer = BufWriter::new(file);
            write_batches(schema, batches, format, &mut writer)?;
            writer.flush()?;
            drop(writer);
            atomic.commit()
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
