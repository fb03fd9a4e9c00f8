//! The `persist-bind` binary.

fn main() -> std::process::ExitCode {
    persist_bind::cli::main(std::env::args_os())
}
