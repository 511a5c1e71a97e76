//! Aggregate functions.

pub mod rfm_metrics;
mod rfm_metrics_groups;
pub mod rfm_thresholds;
