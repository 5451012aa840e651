//! The `herald` command: parse the arguments, load the configuration, run the command
//! (`src/cli/`), and turn its outcome into an exit code: 0 ok, 1 the operation failed,
//! 2 usage or configuration error.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if !matches!(args.command, cli::Command::Serve) {
        // A listing piped into `head` ends when the reader stops reading, as any Unix tool
        // does, not with a panic: Rust ignores SIGPIPE and println! panics on EPIPE. (Not
        // for `serve`: a reset socket must not end the server.)
        // SAFETY: called before any thread is started; restores the default disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    herald::telemetry::init_logging(matches!(args.log_format, cli::LogFormat::Json));
    // The settings, then the key and certificate files they name: either one wrong is a
    // configuration error, for every command.
    let config = match herald::config::Config::load(args.config.as_deref())
        .and_then(|c| herald::keys::Keys::load(&c).map(|_| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match runtime.block_on(cli::run(args.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::Failure(code, msg)) => {
            eprintln!("herald: {msg}");
            ExitCode::from(code)
        }
    }
}
