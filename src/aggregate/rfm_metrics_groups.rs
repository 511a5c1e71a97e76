//! The grouped form of `rfm_metrics`: one accumulator for all customers of a
//! partition, with the state of each group in flat vectors instead of one
//! boxed accumulator per customer.
//!
//! - Dates, counts and decimal sums are plain vectors indexed by group.
//! - Float sums stay exact: each group keeps at most four partials inline
//!   ([`add_small`], four slots); the rare group whose exact sum needs more moves to an
//!   [`ExactSum`] in a side map.
//! - `frequency` counts distinct `(group, key)` pairs of purchase lines,
//!   appended to one log for the whole partition and sorted and deduplicated
//!   when the log doubles and when groups are taken; order ids that are
//!   strings are interned to numbers first.
//!
//! The state it emits is the same as the row accumulator's, so partial states
//! of either form merge into the other.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array,
    Int32Array, Int64Array, ListArray, StringArray, UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Field, Float64Type, Int32Type, Int64Type, UInt64Type,
};
use datafusion::common::{HashMap, Result, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

use super::rfm_metrics::{Amount, Key, KeyKind, Line, Lines, Setup, metrics_array};
use crate::exact_sum::{ExactSum, add_small, value_of};
use crate::prefetch::prefetch;

const NAME: &str = "rfm_metrics";
/// No purchase yet: first and last purchase days.
const NO_FIRST: i32 = i32::MAX;
const NO_LAST: i32 = i32::MIN;
/// The pair logs' length below which they are not compacted.
const MIN_COMPACT: usize = 1 << 16;
/// Partials of a float sum kept inline per group.
const SLOTS: usize = 4;

/// The state of one group.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Group {
    /// Float sum in up to four partials; `[NaN, ..]` means the sum is in
    /// `big_sums`.
    sums: [f64; SLOTS],
    first: i32,
    last: i32,
    rows_after: u64,
    rows_null: u64,
}

const EMPTY: Group = Group {
    sums: [0.0; SLOTS],
    first: NO_FIRST,
    last: NO_LAST,
    rows_after: 0,
    rows_null: 0,
};

/// Grouped accumulator of [`super::rfm_metrics::RfmMetrics`].
#[derive(Debug)]
pub(crate) struct RfmMetricsGroups {
    setup: Setup,
    /// One cache line per group: a row touches one line, not six vectors.
    groups: Vec<Group>,
    big_sums: HashMap<usize, ExactSum>,
    decimals: Vec<i128>,
    /// `(group, key)` pairs of purchase lines, packed as `group << 32 | key`
    /// when the key fits 32 bits (dates, most order ids). A log rather than a
    /// set: an append is a sequential write where a set insert is a cache
    /// miss in a table of millions. [`Self::compact`] sorts and deduplicates
    /// it, which also brings each group's keys together for the state.
    pairs: Vec<u64>,
    /// The pairs whose key does not fit 32 bits.
    pairs_wide: Vec<(u32, u64)>,
    /// The logs' length at which they are next compacted: twice their length
    /// after the last compaction, so a log of repeats stays within twice its
    /// distinct pairs and the sorting costs at most twice the final sort.
    compact_at: usize,
    /// String order ids and their numbers.
    ids: HashMap<Box<str>, u64>,
    names: Vec<Box<str>>,
    /// Bytes of the interned order ids, for [`GroupsAccumulator::size`].
    name_bytes: usize,
}

impl RfmMetricsGroups {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            groups: Vec::new(),
            big_sums: HashMap::new(),
            decimals: Vec::new(),
            pairs: Vec::new(),
            pairs_wide: Vec::new(),
            compact_at: MIN_COMPACT,
            ids: HashMap::new(),
            names: Vec::new(),
            name_bytes: 0,
        }
    }

    fn resize(&mut self, groups: usize) -> Result<()> {
        if groups > u32::MAX as usize {
            return internal_err!("{NAME}: more than 2^32 groups in one partition");
        }
        self.groups.resize(groups, EMPTY);
        if self.setup.decimal_scale.is_some() {
            self.decimals.resize(groups, 0);
        }
        Ok(())
    }

    fn add_day(&mut self, g: usize, first: i32, last: i32) {
        let group = &mut self.groups[g];
        group.first = group.first.min(first);
        group.last = group.last.max(last);
    }

    fn add_float(&mut self, g: usize, v: f64, line: Option<f64>) -> Result<()> {
        let slot = &mut self.groups[g].sums;
        let big = if slot[0].is_nan() {
            self.big_sums.entry(g).or_default()
        } else {
            match add_small(slot, v) {
                None => {
                    if slot.iter().any(|p| !p.is_finite()) {
                        return Err(self.setup.float_overflow(line));
                    }
                    return Ok(());
                }
                Some(partials) => {
                    *slot = [f64::NAN; SLOTS];
                    let big = self.big_sums.entry(g).or_default();
                    big.merge(&partials);
                    return if big.overflowed() {
                        Err(self.setup.float_overflow(line))
                    } else {
                        Ok(())
                    };
                }
            }
        };
        big.add(v);
        if big.overflowed() {
            return Err(self.setup.float_overflow(line));
        }
        Ok(())
    }

    fn add_money(&mut self, g: usize, amount: Amount) -> Result<()> {
        match amount {
            Amount::Float(v) => self.add_float(g, v, Some(v)),
            Amount::Decimal(v) => {
                self.decimals[g] = self.decimals[g]
                    .checked_add(v)
                    .ok_or_else(|| self.setup.decimal_overflow())?;
                Ok(())
            }
        }
    }

    fn key_number(&mut self, key: Key<'_>) -> u64 {
        match key {
            Key::Day(d) => d as i64 as u64,
            Key::Int(i) => i as u64,
            Key::Str(s) => {
                if let Some(&id) = self.ids.get(s) {
                    return id;
                }
                let id = self.names.len() as u64;
                self.name_bytes += 2 * s.len() + 48;
                self.names.push(s.into());
                self.ids.insert(s.into(), id);
                id
            }
        }
    }

    fn add_key(&mut self, g: usize, key: u64) {
        match u32::try_from(key) {
            Ok(key) => self.pairs.push((g as u64) << 32 | key as u64),
            Err(_) => self.pairs_wide.push((g as u32, key)),
        }
        if self.pairs.len() + self.pairs_wide.len() >= self.compact_at {
            self.compact();
        }
    }

    /// Sorts the pair logs by group, then key, and drops repeats.
    fn compact(&mut self) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        self.pairs_wide.sort_unstable();
        self.pairs_wide.dedup();
        self.compact_at = MIN_COMPACT.max(2 * (self.pairs.len() + self.pairs_wide.len()));
    }

    /// The float sum of group `g`, as partials (smallest first).
    fn partials(&self, g: usize) -> Vec<f64> {
        let slot = self.groups[g].sums;
        if slot[0].is_nan() {
            self.big_sums
                .get(&g)
                .map(|s| s.partials().to_vec())
                .unwrap_or_default()
        } else {
            slot.into_iter().filter(|p| *p != 0.0).collect()
        }
    }

    /// The float sum of group `g`, correctly rounded.
    fn float_sum(&self, g: usize) -> f64 {
        let slot = &self.groups[g].sums;
        if slot[0].is_nan() {
            return self.big_sums.get(&g).map_or(0.0, ExactSum::value);
        }
        let mut partials = [0.0; SLOTS];
        let mut n = 0;
        for &p in slot.iter().filter(|p| **p != 0.0) {
            partials[n] = p;
            n += 1;
        }
        value_of(&partials[..n])
    }

    /// Takes the groups `emit_to` names out of the state, shifting the rest
    /// down, and returns them: with their order keys and float partials for
    /// [`Taking::State`], with only the key counts and float sums for
    /// [`Taking::Values`].
    fn take(&mut self, emit_to: EmitTo, taking: Taking) -> Taken {
        let n = match emit_to {
            EmitTo::All => self.groups.len(),
            EmitTo::First(n) => n.min(self.groups.len()),
        };
        let money = if self.setup.decimal_scale.is_some() {
            TakenMoney::Decimal(emit_to.take_needed(&mut self.decimals))
        } else {
            let money = match taking {
                Taking::State => {
                    TakenMoney::Partials((0..n).map(|g| self.partials(g)).collect())
                }
                Taking::Values => {
                    TakenMoney::Sums((0..n).map(|g| self.float_sum(g)).collect())
                }
            };
            let big = std::mem::take(&mut self.big_sums);
            self.big_sums = big
                .into_iter()
                .filter(|(g, _)| *g >= n)
                .map(|(g, s)| (g - n, s))
                .collect();
            money
        };
        let groups = emit_to.take_needed(&mut self.groups);
        // The taken groups' pairs lead the sorted logs; their keys go out
        // grouped, and the rest shift down by `n` groups.
        self.compact();
        let split = self.pairs.partition_point(|p| (p >> 32) < n as u64);
        let split_wide = self.pairs_wide.partition_point(|(g, _)| (*g as usize) < n);
        let mut frequency = vec![0i64; n];
        for p in &self.pairs[..split] {
            frequency[(p >> 32) as usize] += 1;
        }
        for (g, _) in &self.pairs_wide[..split_wide] {
            frequency[*g as usize] += 1;
        }
        let keys = match taking {
            Taking::State => Some(self.take_keys(&frequency, split, split_wide)),
            Taking::Values => {
                self.pairs.drain(..split);
                self.pairs_wide.drain(..split_wide);
                None
            }
        };
        let shift = (n as u64) << 32;
        for p in &mut self.pairs {
            *p -= shift;
        }
        for (g, _) in &mut self.pairs_wide {
            *g -= n as u32;
        }
        self.compact_at = MIN_COMPACT.max(2 * (self.pairs.len() + self.pairs_wide.len()));
        Taken {
            first: groups.iter().map(|g| g.first).collect(),
            last: groups.iter().map(|g| g.last).collect(),
            money,
            frequency,
            keys,
            rows_after: groups.iter().map(|g| g.rows_after).collect(),
            rows_null: groups.iter().map(|g| g.rows_null).collect(),
        }
    }

    /// Drains the leading `split` and `split_wide` pairs of the logs, whose
    /// groups have `frequency` keys each, into one key list per group.
    fn take_keys(
        &mut self,
        frequency: &[i64],
        split: usize,
        split_wide: usize,
    ) -> TakenKeys {
        let mut offsets = Vec::with_capacity(frequency.len() + 1);
        offsets.push(0usize);
        for f in frequency {
            offsets.push(offsets[offsets.len() - 1] + *f as usize);
        }
        let mut keys = vec![0u64; offsets[frequency.len()]];
        let mut cursor = offsets.clone();
        let packed = self
            .pairs
            .drain(..split)
            .map(|p| ((p >> 32) as u32, p & 0xFFFF_FFFF));
        for (g, key) in packed.chain(self.pairs_wide.drain(..split_wide)) {
            keys[cursor[g as usize]] = key;
            cursor[g as usize] += 1;
        }
        TakenKeys { offsets, keys }
    }

    /// Key numbers as the array type of the state's key lists.
    fn key_values(&self, keys: &[u64]) -> ArrayRef {
        match self.setup.key_kind {
            KeyKind::Days => Arc::new(Int32Array::from_iter_values(
                keys.iter().map(|k| *k as i64 as i32),
            )),
            KeyKind::Ints => {
                Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| *k as i64)))
            }
            KeyKind::Strings => Arc::new(StringArray::from_iter_values(
                keys.iter().map(|k| &*self.names[*k as usize]),
            )),
        }
    }
}

/// What [`RfmMetricsGroups::take`] takes: the partial state, or only what
/// the final values need.
#[derive(Clone, Copy)]
enum Taking {
    State,
    Values,
}

/// Groups taken out of the state.
struct Taken {
    first: Vec<i32>,
    last: Vec<i32>,
    money: TakenMoney,
    frequency: Vec<i64>,
    /// For [`Taking::State`].
    keys: Option<TakenKeys>,
    rows_after: Vec<u64>,
    rows_null: Vec<u64>,
}

/// The distinct order keys of the taken groups, group after group.
struct TakenKeys {
    offsets: Vec<usize>,
    keys: Vec<u64>,
}

enum TakenMoney {
    /// Float sums as partials, for [`Taking::State`].
    Partials(Vec<Vec<f64>>),
    /// Float sums, for [`Taking::Values`].
    Sums(Vec<f64>),
    Decimal(Vec<i128>),
}

fn days(values: &[i32], none: i32) -> Vec<Option<i32>> {
    values.iter().map(|d| (*d != none).then_some(*d)).collect()
}

/// A list array of `values` split at `offsets`.
fn list(values: ArrayRef, offsets: &[usize]) -> Result<ArrayRef> {
    let offsets: Vec<i32> = offsets.iter().map(|o| *o as i32).collect();
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        values,
        None,
    )?))
}

fn float_lists(sums: &[Vec<f64>]) -> Result<ArrayRef> {
    let mut offsets = vec![0usize];
    for s in sums {
        offsets.push(offsets[offsets.len() - 1] + s.len());
    }
    let values = Float64Array::from_iter_values(sums.iter().flatten().copied());
    list(Arc::new(values), &offsets)
}

/// How many rows ahead a group's state is fetched into the cache: customers
/// come in no order, so each row's state is a cache miss that the fetch
/// starts early enough to overlap with the rows in between.
const PREFETCH_DISTANCE: usize = 16;

/// Whether row `row` passes the optional filter.
fn passes(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

impl GroupsAccumulator for RfmMetricsGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups)?;
        let setup = self.setup.clone();
        let lines = Lines::new(values, &setup)?;
        // Lines of one order usually come together: skip the set for a
        // repeat of the last key of the same group.
        let mut previous: Option<(usize, u64)> = None;
        for (row, &g) in group_indices.iter().enumerate() {
            if let Some(&ahead) = group_indices.get(row + PREFETCH_DISTANCE) {
                prefetch(&self.groups[ahead]);
            }
            if !passes(opt_filter, row) {
                continue;
            }
            match lines.line(row, &setup)? {
                Line::Null => self.groups[g].rows_null += 1,
                Line::After => self.groups[g].rows_after += 1,
                Line::Return(amount) => self.add_money(g, amount)?,
                Line::Purchase { day, amount, key } => {
                    self.add_money(g, amount)?;
                    self.add_day(g, day, day);
                    let key = self.key_number(key);
                    if previous != Some((g, key)) {
                        self.add_key(g, key);
                        previous = Some((g, key));
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let taken = self.take(emit_to, Taking::Values);
        let monetary: ArrayRef = match &taken.money {
            TakenMoney::Sums(sums) => Arc::new(
                sums.iter()
                    .zip(&taken.frequency)
                    .map(|(sum, f)| self.setup.monetary_float(*sum, *f))
                    .collect::<Float64Array>(),
            ),
            TakenMoney::Partials(_) => {
                return internal_err!("{NAME}: evaluate took float partials");
            }
            TakenMoney::Decimal(sums) => self.setup.decimal_monetary(
                sums.iter().copied().zip(taken.frequency.iter().copied()),
            )?,
        };
        let array = metrics_array(
            self.setup.as_of,
            days(&taken.last, NO_LAST),
            taken.frequency,
            monetary,
            days(&taken.first, NO_FIRST),
            taken.rows_after.iter().map(|v| *v as i64).collect(),
            taken.rows_null.iter().map(|v| *v as i64).collect(),
        )?;
        Ok(Arc::new(array))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let taken = self.take(emit_to, Taking::State);
        let money: ArrayRef = match &taken.money {
            TakenMoney::Partials(sums) => float_lists(sums)?,
            TakenMoney::Sums(_) => return internal_err!("{NAME}: state took float sums"),
            TakenMoney::Decimal(sums) => Arc::new(
                Decimal128Array::from(sums.clone()).with_precision_and_scale(
                    38,
                    self.setup.decimal_scale.unwrap_or(0),
                )?,
            ),
        };
        Ok(vec![
            Arc::new(Date32Array::from(days(&taken.first, NO_FIRST))),
            Arc::new(Date32Array::from(days(&taken.last, NO_LAST))),
            money,
            match &taken.keys {
                Some(k) => list(self.key_values(&k.keys), &k.offsets)?,
                None => return internal_err!("{NAME}: state took no order keys"),
            },
            Arc::new(UInt64Array::from(taken.rows_after)),
            Arc::new(UInt64Array::from(taken.rows_null)),
        ])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let [first, last, money, keys, after, null] = values else {
            return internal_err!(
                "{NAME}: expected 6 state columns, got {}",
                values.len()
            );
        };
        self.resize(total_num_groups)?;
        let first = first.as_primitive::<Date32Type>();
        let last = last.as_primitive::<Date32Type>();
        let keys = keys.as_list::<i32>();
        let after = after.as_primitive::<UInt64Type>();
        let null = null.as_primitive::<UInt64Type>();
        let key_values = keys.values();
        let offsets = keys.value_offsets();
        for (row, &g) in group_indices.iter().enumerate() {
            if first.is_valid(row) {
                self.add_day(g, first.value(row), first.value(row));
            }
            if last.is_valid(row) {
                self.add_day(g, last.value(row), last.value(row));
            }
            if self.setup.decimal_scale.is_some() {
                let v = money.as_primitive::<Decimal128Type>();
                if v.is_valid(row) {
                    self.add_money(g, Amount::Decimal(v.value(row)))?;
                }
            } else {
                let lists = money.as_list::<i32>();
                if lists.is_valid(row) {
                    let partials = lists.value(row);
                    for &p in partials.as_primitive::<Float64Type>().values() {
                        self.add_float(g, p, None)?;
                    }
                }
            }
            if keys.is_valid(row) {
                for i in offsets[row] as usize..offsets[row + 1] as usize {
                    if key_values.is_null(i) {
                        continue;
                    }
                    let key = match self.setup.key_kind {
                        KeyKind::Days => {
                            Key::Day(key_values.as_primitive::<Int32Type>().value(i))
                        }
                        KeyKind::Ints => {
                            Key::Int(key_values.as_primitive::<Int64Type>().value(i))
                        }
                        KeyKind::Strings => {
                            Key::Str(key_values.as_string::<i32>().value(i))
                        }
                    };
                    let key = self.key_number(key);
                    self.add_key(g, key);
                }
            }
            self.groups[g].rows_after += after.value(row);
            self.groups[g].rows_null += null.value(row);
        }
        Ok(())
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let lines = Lines::new(values, &self.setup)?;
        let n = lines.len();
        let mut first = Vec::with_capacity(n);
        let mut money_offsets = Vec::with_capacity(n + 1);
        let mut floats = Vec::with_capacity(n);
        let mut decimals = Vec::with_capacity(n);
        let mut key_offsets = Vec::with_capacity(n + 1);
        let mut keys: Vec<Key<'_>> = Vec::with_capacity(n);
        let mut after = Vec::with_capacity(n);
        let mut null = Vec::with_capacity(n);
        money_offsets.push(0);
        key_offsets.push(0);
        for row in 0..n {
            let line = if passes(opt_filter, row) {
                Some(lines.line(row, &self.setup)?)
            } else {
                None
            };
            let (day, amount) = match &line {
                Some(Line::Purchase { day, amount, key }) => {
                    keys.push(*key);
                    (Some(*day), Some(*amount))
                }
                Some(Line::Return(amount)) => (None, Some(*amount)),
                _ => (None, None),
            };
            first.push(day);
            match amount {
                Some(Amount::Float(v)) => floats.push(v),
                Some(Amount::Decimal(v)) => decimals.push(v),
                None if self.setup.decimal_scale.is_some() => decimals.push(0),
                None => {}
            }
            money_offsets.push(floats.len());
            key_offsets.push(keys.len());
            after.push(u64::from(matches!(line, Some(Line::After))));
            null.push(u64::from(matches!(line, Some(Line::Null))));
        }
        let money: ArrayRef = match self.setup.decimal_scale {
            Some(scale) => Arc::new(
                Decimal128Array::from(decimals).with_precision_and_scale(38, scale)?,
            ),
            None => list(Arc::new(Float64Array::from(floats)), &money_offsets)?,
        };
        let key_values: ArrayRef = match self.setup.key_kind {
            KeyKind::Days => {
                Arc::new(Int32Array::from_iter_values(keys.iter().map(|k| match k {
                    Key::Day(d) => *d,
                    _ => 0,
                })))
            }
            KeyKind::Ints => {
                Arc::new(Int64Array::from_iter_values(keys.iter().map(|k| match k {
                    Key::Int(i) => *i,
                    _ => 0,
                })))
            }
            KeyKind::Strings => Arc::new(StringArray::from_iter_values(keys.iter().map(
                |k| match k {
                    Key::Str(s) => *s,
                    _ => "",
                },
            ))),
        };
        let dates = Arc::new(Date32Array::from(first));
        Ok(vec![
            Arc::clone(&dates) as ArrayRef,
            dates,
            money,
            list(key_values, &key_offsets)?,
            Arc::new(UInt64Array::from(after)),
            Arc::new(UInt64Array::from(null)),
        ])
    }

    fn size(&self) -> usize {
        let groups = self.groups.capacity() * std::mem::size_of::<Group>()
            + self.decimals.capacity() * 16;
        // Called after every batch, so estimated in constant time: a big sum
        // holds a handful of partials.
        let big = self.big_sums.capacity() * 96;
        groups
            + big
            + self.pairs.capacity() * 8
            + self.pairs_wide.capacity() * 16
            + self.name_bytes
            + std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(key_kind: KeyKind) -> Setup {
        super::super::rfm_metrics::test_inputs::setup(false, key_kind)
    }

    use super::super::rfm_metrics::test_inputs::batch;

    /// A test row: group, day, amount, order id.
    type Row = (usize, Option<i32>, Option<f64>, Option<i64>);

    /// Rows of several customers.
    fn rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for i in 0..400usize {
            let g = (i * 7) % 23;
            let day = if i % 37 == 0 {
                None
            } else {
                Some((i % 130) as i32)
            };
            let amount = match i % 11 {
                0 => Some(-3.3),
                1 => Some(1e16),
                2 => Some(-1e16),
                _ => Some((i as f64 * 0.37).sin() * 100.0 + 0.01),
            };
            // Some order ids need more than 32 bits, and some are negative.
            let id = match i % 5 {
                0 => ((i / 3) as i64) << 40,
                1 => -((i / 3) as i64),
                _ => (i / 3) as i64,
            };
            rows.push((g, day, amount, Some(id)));
        }
        rows
    }

    fn split(rows: &[Row]) -> (Vec<usize>, Vec<ArrayRef>) {
        let groups = rows.iter().map(|r| r.0).collect();
        let days: Vec<_> = rows.iter().map(|r| r.1).collect();
        let amounts: Vec<_> = rows.iter().map(|r| r.2).collect();
        let ids: Vec<_> = rows.iter().map(|r| r.3).collect();
        (groups, batch(&days, &amounts, &ids))
    }

    /// The grouped result equals the row accumulator's per group, whether the
    /// rows go in at once, through partial states (all or the first groups
    /// first), or through convert_to_state.
    #[test]
    fn grouped_equals_row_by_row_through_every_path() {
        let rows = rows();
        let (groups, values) = split(&rows);
        let expected: Vec<_> = (0..23)
            .map(|g| {
                let mine: Vec<_> = rows.iter().filter(|r| r.0 == g).cloned().collect();
                let (_, v) = split(&mine);
                let mut acc =
                    super::super::rfm_metrics::row_accumulator(setup(KeyKind::Ints));
                acc.update_batch(&v).unwrap();
                acc.evaluate().unwrap()
            })
            .collect();
        let check = |array: ArrayRef| {
            for (g, want) in expected.iter().enumerate() {
                assert_eq!(
                    &ScalarValue::try_from_array(&array, g).unwrap(),
                    want,
                    "group {g}"
                );
            }
        };
        use datafusion::common::ScalarValue;

        let mut direct = RfmMetricsGroups::new(setup(KeyKind::Ints));
        direct.update_batch(&values, &groups, None, 23).unwrap();
        check(direct.evaluate(EmitTo::All).unwrap());

        // Two partial accumulators, merged; the first emits its first groups
        // separately to exercise the shift of the remaining ones.
        let half = rows.len() / 2;
        let mut left = RfmMetricsGroups::new(setup(KeyKind::Ints));
        let mut right = RfmMetricsGroups::new(setup(KeyKind::Ints));
        left.update_batch(&split(&rows[..half]).1, &groups[..half], None, 23)
            .unwrap();
        right
            .update_batch(&split(&rows[half..]).1, &groups[half..], None, 23)
            .unwrap();
        let head = left.state(EmitTo::First(5)).unwrap();
        let tail = left.state(EmitTo::All).unwrap();
        let mut merged = RfmMetricsGroups::new(setup(KeyKind::Ints));
        merged
            .merge_batch(&head, &(0..5).collect::<Vec<_>>(), 23)
            .unwrap();
        merged
            .merge_batch(&tail, &(5..23).collect::<Vec<_>>(), 23)
            .unwrap();
        let state = right.state(EmitTo::All).unwrap();
        merged
            .merge_batch(&state, &(0..23).collect::<Vec<_>>(), 23)
            .unwrap();
        check(merged.evaluate(EmitTo::All).unwrap());

        // Every row turned into a state of its own.
        let converter = RfmMetricsGroups::new(setup(KeyKind::Ints));
        let states = converter.convert_to_state(&values, None).unwrap();
        let mut from_rows = RfmMetricsGroups::new(setup(KeyKind::Ints));
        from_rows.merge_batch(&states, &groups, 23).unwrap();
        check(from_rows.evaluate(EmitTo::All).unwrap());
    }

    /// Repeats that never come in a row are compacted away as the log grows,
    /// and still count once.
    #[test]
    fn repeated_keys_are_compacted_and_counted_once() {
        let rows = 3 * MIN_COMPACT;
        let groups: Vec<usize> = (0..rows).map(|i| i % 3).collect();
        let days: Vec<Option<i32>> = vec![Some(10); rows];
        let amounts: Vec<Option<f64>> = vec![Some(1.0); rows];
        let ids: Vec<Option<i64>> = (0..rows).map(|i| Some((i / 3 % 7) as i64)).collect();
        let mut acc = RfmMetricsGroups::new(setup(KeyKind::Ints));
        acc.update_batch(&batch(&days, &amounts, &ids), &groups, None, 3)
            .unwrap();
        assert!(acc.pairs.len() < 2 * MIN_COMPACT, "{}", acc.pairs.len());
        let out = acc.evaluate(EmitTo::All).unwrap();
        let frequency = out
            .as_struct()
            .column(1)
            .as_primitive::<Int64Type>()
            .clone();
        assert_eq!(frequency.values().to_vec(), vec![7, 7, 7]);
    }

    #[test]
    fn filter_skips_rows() {
        let values = batch(
            &[Some(1), Some(2)],
            &[Some(5.0), Some(7.0)],
            &[Some(1), Some(2)],
        );
        let filter = BooleanArray::from(vec![Some(true), None]);
        let mut acc = RfmMetricsGroups::new(setup(KeyKind::Ints));
        acc.update_batch(&values, &[0, 0], Some(&filter), 1)
            .unwrap();
        let out = acc.evaluate(EmitTo::All).unwrap();
        let s = out.as_struct();
        assert_eq!(s.column(1).as_primitive::<Int64Type>().value(0), 1);
        assert_eq!(s.column(2).as_primitive::<Float64Type>().value(0), 5.0);
    }
}
