//! `next_best_offer`: the top offers for every customer, with tactics that
//! follow the customer's RFM segment.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, plan_datafusion_err};

use crate::options::Options;
use crate::segments::SegmentMap;
use crate::table::association_rules::{RulesSpec, Thresholds, rules_sql};
use crate::table::{
    Holds, as_of_arg, check_column_type, optional_text, plan_sql, quote_ident,
    quote_table, resolve_table, text_arg,
};

const NAME: &str = "next_best_offer";

const KEYS: [&str; 24] = [
    "customer",
    "product",
    "basket",
    "ts",
    "ts_format",
    "amount",
    "quantity",
    "category",
    "price",
    "k",
    "min_support",
    "min_count",
    "min_confidence",
    "min_lift",
    "high",
    "mid",
    "low",
    "bins",
    "method",
    "map",
    "preset",
    "r_cuts",
    "f_cuts",
    "m_cuts",
];

/// The options passed on to `rfm_customers` as they are.
const RFM_KEYS: [&str; 7] = [
    "bins", "method", "map", "preset", "r_cuts", "f_cuts", "m_cuts",
];

/// Segments of the built-in maps per tier, used unless `high`, `mid` or `low`
/// options name others. Any other segment is `low`.
const HIGH: [&str; 6] = [
    "Champions",
    "Loyal Customers",
    "Can't Lose Them",
    "Can't Lose",
    "Premium Customer",
    "Repeat Customer",
];
const MID: [&str; 6] = [
    "Potential Loyalists",
    "Need Attention",
    "Promising",
    "New Customers",
    "At Risk",
    "Top Spender",
];

/// `next_best_offer(transactions, products, as_of [, options])`: up to `k`
/// offers per customer of `transactions` (table or view names), as of a date.
///
/// Columns: `customer_id`, `rank` (1 = best), `product_id`, `offer_type`
/// (`cross_sell` or `up_sell`), `tactic`, `score`, `reason`, `segment`
/// (the customer's RFM segment, as `rfm_customers` gives it) and `tier`
/// (`high`, `mid`, `low`, or `none` without purchases).
///
/// How offers are found, from purchase lines (amount zero or more) dated up
/// to `as_of`:
/// - cross-sell: consequents of `association_rules` over the baskets whose
///   antecedent the customer owns, never a product the customer owns. The
///   strength starts from the consequent's share of baskets, the chance a
///   basket holds it anyway, and adds the added value of each owned
///   antecedent's rule, `confidence - consequent share` when positive (Tan,
///   Kumar and Srivastava's "added value"), capped at 1; the reason names the
///   antecedent of the most confident rule. On the same scale a popular
///   product that nothing the customer owns points to scores its share alone.
///   Strengths and paid prices are rounded (12 and 9 decimals), so float sums
///   taken in another order give the same offers;
/// - up-sell: for each category the customer buys, the best-selling product of
///   a higher price tier (`high` tier customers: the top tier; `mid`: one tier
///   above the highest they own); strength is the category's share of the
///   customer's purchase lines. Price tiers are thirds of the price ranks
///   within a category; prices come from the `price` column of `products`, or
///   else the mean unit price paid (`amount / quantity` with `quantity`, else
///   the mean line amount);
/// - popularity: the best sellers the customer does not own, with strength
///   their share of baskets, fill the list (and are all a customer without
///   purchases gets).
///
/// `score` is strength times a value weight that follows the tier: `high`
/// favours premium products ((2 + price tier) / 5), `mid` is neutral, `low`
/// favours cheap entry products ((6 - price tier) / 5). The weight spans 0.6
/// to 1, so it reorders offers of like strength without burying a strongly
/// related product under a weakly related one of the preferred price. Tactics: `high` gets
/// `premium`; `mid` gets `bundle_discount` (cross-sell, popular) or
/// `instalments` (up-sell); `low` gets `entry`, or `trial` for popular
/// products; `none` gets `trial`. Low-tier customers get no up-sells. A
/// product is offered once per customer; ties are broken by offer type and
/// product id, so the order is deterministic.
///
/// Lines with a NULL customer, product or basket, and product rows with a
/// NULL id, are left out. Segment names in `high`, `mid` and `low` must be
/// ones the map gives, each in one tier; names given there win over the
/// default lists.
///
/// Options name columns (defaults after `=`): `customer=customer_id`,
/// `product=product_id` (in both tables), `basket=basket_id` (when present;
/// else customer and day), `ts=order_ts`, `ts_format`, `amount=amount`,
/// `quantity`, `category=category`, `price`; `k=3`; rule thresholds
/// `min_support=0.001`, `min_count`, `min_confidence=0.05`, `min_lift`;
/// `high`, `mid`, `low` (`|`-separated segment names per tier); and the RFM
/// options `bins`, `method`, `map`, `preset`, `r_cuts`, `f_cuts`, `m_cuts`, as
/// `rfm_customers` takes them.
#[derive(Debug, Default)]
pub struct NextBestOffer;

/// Column names after defaults.
struct Columns {
    customer: String,
    product: String,
    basket: Option<String>,
    ts: String,
    ts_format: Option<String>,
    amount: String,
    quantity: Option<String>,
    category: String,
    price: Option<String>,
}

/// The schema of `table` (argument `argument`), which must have every
/// column that `wanted` names by option.
fn check_columns(
    session: &dyn Session,
    table: &str,
    argument: usize,
    wanted: &[(&str, &str)],
) -> Result<SchemaRef> {
    let schema = resolve_table(NAME, session, table)?.schema();
    for (option, column) in wanted {
        if schema.field_with_name(column).is_err() {
            let names: Vec<&str> =
                schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(plan_datafusion_err!(
                "{NAME}: option {option} names column '{column}', which argument {argument} \
                 ('{table}') does not have; it has {}. Name the column with {option}=...",
                names.join(", ")
            ));
        }
    }
    Ok(schema)
}

fn tier_list(o: &Options, key: &str, default: &[&str]) -> Vec<String> {
    match o.get(key) {
        Some(list) => list.split('|').map(|s| s.trim().to_string()).collect(),
        None => default.iter().map(|s| s.to_string()).collect(),
    }
}

/// Names in the `high`, `mid` and `low` options must be segments the map
/// gives; a misspelt name would silently leave its customers in `low`.
fn check_tier_names(o: &Options) -> Result<()> {
    // preset=pymc means pymc's map and 4 bins unless the options say others.
    let pymc = o.get("preset") == Some("pymc");
    let map = o
        .get("map")
        .unwrap_or(if pymc { "pymc" } else { "default" });
    let bins = o.integer("bins", if pymc { 4 } else { 5 }, 2, 9)? as u32;
    let segments = SegmentMap::parse(map, bins)?;
    let known: Vec<&str> = segments.names().collect();
    let mut placed: Vec<(&str, &str)> = Vec::new();
    for key in ["high", "mid", "low"] {
        let Some(list) = o.get(key) else { continue };
        for name in list.split('|').map(str::trim) {
            if !known.contains(&name) {
                return Err(plan_datafusion_err!(
                    "{NAME}: option {key} names segment '{name}', which map '{map}' does \
                     not give; its segments are {}. Separate names with '|'.",
                    known.join(", ")
                ));
            }
            if let Some((other, _)) = placed.iter().find(|(_, n)| *n == name) {
                return Err(plan_datafusion_err!(
                    "{NAME}: segment '{name}' is named by both {other} and {key}; name \
                     each segment in one tier."
                ));
            }
            placed.push((key, name));
        }
    }
    Ok(())
}

/// `YYYY-MM-DD` of days since 1970-01-01.
fn date_text(days: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (epoch + chrono::Duration::days(i64::from(days))).to_string()
}

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn sql_list(items: &[String]) -> String {
    if items.is_empty() {
        return "NULL".to_string();
    }
    items
        .iter()
        .map(|i| sql_string(i))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TableFunctionImpl for NextBestOffer {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        if !(3..=4).contains(&exprs.len()) {
            return Err(plan_datafusion_err!(
                "{NAME}: takes (transactions, products, as_of [, options]); got {} \
                 argument(s). Example: SELECT * FROM {NAME}('orders', 'products', \
                 '2024-06-01', 'customer=cust, category=product_category, k=3').",
                exprs.len()
            ));
        }
        let transactions = text_arg(NAME, exprs, 1, "transactions")?;
        let products = text_arg(NAME, exprs, 2, "products")?;
        let as_of = as_of_arg(NAME, exprs, 3)?;
        let options = optional_text(NAME, exprs, 4, "options")?;
        let o = Options::parse(NAME, &options, &KEYS)?;
        let get = |key: &str, default: &str| o.get(key).unwrap_or(default).to_string();
        let mut columns = Columns {
            customer: get("customer", "customer_id"),
            product: get("product", "product_id"),
            basket: o.get("basket").map(str::to_string),
            ts: get("ts", "order_ts"),
            ts_format: o.get("ts_format").map(str::to_string),
            amount: get("amount", "amount"),
            quantity: o.get("quantity").map(str::to_string),
            category: get("category", "category"),
            price: o.get("price").map(str::to_string),
        };
        let k = o.integer("k", 3, 1, 1000)?;
        let thresholds = Thresholds::from_options(&o, (1, 1000), (5, 100))?;

        let session = args.session();
        let mut wanted = vec![
            ("customer", columns.customer.as_str()),
            ("product", columns.product.as_str()),
            ("ts", columns.ts.as_str()),
            ("amount", columns.amount.as_str()),
        ];
        wanted.extend(columns.basket.as_deref().map(|b| ("basket", b)));
        wanted.extend(columns.quantity.as_deref().map(|q| ("quantity", q)));
        let schema = check_columns(session, &transactions, 1, &wanted)?;
        if columns.basket.is_none() && schema.field_with_name("basket_id").is_ok() {
            columns.basket = Some("basket_id".to_string());
        }
        let typed = [
            ("ts", Some(&columns.ts), Holds::Date),
            ("amount", Some(&columns.amount), Holds::Number),
            ("quantity", columns.quantity.as_ref(), Holds::Number),
        ];
        for (option, column, holds) in typed {
            if let Some(column) = column {
                check_column_type(
                    NAME,
                    &schema,
                    (1, &transactions),
                    option,
                    column,
                    holds,
                )?;
            }
        }
        let mut wanted = vec![
            ("product", columns.product.as_str()),
            ("category", columns.category.as_str()),
        ];
        wanted.extend(columns.price.as_deref().map(|p| ("price", p)));
        let schema = check_columns(session, &products, 2, &wanted)?;
        if let Some(price) = &columns.price {
            check_column_type(
                NAME,
                &schema,
                (2, &products),
                "price",
                price,
                Holds::Number,
            )?;
        }

        let mut rfm_options: Vec<String> = RFM_KEYS
            .iter()
            .filter_map(|key| o.get(key).map(|v| format!("{key}={v}")))
            .collect();
        // pymc's preset counts purchase days, not baskets.
        if o.get("preset") != Some("pymc") {
            rfm_options.extend(columns.basket.as_ref().map(|b| format!("order_id={b}")));
        }
        rfm_options.extend(columns.ts_format.as_ref().map(|f| format!("ts_format={f}")));
        let tiers = [
            tier_list(&o, "high", &HIGH),
            tier_list(&o, "mid", &MID),
            tier_list(&o, "low", &[]),
        ];
        check_tier_names(&o)?;

        let sql = offers_sql(&OfferQuery {
            transactions: &transactions,
            products: &products,
            columns: &columns,
            as_of,
            k,
            thresholds,
            rfm_options: rfm_options.join(", "),
            tiers,
        });
        let plan = plan_sql(NAME, session, &sql)?;
        Ok(Arc::new(ViewTable::new(plan, Some(sql))))
    }
}

struct OfferQuery<'a> {
    transactions: &'a str,
    products: &'a str,
    columns: &'a Columns,
    as_of: i32,
    k: usize,
    thresholds: Thresholds,
    rfm_options: String,
    tiers: [Vec<String>; 3],
}

/// The query behind the function, one CTE per step of the method above.
fn offers_sql(q: &OfferQuery) -> String {
    let c = q.columns;
    let cust = quote_ident(&c.customer);
    let prod = quote_ident(&c.product);
    let amount = quote_ident(&c.amount);
    let ts = quote_ident(&c.ts);
    let day = match &c.ts_format {
        Some(f) => format!("to_date({ts}, {})", sql_string(f)),
        None => format!("CAST({ts} AS DATE)"),
    };
    let basket = match &c.basket {
        Some(b) => format!("CAST({} AS VARCHAR)", quote_ident(b)),
        None => format!("concat(CAST({cust} AS VARCHAR), '|', CAST({day} AS VARCHAR))"),
    };
    let unit_price = match &c.quantity {
        Some(qty) => format!(
            "CASE WHEN {q} > 0 THEN CAST({amount} AS DOUBLE) / {q} END",
            q = quote_ident(qty)
        ),
        None => format!("CAST({amount} AS DOUBLE)"),
    };
    let price = match &c.price {
        Some(p) => format!("CAST(p.{} AS DOUBLE)", quote_ident(p)),
        None => "paid.price".to_string(),
    };
    let as_of_text = sql_string(&date_text(q.as_of));
    let as_of = format!("DATE {as_of_text}");
    let rules = rules_sql(&RulesSpec {
        source: "purchases".to_string(),
        basket: "basket".to_string(),
        item: "product_id".to_string(),
        keep: None,
        thresholds: q.thresholds.clone(),
        size: 1,
        max_rules: None,
        sequence: None,
    });
    let [high, mid, low] = &q.tiers;
    format!(
        "WITH history AS (\
           SELECT {cust} AS customer_id, {prod} AS product_id, {basket} AS basket, \
                  {amount} AS amount, {unit_price} AS unit_price \
           FROM {tx} WHERE {cust} IS NOT NULL AND {prod} IS NOT NULL \
             AND {basket} IS NOT NULL AND {day} <= {as_of}), \
         purchases AS (SELECT * FROM history WHERE amount >= 0), \
         segments AS (\
           SELECT customer_id, segment, \
                  CASE WHEN segment IS NULL THEN 'none' \
                       WHEN segment IN ({low}) THEN 'low' \
                       WHEN segment IN ({high}) THEN 'high' \
                       WHEN segment IN ({mid}) THEN 'mid' ELSE 'low' END AS tier \
           FROM rfm_customers({tx_name}, {cust_name}, {ts_name}, {amount_name}, \
                              {as_of_text}, {rfm_options})), \
         paid AS (\
           SELECT product_id, round(avg(unit_price), 9) AS price FROM purchases \
           GROUP BY product_id), \
         catalog AS (\
           SELECT p.{prod} AS product_id, p.{category} AS category, {price} AS price \
           FROM {products} p LEFT JOIN paid ON paid.product_id = p.{prod} \
           WHERE p.{prod} IS NOT NULL), \
         priced AS (\
           SELECT product_id, category, price, \
                  CASE WHEN percent_rank() OVER (PARTITION BY category ORDER BY price) \
                            < 1.0 / 3 THEN 1 \
                       WHEN percent_rank() OVER (PARTITION BY category ORDER BY price) \
                            < 2.0 / 3 THEN 2 \
                       ELSE 3 END AS price_tier \
           FROM catalog WHERE price IS NOT NULL AND category IS NOT NULL), \
         owned AS (SELECT DISTINCT customer_id, product_id FROM purchases), \
         totals AS (SELECT count(DISTINCT basket) AS baskets FROM purchases), \
         popular AS (\
           SELECT product_id, count(DISTINCT basket) AS baskets FROM purchases \
           GROUP BY product_id), \
         rules AS ({rules}), \
         cross_sell AS (\
           SELECT o.customer_id, r.consequent AS product_id, \
                  round(least(1.0, max(r.consequent_share) \
                                   + sum(greatest(r.confidence - r.consequent_share, 0))), \
                        12) AS strength, \
                  'owns ' || CAST(first_value(r.antecedent \
                                              ORDER BY r.confidence DESC, r.antecedent) \
                                  AS VARCHAR) AS reason \
           FROM owned o \
           JOIN (SELECT *, CAST(consequent_count AS DOUBLE) / baskets AS consequent_share \
                 FROM rules) r ON r.antecedent = o.product_id \
           LEFT JOIN owned mine ON mine.customer_id = o.customer_id \
                               AND mine.product_id = r.consequent \
           WHERE mine.product_id IS NULL \
           GROUP BY o.customer_id, r.consequent), \
         affinity AS (\
           SELECT pu.customer_id, pr.category, \
                  CAST(count(*) AS DOUBLE) \
                    / sum(count(*)) OVER (PARTITION BY pu.customer_id) AS share, \
                  max(pr.price_tier) AS owned_tier \
           FROM purchases pu JOIN priced pr ON pu.product_id = pr.product_id \
           GROUP BY pu.customer_id, pr.category), \
         best_in_tier AS (\
           SELECT category, price_tier, product_id FROM (\
             SELECT pr.category, pr.price_tier, pr.product_id, \
                    row_number() OVER (PARTITION BY pr.category, pr.price_tier \
                                       ORDER BY coalesce(po.baskets, 0) DESC, pr.product_id) AS n \
             FROM priced pr LEFT JOIN popular po ON po.product_id = pr.product_id) \
           WHERE n = 1), \
         up_sell AS (\
           SELECT a.customer_id, b.product_id, a.share AS strength, \
                  'buys ' || CAST(a.category AS VARCHAR) AS reason \
           FROM affinity a JOIN segments s ON s.customer_id = a.customer_id \
           JOIN best_in_tier b ON b.category = a.category \
            AND b.price_tier = CASE WHEN s.tier = 'high' THEN 3 ELSE a.owned_tier + 1 END \
           LEFT JOIN owned mine ON mine.customer_id = a.customer_id \
                               AND mine.product_id = b.product_id \
           WHERE s.tier IN ('high', 'mid') AND b.price_tier > a.owned_tier \
             AND mine.product_id IS NULL), \
         top_sellers AS (\
           SELECT product_id, baskets FROM popular \
           ORDER BY baskets DESC, product_id LIMIT {fill}), \
         fallback AS (\
           SELECT s.customer_id, t.product_id, \
                  CAST(t.baskets AS DOUBLE) / (SELECT baskets FROM totals) AS strength, \
                  'popular' AS reason \
           FROM segments s CROSS JOIN top_sellers t \
           LEFT JOIN owned mine ON mine.customer_id = s.customer_id \
                               AND mine.product_id = t.product_id \
           WHERE mine.product_id IS NULL), \
         candidates AS (\
           SELECT customer_id, product_id, 'cross_sell' AS offer_type, strength, reason \
           FROM cross_sell \
           UNION ALL SELECT customer_id, product_id, 'up_sell', strength, reason FROM up_sell \
           UNION ALL \
           SELECT customer_id, product_id, 'cross_sell', strength, reason FROM fallback), \
         scored AS (\
           SELECT c.customer_id, c.product_id, c.offer_type, c.reason, s.segment, s.tier, \
                  c.strength * CASE s.tier \
                    WHEN 'high' THEN (2 + coalesce(pr.price_tier, 2)) / 5.0 \
                    WHEN 'low' THEN (6 - coalesce(pr.price_tier, 2)) / 5.0 \
                    ELSE 1.0 END AS score \
           FROM candidates c JOIN segments s ON s.customer_id = c.customer_id \
           LEFT JOIN priced pr ON pr.product_id = c.product_id), \
         unique_offers AS (\
           SELECT * FROM (\
             SELECT *, row_number() OVER (PARTITION BY customer_id, product_id \
                                          ORDER BY score DESC, offer_type, reason) AS n \
             FROM scored) WHERE n = 1), \
         ranked AS (\
           SELECT *, row_number() OVER (PARTITION BY customer_id \
                                        ORDER BY score DESC, offer_type, product_id) AS rank \
           FROM unique_offers) \
         SELECT customer_id, CAST(rank AS INT) AS rank, product_id, offer_type, \
                CASE WHEN tier = 'high' THEN 'premium' \
                     WHEN tier = 'mid' AND offer_type = 'up_sell' THEN 'instalments' \
                     WHEN tier = 'mid' THEN 'bundle_discount' \
                     WHEN tier = 'low' AND reason <> 'popular' THEN 'entry' \
                     ELSE 'trial' END AS tactic, \
                score, reason, segment, tier \
         FROM ranked WHERE rank <= {k}",
        tx = quote_table(q.transactions),
        products = quote_table(q.products),
        category = quote_ident(&c.category),
        tx_name = sql_string(q.transactions),
        cust_name = sql_string(&c.customer),
        ts_name = sql_string(&c.ts),
        amount_name = sql_string(&c.amount),
        rfm_options = sql_string(&q.rfm_options),
        high = sql_list(high),
        mid = sql_list(mid),
        low = sql_list(low),
        fill = q.k + 50,
        k = q.k,
    )
}
