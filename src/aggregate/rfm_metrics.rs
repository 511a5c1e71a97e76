//! `rfm_metrics`: one customer's recency, frequency and monetary value.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, ListArray, StringArray, StructArray,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, FieldRef, Fields, Float64Type,
    Int32Type, Int64Type, TimeUnit, UInt64Type,
};
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::common::{
    DataFusionError, Result, ScalarValue, exec_datafusion_err, internal_err,
};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, Documentation, GroupsAccumulator, Signature,
};

use super::rfm_metrics_groups::RfmMetricsGroups;

use crate::args::{
    DOC_SECTION, arity_error, cast_input, coerce_date_like, constant_days,
    constant_options, describe, documented_signature, is_integer, is_string,
    physical_literal, scalar_text, to_days,
};
use crate::exact_sum::ExactSum;
use crate::options::Options;

const NAME: &str = "rfm_metrics";
const SYNTAX: &str = "rfm_metrics(order_ts, amount [, order_id], as_of [, options])";

/// `rfm_metrics(order_ts, amount [, order_id], as_of [, options])`: an aggregate
/// that returns, per group (usually `GROUP BY customer_id`), a struct of:
///
/// - `recency_days INT`: calendar days from the date of the last purchase to
///   the date of `as_of`.
/// - `frequency BIGINT`: distinct non-NULL `order_id`s of purchase lines; with
///   no `order_id` (or a NULL literal in its place), distinct purchase days.
/// - `monetary`: net sum of all amounts up to `as_of`, returns included as
///   negative lines. `DOUBLE` for integer and float amounts, summed exactly
///   ([`ExactSum`], the exact sum rounded once) so the result is the same for
///   any input order or partitioning; `DECIMAL(38, s)` for decimal amounts,
///   summed exactly in 128-bit integers. With `monetary=mean` (or
///   `preset=pymc`) it is the net sum divided by `frequency` instead.
/// - `first_purchase DATE`, `last_purchase DATE`: dates of the first and last
///   purchase lines.
/// - `tenure_days INT`: days from `first_purchase` to `as_of`.
/// - `rows_after_as_of BIGINT`: rows dated after `as_of`, excluded and counted.
/// - `rows_with_null BIGINT`: rows whose `order_ts` or `amount` (or, when
///   an `order_id` column is given, `order_id`) is NULL, excluded and counted.
///
/// A purchase line has an amount of zero or more; a negative line is a return:
/// it lowers `monetary` but never sets a purchase date or adds to `frequency`.
/// A customer with only returns has NULL dates and recency and frequency 0.
/// `as_of` must be a constant. An empty group gives a struct of NULLs and
/// zero counts. NaN or infinite amounts are errors.
///
/// Options: `monetary=sum|mean`; `preset=pymc` (PyMC-Marketing's
/// `rfm_segments` metrics: frequency counts purchase days, monetary is the
/// mean spend per purchase day; give no `order_id`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RfmMetrics {
    signature: Signature,
}

impl RfmMetrics {
    /// Creates the function.
    pub fn new() -> Self {
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        Self {
            signature: documented_signature(vec![
                vec![DataType::Date32, DataType::Float64, DataType::Date32],
                vec![
                    ts.clone(),
                    DataType::Float64,
                    DataType::Int64,
                    DataType::Date32,
                ],
                vec![
                    ts,
                    DataType::Decimal128(38, 2),
                    DataType::Utf8,
                    DataType::Date32,
                    DataType::Utf8,
                ],
            ]),
        }
    }
}

impl Default for RfmMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The fields of `rfm_metrics`' result for a given monetary type.
pub fn metrics_fields(monetary: DataType) -> Fields {
    Fields::from(vec![
        Field::new("recency_days", DataType::Int32, true),
        Field::new("frequency", DataType::Int64, false),
        Field::new("monetary", monetary, true),
        Field::new("first_purchase", DataType::Date32, true),
        Field::new("last_purchase", DataType::Date32, true),
        Field::new("tenure_days", DataType::Int32, true),
        Field::new("rows_after_as_of", DataType::Int64, false),
        Field::new("rows_with_null", DataType::Int64, false),
    ])
}

/// Where each argument sits for a given number of arguments.
struct Layout {
    order_id: Option<usize>,
    as_of: usize,
    options: Option<usize>,
}

fn layout(arity: usize) -> Result<Layout> {
    match arity {
        3 => Ok(Layout {
            order_id: None,
            as_of: 2,
            options: None,
        }),
        4 => Ok(Layout {
            order_id: Some(2),
            as_of: 3,
            options: None,
        }),
        5 => Ok(Layout {
            order_id: Some(2),
            as_of: 3,
            options: Some(4),
        }),
        n => Err(arity_error(NAME, n, SYNTAX)),
    }
}

fn money_type(amount: &DataType) -> DataType {
    match amount {
        DataType::Decimal128(_, s) => DataType::Decimal128(38, *s),
        _ => DataType::Float64,
    }
}

/// Checks the argument types and gives the types they are cast to.
fn coerce(arg_types: &[DataType]) -> Result<Vec<DataType>> {
    let layout = layout(arg_types.len())?;
    let mut out = Vec::with_capacity(arg_types.len());
    out.push(coerce_date_like(NAME, 1, "order_ts", &arg_types[0])?);
    out.push(match &arg_types[1] {
        DataType::Decimal128(p, s) => DataType::Decimal128(*p, *s),
        DataType::Decimal32(_, s)
        | DataType::Decimal64(_, s)
        | DataType::Decimal256(_, s)
            if *s >= 0 =>
        {
            DataType::Decimal128(38, *s)
        }
        t => crate::args::coerce_number(NAME, 2, "amount", t)?,
    });
    if let Some(i) = layout.order_id {
        out.push(match &arg_types[i] {
            DataType::Null => DataType::Null,
            t if is_integer(t) => DataType::Int64,
            _ => DataType::Utf8,
        });
    }
    // A string as_of stays a string and is parsed once, with an error that
    // names the argument, instead of failing inside constant folding.
    let as_of = &arg_types[layout.as_of];
    out.push(if is_string(as_of) {
        DataType::Utf8
    } else {
        coerce_date_like(NAME, layout.as_of + 1, "as_of", as_of)?
    });
    if let Some(i) = layout.options {
        out.push(DataType::Utf8);
        if !is_string(&arg_types[i]) && arg_types[i] != DataType::Null {
            return Err(datafusion::common::plan_datafusion_err!(
                "{NAME}: argument 5 (options) must be a string such as \
                 'monetary=mean'; got type {}.",
                arg_types[i]
            ));
        }
    }
    Ok(out)
}

/// Reads the constant arguments of one call: as_of, options, and the types
/// of the amount and order id.
fn setup(args: &AccumulatorArgs) -> Result<Setup> {
    let layout = layout(args.exprs.len())?;
    let as_of_expr = &args.exprs[layout.as_of];
    if layout.order_id.is_some()
        && let Some(text) = physical_literal(as_of_expr).and_then(scalar_text)
        && text.contains('=')
    {
        return Err(datafusion::common::plan_datafusion_err!(
            "{NAME}: argument 4 is as_of, but got options '{text}'. Options come \
             fifth, after order_id: rfm_metrics(order_ts, amount, NULL, as_of, '{text}')."
        ));
    }
    let Some(as_of) = physical_literal(as_of_expr) else {
        return Err(datafusion::common::plan_datafusion_err!(
            "{NAME}: argument {} (as_of) must be a constant date; got {}. \
             Pass a literal such as DATE '2024-06-01'.",
            layout.as_of + 1,
            describe(as_of_expr)
        ));
    };
    let as_of = constant_days(NAME, layout.as_of + 1, "as_of", as_of)?;
    let options = match layout.options {
        Some(i) => constant_options(NAME, args.exprs, i)?,
        None => String::new(),
    };
    let options = Options::parse(NAME, &options, &["monetary", "preset"])?;
    let by_orders = layout
        .order_id
        .is_some_and(|i| args.expr_fields[i].data_type() != &DataType::Null);
    let preset = options.choice("preset", "none", &["none", "pymc"])?;
    if preset == "pymc" && by_orders {
        return Err(datafusion::common::plan_datafusion_err!(
            "{NAME}: preset=pymc counts purchase days, as PyMC-Marketing does; \
             got an order_id column ({}). Pass NULL as order_id.",
            describe(&args.exprs[2])
        ));
    }
    let default_monetary = if preset == "pymc" { "mean" } else { "sum" };
    let mean = options.choice("monetary", default_monetary, &["sum", "mean"])? == "mean";

    let key_kind = match layout.order_id.map(|i| args.expr_fields[i].data_type()) {
        Some(DataType::Int64) => KeyKind::Ints,
        Some(DataType::Utf8) => KeyKind::Strings,
        _ => KeyKind::Days,
    };
    Ok(Setup {
        as_of,
        mean,
        decimal_scale: match args.expr_fields[1].data_type() {
            DataType::Decimal128(_, s) => Some(*s),
            _ => None,
        },
        key_kind,
        amount_source: describe(&args.exprs[1]),
        ts_source: describe(&args.exprs[0]),
    })
}

impl AggregateUDFImpl for RfmMetrics {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(coerce(arg_types).unwrap_or_else(|_| arg_types.to_vec()))
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let coerced = coerce(arg_types)?;
        Ok(DataType::Struct(metrics_fields(money_type(&coerced[1]))))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RfmMetricsAccumulator::new(setup(&args)?)))
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(RfmMetricsGroups::new(setup(&args)?)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let money = match args.input_fields[1].data_type() {
            DataType::Decimal128(_, s) => DataType::Decimal128(38, *s),
            _ => DataType::new_list(DataType::Float64, true),
        };
        let key = match args.input_fields.get(2).map(|f| f.data_type()) {
            Some(DataType::Int64) if args.input_fields.len() > 3 => DataType::Int64,
            Some(DataType::Utf8) if args.input_fields.len() > 3 => DataType::Utf8,
            _ => DataType::Int32,
        };
        let name = |part: &str| format!("{}[{part}]", args.name);
        Ok(vec![
            Field::new(name("first"), DataType::Date32, true).into(),
            Field::new(name("last"), DataType::Date32, true).into(),
            Field::new(name("money"), money, true).into(),
            Field::new(name("keys"), DataType::new_list(key, true), true).into(),
            Field::new(name("rows_after"), DataType::UInt64, true).into(),
            Field::new(name("rows_null"), DataType::UInt64, true).into(),
        ])
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        DOC_SECTION,
        "Recency, frequency and monetary value of each group (customer) as of a date. \
         Negative lines are returns: they lower monetary but never count as purchases. \
         Rows after as_of and rows with a NULL date or amount are excluded and counted.",
        SYNTAX,
    )
    .with_argument(
        "order_ts",
        "Purchase date or timestamp (date, timestamp or ISO string).",
    )
    .with_argument(
        "amount",
        "Line amount: float, integer or decimal; negative for returns.",
    )
    .with_argument(
        "order_id",
        "Optional order id; frequency counts distinct orders. Without it (or NULL), \
         distinct purchase days.",
    )
    .with_argument("as_of", "Constant date the metrics are computed at.")
    .with_argument("options", "Optional: 'monetary=sum|mean', 'preset=pymc'.")
    .with_sql_example(
        r#"```sql
> SELECT customer_id, rfm_metrics(order_ts, amount, DATE '2024-06-01') AS m
  FROM orders GROUP BY customer_id;
+-------------+-----------------------------------------------------------------+
| customer_id | m                                                               |
+-------------+-----------------------------------------------------------------+
| 1           | {recency_days: 143, frequency: 1, monetary: 100.0, first_...}   |
+-------------+-----------------------------------------------------------------+
```"#,
    )
    .build()
});

/// What every accumulator of one call knows: the as-of date, the monetary
/// mode, the amount and key types, and how to name the arguments in errors.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub as_of: i32,
    pub mean: bool,
    /// The scale of decimal amounts; `None` for DOUBLE.
    pub decimal_scale: Option<i8>,
    pub key_kind: KeyKind,
    pub amount_source: String,
    pub ts_source: String,
}

/// What `frequency` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Days,
    Ints,
    Strings,
}

/// One line's amount.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Amount {
    Float(f64),
    Decimal(i128),
}

/// One purchase line's order key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    Day(i32),
    Int(i64),
    Str(&'a str),
}

/// What one input line is.
pub(crate) enum Line<'a> {
    /// A NULL date, amount or (given order ids) order id: counted only.
    Null,
    /// Dated after as_of: counted only.
    After,
    /// A negative amount: lowers monetary, no purchase.
    Return(Amount),
    /// A purchase on `day`.
    Purchase {
        day: i32,
        amount: Amount,
        key: Key<'a>,
    },
}

impl Setup {
    fn amount_type(&self) -> DataType {
        match self.decimal_scale {
            Some(scale) => DataType::Decimal128(38, scale),
            None => DataType::Float64,
        }
    }

    pub fn float_overflow(&self, line: Option<f64>) -> DataFusionError {
        let line = line
            .map(|v| format!("; got a line of {v}"))
            .unwrap_or_default();
        exec_datafusion_err!(
            "{NAME}: the sum of argument 2 (amount, {}) overflows DOUBLE (beyond \
             1.7e308){line}. Check the amounts' unit or scale them down.",
            self.amount_source
        )
    }

    pub fn decimal_overflow(&self) -> DataFusionError {
        exec_datafusion_err!(
            "{NAME}: the sum of argument 2 (amount, {}) overflows DECIMAL(38). Cast \
             amounts to DOUBLE.",
            self.amount_source
        )
    }

    /// The monetary value of a group from its sum and frequency.
    pub fn monetary_float(&self, total: f64, frequency: i64) -> Option<f64> {
        if self.mean {
            (frequency > 0).then(|| total / frequency as f64)
        } else {
            Some(total)
        }
    }

    /// Decimal monetary values of groups from `(sum, frequency)` pairs.
    pub fn decimal_monetary(
        &self,
        groups: impl Iterator<Item = (i128, i64)>,
    ) -> Result<ArrayRef> {
        Ok(Arc::new(
            groups
                .map(|(sum, frequency)| self.monetary_decimal(sum, frequency))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(38, self.decimal_scale.unwrap_or(0))?,
        ))
    }

    pub fn monetary_decimal(&self, total: i128, frequency: i64) -> Option<i128> {
        if self.mean {
            (frequency > 0).then(|| divide_rounded(total, frequency as i128))
        } else {
            Some(total)
        }
    }
}

/// One batch of input, cast once and read line by line.
pub(crate) struct Lines {
    days: Date32Array,
    amounts: ArrayRef,
    order_ids: Option<ArrayRef>,
}

impl Lines {
    pub fn new(values: &[ArrayRef], setup: &Setup) -> Result<Self> {
        let days = to_days(&values[0]).map_err(|e| {
            exec_datafusion_err!(
                "{NAME}: argument 1 (order_ts, {}) holds a value that is not a date: {}. \
                 Convert strings in another format with to_date(col, '%m/%d/%Y') (rfm \
                 report: --ts-format).",
                setup.ts_source,
                e.strip_backtrace()
            )
        })?;
        let amounts = cast_input(&values[1], &setup.amount_type())?;
        let order_ids = match setup.key_kind {
            KeyKind::Ints => Some(cast_input(&values[2], &DataType::Int64)?),
            KeyKind::Strings => Some(cast_input(&values[2], &DataType::Utf8)?),
            KeyKind::Days => None,
        };
        Ok(Self {
            days,
            amounts,
            order_ids,
        })
    }

    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// Line `row`; a NaN or infinite amount is an error.
    pub fn line(&self, row: usize, setup: &Setup) -> Result<Line<'_>> {
        let no_order = self.order_ids.as_ref().is_some_and(|ids| ids.is_null(row));
        if self.days.is_null(row) || self.amounts.is_null(row) || no_order {
            return Ok(Line::Null);
        }
        let day = self.days.value(row);
        if day > setup.as_of {
            return Ok(Line::After);
        }
        let (amount, is_purchase) = match setup.decimal_scale {
            None => {
                let v = self.amounts.as_primitive::<Float64Type>().value(row);
                if !v.is_finite() {
                    return Err(exec_datafusion_err!(
                        "{NAME}: argument 2 (amount, {}) must be a finite number; got \
                         {v}. Filter or coalesce it first.",
                        setup.amount_source
                    ));
                }
                (Amount::Float(v), v >= 0.0)
            }
            Some(_) => {
                let v = self.amounts.as_primitive::<Decimal128Type>().value(row);
                (Amount::Decimal(v), v >= 0)
            }
        };
        if !is_purchase {
            return Ok(Line::Return(amount));
        }
        let key = match (setup.key_kind, &self.order_ids) {
            (KeyKind::Ints, Some(ids)) => {
                Key::Int(ids.as_primitive::<Int64Type>().value(row))
            }
            (KeyKind::Strings, Some(ids)) => Key::Str(ids.as_string::<i32>().value(row)),
            _ => Key::Day(day),
        };
        Ok(Line::Purchase { day, amount, key })
    }
}

#[derive(Debug)]
enum Money {
    Float(ExactSum),
    Decimal(i128),
}

#[derive(Debug)]
enum Keys {
    Days(HashSet<i32>),
    Ints(HashSet<i64>),
    Strings(HashSet<String>),
}

impl Keys {
    fn new(kind: KeyKind) -> Self {
        match kind {
            KeyKind::Days => Keys::Days(HashSet::new()),
            KeyKind::Ints => Keys::Ints(HashSet::new()),
            KeyKind::Strings => Keys::Strings(HashSet::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Keys::Days(s) => s.len(),
            Keys::Ints(s) => s.len(),
            Keys::Strings(s) => s.len(),
        }
    }

    fn insert(&mut self, key: Key<'_>) {
        match (self, key) {
            (Keys::Days(s), Key::Day(d)) => {
                s.insert(d);
            }
            (Keys::Ints(s), Key::Int(i)) => {
                s.insert(i);
            }
            (Keys::Strings(s), Key::Str(id)) if !s.contains(id) => {
                s.insert(id.to_string());
            }
            _ => {}
        }
    }

    fn to_array(&self) -> ArrayRef {
        match self {
            Keys::Days(s) => Arc::new(Int32Array::from_iter_values(s.iter().copied())),
            Keys::Ints(s) => Arc::new(s.iter().copied().collect::<Int64Array>()),
            Keys::Strings(s) => Arc::new(s.iter().map(Some).collect::<StringArray>()),
        }
    }

    fn merge(&mut self, array: &ArrayRef) {
        match self {
            Keys::Days(s) => s.extend(array.as_primitive::<Int32Type>().iter().flatten()),
            Keys::Ints(s) => s.extend(array.as_primitive::<Int64Type>().iter().flatten()),
            Keys::Strings(s) => s.extend(
                array
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string),
            ),
        }
    }
}

/// Per-group state of [`RfmMetrics`] when DataFusion aggregates row by row
/// (without grouping, or as the reference the grouped form is tested against).
#[derive(Debug)]
struct RfmMetricsAccumulator {
    setup: Setup,
    first: Option<i32>,
    last: Option<i32>,
    money: Money,
    keys: Keys,
    rows_after: u64,
    rows_null: u64,
}

impl RfmMetricsAccumulator {
    fn new(setup: Setup) -> Self {
        Self {
            money: match setup.decimal_scale {
                Some(_) => Money::Decimal(0),
                None => Money::Float(ExactSum::default()),
            },
            keys: Keys::new(setup.key_kind),
            setup,
            first: None,
            last: None,
            rows_after: 0,
            rows_null: 0,
        }
    }

    fn add_purchase_day(&mut self, day: i32) {
        self.first = Some(self.first.map_or(day, |f| f.min(day)));
        self.last = Some(self.last.map_or(day, |l| l.max(day)));
    }

    fn add_money(&mut self, amount: Amount) -> Result<()> {
        match (&mut self.money, amount) {
            (Money::Float(sum), Amount::Float(v)) => {
                sum.add(v);
                if sum.overflowed() {
                    return Err(self.setup.float_overflow(Some(v)));
                }
            }
            (Money::Decimal(sum), Amount::Decimal(v)) => {
                *sum = sum
                    .checked_add(v)
                    .ok_or_else(|| self.setup.decimal_overflow())?;
            }
            _ => return internal_err!("{NAME}: amount of another type than the state"),
        }
        Ok(())
    }
}

impl Accumulator for RfmMetricsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let lines = Lines::new(values, &self.setup)?;
        for row in 0..lines.len() {
            match lines.line(row, &self.setup)? {
                Line::Null => self.rows_null += 1,
                Line::After => self.rows_after += 1,
                Line::Return(amount) => self.add_money(amount)?,
                Line::Purchase { day, amount, key } => {
                    self.add_money(amount)?;
                    self.add_purchase_day(day);
                    self.keys.insert(key);
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let frequency = self.keys.len() as i64;
        let monetary: ArrayRef = match &self.money {
            Money::Float(sum) => Arc::new(Float64Array::from(vec![
                self.setup.monetary_float(sum.value(), frequency),
            ])),
            Money::Decimal(sum) => self
                .setup
                .decimal_monetary([*sum].into_iter().zip([frequency]))?,
        };
        let array = metrics_array(
            self.setup.as_of,
            vec![self.last],
            vec![frequency],
            monetary,
            vec![self.first],
            vec![self.rows_after as i64],
            vec![self.rows_null as i64],
        )?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        let keys = match &self.keys {
            Keys::Days(s) => s.capacity() * 4,
            Keys::Ints(s) => s.capacity() * 8,
            Keys::Strings(s) => s.iter().map(|k| k.capacity() + 24).sum(),
        };
        let money = match &self.money {
            Money::Float(sum) => sum.heap_size(),
            Money::Decimal(_) => 0,
        };
        std::mem::size_of_val(self) + keys + money + self.setup.amount_source.capacity()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let money = match &self.money {
            Money::Float(sum) => {
                let partials: ArrayRef =
                    Arc::new(Float64Array::from(sum.partials().to_vec()));
                SingleRowListArrayBuilder::new(partials).build_list_scalar()
            }
            Money::Decimal(sum) => ScalarValue::Decimal128(
                Some(*sum),
                38,
                self.setup.decimal_scale.unwrap_or(0),
            ),
        };
        Ok(vec![
            ScalarValue::Date32(self.first),
            ScalarValue::Date32(self.last),
            money,
            SingleRowListArrayBuilder::new(self.keys.to_array()).build_list_scalar(),
            ScalarValue::UInt64(Some(self.rows_after)),
            ScalarValue::UInt64(Some(self.rows_null)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let [first, last, money, keys, after, null] = states else {
            return internal_err!(
                "{NAME}: expected 6 state columns, got {}",
                states.len()
            );
        };
        let first = first.as_primitive::<Date32Type>();
        let last = last.as_primitive::<Date32Type>();
        let keys: &ListArray = keys.as_list::<i32>();
        let after = after.as_primitive::<UInt64Type>();
        let null = null.as_primitive::<UInt64Type>();
        for row in 0..first.len() {
            if first.is_valid(row) {
                self.add_purchase_day(first.value(row));
            }
            if last.is_valid(row) {
                self.add_purchase_day(last.value(row));
            }
            match &mut self.money {
                Money::Float(sum) => {
                    let list = money.as_list::<i32>();
                    if list.is_valid(row) {
                        let partials = list.value(row);
                        sum.merge(partials.as_primitive::<Float64Type>().values());
                        if sum.overflowed() {
                            return Err(self.setup.float_overflow(None));
                        }
                    }
                }
                Money::Decimal(sum) => {
                    let v = money.as_primitive::<Decimal128Type>();
                    if v.is_valid(row) {
                        *sum = sum
                            .checked_add(v.value(row))
                            .ok_or_else(|| self.setup.decimal_overflow())?;
                    }
                }
            }
            if keys.is_valid(row) {
                self.keys.merge(&keys.value(row));
            }
            self.rows_after += after.value(row);
            self.rows_null += null.value(row);
        }
        Ok(())
    }
}

/// A row accumulator for `setup`, the reference the grouped form is tested
/// against.
#[cfg(test)]
pub(crate) fn row_accumulator(setup: Setup) -> Box<dyn Accumulator> {
    Box::new(RfmMetricsAccumulator::new(setup))
}

/// Inputs shared by the tests of the row and the grouped accumulator.
#[cfg(test)]
pub(crate) mod test_inputs {
    use super::*;

    /// A call as of day 100 with DOUBLE amounts.
    pub fn setup(mean: bool, key_kind: KeyKind) -> Setup {
        Setup {
            as_of: 100,
            mean,
            decimal_scale: None,
            key_kind,
            amount_source: "column amount".into(),
            ts_source: "column day".into(),
        }
    }

    /// The argument arrays: days, amounts, order ids and as_of.
    pub fn batch(
        days: &[Option<i32>],
        amounts: &[Option<f64>],
        ids: &[Option<i64>],
    ) -> Vec<ArrayRef> {
        vec![
            Arc::new(Date32Array::from(days.to_vec())),
            Arc::new(Float64Array::from(amounts.to_vec())),
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(Date32Array::from(vec![Some(100); days.len()])),
        ]
    }
}

/// The result struct array from per-group columns.
pub(crate) fn metrics_array(
    as_of: i32,
    last: Vec<Option<i32>>,
    frequency: Vec<i64>,
    monetary: ArrayRef,
    first: Vec<Option<i32>>,
    rows_after: Vec<i64>,
    rows_null: Vec<i64>,
) -> Result<StructArray> {
    let days_to = |days: &[Option<i32>]| -> Int32Array {
        days.iter().map(|d| d.map(|d| as_of - d)).collect()
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(days_to(&last)),
        Arc::new(Int64Array::from(frequency)),
        Arc::clone(&monetary),
        Arc::new(Date32Array::from(first.clone())),
        Arc::new(Date32Array::from(last)),
        Arc::new(days_to(&first)),
        Arc::new(Int64Array::from(rows_after)),
        Arc::new(Int64Array::from(rows_null)),
    ];
    let fields = metrics_fields(monetary.data_type().clone());
    Ok(StructArray::try_new(fields, columns, None)?)
}

/// `a / b` rounded half away from zero, for the decimal mean.
fn divide_rounded(a: i128, b: i128) -> i128 {
    let q = a / b;
    let r = a % b;
    if 2 * r.abs() >= b.abs() {
        q + a.signum() * b.signum()
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_inputs::{batch, setup};

    fn accumulator(mean: bool, key_kind: KeyKind) -> RfmMetricsAccumulator {
        RfmMetricsAccumulator::new(setup(mean, key_kind))
    }

    fn fields(value: ScalarValue) -> Vec<ScalarValue> {
        let ScalarValue::Struct(s) = value else {
            panic!("not a struct")
        };
        s.columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0).unwrap())
            .collect()
    }

    #[test]
    fn state_merge_round_trip_equals_single_pass() {
        let days = [Some(10), Some(40), Some(40), None, Some(120), Some(70)];
        let amounts = [
            Some(0.1),
            Some(0.2),
            Some(-0.3),
            Some(5.0),
            Some(9.0),
            Some(0.7),
        ];
        let ids = [Some(1), Some(2), Some(3), Some(4), Some(5), Some(2)];

        let mut whole = accumulator(false, KeyKind::Ints);
        whole.update_batch(&batch(&days, &amounts, &ids)).unwrap();

        let mut left = accumulator(false, KeyKind::Ints);
        left.update_batch(&batch(&days[..3], &amounts[..3], &ids[..3]))
            .unwrap();
        let mut right = accumulator(false, KeyKind::Ints);
        right
            .update_batch(&batch(&days[3..], &amounts[3..], &ids[3..]))
            .unwrap();
        crate::aggregate::test_support::merge_state(&mut left, &mut right);

        let expected = fields(whole.evaluate().unwrap());
        assert_eq!(fields(right.evaluate().unwrap()), expected);
        assert_eq!(expected[0], ScalarValue::Int32(Some(30)));
        assert_eq!(expected[1], ScalarValue::Int64(Some(2)));
        assert_eq!(expected[2], ScalarValue::Float64(Some(0.7)));
        assert_eq!(expected[6], ScalarValue::Int64(Some(1)));
        assert_eq!(expected[7], ScalarValue::Int64(Some(1)));
    }

    #[test]
    fn nan_amount_is_an_error_naming_the_column() {
        let mut acc = accumulator(false, KeyKind::Days);
        let err = acc
            .update_batch(&batch(&[Some(1)], &[Some(f64::NAN)], &[None]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rfm_metrics: argument 2 (amount, column amount)"),
            "{err}"
        );
    }

    #[test]
    fn decimal_mean_rounds_half_away_from_zero() {
        assert_eq!(divide_rounded(5, 2), 3);
        assert_eq!(divide_rounded(-5, 2), -3);
        assert_eq!(divide_rounded(4, 3), 1);
    }
}
