//! A cache hint for tables looked up at addresses known some rows ahead.

/// Asks the processor to load the cache line holding `value`; a hint with no
/// effect on results.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    // SAFETY: SSE is part of every x86_64 target, and a prefetch of a valid
    // address neither faults nor changes memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
