//! `association_rules`: one-to-one (and two-to-one) rules over baskets.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_datafusion_err};

use crate::options::Options;
use crate::table::pair_rules::{Mining, PairRulesTable};
use crate::table::{
    Holds, check_column_type, optional_text, plan_sql, quote_ident, quote_table,
    resolve_table, text_arg,
};

const NAME: &str = "association_rules";

const KEYS: [&str; 11] = [
    "min_support",
    "min_count",
    "min_confidence",
    "min_lift",
    "max_rules",
    "antecedent_size",
    "exclude_negative",
    "sequence",
    "ts",
    "within_days",
    "engine",
];

/// `association_rules(table, basket, item [, options])`: association rules
/// between the items of the baskets in `table` (a table or view name).
///
/// Each row is a rule `antecedent [+ antecedent_2] -> consequent` with
/// `antecedent_count` (baskets holding the whole antecedent),
/// `consequent_count`, `pair_count` (baskets holding both sides), `baskets`
/// (all baskets), and, as in mlxtend's `association_rules`:
/// `support = pair_count / baskets`,
/// `confidence = pair_count / antecedent_count`,
/// `lift = confidence / (consequent_count / baskets)`,
/// `leverage = support - (antecedent_count / baskets) * (consequent_count / baskets)`,
/// `conviction = (1 - consequent_count / baskets) / (1 - confidence)`, which is
/// `+inf` when confidence is 1.
///
/// An item counts once per basket however often it appears; lines with a NULL
/// basket or item are ignored. Thresholds are compared as exact integer
/// counts: `min_support=0.28` keeps a rule seen in 7 of 25 baskets.
///
/// Options: `min_support` (fraction of baskets, default 0.001) or `min_count`
/// (baskets), applied to every item set in a rule; `min_confidence`,
/// `min_lift` (default 0); `max_rules` (the strongest by lift, then
/// confidence, then pair count); `antecedent_size=1|2` (2 adds rules with
/// two-item antecedents); `exclude_negative=COLUMN` drops lines where that
/// column is negative (returns). The result has no guaranteed order (add
/// `ORDER BY`); `max_rules` keeps the first rules by lift, confidence and pair
/// count, descending, then by items.
///
/// One-item antecedents over baskets are counted in memory (see
/// `pair_rules`), with memory reserved from the session's pool;
/// `engine=sql` runs them as one SQL plan instead, with the same result.
/// Two-item antecedents and sequential rules run as SQL.
///
/// Sequential rules: with `sequence=CUSTOMER, ts=COLUMN` (and `within_days=N`,
/// default 30), a rule `A -> B` counts the customers who bought A and then B
/// on a later day at most N days after; every count, `baskets` included, is
/// then a number of customers. Two-item antecedents are not available for
/// sequential rules.
#[derive(Debug, Default)]
pub struct AssociationRules;

/// Thresholds as exact fractions.
#[derive(Debug, Clone)]
pub(crate) struct Thresholds {
    pub support: Option<(u64, u64)>,
    pub count: Option<u64>,
    pub confidence: (u64, u64),
    pub lift: (u64, u64),
}

/// What [`rules_sql`] mines: SQL fragments for the source, basket and item.
pub(crate) struct RulesSpec {
    /// A `FROM` item: a quoted table name or `(query) AS alias`.
    pub source: String,
    /// SQL expression of the basket.
    pub basket: String,
    /// SQL expression of the item.
    pub item: String,
    /// Extra SQL condition a line must meet, e.g. `NOT (qty < 0)`.
    pub keep: Option<String>,
    pub thresholds: Thresholds,
    /// 1, or 2 for two-item antecedents too.
    pub size: usize,
    pub max_rules: Option<usize>,
    /// Mine sequential rules instead of basket rules.
    pub sequence: Option<Sequence>,
}

/// Sequential rules: "bought A, then B on a later day within N days", counted
/// once per customer.
pub(crate) struct Sequence {
    /// SQL expression of the customer whose purchases form the sequence.
    pub customer: String,
    /// SQL expression of the purchase date.
    pub day: String,
    /// The longest gap, in days, from A to B.
    pub within_days: usize,
}

impl Thresholds {
    /// Reads `min_support` or `min_count`, `min_confidence` and `min_lift`,
    /// with the given default support and confidence.
    pub fn from_options(
        o: &Options,
        default_support: (u64, u64),
        default_confidence: (u64, u64),
    ) -> Result<Self> {
        let count = o
            .get("min_count")
            .map(|_| o.integer("min_count", 1, 1, usize::MAX))
            .transpose()?;
        let support = o.ratio("min_support")?;
        let thresholds = Self {
            support: if count.is_none() {
                Some(support.unwrap_or(default_support))
            } else {
                support
            },
            count: count.map(|c| c as u64),
            confidence: o.ratio("min_confidence")?.unwrap_or(default_confidence),
            lift: o.ratio("min_lift")?.unwrap_or((0, 1)),
        };
        if thresholds.support.is_some_and(|(num, den)| num > den) {
            return Err(o.bad_value(
                "min_support",
                o.get("min_support").unwrap_or_default(),
                "a fraction from 0 to 1 (or give min_count, a number of baskets)",
            ));
        }
        if thresholds.confidence.0 > thresholds.confidence.1 {
            return Err(o.bad_value(
                "min_confidence",
                o.get("min_confidence").unwrap_or_default(),
                "a fraction from 0 to 1",
            ));
        }
        Ok(thresholds)
    }

    /// Whether `count` of `baskets` meets the support threshold; the same test
    /// as [`Self::frequent`] in SQL.
    pub fn is_frequent(&self, count: u64, baskets: u64) -> bool {
        let (count, baskets) = (u128::from(count), u128::from(baskets));
        self.support
            .is_none_or(|(num, den)| count * u128::from(den) >= u128::from(num) * baskets)
            && self.count.is_none_or(|min| count >= u128::from(min))
    }

    /// Whether the rule `A -> C` seen in `pair` baskets, with `ant` baskets
    /// holding A and `cons` holding C, meets the confidence and lift
    /// thresholds, compared as integers as in [`rules_sql`].
    pub fn keeps_rule(&self, pair: u64, ant: u64, cons: u64, baskets: u64) -> bool {
        let [pair, ant, cons, baskets] = [pair, ant, cons, baskets].map(u128::from);
        let (conf_num, conf_den) =
            (u128::from(self.confidence.0), u128::from(self.confidence.1));
        let (lift_num, lift_den) = (u128::from(self.lift.0), u128::from(self.lift.1));
        pair * conf_den >= conf_num * ant
            && pair * baskets * lift_den >= lift_num * ant * cons
    }

    /// SQL condition that `count` of `baskets` meets the support threshold.
    fn frequent(&self, count: &str, baskets: &str) -> String {
        let mut parts = Vec::new();
        if let Some((num, den)) = self.support {
            // DECIMAL(38, 0): a denominator of 10^12 times a count of millions
            // overflows 64 bits.
            parts.push(format!(
                "CAST({count} AS DECIMAL(38, 0)) * {den} \
                 >= CAST({num} AS DECIMAL(38, 0)) * {baskets}"
            ));
        }
        if let Some(min) = self.count {
            parts.push(format!("{count} >= {min}"));
        }
        if parts.is_empty() {
            "true".to_string()
        } else {
            parts.join(" AND ")
        }
    }
}

impl TableFunctionImpl for AssociationRules {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(plan_datafusion_err!(
                "{NAME}: takes (table, basket, item [, options]); got {} argument(s). \
                 Example: SELECT * FROM {NAME}('lines', 'basket_id', 'product_id', \
                 'min_support=0.01, min_confidence=0.2').",
                exprs.len()
            ));
        }
        let table = text_arg(NAME, exprs, 1, "table")?;
        let basket = text_arg(NAME, exprs, 2, "basket")?;
        let item = text_arg(NAME, exprs, 3, "item")?;
        let options = optional_text(NAME, exprs, 4, "options")?;
        let o = Options::parse(NAME, &options, &KEYS)?;
        let thresholds = Thresholds::from_options(&o, (1, 1000), (0, 1))?;
        let max_rules = o
            .get("max_rules")
            .map(|_| o.integer("max_rules", 0, 1, usize::MAX))
            .transpose()?;
        let size = o.integer("antecedent_size", 1, 1, 2)?;
        let sequence = match (o.get("sequence"), o.get("ts")) {
            (None, None) => None,
            (Some(customer), Some(ts)) => Some((customer.to_string(), ts.to_string())),
            _ => {
                return Err(plan_datafusion_err!(
                    "{NAME}: sequential rules need both sequence=CUSTOMER_COLUMN and \
                     ts=DATE_COLUMN; got '{options}'."
                ));
            }
        };
        if sequence.is_some() && size == 2 {
            return Err(datafusion::common::DataFusionError::NotImplemented(
                format!(
                    "{NAME}: two-item antecedents are not available for sequential rules; \
                 drop antecedent_size=2 or sequence=."
                ),
            ));
        }
        if sequence.is_none() && o.get("within_days").is_some() {
            return Err(plan_datafusion_err!(
                "{NAME}: within_days applies to sequential rules only; add \
                 sequence=CUSTOMER_COLUMN, ts=DATE_COLUMN or drop within_days."
            ));
        }
        let within_days = o.integer("within_days", 30, 1, 36_500)?;
        let engine = o.choice("engine", "native", &["native", "sql"])?;

        let provider = resolve_table(NAME, args.session(), &table)?;
        let schema = provider.schema();
        let mut columns = vec![(2, "basket", &basket), (3, "item", &item)];
        let exclude = o.get("exclude_negative").map(str::to_string);
        if let Some(c) = &exclude {
            columns.push((4, "exclude_negative", c));
        }
        if let Some((customer, ts)) = &sequence {
            columns.push((4, "sequence", customer));
            columns.push((4, "ts", ts));
        }
        for (n, what, name) in columns {
            if schema.field_with_name(name).is_err() {
                let names: Vec<&str> =
                    schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(plan_datafusion_err!(
                    "{NAME}: argument {n} ({what}) names column '{name}', which '{table}' \
                     does not have; it has {}.",
                    names.join(", ")
                ));
            }
        }

        if let Some(c) = o.get("exclude_negative") {
            check_column_type(
                NAME,
                &schema,
                (1, &table),
                "exclude_negative",
                c,
                Holds::Number,
            )?;
        }
        if let Some((_, ts)) = &sequence {
            check_column_type(NAME, &schema, (1, &table), "ts", ts, Holds::Date)?;
        }

        let spec = RulesSpec {
            source: quote_table(&table),
            basket: quote_ident(&basket),
            item: quote_ident(&item),
            // A NULL is not negative: only lines known to be returns go.
            keep: exclude
                .map(|c| format!("NOT coalesce({} < 0, false)", quote_ident(&c))),
            thresholds,
            size,
            max_rules,
            sequence: sequence.map(|(customer, ts)| Sequence {
                customer: quote_ident(&customer),
                day: format!("CAST({} AS DATE)", quote_ident(&ts)),
                within_days,
            }),
        };
        let sql = rules_sql(&spec);
        let plan = plan_sql(NAME, args.session(), &sql)?;
        if engine == "sql" || spec.sequence.is_some() || spec.size == 2 {
            return Ok(Arc::new(ViewTable::new(plan, Some(sql))));
        }
        // One-item antecedents over baskets: count the pairs in memory.
        let keep = spec
            .keep
            .as_ref()
            .map_or(String::new(), |k| format!(" AND {k}"));
        let lines_sql = format!(
            "SELECT DISTINCT {b} AS basket, {i} AS item FROM {source} \
             WHERE {b} IS NOT NULL AND {i} IS NOT NULL{keep}",
            b = spec.basket,
            i = spec.item,
            source = spec.source,
        );
        let lines = plan_sql(NAME, args.session(), &lines_sql)?;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let mining = Mining {
            thresholds: spec.thresholds,
            max_rules: spec.max_rules,
        };
        Ok(Arc::new(PairRulesTable::new(schema, lines, mining)))
    }
}

/// The query that mines rules: columns `antecedent`, `antecedent_2`,
/// `consequent`, the counts and the metrics.
pub(crate) fn rules_sql(spec: &RulesSpec) -> String {
    let t = &spec.thresholds;
    let (b, i) = (&spec.basket, &spec.item);
    let keep = spec
        .keep
        .as_ref()
        .map_or(String::new(), |k| format!(" AND {k}"));
    let (conf_num, conf_den) = t.confidence;
    let (lift_num, lift_den) = t.lift;
    // Exact integer comparisons; DECIMAL(38, 0) keeps the lift products from
    // overflowing 64 bits.
    let rule_filter = |pair: &str, ant: &str, cons: &str| {
        format!(
            "{} AND CAST({pair} AS DECIMAL(38, 0)) * {conf_den} \
                 >= CAST({conf_num} AS DECIMAL(38, 0)) * {ant} \
             AND CAST(CAST({pair} AS DECIMAL(38, 0)) * t.baskets * {lift_den} AS DECIMAL(38, 0)) \
                 >= CAST({lift_num} * CAST({ant} AS DECIMAL(38, 0)) * {cons} AS DECIMAL(38, 0))",
            t.frequent(pair, "t.baskets"),
        )
    };
    let metrics = |pair: &str, ant: &str, cons: &str| {
        let f = |e: &str| format!("CAST({e} AS DOUBLE)");
        format!(
            "{ant} AS antecedent_count, {cons} AS consequent_count, {pair} AS pair_count, \
             t.baskets AS baskets, \
             {p} / t.baskets AS support, \
             {p} / {a} AS confidence, \
             {p} * t.baskets / ({a} * {c}) AS lift, \
             {p} / t.baskets - ({a} / t.baskets) * ({c} / t.baskets) AS leverage, \
             CASE WHEN {pair} = {ant} THEN CAST('Infinity' AS DOUBLE) \
                  ELSE (1.0 - {c} / t.baskets) / (1.0 - {p} / {a}) END AS conviction",
            p = f(pair),
            a = f(ant),
            c = f(cons),
        )
    };
    // The unit that is counted: a basket, or a customer's sequence of days.
    // Lines are distinct (basket, item) pairs, so in basket mode plain counts
    // are distinct counts; a sequence repeats a customer and needs DISTINCT.
    // In basket mode a pair's count is the same both ways: count each pair
    // once (a.item < b.item) and mirror it, half the join of counting both.
    let (unit, counted, lines, pairs_join) = match &spec.sequence {
        None => (
            "basket",
            "*",
            format!("SELECT DISTINCT {b} AS basket, {i} AS item"),
            "a.basket = b.basket AND a.item < b.item".to_string(),
        ),
        Some(seq) => (
            "seq",
            "DISTINCT a.seq",
            format!(
                "SELECT DISTINCT {} AS seq, {} AS day, {i} AS item",
                seq.customer, seq.day
            ),
            format!(
                "a.seq = b.seq AND a.item <> b.item AND b.day > a.day \
                 AND b.day <= a.day + INTERVAL '{} days'",
                seq.within_days
            ),
        ),
    };
    // Lines are distinct (basket, item) pairs: in basket mode an item's
    // baskets are its lines.
    let item_count = match spec.sequence {
        None => "count(*)".to_string(),
        Some(_) => format!("count(DISTINCT {unit})"),
    };
    let mut sql = format!(
        "WITH ar_lines AS (\
           {lines} FROM {source} \
           WHERE {b} IS NOT NULL AND {i} IS NOT NULL{keep}), \
         ar_totals AS (SELECT count(DISTINCT {unit}) AS baskets FROM ar_lines), \
         ar_frequent AS (\
           SELECT item, {item_count} AS item_count FROM ar_lines a GROUP BY item \
           HAVING {}), \
         ar_flines AS (SELECT l.* FROM ar_lines l JOIN ar_frequent f ON l.item = f.item), \
         ar_counted AS (\
           SELECT a.item AS antecedent, b.item AS consequent, \
                  count({counted}) AS pair_count \
           FROM ar_flines a JOIN ar_flines b ON {pairs_join} \
           GROUP BY a.item, b.item), \
         ar_pairs AS ({mirrored}), \
         ar_rules AS (\
           SELECT p.antecedent, CASE WHEN false THEN p.antecedent END AS antecedent_2, \
                  p.consequent, {} \
           FROM ar_pairs p JOIN ar_frequent fa ON p.antecedent = fa.item \
           JOIN ar_frequent fc ON p.consequent = fc.item CROSS JOIN ar_totals t \
           WHERE {})",
        t.frequent(&item_count, "(SELECT baskets FROM ar_totals)"),
        metrics("p.pair_count", "fa.item_count", "fc.item_count"),
        rule_filter("p.pair_count", "fa.item_count", "fc.item_count"),
        source = spec.source,
        mirrored = if spec.sequence.is_none() {
            // One pass over the counted pairs (a CTE named twice would be
            // computed twice), each row once per direction.
            "SELECT CASE WHEN d THEN antecedent ELSE consequent END AS antecedent, \
                    CASE WHEN d THEN consequent ELSE antecedent END AS consequent, \
                    pair_count \
             FROM ar_counted CROSS JOIN (VALUES (true), (false)) AS direction(d)"
        } else {
            "SELECT antecedent, consequent, pair_count FROM ar_counted"
        },
    );
    if spec.size == 2 {
        sql.push_str(&format!(
            ", ar_triples AS (\
               SELECT a.item AS a1, b.item AS a2, c.item AS consequent, count(*) AS n \
               FROM ar_flines a JOIN ar_flines b ON a.basket = b.basket AND a.item < b.item \
               JOIN ar_flines c ON c.basket = a.basket AND c.item <> a.item AND c.item <> b.item \
               GROUP BY a.item, b.item, c.item), \
             ar_rules2 AS (\
               SELECT x.a1 AS antecedent, x.a2 AS antecedent_2, x.consequent, {} \
               FROM ar_triples x \
               JOIN (SELECT antecedent, consequent, pair_count FROM ar_pairs) ab \
                 ON ab.antecedent = x.a1 AND ab.consequent = x.a2 \
               JOIN ar_frequent fc ON x.consequent = fc.item CROSS JOIN ar_totals t \
               WHERE {})",
            metrics("x.n", "ab.pair_count", "fc.item_count"),
            rule_filter("x.n", "ab.pair_count", "fc.item_count"),
        ));
        sql.push_str(" SELECT * FROM ar_rules UNION ALL SELECT * FROM ar_rules2");
    } else {
        sql.push_str(" SELECT * FROM ar_rules");
    }
    sql.push_str(
        " ORDER BY lift DESC, confidence DESC, pair_count DESC, antecedent, \
         antecedent_2 NULLS FIRST, consequent",
    );
    if let Some(n) = spec.max_rules {
        sql.push_str(&format!(" LIMIT {n}"));
    }
    sql
}
