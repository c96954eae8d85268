fn main() -> std::process::ExitCode {
    ternd::cli::main()
}
