//! The `tansync` binary: see [`tansync::cli`].

/// mimalloc instead of glibc's allocator: a full plan spends much of its time allocating
/// and freeing small buffers (LDAP decoding on one thread, freed on another).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tansync::cli::main()
}
