//! The `weir` binary: everything is in the library (`weir::cli`), so tests and benchmarks can
//! use the same pieces.

/// Built with `--features mimalloc`: mimalloc serves Rust's allocations (LMDB's own still go
/// to the C library's).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    weir::memory::tune();
    weir::cli::main()
}
