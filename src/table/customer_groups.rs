//! The one-phase customer aggregation for integer customer ids, with a group
//! table of its own.
//!
//! DataFusion's grouping looks each key up in a table whose entries point to
//! the keys kept elsewhere: every line of a customer not seen recently costs
//! two cache misses, one in the table and one in the keys, and nothing asks
//! for either line ahead of time. With 845,000 customers in the benchmark's
//! 10 million lines, that lookup was the report's largest single cost.
//!
//! [`CustomerGroupsExec`] keeps each key beside its group number in an
//! open-addressing table ([`KeyGroups`]), hashes a batch's keys first, and
//! fetches the slot of the line sixteen lines ahead while it places the
//! current one. It has no way to spill, so it is only planned when the
//! session's memory pool has no limit (where DataFusion's aggregation would
//! not spill either); under a limit the aggregation stays DataFusion's.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, UInt64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, RecordOutput,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan,
    ExecutionPlanProperties, Partitioning, PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};

use crate::prefetch::prefetch;

/// How many lines ahead a line's slot is fetched into the cache.
const PREFETCH_DISTANCE: usize = 16;

/// A one-phase grouped aggregate (one aggregate function, one integer group
/// key) over input partitions that each hold all lines of their groups.
#[derive(Debug)]
pub(crate) struct CustomerGroupsExec {
    /// The `SinglePartitioned` aggregate it replaces: its input, key,
    /// function and output schema.
    aggregate: Arc<AggregateExec>,
    key: Arc<dyn PhysicalExpr>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl CustomerGroupsExec {
    /// The exec for `aggregate`, or `None` when it is not one aggregate
    /// function grouped by one integer key.
    pub fn try_new(aggregate: &Arc<AggregateExec>) -> Result<Option<Self>> {
        let keys = aggregate.group_expr().input_exprs();
        let ([key], [function]) = (keys.as_slice(), aggregate.aggr_expr()) else {
            return Ok(None);
        };
        let schema = aggregate.input().schema();
        if !key.data_type(&schema)?.is_integer()
            || !function.groups_accumulator_supported()
            || aggregate.filter_expr().iter().any(Option::is_some)
        {
            return Ok(None);
        }
        let partitions = aggregate.input().output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(aggregate.schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Some(Self {
            aggregate: Arc::clone(aggregate),
            key: Arc::clone(key),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for CustomerGroupsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let function = &self.aggregate.aggr_expr()[0];
        write!(
            f,
            "CustomerGroupsExec: gby={}, aggr={}",
            self.key,
            function.name()
        )
    }
}

impl ExecutionPlan for CustomerGroupsExec {
    fn name(&self) -> &str {
        "CustomerGroupsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    /// Each partition must hold all lines of its keys.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(vec![Arc::clone(&self.key)])]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.key)?;
        for arg in self.aggregate.aggr_expr()[0].expressions() {
            f(&arg)?;
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let aggregate =
            Arc::clone(&self.aggregate).replace_children(children, options)?;
        let Some(aggregate) = aggregate.downcast_ref::<AggregateExec>() else {
            return internal_err!("CustomerGroupsExec: its aggregate changed type");
        };
        match Self::try_new(&Arc::new(aggregate.clone()))? {
            Some(exec) => Ok(Arc::new(exec)),
            None => internal_err!("CustomerGroupsExec: its aggregate changed shape"),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self
            .aggregate
            .input()
            .execute(partition, Arc::clone(&context))?;
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let function = &self.aggregate.aggr_expr()[0];
        let mut groups = Groups {
            key: Arc::clone(&self.key),
            args: function.expressions(),
            table: KeyGroups::default(),
            accumulator: function.create_groups_accumulator()?,
            reservation: MemoryConsumer::new(format!("CustomerGroupsExec[{partition}]"))
                .register(context.memory_pool()),
        };
        let schema = self.aggregate.schema();
        let batch_size = context.session_config().batch_size().max(1);
        let output_schema = Arc::clone(&schema);
        let output = async move {
            let mut input = input;
            while let Some(batch) = input.try_next().await? {
                let _timer = baseline.elapsed_compute().timer();
                groups.update(&batch)?;
            }
            let batch = {
                let _timer = baseline.elapsed_compute().timer();
                groups.emit(&output_schema)?
            };
            baseline.done();
            let slices: Vec<Result<RecordBatch>> = (0..batch.num_rows())
                .step_by(batch_size)
                .map(|start| {
                    let slice =
                        batch.slice(start, batch_size.min(batch.num_rows() - start));
                    Ok(slice.record_output(&baseline))
                })
                .collect();
            Ok::<_, datafusion::common::DataFusionError>(futures::stream::iter(slices))
        };
        let stream = futures::stream::once(output).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

/// The groups of one partition: the key table and the accumulator.
struct Groups {
    key: Arc<dyn PhysicalExpr>,
    args: Vec<Arc<dyn PhysicalExpr>>,
    table: KeyGroups,
    accumulator: Box<dyn GroupsAccumulator>,
    reservation: MemoryReservation,
}

impl Groups {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        let key = self.key.evaluate(batch)?.into_array(rows)?;
        if key.null_count() > 0 {
            return internal_err!(
                "CustomerGroupsExec: NULL keys reached the aggregation"
            );
        }
        match key.data_type() {
            DataType::Int64 => {
                self.table.intern(bits(key.as_primitive::<Int64Type>()))?
            }
            DataType::UInt64 => self
                .table
                .intern(key.as_primitive::<UInt64Type>().values())?,
            _ => {
                let wide = cast(&key, &DataType::Int64)?;
                self.table.intern(bits(wide.as_primitive::<Int64Type>()))?
            }
        }
        let args = self
            .args
            .iter()
            .map(|arg| arg.evaluate(batch)?.into_array(rows))
            .collect::<Result<Vec<_>>>()?;
        self.accumulator.update_batch(
            &args,
            &self.table.indices,
            None,
            self.table.len(),
        )?;
        self.reservation
            .try_resize(self.table.size() + self.accumulator.size())
    }

    /// All groups as one batch: the keys in their input type, then the
    /// aggregate's values.
    fn emit(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let values = self.accumulator.evaluate(EmitTo::All)?;
        let keys = self.table.take_keys(schema.field(0).data_type())?;
        self.reservation.free();
        Ok(RecordBatch::try_new(
            Arc::clone(schema),
            vec![keys, values],
        )?)
    }
}

/// The bits of 64-bit signed keys, which the table compares as `u64`.
fn bits(keys: &Int64Array) -> &[u64] {
    let values: &[i64] = keys.values();
    // SAFETY: i64 and u64 have the same size and alignment, and every bit
    // pattern is a valid u64.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) }
}

/// Numbers 64-bit keys in order of first appearance: a power-of-two table of
/// `(key, group)` slots with linear probing.
///
/// Keys are hashed with a seed drawn for each table, as DataFusion's own
/// tables do: an unseeded hash would let a crafted set of ids fall into one
/// run of slots and make every lookup walk it.
#[derive(Default)]
struct KeyGroups {
    hasher: foldhash::fast::RandomState,
    slots: Vec<Slot>,
    /// The keys in group order.
    keys: Vec<u64>,
    /// The last batch's group numbers, reused.
    indices: Vec<usize>,
    /// The last batch's home slots, reused.
    homes: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Slot {
    key: u64,
    /// Group number, or [`Slot::EMPTY`].
    group: u32,
}

impl Slot {
    const EMPTY: u32 = u32::MAX;
}

impl KeyGroups {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn size(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
            + self.keys.capacity() * 8
            + self.indices.capacity() * 8
            + self.homes.capacity() * 8
    }

    /// The home slot of `key` in a table of `1 << bits` slots.
    fn home(hasher: &foldhash::fast::RandomState, key: u64, bits: u32) -> usize {
        (hasher.hash_one(key) >> (64 - bits)) as usize
    }

    /// Grows the table so `more` new keys keep it at most three quarters
    /// full.
    fn reserve(&mut self, more: usize) {
        let needed = (self.keys.len() + more) * 4 / 3 + 1;
        if needed <= self.slots.len() {
            return;
        }
        let capacity = needed.next_power_of_two().max(1024);
        let bits = capacity.trailing_zeros();
        let mut slots = vec![
            Slot {
                key: 0,
                group: Slot::EMPTY
            };
            capacity
        ];
        let mask = capacity - 1;
        for (group, &key) in self.keys.iter().enumerate() {
            let mut i = Self::home(&self.hasher, key, bits);
            while slots[i].group != Slot::EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                key,
                group: group as u32,
            };
        }
        self.slots = slots;
    }

    /// Sets `indices` to the group number of each key, new keys numbered in
    /// order.
    fn intern(&mut self, keys: &[u64]) -> Result<()> {
        if self.keys.len() + keys.len() >= Slot::EMPTY as usize {
            return internal_err!(
                "CustomerGroupsExec: more than 2^32 groups in one partition"
            );
        }
        self.reserve(keys.len());
        let bits = self.slots.len().trailing_zeros();
        let mask = self.slots.len() - 1;
        let hasher = &self.hasher;
        self.homes.clear();
        self.homes
            .extend(keys.iter().map(|k| Self::home(hasher, *k, bits)));
        self.indices.clear();
        for (row, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = self.homes.get(row + PREFETCH_DISTANCE) {
                prefetch(&self.slots[ahead]);
            }
            let mut i = self.homes[row];
            let group = loop {
                let slot = &mut self.slots[i];
                if slot.group == Slot::EMPTY {
                    let group = self.keys.len() as u32;
                    *slot = Slot { key, group };
                    self.keys.push(key);
                    break group;
                }
                if slot.key == key {
                    break slot.group;
                }
                i = (i + 1) & mask;
            };
            self.indices.push(group as usize);
        }
        Ok(())
    }

    /// The keys in group order, as an array of `key_type`, the integer type
    /// they came in.
    fn take_keys(&mut self, key_type: &DataType) -> Result<ArrayRef> {
        let keys = std::mem::take(&mut self.keys);
        self.slots = Vec::new();
        if *key_type == DataType::UInt64 {
            return Ok(Arc::new(UInt64Array::from(keys)));
        }
        let signed: ArrayRef = Arc::new(Int64Array::from_iter_values(
            keys.into_iter().map(|k| k as i64),
        ));
        Ok(cast(&signed, key_type)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys get group numbers in order of first appearance, across batches
    /// and through the table's growth, and come back in that order.
    #[test]
    fn keys_are_numbered_in_order_of_first_appearance() {
        let mut table = KeyGroups::default();
        let first: Vec<u64> = vec![7, 3, 7, u64::MAX, 0, 3];
        table.intern(&first).unwrap();
        assert_eq!(table.indices, [0, 1, 0, 2, 3, 1]);
        // Enough new keys to grow the table several times, then repeats.
        let many: Vec<u64> = (0..5000u64).map(|k| k * 1_000_003).collect();
        table.intern(&many).unwrap();
        let groups = table.indices.clone();
        assert_eq!(groups[0], 3, "key 0 is group 3");
        assert_eq!(groups[1..], (4..5003).collect::<Vec<_>>()[..]);
        table.intern(&many).unwrap();
        assert_eq!(table.indices, groups);
        let keys = table.take_keys(&DataType::Int64).unwrap();
        let keys = keys.as_primitive::<Int64Type>();
        assert_eq!(keys.len(), 5003);
        assert_eq!(keys.values()[..4], [7, 3, -1, 0]);
        assert_eq!(keys.value(4), 1_000_003);
    }

    /// Ids that an unseeded multiplicative hash sends to one slot (multiples
    /// of the inverse of its odd constant) spread over the table like any
    /// others: no long run of occupied slots for lookups to walk.
    #[test]
    fn crafted_ids_do_not_pile_up() {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut inverse: u64 = 1;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(K.wrapping_mul(inverse)));
        }
        assert_eq!(K.wrapping_mul(inverse), 1);
        let keys: Vec<u64> = (1..=20_000u64).map(|j| j.wrapping_mul(inverse)).collect();
        let mut table = KeyGroups::default();
        table.intern(&keys).unwrap();
        assert_eq!(table.len(), keys.len());
        let (mut longest, mut run) = (0, 0);
        for slot in table.slots.iter().chain(&table.slots) {
            run = if slot.group == Slot::EMPTY {
                0
            } else {
                run + 1
            };
            longest = longest.max(run);
        }
        assert!(longest < 1_000, "a run of {longest} occupied slots");
    }
}
