//! Scalar functions.

pub mod rfm_score_fixed;
pub mod rfm_segment;
