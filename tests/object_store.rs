//! The report against a real S3-compatible server: moto, started on
//! 127.0.0.1 by each test and stopped by its PID when the test ends.
//!
//! `scripts/test.sh` installs moto and sets `RFM_MOTO_SERVER`; with plain
//! `cargo test`, `moto_server` must be on the PATH.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A moto server on a free loopback port, killed when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra environment, e.g. signature checks after the
    /// first N requests.
    fn start_with(env: &[(&str, &str)]) -> Self {
        let program =
            std::env::var("RFM_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the S3 test server '{program}' ({e}). Run the tests \
                     with scripts/test.sh, which installs it, or put moto_server \
                     (pip install 'moto[server]') on the PATH."
                )
            });
        let mut moto = Moto { child, port };
        // moto's own API path: S3 requests would count against
        // INITIAL_NO_AUTH_ACTION_COUNT.
        wait_for(&mut moto.child, port, "/moto-api/", "moto");
        moto
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one plain HTTP request (moto does not check signatures) and
    /// returns the status code.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    fn create_bucket(&self, name: &str) {
        assert_eq!(self.request("PUT", &format!("/{name}"), b""), 200);
    }

    fn put(&self, key: &str, file: &Path) {
        let body = std::fs::read(file).unwrap();
        assert_eq!(self.request("PUT", &format!("/{key}"), &body), 200);
    }

    /// The keys under `bucket/prefix`, from a list request.
    fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "GET /{bucket}?list-type=2&prefix={prefix} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Connection: close\r\n\r\n",
            self.port
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let mut keys: Vec<String> = response
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(|k| k.replace("&#x27;", "'").replace("&apos;", "'"))
            .collect();
        keys.sort();
        keys
    }
}

/// Waits until the server `child` answers HTTP for `probe` on a loopback
/// port.
///
/// An accepted connection alone is not proof: while nothing listens on a
/// port in the ephemeral range, a connect can pick that same port as its
/// source and connect to itself (TCP simultaneous open), so the wait checks
/// the peer is another socket and that an HTTP status line comes back.
fn wait_for(child: &mut Child, port: u16, probe: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it served on port {port}: {status}");
        }
        if answers_http(port, probe) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn answers_http(port: u16, probe: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let head = format!(
        "HEAD {probe} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut start = [0u8; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `rfm` against `endpoint` with test credentials and `tmp` as the
/// temporary folder.
fn rfm(endpoint: &str, tmp: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("TMPDIR", tmp)
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("the rfm binary runs")
}

fn expect(output: Output, code: i32) -> (String, String) {
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    (out, err)
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

const SAMPLE: &str = "data/cdnow/cdnow_master.parquet";

fn report_args<'a>(input: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "report",
        "--input",
        input,
        "--ts",
        "order_date",
        "--as-of",
        "1998-07-01",
        "--output",
        output,
    ]
}

/// Every row of a customers file, as CSV ordered by customer.
fn rows(endpoint: &str, tmp: &Path, location: &str) -> String {
    let table = format!("c={location}");
    let sql = "SELECT * FROM c ORDER BY customer_id";
    let (out, _) = expect(
        rfm(
            endpoint,
            tmp,
            &["sql", "-t", &table, "--format", "csv", sql],
        ),
        0,
    );
    out
}

#[test]
fn report_reads_a_bucket_and_writes_back_what_a_local_run_writes() {
    let moto = Moto::start();
    let (endpoint, tmp) = (moto.endpoint(), tempfile::tempdir().unwrap());
    let local = tempfile::tempdir().unwrap();
    moto.create_bucket("lake");
    moto.put("lake/sales/year=1997/cdnow.parquet", Path::new(SAMPLE));

    let remote_out = "s3://lake/reports/customers.parquet";
    let (stdout, _) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args("s3://lake/sales/", remote_out),
        ),
        0,
    );
    assert!(
        stdout.contains("23570 customers written to s3://lake/reports/"),
        "{stdout}"
    );
    let local_out = local.path().join("customers.parquet");
    let local_out = local_out.to_str().unwrap();
    expect(
        rfm(&endpoint, tmp.path(), &report_args(SAMPLE, local_out)),
        0,
    );

    // CSV to the bucket, from the report and from rfm sql.
    let csv_out = "s3://lake/reports/customers.csv";
    expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args("s3://lake/sales/", csv_out),
        ),
        0,
    );
    let query = "SELECT count(*) AS n FROM c";
    let (out, _) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &[
                "sql",
                "-t",
                &format!("c={csv_out}"),
                "-o",
                "s3://lake/reports/count.csv",
                query,
            ],
        ),
        0,
    );
    assert_eq!(out, "");
    let (out, _) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &[
                "sql",
                "-t",
                "c=s3://lake/reports/count.csv",
                "--format",
                "csv",
                "SELECT * FROM c",
            ],
        ),
        0,
    );
    assert_eq!(out, "n\n23570\n");
    let (_, err) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &["sql", "-o", "s3://lake/reports/dir/", "SELECT 1"],
        ),
        2,
    );
    assert!(err.contains("names a folder"), "{err}");

    let from_bucket = rows(&endpoint, tmp.path(), remote_out);
    assert_eq!(from_bucket.lines().count(), 23571);
    assert_eq!(from_bucket, rows(&endpoint, tmp.path(), local_out));
    assert!(empty(tmp.path()), "temporary files left behind");

    // The hive partition column of the input is usable in SQL.
    let (out, _) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &[
                "sql",
                "-t",
                "s=s3://lake/sales/",
                "--format",
                "csv",
                "SELECT year, count(*) AS n FROM s WHERE year = '1997' GROUP BY year",
            ],
        ),
        0,
    );
    assert_eq!(out, "year,n\n1997,69659\n");
}

#[test]
fn partitioned_output_in_a_bucket_replaces_the_previous_run() {
    let moto = Moto::start();
    let (endpoint, tmp) = (moto.endpoint(), tempfile::tempdir().unwrap());
    moto.create_bucket("lake");
    let stale = tempfile::NamedTempFile::new().unwrap();
    moto.put("lake/by_segment/segment=Gone/old.parquet", stale.path());

    let mut args = report_args(SAMPLE, "s3://lake/by_segment/");
    args.extend(["--partition-by", "segment"]);
    expect(rfm(&endpoint, tmp.path(), &args), 0);
    let keys = moto.keys("lake", "by_segment/");
    assert_eq!(keys.len(), 9, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("Gone")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains("segment=Can't Lose Them/")),
        "{keys:?}"
    );

    let (out, _) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &[
                "sql",
                "-t",
                "c=s3://lake/by_segment/",
                "--format",
                "csv",
                "SELECT segment, count(*) AS n FROM c \
                 WHERE segment IN ('Champions', 'Can''t Lose Them') GROUP BY 1 ORDER BY 1",
            ],
        ),
        0,
    );
    assert_eq!(out, "segment,n\nCan't Lose Them,2\nChampions,3431\n");

    // A second run leaves one set of files, not two.
    expect(rfm(&endpoint, tmp.path(), &args), 0);
    assert_eq!(moto.keys("lake", "by_segment/").len(), 9);
    assert!(empty(tmp.path()), "temporary files left behind");
}

#[test]
fn store_faults_are_named_and_leave_the_previous_output() {
    let moto = Moto::start();
    let (endpoint, tmp) = (moto.endpoint(), tempfile::tempdir().unwrap());
    moto.create_bucket("lake");
    let out = "s3://lake/customers.parquet";
    expect(rfm(&endpoint, tmp.path(), &report_args(SAMPLE, out)), 0);
    let before = rows(&endpoint, tmp.path(), out);

    // A missing bucket.
    let (_, err) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args("s3://nowhere/sales/", out),
        ),
        2,
    );
    assert!(
        err.contains("s3://nowhere/sales/") && err.contains("NoSuchBucket"),
        "{err}"
    );

    // A run that fails before the commit keeps the previous object.
    let mut bad = report_args(SAMPLE, out);
    bad.extend(["--customer", "who"]);
    let (_, err) = expect(rfm(&endpoint, tmp.path(), &bad), 2);
    assert!(err.contains("column 'who' is not in the input"), "{err}");
    assert_eq!(rows(&endpoint, tmp.path(), out), before);

    // Writing to a bucket that does not exist fails and leaves nothing.
    let (_, err) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args(SAMPLE, "s3://nowhere/c.parquet"),
        ),
        1,
    );
    assert!(
        err.contains("cannot write output 's3://nowhere/c.parquet'"),
        "{err}"
    );

    // A partitioned output over a prefix that holds other objects is
    // refused: replacing it would delete them.
    let keep = tempfile::NamedTempFile::new().unwrap();
    moto.put("lake/mixed/keep.txt", keep.path());
    let mut partitioned = report_args(SAMPLE, "s3://lake/mixed/");
    partitioned.extend(["--partition-by", "segment"]);
    let (_, err) = expect(rfm(&endpoint, tmp.path(), &partitioned), 2);
    assert!(err.contains("mixed/keep.txt"), "{err}");
    assert_eq!(
        moto.keys("lake", "mixed/"),
        vec!["mixed/keep.txt".to_string()]
    );

    // No credentials: a clear message, and no request to any other address.
    let output = Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args(report_args("s3://lake/sales/", "x.parquet"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("AWS_ACCESS_KEY_ID")
        .env("AWS_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    let (_, err) = expect(output, 2);
    assert!(err.contains("no credentials"), "{err}");
    assert!(empty(tmp.path()), "temporary files left behind");

    // The server goes away: the report fails, names the store and writes
    // nothing.
    drop(moto);
    let (_, err) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args("s3://lake/sales/", "s3://lake/x.parquet"),
        ),
        2,
    );
    assert!(err.contains("s3://lake/sales/"), "{err}");
    let (_, err) = expect(
        rfm(
            &endpoint,
            tmp.path(),
            &report_args(SAMPLE, "s3://lake/y.parquet"),
        ),
        1,
    );
    assert!(err.contains("s3://lake/y.parquet"), "{err}");
    assert!(empty(tmp.path()), "partial output left behind");
}

#[test]
fn tables_read_over_http() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        "data/cdnow/cdnow_first200.csv",
        dir.path().join("cdnow.csv"),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 serves files over HTTP");
    wait_for(&mut server, port, "/", "the HTTP server");
    let tmp = tempfile::tempdir().unwrap();
    let table = format!("c=http://127.0.0.1:{port}/cdnow.csv");
    let output = rfm(
        "http://127.0.0.1:1",
        tmp.path(),
        &[
            "sql",
            "-t",
            &table,
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT customer_id) AS customers FROM c",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    let (out, _) = expect(output, 0);
    let local = std::fs::read_to_string("data/cdnow/cdnow_first200.csv").unwrap();
    assert_eq!(
        out,
        format!("n,customers\n{},200\n", local.lines().count() - 1)
    );
}

#[test]
fn wrong_credentials_are_refused_with_the_object_named() {
    // moto checks signatures after the first two requests (bucket, object).
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]);
    moto.create_bucket("lake");
    moto.put("lake/sales/cdnow.parquet", Path::new(SAMPLE));
    let tmp = tempfile::tempdir().unwrap();
    let (_, err) = expect(
        rfm(
            &moto.endpoint(),
            tmp.path(),
            &report_args("s3://lake/sales/", "s3://lake/c.parquet"),
        ),
        2,
    );
    assert!(
        err.contains("s3://lake/sales/") && err.contains("403"),
        "{err}"
    );
    assert!(empty(tmp.path()));
}

/// An Azurite blob server (Azure's storage emulator) on a free loopback
/// port, with telemetry off, killed when dropped.
struct Azurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    fn start() -> Self {
        let program =
            std::env::var("RFM_AZURITE").unwrap_or_else(|_| "azurite-blob".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(&program)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--location", data.path().to_str().unwrap()])
            .args(["--disableTelemetry", "--skipApiVersionCheck", "--loose"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start the Azure test server '{program}' ({e}). Run the tests \
                     with scripts/test.sh, which installs it (npm package azurite)."
                )
            });
        let mut azurite = Azurite {
            child,
            port,
            _data: data,
        };
        wait_for(&mut azurite.child, port, "/", "azurite");
        azurite
    }

    fn create_container(&self, name: &str) {
        let status = Command::new("python3")
            .args([
                "tests/support/azure_container.py",
                &self.port.to_string(),
                name,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "container {name} not created");
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn report_writes_to_azure_blobs_and_reads_them_back() {
    let azurite = Azurite::start();
    azurite.create_container("lake");
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rfm"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("AZURE_STORAGE_USE_EMULATOR", "true")
            .env(
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", azurite.port),
            )
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = "az://lake/reports/customers.parquet";
    let (stdout, _) = expect(run(&report_args(SAMPLE, out)), 0);
    assert!(
        stdout.contains("23570 customers written to az://lake/"),
        "{stdout}"
    );
    // The customers, read back from the container, scored again by their
    // last purchase and written partitioned by segment.
    let partitioned = [
        "report",
        "-i",
        out,
        "-o",
        "az://lake/reports/by_segment/",
        "--as-of",
        "1998-07-01",
        "--ts",
        "last_purchase",
        "--amount",
        "monetary",
        "--partition-by",
        "segment",
    ];
    let (stdout, _) = expect(run(&partitioned), 0);
    assert!(stdout.contains("23570 customers written"), "{stdout}");
    let (count, _) = expect(
        run(&[
            "sql",
            "-t",
            "c=az://lake/reports/by_segment/",
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT segment) AS s FROM c",
        ]),
        0,
    );
    assert_eq!(count, "n,s\n23570,5\n");
    assert!(empty(tmp.path()), "temporary files left behind");
}
