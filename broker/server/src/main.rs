//! The `weir` binary: everything is in the library (`weir::cli`), so tests and benchmarks can
//! use the same pieces.

fn main() -> std::process::ExitCode {
    weir::memory::tune();
    weir::cli::main()
}
