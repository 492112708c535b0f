//! The `distributed-counter` binary: parses flags and runs the service.

use distributed_counter::config::{self, Command};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    match config::from_process() {
        Ok(Command::Help) => {
            // Not `print!`: it panics when stdout is closed (`| head -0`).
            let _ = std::io::stdout().write_all(config::USAGE.as_bytes());
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
