//! The `tansync` binary: see [`tansync::cli`].

/// mimalloc instead of glibc's allocator: a full plan spends much of its time allocating
/// and freeing small buffers (LDAP decoding on one thread, freed on another).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the index in its v3 `mi_option_e`; the crate names
/// no constant for it, so the tests check the index against the option's default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Give freed memory back to the system at once rather than a second later (mimalloc v3's
/// default). A plan frees the LDAP decoder's buffers on one thread while the people it
/// keeps grow on another; with the delay those pages stayed resident: a 100,000-user plan
/// peaked at 165 MB, without it at 115 MB, for some 0.2-0.3 s more of page faults
/// (bench/ldap-plan.sh; the trade-off is in BENCHMARKS.md).
fn tune_allocator() {
    // SAFETY: sets one integer option; mimalloc reads it on its next purge decision. No
    // pointers are passed and nothing else is touched.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    tansync::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index names the purge delay of the bundled mimalloc: version 3, the
    /// option's default (1000 ms) before it is set, then the value set. A
    /// mimalloc update that moved the option would fail here, not tune another one.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: plain integer getters and a setter, as in `tune_allocator`.
        unsafe {
            assert_eq!(libmimalloc_sys::mi_version() / 10000, 3, "mimalloc v3");
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            // arena_eager_commit (the index before purge_decommits) defaults to 2.
            assert_eq!(libmimalloc_sys::mi_option_get(4), 2);
            tune_allocator();
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 0);
        }
    }
}
