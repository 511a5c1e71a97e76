//! Basket rules with one-item antecedents, counted in memory: the fast path
//! of `association_rules`.
//!
//! The SQL form of these rules joins the basket lines with themselves, and
//! DataFusion plans every reference to a common table expression anew, so the
//! distinct `(basket, item)` lines were computed five times over. Here one
//! plan yields the distinct lines once; [`PairRulesExec`] numbers items and
//! baskets, keeps the frequent items' lines, sorts them by basket and counts
//! each basket's pairs in one map. Its memory is reserved from the session's
//! pool, so a memory limit stops a run with an error that says what to do
//! rather than letting the process be killed.
//!
//! Thresholds and metrics follow [`super::association_rules::rules_sql`]
//! exactly: the same integer comparisons and the same floating-point
//! expressions in the same order, so both forms give the same rows.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt32Array,
    new_null_array,
};
use datafusion::arrow::compute::{
    SortColumn, SortOptions, cast, lexsort_to_indices, take,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{
    DataFusionError, HashMap, Result, internal_err, resources_datafusion_err,
};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet, Time,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, execute_stream,
};
use futures::StreamExt;

use super::association_rules::Thresholds;

const NAME: &str = "association_rules";
const LOW: u64 = 0xFFFF_FFFF;
/// Bytes per slot of the pair map (key, count and control byte).
const PAIR_BYTES: usize = 17;
/// Bytes per rule as columns: two item numbers, four counts, five metrics.
const RULE_BYTES: usize = 2 * 4 + 4 * 8 + 5 * 8;

/// What is mined from the lines: thresholds and the cap on rules.
#[derive(Debug, Clone)]
pub(crate) struct Mining {
    pub thresholds: Thresholds,
    pub max_rules: Option<usize>,
}

/// The rules of one `association_rules` call, mined when scanned.
#[derive(Debug)]
pub(crate) struct PairRulesTable {
    /// The rules' schema, as the SQL form plans it.
    schema: SchemaRef,
    /// Distinct `(basket, item)` lines: two columns.
    lines: LogicalPlan,
    mining: Mining,
}

impl PairRulesTable {
    pub fn new(schema: SchemaRef, lines: LogicalPlan, mining: Mining) -> Self {
        Self {
            schema,
            lines,
            mining,
        }
    }
}

#[async_trait]
impl TableProvider for PairRulesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = state.create_physical_plan(&self.lines).await?;
        Ok(Arc::new(PairRulesExec::new(
            input,
            Arc::clone(&self.schema),
            projection.cloned(),
            self.mining.clone(),
        )?))
    }
}

/// Counts item pairs per basket of its input's distinct lines and emits the
/// rules, sorted as `association_rules` documents, in one partition.
#[derive(Debug)]
pub(crate) struct PairRulesExec {
    input: Arc<dyn ExecutionPlan>,
    /// Every column of the rules, before `projection`.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    mining: Mining,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl PairRulesExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        mining: Mining,
    ) -> Result<Self> {
        let projected = match &projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => Arc::clone(&schema),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            schema,
            projection,
            mining,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for PairRulesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PairRulesExec: max_rules={:?}", self.mining.max_rules)
    }
}

impl ExecutionPlan for PairRulesExec {
    fn name(&self) -> &str {
        "PairRulesExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!(
                "PairRulesExec takes one input, got {}",
                children.len()
            );
        }
        Ok(Arc::new(PairRulesExec::new(
            children.swap_remove(0),
            Arc::clone(&self.schema),
            self.projection.clone(),
            self.mining.clone(),
        )?))
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
        if partition != 0 {
            return internal_err!(
                "PairRulesExec has one partition, asked for {partition}"
            );
        }
        let input = execute_stream(Arc::clone(&self.input), Arc::clone(&context))?;
        let reservation = MemoryConsumer::new(NAME).register(context.memory_pool());
        let schema = Arc::clone(&self.schema);
        let projection = self.projection.clone();
        let mining = self.mining.clone();
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let rules = async move {
            let compute = baseline.elapsed_compute().clone();
            let batch = mine(input, reservation, &mining, schema, &compute).await?;
            let batch = match projection {
                Some(p) => batch.project(&p)?,
                None => batch,
            };
            baseline.record_output(batch.num_rows());
            baseline.done();
            Ok(batch)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.properties.eq_properties.schema().clone(),
            futures::stream::once(rules),
        )))
    }
}

/// Numbers the distinct values of a column, in order of first appearance.
enum Interner {
    /// Integer values, widened to `Int64`.
    Ints {
        ids: HashMap<i64, u32>,
        values: Vec<i64>,
        data_type: DataType,
    },
    /// Any other type, through the row format.
    Rows {
        converter: RowConverter,
        ids: HashMap<Box<[u8]>, u32>,
        values: Rows,
    },
}

impl Interner {
    fn new(data_type: &DataType) -> Result<Self> {
        let small_int = matches!(
            data_type,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        );
        Ok(if small_int {
            Self::Ints {
                ids: HashMap::new(),
                values: Vec::new(),
                data_type: data_type.clone(),
            }
        } else {
            let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
            let values = converter.empty_rows(0, 0);
            Self::Rows {
                converter,
                ids: HashMap::new(),
                values,
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Ints { values, .. } => values.len(),
            Self::Rows { ids, .. } => ids.len(),
        }
    }

    /// Bytes held, roughly.
    fn size(&self) -> usize {
        match self {
            Self::Ints { ids, values, .. } => ids.capacity() * 16 + values.capacity() * 8,
            Self::Rows { ids, values, .. } => ids.capacity() * 24 + 2 * values.size(),
        }
    }

    /// The number of each value of `column`, which holds no NULL.
    fn ids(&mut self, column: &ArrayRef) -> Result<Vec<u32>> {
        let next = |n: usize| {
            u32::try_from(n).map_err(|_| {
                DataFusionError::Execution(format!(
                    "{NAME}: more than 2^32 distinct baskets or items"
                ))
            })
        };
        match self {
            Self::Ints { ids, values, .. } => {
                let column = cast(column, &DataType::Int64)?;
                let mut out = Vec::with_capacity(column.len());
                for v in column.as_primitive::<Int64Type>().values().iter() {
                    let id = match ids.get(v) {
                        Some(id) => *id,
                        None => {
                            let id = next(values.len())?;
                            ids.insert(*v, id);
                            values.push(*v);
                            id
                        }
                    };
                    out.push(id);
                }
                Ok(out)
            }
            Self::Rows {
                converter,
                ids,
                values,
            } => {
                let rows = converter.convert_columns(std::slice::from_ref(column))?;
                let mut out = Vec::with_capacity(rows.num_rows());
                for row in rows.iter() {
                    let id = match ids.get(row.as_ref()) {
                        Some(id) => *id,
                        None => {
                            let id = next(ids.len())?;
                            ids.insert(row.as_ref().into(), id);
                            values.push(row);
                            id
                        }
                    };
                    out.push(id);
                }
                Ok(out)
            }
        }
    }

    /// The values, in number order.
    fn values(self) -> Result<ArrayRef> {
        match self {
            Self::Ints {
                values, data_type, ..
            } => Ok(cast(
                &(Arc::new(Int64Array::from(values)) as ArrayRef),
                &data_type,
            )?),
            Self::Rows {
                converter, values, ..
            } => Ok(converter.convert_rows(values.iter())?.swap_remove(0)),
        }
    }
}

/// Keeps `reservation` at `bytes`, or says what to do when the pool is full.
fn reserve(reservation: &MemoryReservation, bytes: usize) -> Result<()> {
    reservation.try_resize(bytes).map_err(|_| {
        resources_datafusion_err!(
            "{NAME}: counting item pairs in memory needs more than the memory limit \
             allows (it asked for {bytes} bytes). Raise min_support or min_count so \
             fewer items are frequent, raise the memory limit, or pass engine=sql, \
             which is slower but whose aggregation can spill to disk."
        )
    })
}

/// Reads the distinct lines and returns every rule, sorted.
async fn mine(
    mut input: SendableRecordBatchStream,
    reservation: MemoryReservation,
    mining: &Mining,
    schema: SchemaRef,
    compute: &Time,
) -> Result<RecordBatch> {
    let t = &mining.thresholds;
    let mut baskets = Interner::new(input.schema().field(0).data_type())?;
    let mut items = Interner::new(input.schema().field(1).data_type())?;
    // `basket << 32 | item`; the input's lines are distinct.
    let mut lines: Vec<u64> = Vec::new();
    while let Some(batch) = input.next().await {
        let batch = batch?;
        let _timer = compute.timer();
        let b = baskets.ids(batch.column(0))?;
        let i = items.ids(batch.column(1))?;
        lines.extend(
            b.iter()
                .zip(&i)
                .map(|(b, i)| (u64::from(*b) << 32) | u64::from(*i)),
        );
        reserve(
            &reservation,
            lines.capacity() * 8 + baskets.size() + items.size(),
        )?;
    }
    // Upstream operators keep their memory until their stream is dropped.
    drop(input);
    let _timer = compute.timer();
    let basket_total = baskets.len() as u64;
    drop(baskets);

    // An item's lines are its baskets.
    let mut item_count = vec![0u64; items.len()];
    for line in &lines {
        item_count[(line & LOW) as usize] += 1;
    }
    let frequent: Vec<bool> = item_count
        .iter()
        .map(|n| t.is_frequent(*n, basket_total))
        .collect();
    lines.retain(|line| frequent[(line & LOW) as usize]);
    lines.shrink_to_fit();
    lines.sort_unstable();

    // Pairs `a < b` of one basket, as `a << 32 | b`.
    let base = lines.capacity() * 8 + items.size() + item_count.capacity() * 9;
    let mut pairs: HashMap<u64, u64> = HashMap::new();
    for basket in lines.chunk_by(|x, y| x >> 32 == y >> 32) {
        for (k, x) in basket.iter().enumerate() {
            let a = x & LOW;
            for y in &basket[k + 1..] {
                if pairs.len() == pairs.capacity() {
                    // Reserve before the map grows: while it rehashes, the
                    // old table and one of twice the size are both held.
                    let next = (2 * pairs.capacity()).max(16);
                    reserve(&reservation, base + (next + pairs.capacity()) * PAIR_BYTES)?;
                    pairs.reserve(next - pairs.len());
                    reserve(&reservation, base + pairs.capacity() * PAIR_BYTES)?;
                }
                *pairs.entry((a << 32) | (y & LOW)).or_insert(0) += 1;
            }
        }
    }
    drop(lines);

    let held = base + pairs.capacity() * PAIR_BYTES;
    let mut rules = Rules::default();
    let mut checked_at = 0;
    for (&pair, &n) in &pairs {
        if rules.len() >= checked_at {
            checked_at = (2 * rules.len()).max(1024);
            reserve(&reservation, held + checked_at * RULE_BYTES)?;
        }
        if !t.is_frequent(n, basket_total) {
            continue;
        }
        let (a, b) = (pair >> 32, pair & LOW);
        for (x, y) in [(a, b), (b, a)] {
            let (nx, ny) = (item_count[x as usize], item_count[y as usize]);
            if t.keeps_rule(n, nx, ny, basket_total) {
                rules.push(x as u32, y as u32, n, nx, ny, basket_total);
            }
        }
    }
    drop(pairs);
    // The sorted batch is built beside the rules: twice their bytes.
    reserve(&reservation, base + 2 * rules.len() * RULE_BYTES)?;
    rules.batch(items.values()?, schema, mining.max_rules)
}

/// Rules as columns, before sorting.
#[derive(Default)]
struct Rules {
    antecedent: Vec<u32>,
    consequent: Vec<u32>,
    antecedent_count: Vec<i64>,
    consequent_count: Vec<i64>,
    pair_count: Vec<i64>,
    baskets: Vec<i64>,
    support: Vec<f64>,
    confidence: Vec<f64>,
    lift: Vec<f64>,
    leverage: Vec<f64>,
    conviction: Vec<f64>,
}

impl Rules {
    fn len(&self) -> usize {
        self.antecedent.len()
    }

    /// One rule; the metrics are the SQL form's expressions, in its order.
    fn push(&mut self, a: u32, c: u32, pair: u64, ant: u64, cons: u64, baskets: u64) {
        let (p, x, y, t) = (pair as f64, ant as f64, cons as f64, baskets as f64);
        self.antecedent.push(a);
        self.consequent.push(c);
        self.antecedent_count.push(ant as i64);
        self.consequent_count.push(cons as i64);
        self.pair_count.push(pair as i64);
        self.baskets.push(baskets as i64);
        self.support.push(p / t);
        self.confidence.push(p / x);
        self.lift.push(p * t / (x * y));
        self.leverage.push(p / t - (x / t) * (y / t));
        self.conviction.push(if pair == ant {
            f64::INFINITY
        } else {
            (1.0 - y / t) / (1.0 - p / x)
        });
    }

    /// The rules as a batch of `schema`, strongest first, at most `max`.
    fn batch(
        self,
        items: ArrayRef,
        schema: SchemaRef,
        max: Option<usize>,
    ) -> Result<RecordBatch> {
        let item_type = schema.field(0).data_type().clone();
        let items = if items.data_type() == &item_type {
            items
        } else {
            cast(&items, &item_type)?
        };
        let antecedent = take(&items, &UInt32Array::from(self.antecedent), None)?;
        let consequent = take(&items, &UInt32Array::from(self.consequent), None)?;
        let floats = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        let ints = |v: Vec<i64>| Arc::new(Int64Array::from(v)) as ArrayRef;
        let lift = floats(self.lift);
        let confidence = floats(self.confidence);
        let pair_count = ints(self.pair_count);
        let columns = vec![
            Arc::clone(&antecedent),
            new_null_array(&item_type, antecedent.len()),
            Arc::clone(&consequent),
            ints(self.antecedent_count),
            ints(self.consequent_count),
            Arc::clone(&pair_count),
            ints(self.baskets),
            floats(self.support),
            Arc::clone(&confidence),
            Arc::clone(&lift),
            floats(self.leverage),
            floats(self.conviction),
        ];
        let descending = SortOptions {
            descending: true,
            nulls_first: true,
        };
        // ORDER BY's defaults: NULLs last when ascending, first when not.
        let ascending = SortOptions {
            descending: false,
            nulls_first: false,
        };
        let by = |values: &ArrayRef, options: SortOptions| SortColumn {
            values: Arc::clone(values),
            options: Some(options),
        };
        let order = lexsort_to_indices(
            &[
                by(&lift, descending),
                by(&confidence, descending),
                by(&pair_count, descending),
                by(&antecedent, ascending),
                by(&consequent, ascending),
            ],
            max,
        )?;
        let columns = columns
            .iter()
            .map(|c| take(c, &order, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
