fn main() -> std::process::ExitCode {
    stratix_gateway::cli::main()
}
