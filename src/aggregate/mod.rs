//! Aggregate functions.

pub mod rfm_metrics;
pub mod rfm_thresholds;
