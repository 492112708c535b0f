//! The `distributed-counter` binary: parses flags and runs the service.

use distributed_counter::config::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    match config::parse(args, |name| std::env::var(name).ok()) {
        Ok(Command::Help) => {
            print!("{}", config::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Run(config)) => match distributed_counter::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                distributed_counter::log!("distributed-counter: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            distributed_counter::log!("distributed-counter: {e}");
            ExitCode::from(2)
        }
    }
}
