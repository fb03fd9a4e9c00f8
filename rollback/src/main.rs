//! The `rollback` binary.

fn main() -> std::process::ExitCode {
    rollback::cli::main(std::env::args_os())
}
