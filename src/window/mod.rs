//! Window functions.

pub mod rfm_score;
