//! Aggregate functions.

pub mod rfm_metrics;
mod rfm_metrics_groups;
pub mod rfm_thresholds;

/// Test helpers shared by the aggregates' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use datafusion::arrow::array::ArrayRef;
    use datafusion::logical_expr::Accumulator;

    /// Merges the state of `from` into `into`, as a final aggregation does
    /// with the partial states of other partitions.
    pub fn merge_state(from: &mut dyn Accumulator, into: &mut dyn Accumulator) {
        let state: Vec<ArrayRef> = from
            .state()
            .unwrap()
            .iter()
            .map(|s| s.to_array().unwrap())
            .collect();
        into.merge_batch(&state).unwrap();
    }
}
