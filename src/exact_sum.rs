//! Exactly rounded floating-point sums that do not depend on input order.
//!
//! Float addition is not associative, so a plain running sum of amounts gives
//! different totals for different file orders or partitionings. [`ExactSum`]
//! keeps the running total as a short list of non-overlapping partials whose
//! sum is the exact real sum of every value added (Shewchuk, "Adaptive
//! Precision Floating-Point Arithmetic and Fast Robust Geometric Predicates",
//! 1997; the same scheme as Python's `math.fsum`). The final value is the
//! exact sum rounded once, so it is identical for every order and every way of
//! splitting the input and merging partial states.

/// An order-independent, exactly rounded sum of finite `f64` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum {
    partials: Vec<f64>,
}

impl ExactSum {
    /// Adds one finite value. Callers reject NaN and infinities first.
    pub fn add(&mut self, mut x: f64) {
        let mut kept = 0;
        for i in 0..self.partials.len() {
            let mut y = self.partials[i];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[kept] = lo;
                kept += 1;
            }
            x = hi;
        }
        self.partials.truncate(kept);
        self.partials.push(x);
    }

    /// Whether a partial sum left the range of `f64`: the total is then not
    /// representable and callers report an error.
    pub fn overflowed(&self) -> bool {
        self.partials.iter().any(|p| !p.is_finite())
    }

    /// Adds every partial of another sum (used when merging states).
    pub fn merge(&mut self, other: &[f64]) {
        for &p in other {
            self.add(p);
        }
    }

    /// The partials, for serializing the state.
    pub fn partials(&self) -> &[f64] {
        &self.partials
    }

    /// The exact sum, correctly rounded to the nearest `f64`.
    pub fn value(&self) -> f64 {
        value_of(&self.partials)
    }

    /// Heap bytes held, for `Accumulator::size`.
    pub fn heap_size(&self) -> usize {
        self.partials.capacity() * std::mem::size_of::<f64>()
    }
}

/// Adds `x` to a sum kept in at most `N` partials (N below 8), smaller first,
/// zeros being unused slots, as [`ExactSum::add`] would. Returns the partials
/// when the exact sum needs more than `N`: the caller moves it to an
/// [`ExactSum`] then. Sums of money rarely need more than three or four
/// partials, so per-customer sums need no allocation.
pub fn add_small<const N: usize>(p: &mut [f64; N], mut x: f64) -> Option<Vec<f64>> {
    let mut out = [0.0f64; 8];
    let mut len = 0;
    for y0 in p.iter().copied().filter(|v| *v != 0.0) {
        let mut y = y0;
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        let lo = y - (hi - x);
        if lo != 0.0 {
            out[len] = lo;
            len += 1;
        }
        x = hi;
    }
    out[len] = x;
    len += 1;
    if len <= N {
        *p = [0.0; N];
        p[..len].copy_from_slice(&out[..len]);
        None
    } else {
        Some(out[..len].to_vec())
    }
}

/// The exact sum of non-overlapping `partials` (smallest first), correctly
/// rounded to the nearest `f64`.
pub fn value_of(partials: &[f64]) -> f64 {
    let p = partials;
    let Some(mut n) = p.len().checked_sub(1) else {
        return 0.0;
    };
    let mut hi = p[n];
    let mut lo = 0.0;
    while n > 0 {
        n -= 1;
        let x = hi;
        let y = p[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    // Round half-even correctly when the remaining partials would tip the
    // rounding of `hi` (the correction step of `math.fsum`).
    if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(values: &[f64]) -> f64 {
        let mut s = ExactSum::default();
        values.iter().for_each(|v| s.add(*v));
        s.value()
    }

    #[test]
    fn sums_exactly_where_naive_addition_loses_digits() {
        assert_eq!(sum(&[1e100, 1.0, -1e100]), 1.0);
        assert_eq!(sum(&[0.1; 10]), 1.0);
        assert_ne!([0.1f64; 10].iter().sum::<f64>(), 1.0);
        assert_eq!(sum(&[]), 0.0);
    }

    #[test]
    fn result_does_not_depend_on_order_or_split() {
        let values: Vec<f64> = (0..1000)
            .map(|i| (i as f64 * 0.37).sin() * 1e3 + 0.01)
            .collect();
        let forward = sum(&values);
        let mut reversed = values.clone();
        reversed.reverse();
        assert_eq!(forward, sum(&reversed));

        let (left, right) = values.split_at(417);
        let mut a = ExactSum::default();
        left.iter().for_each(|v| a.add(*v));
        let mut b = ExactSum::default();
        right.iter().for_each(|v| b.add(*v));
        b.merge(a.partials());
        assert_eq!(forward, b.value());
    }

    #[test]
    fn small_sums_agree_with_exact_sums_and_spill_when_full() {
        let values: Vec<f64> = (0..500)
            .map(|i| ((i as f64 * 0.61).cos() * 10f64.powi(i % 9)).round() / 100.0)
            .collect();
        let mut exact = ExactSum::default();
        let mut small = [0.0f64; 4];
        let mut spilled: Option<ExactSum> = None;
        for v in &values {
            exact.add(*v);
            match &mut spilled {
                Some(big) => big.add(*v),
                None => {
                    if let Some(partials) = add_small(&mut small, *v) {
                        let mut big = ExactSum::default();
                        big.merge(&partials);
                        spilled = Some(big);
                    }
                }
            }
            let now = match &spilled {
                Some(big) => big.value(),
                None => value_of(&small),
            };
            assert_eq!(now, exact.value());
        }
        let mut two = [0.0f64; 2];
        assert!(add_small(&mut two, 1e100).is_none());
        assert!(add_small(&mut two, 1.0).is_none());
        assert_eq!(add_small(&mut two, 1e-100), Some(vec![1e-100, 1.0, 1e100]));
    }
}
