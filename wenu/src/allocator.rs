//! The process's allocator: mimalloc, tuned to keep resident only what is in
//! use (the `mimalloc` feature, on by default; without it the system
//! allocator, which heap profilers can follow).
//!
//! Measured with `wenu bench overload` and a 100-device closed loop
//! (docs/benchmarks.md, "Memory"): the live heap of `wenu serve` peaks near
//! 100 MiB, but with mimalloc's defaults the process held 350–380 MiB
//! resident — freed pages kept for a second before being returned, and the arena
//! backed by transparent huge pages. Returning pages at once and no huge
//! pages brought the peak to ~205 MiB at the same throughput; glibc's malloc
//! held more still (~470 MiB). Returning them after 50 ms instead of at once
//! keeps most of that gain and spares the API's large responses a page
//! fault per page (see [`PURGE_DELAY_MS`]).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc.h (v3, as built by libmimalloc-sys
/// 0.1.49), which the Rust bindings do not name; the test below checks the
/// index still holds the option's documented default.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages are kept before going back to the OS. At once (0)
/// cost the HTTP API a third of its CPU: each response of a day of minute
/// buckets (~260 KB) faulted its pages in again and unmapping them
/// interrupted the other core (`wenu bench api`: 650 → 945 requests/s, 2.6 →
/// 1.7 ms of CPU a request with 50 ms), for a peak 222 → 246 MiB under
/// `wenu bench overload`; mimalloc's own second held 350+ MiB.
const PURGE_DELAY_MS: std::ffi::c_long = 50;

/// Freed memory goes back to the OS after [`PURGE_DELAY_MS`] rather than a
/// second later, unless `MIMALLOC_PURGE_DELAY` says otherwise. Call first
/// thing in `main`.
pub fn return_freed_memory_soon() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: sets an integer option; mimalloc synchronises option access.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_index_names_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // options.c of this build: `{ 1000, …, purge_delay }`; the options
        // around it default to 0 or 1.
        // SAFETY: reads an integer option.
        let value = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, 1000, "option {MI_OPTION_PURGE_DELAY} is not mimalloc's purge delay any more");
    }
}
