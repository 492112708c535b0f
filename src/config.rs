//! Command-line flags (and their `DC_*` environment variables) into a [`Config`].

use crate::wal::FsyncPolicy;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Fewest and most node threads `--nodes` accepts.
pub const MIN_NODES: usize = 1;
pub const MAX_NODES: usize = 64;

/// Everything the service needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub nodes: usize,
    /// First port tried for the nodes; 0 lets the OS pick each.
    pub node_port: u16,
    pub max_body_bytes: usize,
    pub fault_injection: bool,
    pub data_dir: Option<PathBuf>,
    /// When the log is synced to disk (with `--data-dir`).
    pub fsync: FsyncPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8085)),
            nodes: 4,
            node_port: 8090,
            max_body_bytes: 64 * 1024 * 1024,
            fault_injection: false,
            data_dir: None,
            fsync: FsyncPolicy::Always,
        }
    }
}

pub const USAGE: &str = "\
usage: distributed-counter [--listen ADDR] [--nodes N] [--node-port PORT]
                           [--max-body-bytes BYTES] [--fault-injection] [--data-dir DIR]
                           [--fsync always|never]

  --listen ADDR           address of the HTTP API (default 127.0.0.1:8085; port 0 picks a free one)
  --nodes N               number of node threads, 1 to 64 (default 4)
  --node-port PORT        first port tried for the nodes; busy ports are skipped;
                          0 lets the OS pick each (default 8090)
  --max-body-bytes BYTES  larger POST bodies get 413 (default 67108864)
  --fault-injection       enable the /nodes/{id}/... fault endpoints
  --data-dir DIR          keep the data in DIR so it survives a restart (default: memory only)
  --fsync always|never    with --data-dir: sync the log before answering a POST (always,
                          the default: survives power loss) or leave it to the OS (never:
                          survives a crash of the process, not of the machine)
  --help                  print this and exit

Each flag can also be set with an environment variable: DC_LISTEN, DC_NODES,
DC_NODE_PORT, DC_MAX_BODY_BYTES, DC_FAULT_INJECTION (1 or true), DC_DATA_DIR,
DC_FSYNC.
A flag on the command line wins over its variable.
";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Config),
    Help,
}

/// A flag or value that cannot be used.
#[derive(Debug, PartialEq)]
pub enum ConfigError {
    UnknownFlag(String),
    MissingValue(&'static str),
    BadValue {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag:?} (try --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::BadValue {
                flag,
                value,
                expected,
            } => write!(f, "bad value {value:?} for {flag}: expected {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The same error, about environment variable `var` instead of its flag.
    fn named(self, var: &'static str) -> ConfigError {
        match self {
            ConfigError::BadValue {
                value, expected, ..
            } => ConfigError::BadValue {
                flag: var,
                value,
                expected,
            },
            other => other,
        }
    }
}

/// The flags that take a value, with their environment variables.
const VALUE_FLAGS: [(&str, &str); 6] = [
    ("--listen", "DC_LISTEN"),
    ("--nodes", "DC_NODES"),
    ("--node-port", "DC_NODE_PORT"),
    ("--max-body-bytes", "DC_MAX_BODY_BYTES"),
    ("--data-dir", "DC_DATA_DIR"),
    ("--fsync", "DC_FSYNC"),
];

/// Parses `args` (without the program name), reading `env` for flags not given.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut config = Config::default();
    for (flag, var) in VALUE_FLAGS {
        if let Some(value) = env(var) {
            apply_value(&mut config, flag, value).map_err(|e| e.named(var))?;
        }
    }
    if let Some(value) = env("DC_FAULT_INJECTION") {
        config.fault_injection = parse_bool("DC_FAULT_INJECTION", &value)?;
    }

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--fault-injection" => config.fault_injection = true,
            _ => {
                let Some(&(known, _)) = VALUE_FLAGS.iter().find(|(name, _)| *name == flag) else {
                    return Err(ConfigError::UnknownFlag(arg));
                };
                let value = match inline_value {
                    Some(value) => value.to_string(),
                    None => args.next().ok_or(ConfigError::MissingValue(known))?,
                };
                apply_value(&mut config, known, value)?;
            }
        }
    }
    Ok(Command::Run(config))
}

fn apply_value(config: &mut Config, flag: &'static str, value: String) -> Result<(), ConfigError> {
    let bad = |expected| ConfigError::BadValue {
        flag,
        value: value.clone(),
        expected,
    };
    match flag {
        "--listen" => {
            config.listen = value
                .parse()
                .map_err(|_| bad("HOST:PORT, e.g. 127.0.0.1:8085"))?
        }
        "--nodes" => {
            config.nodes = value
                .parse()
                .ok()
                .filter(|n| (MIN_NODES..=MAX_NODES).contains(n))
                .ok_or_else(|| bad("a whole number from 1 to 64"))?
        }
        "--node-port" => config.node_port = value.parse().map_err(|_| bad("a port, 0 to 65535"))?,
        "--max-body-bytes" => {
            config.max_body_bytes = value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("a positive number of bytes"))?
        }
        "--data-dir" if value.is_empty() => return Err(bad("a directory path")),
        "--data-dir" => config.data_dir = Some(PathBuf::from(value)),
        "--fsync" => {
            config.fsync = match value.as_str() {
                "always" => FsyncPolicy::Always,
                "never" => FsyncPolicy::Never,
                _ => return Err(bad("always or never")),
            }
        }
        _ => return Err(ConfigError::UnknownFlag(flag.to_string())),
    }
    Ok(())
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::BadValue {
            flag: name,
            value: value.to_string(),
            expected: "1/true or 0/false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_match_the_spec() {
        let Ok(Command::Run(config)) = parse(args(&[]), no_env) else {
            panic!("no flags must run with defaults");
        };
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8085");
        assert_eq!(config.max_body_bytes, 67_108_864);
    }

    #[test]
    fn every_flag_is_read_in_both_forms() {
        let parsed = parse(
            args(&[
                "--listen=127.0.0.1:0",
                "--nodes",
                "64",
                "--node-port",
                "0",
                "--max-body-bytes=10",
                "--fault-injection",
                "--data-dir",
                "/tmp/x",
                "--fsync",
                "never",
            ]),
            no_env,
        );
        let expected = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            nodes: 64,
            node_port: 0,
            max_body_bytes: 10,
            fault_injection: true,
            data_dir: Some("/tmp/x".into()),
            fsync: FsyncPolicy::Never,
        };
        assert_eq!(parsed, Ok(Command::Run(expected)));
    }

    #[test]
    fn bad_flags_and_values_are_named() {
        let unknown = parse(args(&["--bogus"]), no_env).unwrap_err();
        assert!(unknown.to_string().contains("--bogus"));
        for bad in [
            &["--nodes", "0"][..],
            &["--nodes", "65"],
            &["--listen", "nope"],
            &["--node-port", "70000"],
        ] {
            let err = parse(args(bad), no_env).unwrap_err();
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
        assert_eq!(
            parse(args(&["--nodes"]), no_env),
            Err(ConfigError::MissingValue("--nodes"))
        );
    }

    #[test]
    fn environment_is_read_and_flags_win() {
        let env = |name: &str| match name {
            "DC_NODES" => Some("3".to_string()),
            "DC_NODE_PORT" => Some("9000".to_string()),
            "DC_FAULT_INJECTION" => Some("1".to_string()),
            _ => None,
        };
        let Ok(Command::Run(config)) = parse(args(&["--nodes", "2"]), env) else {
            panic!("must parse");
        };
        assert_eq!(
            (config.nodes, config.node_port, config.fault_injection),
            (2, 9000, true)
        );
        let bad_env = |name: &str| (name == "DC_NODES").then(|| "0".to_string());
        let err = parse(args(&[]), bad_env).unwrap_err();
        assert!(err.to_string().contains("DC_NODES"), "{err}");
    }

    #[test]
    fn help_wins() {
        assert_eq!(
            parse(args(&["--nodes", "2", "--help"]), no_env),
            Ok(Command::Help)
        );
    }
}
