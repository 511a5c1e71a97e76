//! Runs the `rfm` binary as a user would: commands, formats, exit codes, and
//! output files that appear whole or not at all.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rfm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .expect("the rfm binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code and returns (stdout, stderr).
fn expect(output: Output, code: i32) -> (String, String) {
    let (out, err) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panic in stderr: {err}");
    (out, err)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The CSV result of one query over table `name` read from `path`.
fn query_csv(name: &str, path: &Path, sql: &str) -> String {
    let table = format!("{name}={}", s(path));
    expect(rfm(&["sql", "-t", &table, "--format", "csv", sql]), 0).0
}

/// The summary the report prints, computed again by SQL over the customers
/// it wrote: the same table, row for row.
fn assert_summary_matches_sql(stdout: &str, customers: &Path) {
    let summary = "SELECT coalesce(segment, '(no purchase)') AS segment, \
            count(*) AS customers, \
            round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct_customers, \
            round(sum(CAST(monetary AS DOUBLE)), 2) AS revenue, \
            round(100.0 * sum(CAST(monetary AS DOUBLE)) \
                  / sum(sum(CAST(monetary AS DOUBLE))) OVER (), 1) AS pct_revenue, \
            round(avg(recency_days), 1) AS mean_recency_days, \
            round(avg(frequency), 2) AS mean_frequency, \
            round(avg(CAST(monetary AS DOUBLE)), 2) AS mean_monetary \
        FROM c GROUP BY segment ORDER BY revenue DESC, segment";
    let table = format!("c={}", s(customers));
    let (expected, _) = expect(rfm(&["sql", "-t", &table, summary]), 0);
    let rows = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with('|') || l.starts_with('+'))
            .map(str::to_owned)
            .collect()
    };
    assert!(!rows(&expected).is_empty(), "{expected}");
    assert_eq!(
        rows(stdout),
        rows(&expected),
        "report:\n{stdout}\nSQL:\n{expected}"
    );
}

#[test]
fn demo_scores_the_embedded_cdnow_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.parquet");
    let (stdout, _) = expect(rfm(&["demo", "--output", s(&out)]), 0);
    assert!(
        stdout.contains("69659 input rows, 23570 customers"),
        "{stdout}"
    );
    assert!(stdout.contains("| Champions "), "{stdout}");
    assert!(stdout.contains("| 3431 "), "{stdout}");
    assert_summary_matches_sql(&stdout, &out);

    let count = "SELECT count(*) AS n, count(DISTINCT segment) AS s FROM c";
    let (stdout, _) = expect(
        rfm(&[
            "sql",
            "-t",
            &format!("c={}", s(&out)),
            "--format",
            "csv",
            count,
        ]),
        0,
    );
    assert_eq!(stdout, "n,s\n23570,9\n");
}

/// The report's customer aggregation without a memory limit (its own group
/// table) and under one (DataFusion's spilling aggregate) write the same
/// customers from the CDNOW log and print the same summary.
#[test]
fn the_report_is_the_same_with_and_without_a_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "report",
            "-i",
            "data/cdnow/cdnow_master.parquet",
            "-o",
            s(&out),
            "--ts",
            "order_date",
            "--as-of",
            "1998-07-01",
            "--method",
            "ntile",
        ];
        args.extend(extra);
        let (stdout, _) = expect(rfm(&args), 0);
        let text = stdout.replace(s(&out), "OUT");
        (out, text)
    };
    let (ours, ours_text) = run("ours.parquet", &[]);
    let (theirs, theirs_text) = run("theirs.parquet", &["--memory-limit", "1g"]);
    assert_eq!(ours_text, theirs_text);
    let differences = "SELECT (SELECT count(*) FROM (SELECT * FROM a EXCEPT SELECT * FROM b)) \
         + (SELECT count(*) FROM (SELECT * FROM b EXCEPT SELECT * FROM a)) AS d, \
         (SELECT count(*) FROM a) AS n";
    let (stdout, _) = expect(
        rfm(&[
            "sql",
            "-t",
            &format!("a={}", s(&ours)),
            "-t",
            &format!("b={}", s(&theirs)),
            "--format",
            "csv",
            differences,
        ]),
        0,
    );
    assert_eq!(stdout, "d,n\n0,23570\n");
}

#[test]
fn report_leaves_out_and_counts_null_customers_and_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.csv");
    write(
        &input,
        "cust,day,amount,invoice\n\
         a,01/10/2024,100.0,1\n\
         a,03/05/2024,-20.0,2\n\
         b,05/30/2024,40.0,3\n\
         ,05/01/2024,999.0,4\n\
         ,05/02/2024,999.0,5\n\
         c,07/01/2024,10.0,6\n",
    );
    let out = dir.path().join("customers.parquet");
    let (stdout, _) = expect(
        rfm(&[
            "report",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--as-of",
            "2024-06-01",
            "--customer",
            "cust",
            "--ts",
            "day",
            "--ts-format",
            "%m/%d/%Y",
            "--amount",
            "amount",
            "--order-id",
            "invoice",
        ]),
        0,
    );
    assert!(stdout.contains("6 input rows, 3 customers"), "{stdout}");
    assert!(
        stdout.contains("2 with a NULL customer id, 1 dated after the as-of date"),
        "{stdout}"
    );
    assert!(stdout.contains("| (no purchase) "), "{stdout}");
    assert_summary_matches_sql(&stdout, &out);

    let query =
        "SELECT customer_id, frequency, monetary, rows_after_as_of FROM c ORDER BY 1";
    let (stdout, _) = expect(
        rfm(&[
            "sql",
            "-t",
            &format!("c={}", s(&out)),
            "--format",
            "csv",
            query,
        ]),
        0,
    );
    assert_eq!(
        stdout,
        "customer_id,frequency,monetary,rows_after_as_of\na,1,80.0,0\nb,1,40.0,0\nc,0,0.0,1\n"
    );
}

#[test]
fn a_failed_report_leaves_no_partial_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("customers.parquet");
    write(&out, "previous report");
    let bad = dir.path().join("bad.parquet");
    let make = format!(
        "COPY (SELECT 'a' AS customer_id, DATE '2024-01-01' AS order_ts, \
         CAST('NaN' AS DOUBLE) AS amount) TO '{}' STORED AS PARQUET",
        s(&bad)
    );
    expect(rfm(&["sql", &make]), 0);

    let (_, stderr) = expect(
        rfm(&[
            "report",
            "--input",
            s(&bad),
            "--output",
            s(&out),
            "--as-of",
            "2024-06-01",
        ]),
        1,
    );
    assert!(stderr.starts_with("rfm: "), "{stderr}");
    assert!(
        stderr.contains("must be a finite number; got NaN"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous report");
    assert_eq!(
        files_in(dir.path()),
        vec!["bad.parquet", "customers.parquet"]
    );

    let (_, stderr) = expect(
        rfm(&[
            "report",
            "--input",
            s(&bad),
            "--output",
            s(&out),
            "--as-of",
            "2024-06-01",
            "--customer",
            "who",
        ]),
        2,
    );
    assert!(
        stderr.contains("column 'who' is not in the input"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous report");
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let (_, stderr) = expect(
        rfm(&[
            "report",
            "--input",
            "no/such.parquet",
            "--output",
            "x.parquet",
            "--as-of",
            "2024-06-01",
        ]),
        2,
    );
    assert!(
        stderr.contains("rfm: table 'transactions': 'no/such.parquet' does not exist"),
        "{stderr}"
    );

    let (_, stderr) = expect(
        rfm(&[
            "report",
            "--input",
            "data/cdnow/cdnow_master.parquet",
            "--output",
            "x.parquet",
            "--as-of",
            "June 1st",
        ]),
        2,
    );
    assert!(
        stderr.contains(
            "--as-of must be a date as YYYY-MM-DD, e.g. 2024-06-01; got 'June 1st'"
        ),
        "{stderr}"
    );

    let (_, stderr) = expect(rfm(&["sql", "SELECT * FROM nowhere"]), 2);
    assert!(
        stderr.starts_with("rfm: ") && stderr.contains("nowhere"),
        "{stderr}"
    );

    let (_, stderr) = expect(rfm(&["sql", "-t", "oops", "SELECT 1"]), 2);
    assert!(
        stderr.contains("--table expects NAME=PATH; got 'oops'"),
        "{stderr}"
    );

    let (_, stderr) = expect(rfm(&["sql", "SELEC 1"]), 2);
    assert!(stderr.contains("rfm: "), "{stderr}");

    expect(rfm(&["no-such-command"]), 2);
}

#[test]
fn sql_reads_csv_and_parquet_and_writes_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let query = "SELECT customer_id, count(*) AS lines FROM c WHERE customer_id <= 2 \
                 GROUP BY customer_id ORDER BY customer_id";
    let table = "c=data/cdnow/cdnow_first200.csv";
    let (csv, _) = expect(rfm(&["sql", "-t", table, "--format", "csv", query]), 0);
    assert_eq!(csv, "customer_id,lines\n1,1\n2,2\n");

    let (json, _) = expect(rfm(&["sql", "-t", table, "--format", "json", query]), 0);
    assert_eq!(
        json,
        "{\"customer_id\":1,\"lines\":1}\n{\"customer_id\":2,\"lines\":2}\n"
    );

    let (table_out, _) = expect(rfm(&["sql", "-t", table, query]), 0);
    assert!(table_out.contains("| customer_id | lines |"), "{table_out}");

    let parquet = dir.path().join("out.parquet");
    expect(
        rfm(&[
            "sql",
            "-t",
            table,
            "--format",
            "parquet",
            "-o",
            s(&parquet),
            query,
        ]),
        0,
    );
    let back = format!("p={}", s(&parquet));
    let (csv, _) = expect(
        rfm(&[
            "sql",
            "-t",
            &back,
            "--format",
            "csv",
            "SELECT sum(lines) AS n FROM p",
        ]),
        0,
    );
    assert_eq!(csv, "n\n3\n");

    let (_, stderr) = expect(rfm(&["sql", "--format", "parquet", "SELECT 1"]), 2);
    assert!(stderr.contains("add --output PATH"), "{stderr}");
}

#[test]
fn sql_comes_from_a_file_or_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("q.sql");
    write(
        &file,
        "CREATE TABLE t AS VALUES (1), (2);\nSELECT sum(column1) AS s FROM t;\n",
    );
    let (out, _) = expect(rfm(&["sql", "--format", "csv", "-f", s(&file)]), 0);
    assert_eq!(out, "s\n3\n");

    let mut child = Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args(["sql", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 40 + 2 AS answer;")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(text(&output.stdout), "answer\n42\n");
}

#[test]
fn every_function_documents_itself() {
    let query = "SELECT routine_name, function_type, bool_and(description IS NOT NULL) AS doc \
                 FROM information_schema.routines WHERE routine_name LIKE 'rfm%' \
                 GROUP BY 1, 2 ORDER BY 1";
    let (out, _) = expect(rfm(&["sql", "--format", "csv", query]), 0);
    assert_eq!(
        out,
        "routine_name,function_type,doc\nrfm_customers,TABLE,false\n\
         rfm_metrics,AGGREGATE,true\nrfm_score,WINDOW,true\nrfm_score_fixed,SCALAR,true\n\
         rfm_segment,SCALAR,true\nrfm_segment_check,TABLE,false\nrfm_thresholds,AGGREGATE,true\n"
    );
    let (out, _) = expect(rfm(&["sql", "SHOW FUNCTIONS LIKE 'rfm_segment'"]), 0);
    assert!(
        out.contains("Segment name of an R, F, M score cell"),
        "{out}"
    );
    assert!(out.contains("rfm_segment(r, f, m [, map])"), "{out}");
}

#[test]
fn worked_examples_in_sql_examples_run() {
    let tables = [
        "cdnow=data/cdnow/cdnow_master.parquet",
        "grocery=data/completejourney/transactions.parquet",
        "products=data/completejourney/products.parquet",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/examples");
    for name in files_in(&dir) {
        let path = dir.join(&name);
        let mut args = vec!["sql", "-t", tables[0], "-t", tables[1], "-t", tables[2]];
        args.extend(["-f", s(&path)]);
        args.extend(["--format", "csv"]);
        let (out, _) = expect(rfm(&args), 0);
        assert!(out.lines().count() > 1, "{name} printed no rows:\n{out}");
        if name == "evaluate_offers.sql" {
            // Three methods judged on the same households.
            let rows: Vec<Vec<&str>> = out
                .lines()
                .skip(1)
                .map(|l| l.split(',').collect())
                .collect();
            assert_eq!(rows.len(), 3, "{out}");
            assert!(rows.iter().all(|r| r[1] == rows[0][1]), "{out}");
        }
    }
}

#[test]
fn sql_output_names_and_tables_that_would_mislead_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).display().to_string();
    let (tsv, csv, customers) = (out("x.tsv"), out("x.csv"), out("c.parquet"));
    let cases = [
        (
            vec!["sql", "-o", &tsv, "SELECT 1"],
            "rfm sql does not write .tsv files",
        ),
        (
            vec!["sql", "--format", "parquet", "-o", &csv, "SELECT 1"],
            "--format parquet and --output",
        ),
        (
            vec![
                "sql",
                "-t",
                "o=data/cdnow/cdnow_first200.csv",
                "-t",
                "o=data/cdnow/cdnow_master.parquet",
                "SELECT 1",
            ],
            "--table names 'o' twice",
        ),
        (
            vec![
                "report",
                "-i",
                "data/cdnow/cdnow_master.parquet",
                "-o",
                &customers,
                "--as-of",
                "1998-07-01",
                "--k",
                "5",
            ],
            "--offers <PATH>",
        ),
    ];
    for (args, message) in cases {
        let (_, stderr) = expect(rfm(&args), 2);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // DataFusion settings come from DATAFUSION_* variables, checked too.
    let run = |batch_size: &str| {
        Command::new(env!("CARGO_BIN_EXE_rfm"))
            .args([
                "sql",
                "--format",
                "csv",
                "SELECT value AS b FROM information_schema.df_settings \
                 WHERE name = 'datafusion.execution.batch_size'",
            ])
            .env("DATAFUSION_EXECUTION_BATCH_SIZE", batch_size)
            .output()
            .unwrap()
    };
    let (out, _) = expect(run("32768"), 0);
    assert_eq!(out, "b\n32768\n");
    let (_, stderr) = expect(run("lots"), 2);
    assert!(
        stderr.contains("DATAFUSION_")
            && stderr.contains("datafusion.execution.batch_size"),
        "{stderr}"
    );
}

#[test]
fn association_rules_over_the_memory_limit_stop_with_an_error() {
    let query = "SELECT count(*) AS rules FROM association_rules('g', 'basket_id', \
                 'product_id', 'min_count=1')";
    let table = "g=data/completejourney/transactions.parquet";
    let (_, stderr) = expect(
        rfm(&["sql", "--memory-limit", "64m", "-t", table, query]),
        1,
    );
    // 64 MB is ample for the plan that reads the lines (DataFusion's own
    // operators misbehave only at a few MB) and far too little for every
    // pair of the sample's items.
    assert!(
        stderr.starts_with(
            "rfm: Resources exhausted: association_rules: counting item pairs in memory"
        ) && stderr.contains("Raise min_support or min_count"),
        "{stderr}"
    );
    // With fewer frequent items the same limit is enough.
    let fewer = query.replace("min_count=1", "min_count=40");
    let (out, _) = expect(
        rfm(&[
            "sql",
            "--memory-limit",
            "64m",
            "--format",
            "csv",
            "-t",
            table,
            &fewer,
        ]),
        0,
    );
    assert!(out.starts_with("rules\n"), "{out}");
}

#[test]
fn readme_shows_what_the_one_call_example_prints() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let after = readme
        .split("(`sql/examples/one_call.sql`):")
        .nth(1)
        .expect("README quotes sql/examples/one_call.sql");
    let shown = after
        .split("```text\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("a text block with the example's output");
    let (out, _) = expect(
        rfm(&[
            "sql",
            "-t",
            "grocery=data/completejourney/transactions.parquet",
            "-f",
            "sql/examples/one_call.sql",
        ]),
        0,
    );
    assert_eq!(out, shown, "README's output of one_call.sql is stale");
}

#[test]
fn a_closed_stdout_ends_the_run_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args(["demo", "--output", "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[test]
fn an_output_may_not_overwrite_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.parquet");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cdnow/cdnow_master.parquet"),
        &input,
    )
    .unwrap();
    let before = std::fs::read(&input).unwrap();
    let (_, stderr) = expect(
        rfm(&[
            "report",
            "-i",
            s(&input),
            "-o",
            s(&input),
            "--as-of",
            "1998-07-01",
            "--ts",
            "order_date",
        ]),
        2,
    );
    assert!(
        stderr.contains("would overwrite the input of table 'transactions'"),
        "{stderr}"
    );
    let table = format!("t={}", s(&input));
    let (_, stderr) = expect(rfm(&["sql", "-t", &table, "-o", s(&input), "SELECT 1"]), 2);
    assert!(
        stderr.contains("would overwrite the input of table 't'"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn output_format_follows_the_extension_and_tsv_is_tab_separated() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("orders.tsv");
    write(
        &tsv,
        "customer_id\torder_ts\tamount\na\t2024-01-01\t10.5\nb\t2024-02-01\t3\n",
    );
    let out = dir.path().join("sums.csv");
    let table = format!("t={}", s(&tsv));
    let query = "SELECT customer_id, sum(amount) AS total FROM t GROUP BY 1 ORDER BY 1";
    expect(rfm(&["sql", "-t", &table, "-o", s(&out), query]), 0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "customer_id,total\na,10.5\nb,3.0\n"
    );

    // A report without an extension is Parquet; one whose extension names
    // another format is refused rather than written as Parquet.
    let report = dir.path().join("customers");
    let (stdout, _) = expect(
        rfm(&[
            "report",
            "-i",
            s(&tsv),
            "-o",
            s(&report),
            "--as-of",
            "2024-06-01",
        ]),
        0,
    );
    assert!(stdout.contains("2 customers written"), "{stdout}");
    assert_eq!(&std::fs::read(&report).unwrap()[..4], b"PAR1");
    let misnamed = dir.path().join("customers.out");
    let (_, stderr) = expect(
        rfm(&[
            "report",
            "-i",
            s(&tsv),
            "-o",
            s(&misnamed),
            "--as-of",
            "2024-06-01",
        ]),
        2,
    );
    assert!(stderr.contains("writes .parquet or .csv"), "{stderr}");
    assert!(!misnamed.exists());
}

#[test]
fn an_interrupted_report_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.parquet");
    let make = format!(
        "COPY (SELECT value % 500000 AS customer_id, \
                      DATE '2020-01-01' + CAST(value % 900 AS INT) AS order_ts, \
                      CAST(value % 97 AS DOUBLE) AS amount \
               FROM generate_series(1, 3000000)) TO '{}' STORED AS PARQUET",
        s(&input)
    );
    expect(rfm(&["sql", &make]), 0);
    let out = dir.path().join("customers.parquet");
    let child = Command::new(env!("CARGO_BIN_EXE_rfm"))
        .args([
            "report",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--as-of",
            "2023-01-01",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(130),
        "the run ended before the signal: {stderr}"
    );
    assert!(
        stderr.contains("rfm: interrupted; no output was written"),
        "{stderr}"
    );
    assert_eq!(files_in(dir.path()), vec!["big.parquet"]);
}

#[test]
fn report_writes_offers_beside_the_customers() {
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.parquet");
    let offers = dir.path().join("offers.parquet");
    let (stdout, _) = expect(
        rfm(&[
            "report",
            "-i",
            "data/completejourney/transactions.parquet",
            "-o",
            s(&customers),
            "--as-of",
            "2017-09-24",
            "--customer",
            "household_id",
            "--ts",
            "transaction_timestamp",
            "--amount",
            "sales_value",
            "--order-id",
            "basket_id",
            "--offers",
            s(&offers),
            "--products",
            "data/completejourney/products.parquet",
            "--category",
            "product_category",
            "--quantity",
            "quantity",
            "--k",
            "2",
        ]),
        0,
    );
    assert!(
        stdout.contains("Offers per segment, type and tactic"),
        "{stdout}"
    );
    assert!(stdout.contains("| up_sell "), "{stdout}");
    let tables = [format!("c={}", s(&customers)), format!("o={}", s(&offers))];
    let query = "SELECT count(DISTINCT o.customer_id) = (SELECT count(*) FROM c) AS everyone, \
                 max(rank) AS k, count(*) = count(DISTINCT (o.customer_id, product_id)) AS unique \
                 FROM o";
    let (csv, _) = expect(
        rfm(&[
            "sql", "-t", &tables[0], "-t", &tables[1], "--format", "csv", query,
        ]),
        0,
    );
    assert_eq!(csv, "everyone,k,unique\ntrue,2,true\n");

    let (_, stderr) = expect(
        rfm(&[
            "report",
            "-i",
            "data/cdnow/cdnow_master.parquet",
            "-o",
            s(&customers),
            "--as-of",
            "1998-07-01",
            "--offers",
            s(&offers),
        ]),
        2,
    );
    assert!(stderr.contains("--offers needs --products"), "{stderr}");
}

/// The offers carry the report's segments whatever scoring flags chose them
/// (a preset, fixed cuts), and flags the offers cannot follow are refused.
#[test]
fn offers_use_the_reports_segments() {
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.parquet");
    let offers = dir.path().join("offers.parquet");
    let run = |scoring: &[&str]| {
        let mut args = vec![
            "report",
            "-i",
            "data/completejourney/transactions.parquet",
            "-o",
            s(&customers),
            "--as-of",
            "2017-09-24",
            "--customer",
            "household_id",
            "--ts",
            "transaction_timestamp",
            "--amount",
            "sales_value",
            "--offers",
            s(&offers),
            "--products",
            "data/completejourney/products.parquet",
            "--category",
            "product_category",
        ];
        args.extend(scoring);
        rfm(&args)
    };
    let tables = [format!("c={}", s(&customers)), format!("o={}", s(&offers))];
    let differing = "SELECT count(*) AS differing FROM o JOIN c USING (customer_id) \
                     WHERE o.segment IS DISTINCT FROM c.segment";
    let cuts = "r_cuts=7|30|90|180, f_cuts=2|3|5|10, m_cuts=50|100|200|800";
    for scoring in [
        &["--preset", "pymc"][..],
        &[
            "--order-id",
            "basket_id",
            "--method",
            "fixed",
            "--cuts",
            cuts,
        ][..],
    ] {
        expect(run(scoring), 0);
        let (csv, _) = expect(
            rfm(&[
                "sql", "-t", &tables[0], "-t", &tables[1], "--format", "csv", differing,
            ]),
            0,
        );
        assert_eq!(csv, "differing\n0\n", "{scoring:?}");
    }
    let (_, stderr) = expect(run(&["--tz", "+02:00"]), 2);
    assert!(stderr.contains("--offers does not take --tz"), "{stderr}");
}

/// A CSV of `n` good rows (customer i, 2024-01-01, amount i) and then `extra`.
fn csv_with(path: &Path, n: usize, extra: &str) {
    let mut text = String::from("customer_id,order_ts,amount\n");
    for i in 0..n {
        text.push_str(&format!("{i},2024-01-01,{i}.5\n"));
    }
    text.push_str(extra);
    write(path, &text);
}

#[test]
fn bad_values_fail_with_their_place_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.csv");
    // The bad amount comes after the rows schema inference reads.
    csv_with(
        &input,
        1500,
        "7,2024-01-02,oops\n8,someday,3\n9,2024-01-03,\n",
    );
    let out = dir.path().join("c.parquet");
    let report = |extra: &[&str]| {
        let mut args = vec!["report", "-i", s(&input), "-o", s(&out)];
        args.extend(extra);
        rfm(&args)
    };
    let (_, stderr) = expect(
        report(&["--as-of", "2024-06-01", "--csv-infer-rows", "1000"]),
        1,
    );
    // The reader names the first bad value it meets, its line and its row.
    assert!(
        stderr.contains("'someday'") && stderr.contains("line 1502"),
        "{stderr}"
    );
    assert!(stderr.contains("--bad-rows skip"), "{stderr}");
    assert!(
        stderr.contains("column 'order_ts' of file") && stderr.contains("orders.csv'"),
        "{stderr}"
    );
    assert!(!out.exists());

    let (stdout, _) = expect(report(&["--as-of", "2024-06-01", "--bad-rows", "skip"]), 0);
    // With the bad value among the rows inference reads, the column is text.
    let (_, stderr) = expect(report(&["--as-of", "2024-06-01"]), 2);
    assert!(
        stderr.contains("column 'amount' holds text")
            && stderr.contains("'oops' (customer_id '7')"),
        "{stderr}"
    );
    assert!(stderr.contains("--bad-rows skip"), "{stderr}");
    assert!(
        stdout.contains("1503 input rows, 1500 customers"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "skipped because a value does not parse (--bad-rows skip): 2 \
             (1 in column amount, 1 in column order_ts)"
        ),
        "{stdout}"
    );
    // The empty amount is a NULL, left out and counted as before.
    assert!(
        stdout.contains("1 with a NULL date, amount or order id"),
        "{stdout}"
    );

    // A declared date format: a date that does not fit it is a bad row.
    write(
        &input,
        "customer_id,order_ts,amount\n1,11/01/2025,10\n2,13/45/2025,5\n3,12/01/2025,7\n",
    );
    let (stdout, _) = expect(
        report(&[
            "--bad-rows",
            "skip",
            "--ts-format",
            "%m/%d/%Y",
            "--as-of",
            "2026-01-01",
        ]),
        0,
    );
    assert!(stdout.contains("3 input rows, 2 customers"), "{stdout}");
    assert!(stdout.contains("(1 in column order_ts)"), "{stdout}");
}

/// NDJSON numbers stay numbers under `--bad-rows skip` (its reader cannot
/// read them as text); a bad date in a text column is still skipped.
#[test]
fn bad_rows_are_skipped_in_ndjson_with_numeric_columns() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.ndjson");
    write(
        &input,
        "{\"customer_id\":1,\"order_ts\":\"2024-01-01\",\"amount\":5.5}\n\
         {\"customer_id\":2,\"order_ts\":\"2024-01-02\",\"amount\":6}\n\
         {\"customer_id\":null,\"order_ts\":\"2024-01-02\",\"amount\":6}\n\
         {\"customer_id\":3,\"order_ts\":\"not a date\",\"amount\":6}\n",
    );
    let out = dir.path().join("c.parquet");
    let args = [
        "report",
        "-i",
        s(&input),
        "-o",
        s(&out),
        "--as-of",
        "2024-06-01",
    ];
    let (stdout, _) = expect(rfm(&[&args[..], &["--bad-rows", "skip"]].concat()), 0);
    assert!(stdout.contains("4 input rows, 2 customers"), "{stdout}");
    assert!(stdout.contains("1 with a NULL customer id"), "{stdout}");
    assert!(stdout.contains("(1 in column order_ts)"), "{stdout}");

    // A string among the amounts: the reader cannot read the column, and the
    // advice is to fix the values, not to skip rows.
    write(
        &input,
        "{\"customer_id\":1,\"order_ts\":\"2024-01-01\",\"amount\":10.0}\n\
         {\"customer_id\":2,\"order_ts\":\"2024-01-02\",\"amount\":\"12.x\"}\n",
    );
    for skip in [&[][..], &["--bad-rows", "skip"][..]] {
        let (_, stderr) = expect(rfm(&[&args[..], skip].concat()), 2);
        assert!(
            stderr.contains("An NDJSON column must hold one JSON type")
                && stderr.contains("orders.ndjson")
                && !stderr.contains("pass --bad-rows skip"),
            "{stderr}"
        );
    }
}

/// A marker without the data extension is skipped; a file named like a
/// marker but with the data extension, which the reader would count with
/// the others, is refused by name.
#[test]
fn marker_named_data_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sales = dir.path().join("sales");
    std::fs::create_dir(&sales).unwrap();
    std::fs::copy("data/cdnow/cdnow_master.parquet", sales.join("a.parquet")).unwrap();
    write(&sales.join("_SUCCESS"), "");
    let table = format!("t={}/", s(&sales));
    let count = [
        "sql",
        "-t",
        &table,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM t",
    ];
    assert_eq!(expect(rfm(&count), 0).0, "n\n69659\n");
    for marker in ["_b.parquet", ".c.parquet"] {
        std::fs::copy("data/cdnow/cdnow_master.parquet", sales.join(marker)).unwrap();
        let (_, stderr) = expect(rfm(&count), 2);
        assert!(
            stderr.contains(marker) && stderr.contains("Move or rename it"),
            "{stderr}"
        );
        std::fs::remove_file(sales.join(marker)).unwrap();
    }
}

#[test]
fn unreadable_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let sales = dir.path().join("sales");
    std::fs::create_dir(&sales).unwrap();
    let sample = std::fs::read("data/cdnow/cdnow_master.parquet").unwrap();
    std::fs::write(sales.join("a.parquet"), &sample).unwrap();
    std::fs::write(sales.join("b.parquet"), &sample[..sample.len() / 2]).unwrap();
    let table = format!("t={}", s(&sales));
    let (_, stderr) = expect(rfm(&["sql", "-t", &table, "SELECT count(*) FROM t"]), 2);
    assert!(
        stderr.contains("cannot read file") && stderr.contains("b.parquet"),
        "{stderr}"
    );

    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    write(&mixed.join("a.csv"), "customer_id,amount\n1,2.5\n");
    write(&mixed.join("b.csv"), "customer_id,amount\nx7,2.5\n");
    let table = format!("t={}", s(&mixed));
    let (_, stderr) = expect(rfm(&["sql", "-t", &table, "SELECT count(*) FROM t"]), 2);
    assert!(
        stderr.contains("do not share one schema")
            && stderr.contains("a.csv")
            && stderr.contains("b.csv")
            && stderr.contains("column 'customer_id' is Int64 in one and Utf8"),
        "{stderr}"
    );
}

#[test]
fn partitioned_folders_compressed_csv_and_time_zones() {
    let dir = tempfile::tempdir().unwrap();
    // A hive-partitioned folder of gzip-compressed CSV.
    for (day, rows) in [
        ("2024-05-30", "1,2024-05-30T10:00:00,5\n"),
        ("2024-05-31", "2,2024-05-31T23:30:00,7\n"),
    ] {
        let part = dir.path().join("orders").join(format!("day={day}"));
        std::fs::create_dir_all(&part).unwrap();
        let csv = format!("customer_id,order_ts,amount\n{rows}");
        let gz = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(csv.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        std::fs::write(part.join("part-0.csv.gz"), gz.stdout).unwrap();
    }
    let orders = dir.path().join("orders");
    let stdout = query_csv(
        "o",
        &orders,
        "SELECT day, sum(amount) AS a FROM o WHERE day >= '2024-05-31' GROUP BY day",
    );
    assert_eq!(stdout, "day,a\n2024-05-31,7\n");

    // 23:30 UTC on May 31 is June 1 in Berlin; partitioned output by segment.
    let out = dir.path().join("by_segment");
    expect(
        rfm(&[
            "report",
            "-i",
            s(&orders),
            "-o",
            s(&out),
            "--as-of",
            "2024-06-02",
            "--tz",
            "Europe/Berlin",
            "--partition-by",
            "segment",
        ]),
        0,
    );
    let stdout = query_csv(
        "c",
        &out,
        "SELECT customer_id, last_purchase FROM c ORDER BY customer_id",
    );
    assert_eq!(
        stdout,
        "customer_id,last_purchase\n1,2024-05-30\n2,2024-06-01\n"
    );
}

#[test]
fn inputs_read_in_part_or_overwritten_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    std::fs::create_dir(d("in")).unwrap();
    std::fs::copy(
        "data/cdnow/cdnow_master.parquet",
        d("in").join("tx.parquet"),
    )
    .unwrap();
    // An output the input glob matches.
    let glob = format!("{}/*.parquet", s(&d("in")));
    let target = d("in").join("tx.parquet");
    let (_, stderr) = expect(
        rfm(&[
            "report",
            "-i",
            &glob,
            "-o",
            s(&target),
            "--ts",
            "order_date",
            "--as-of",
            "1998-07-01",
        ]),
        2,
    );
    assert!(stderr.contains("would overwrite the input"), "{stderr}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read("data/cdnow/cdnow_master.parquet").unwrap()
    );

    // A folder mixing file types, and CSV headers in another order.
    std::fs::create_dir(d("mixed")).unwrap();
    write(
        &d("mixed").join("a.csv"),
        "customer_id,order_ts,amount\n1,2024-01-01,5\n",
    );
    write(
        &d("mixed").join("b.CSV"),
        "customer_id,order_ts,amount\n2,2024-01-01,5\n",
    );
    let table = format!("t={}", s(&d("mixed")));
    let (_, stderr) = expect(rfm(&["sql", "-t", &table, "SELECT * FROM t"]), 2);
    assert!(
        stderr.contains("mixes file types") && stderr.contains("b.CSV"),
        "{stderr}"
    );
    std::fs::rename(d("mixed").join("b.CSV"), d("mixed").join("b.csv")).unwrap();
    write(
        &d("mixed").join("b.csv"),
        "customer_id,amount,order_ts\n2,5,2024-01-01\n",
    );
    let (_, stderr) = expect(rfm(&["sql", "-t", &table, "SELECT * FROM t"]), 2);
    assert!(stderr.contains("the CSV headers differ"), "{stderr}");
}

#[test]
fn partitioned_output_keeps_customers_without_a_segment_apart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.csv");
    // Customers 90-99 only returned goods: no purchase, no segment.
    let mut text = String::from("customer_id,order_ts,amount\n");
    for i in 0..100 {
        let amount = if i >= 90 { -5.0 } else { 10.0 + i as f64 };
        text.push_str(&format!("{i},2024-0{}-1{},{amount}\n", 1 + i % 5, i % 10));
    }
    write(&input, &text);
    let out = dir.path().join("by_segment");
    let (stdout, _) = expect(
        rfm(&[
            "report",
            "-i",
            s(&input),
            "-o",
            s(&out),
            "--as-of",
            "2024-06-30",
            "--partition-by",
            "segment",
            "--map",
            "Top: r>=4; Rest: *",
        ]),
        0,
    );
    let files = query_csv(
        "c",
        &out,
        "SELECT segment, count(*) AS n, count(r) AS scored FROM c \
             GROUP BY segment ORDER BY segment",
    );
    let lines: Vec<&str> = files.lines().collect();
    assert_eq!(lines[0], "segment,n,scored");
    assert_eq!(lines[1], "(no purchase),10,0", "{files}");
    // The files hold what the summary counts.
    for line in &lines[2..] {
        let mut parts = line.split(',');
        let (segment, n) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            stdout.contains(&format!("| {segment:<13} | {n:<9} |")),
            "{segment} {n}\n{stdout}"
        );
        assert_eq!(parts.next().unwrap(), n, "unscored customers in {segment}");
    }
}

#[test]
fn csv_null_markers_and_csv_report_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("na.csv");
    write(
        &input,
        "customer_id,order_ts,amount\n1,2024-01-01,5\nNA,2024-01-02,7\n2,NA,3\n1,2024-02-01,NULL\n",
    );
    let table = format!("t={}", s(&input));
    let (out, _) = expect(
        rfm(&[
            "sql",
            "-t",
            &table,
            "--csv-null",
            "^(NA|NULL)$",
            "--format",
            "csv",
            "SELECT count(customer_id) AS c, count(order_ts) AS d, sum(amount) AS a, \
             arrow_typeof(max(amount)) AS t FROM t",
        ]),
        0,
    );
    assert_eq!(out, "c,d,a,t\n3,3,15,Int64\n");

    let output = dir.path().join("customers.csv");
    let (stdout, _) = expect(
        rfm(&[
            "report",
            "-i",
            s(&input),
            "--csv-null",
            "^(NA|NULL)$",
            "-o",
            s(&output),
            "--as-of",
            "2024-06-01",
        ]),
        0,
    );
    assert!(stdout.contains("1 with a NULL customer id"), "{stdout}");
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(
        written.starts_with("customer_id,recency_days,frequency,monetary,"),
        "{written}"
    );
    assert_eq!(written.lines().count(), 3, "{written}");
}

#[test]
fn folder_outputs_never_delete_what_they_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name);
    // generate refuses a folder that holds anything.
    std::fs::create_dir(d("precious")).unwrap();
    write(&d("precious").join("notes.txt"), "important");
    let (_, stderr) = expect(
        rfm(&["generate", "-o", s(&d("precious")), "--rows", "5"]),
        2,
    );
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert!(d("precious").join("notes.txt").exists());
    // It replaces its own earlier output, and refuses it once a foreign file
    // joins it.
    let generate = || {
        rfm(&[
            "generate",
            "-o",
            s(&d("gen")),
            "--rows",
            "50",
            "--seed",
            "3",
        ])
    };
    expect(generate(), 0);
    expect(generate(), 0);
    write(&d("gen").join("transactions").join("mine.csv"), "x");
    let (_, stderr) = expect(generate(), 2);
    assert!(stderr.contains("mine.csv"), "{stderr}");
    assert!(d("gen").join("transactions").join("mine.csv").exists());

    // A partitioned report refuses a folder with other files, and one that
    // holds its input; an earlier partitioned output is replaced.
    std::fs::create_dir(d("in")).unwrap();
    std::fs::copy("data/cdnow/cdnow_master.parquet", d("in").join("a.parquet")).unwrap();
    let report = |input: &str, output: &Path| {
        rfm(&[
            "report",
            "-i",
            input,
            "--ts",
            "order_date",
            "--as-of",
            "1998-07-01",
            "-o",
            s(output),
            "--partition-by",
            "r",
        ])
    };
    let glob = format!("{}/*.parquet", s(&d("in")));
    let (_, stderr) = expect(report(&glob, &d("in")), 2);
    assert!(stderr.contains("is inside the output folder"), "{stderr}");
    assert!(d("in").join("a.parquet").exists());
    let (_, stderr) = expect(report(&glob, &d("precious")), 2);
    assert!(stderr.contains("notes.txt"), "{stderr}");
    expect(report(&glob, &d("by_r")), 0);
    expect(report(&glob, &d("by_r")), 0);
    let (stderr_free, _) = expect(
        rfm(&[
            "report",
            "-i",
            &glob,
            "--ts",
            "order_date",
            "--as-of",
            "1998-07-01",
            "-o",
            s(&d("q.json")),
        ]),
        2,
    );
    assert!(stderr_free.is_empty());
    assert!(!d("q.json").exists());
}
