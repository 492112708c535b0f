//! Command-line flags (and their `DC_*` environment variables) into a [`Config`].
//!
//! A flag given on the command line wins over its variable, and a variable
//! is not even read for a flag the command line gives (so a bad variable
//! cannot stop a command line that overrides it).

use crate::wal::FsyncPolicy;
use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;
use tiny_http::limits as http_limits;

/// Fewest and most node threads `--nodes` accepts.
pub const MIN_NODES: usize = 1;
pub const MAX_NODES: usize = 64;

/// Limits and deadlines of client connections (see README "Connections").
#[derive(Debug, Clone, PartialEq)]
pub struct ClientLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub min_body_rate: u64,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_body_bytes_in_flight: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: http_limits::DEFAULT_SERVE_MAX_CONNECTIONS,
            max_connections_per_ip: http_limits::DEFAULT_MAX_CONNECTIONS_PER_IP,
            header_timeout: http_limits::DEFAULT_HEADER_TIMEOUT,
            body_timeout: http_limits::DEFAULT_BODY_GRACE,
            min_body_rate: http_limits::DEFAULT_MIN_BODY_RATE,
            idle_timeout: http_limits::DEFAULT_IDLE_TIMEOUT,
            write_timeout: http_limits::DEFAULT_WRITE_TIMEOUT,
            max_body_bytes_in_flight: http_limits::DEFAULT_MAX_BODY_BYTES_IN_FLIGHT as usize,
        }
    }
}

/// Where items are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// In-process node threads (the default).
    Memory,
    /// A Redis Cluster reached through these `host:port` seeds, with an
    /// optional ACL user and password (scale-out; feature `scaleout`).
    RedisCluster {
        seeds: Vec<String>,
        username: Option<String>,
        password: Option<String>,
    },
}

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
    pub clients: ClientLimits,
    pub store: StoreChoice,
    /// Scale-out: the key IDs are spread over partitions with (the same in
    /// every instance of a deployment).
    pub partition_key: Option<String>,
    /// Lines to log at start: settings that parse but make no sense together.
    pub warnings: Vec<String>,
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
            clients: ClientLimits::default(),
            store: StoreChoice::Memory,
            partition_key: None,
            warnings: Vec::new(),
        }
    }
}

pub const USAGE: &str = "\
usage: distributed-counter [--listen ADDR] [--nodes N] [--node-port PORT]
                           [--max-body-bytes BYTES] [--fault-injection] [--data-dir DIR]
                           [--fsync always|never] [client limits, below]

  --listen ADDR           address of the HTTP API, HOST:PORT; HOST may be a name
                          (default 127.0.0.1:8085; port 0 picks a free one)
  --nodes N               number of node threads, 1 to 64 (default 4)
  --node-port PORT        first port tried for the nodes; busy ports are skipped;
                          0 lets the OS pick each (default 8090)
  --max-body-bytes BYTES  larger POST bodies get 413 (default 67108864)
  --fault-injection       enable the /nodes/{id}/... fault endpoints
  --data-dir DIR          keep the data in DIR so it survives a restart (default: memory only)
  --fsync always|never    with --data-dir: sync the log before answering a POST (always,
                          the default: survives power loss) or leave it to the OS (never:
                          survives a crash of the process, not of the machine)
  --store STORE           memory (the default: in-process nodes), or
                          redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...] to keep
                          the items in a Redis Cluster shared by many instances (needs a
                          build with --features scaleout; README \"When one box is not
                          enough\"); --nodes, --data-dir and --fault-injection do not apply
  --partition-key KEY     with redis-cluster://: the key that spreads IDs over partitions,
                          the same for every instance of a deployment

client limits (README \"Connections\"):
  --max-connections N           open client connections (default 4096); at the limit
                                the longest-idle one is closed, else a newcomer gets 503
  --max-connections-per-ip N    of those, from one address (default 1024; behind a
                                reverse proxy set it to --max-connections)
  --header-timeout DURATION     a request head must arrive within it (default 10s)
  --body-timeout DURATION       a body may arrive at any pace this long... (default 10s)
  --min-body-rate BYTES         ...then at least this many bytes per second (default 1024)
  --idle-timeout DURATION       an idle keep-alive connection is closed after it (default 60s)
  --write-timeout DURATION      an answer must be written within it (default 10s)
  --max-body-bytes-in-flight B  request bodies buffered at once, all together (default
                                134217728); past it a POST gets 503
  DURATION is a number with a unit: 500ms, 10s, 2m (a bare number is seconds).

  --help                  print this and exit

Each flag can also be set with an environment variable: DC_LISTEN, DC_NODES,
DC_NODE_PORT, DC_MAX_BODY_BYTES, DC_FAULT_INJECTION, DC_DATA_DIR, DC_FSYNC,
DC_MAX_CONNECTIONS, DC_MAX_CONNECTIONS_PER_IP, DC_HEADER_TIMEOUT,
DC_BODY_TIMEOUT, DC_MIN_BODY_RATE, DC_IDLE_TIMEOUT, DC_WRITE_TIMEOUT,
DC_MAX_BODY_BYTES_IN_FLIGHT, DC_STORE, DC_PARTITION_KEY. A yes/no variable (DC_FAULT_INJECTION) takes
1/true/yes/on or 0/false/no/off, in any case.
A flag on the command line wins over its variable (which is then not read).
";

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<Config>),
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
    /// A flag that does not apply with the chosen store.
    DoesNotApply {
        flag: &'static str,
        store: &'static str,
    },
    /// An argument that is not UTF-8 (shown with its bad bytes replaced).
    NotUtf8(String),
    /// An environment variable read for a flag not given, not UTF-8.
    VariableNotUtf8(String),
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
            ConfigError::DoesNotApply { flag, store } => {
                write!(f, "{flag} does not apply with --store {store}")
            }
            ConfigError::NotUtf8(arg) => write!(f, "argument {arg:?} is not UTF-8"),
            ConfigError::VariableNotUtf8(name) => write!(f, "{name} is not UTF-8"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The flags that take a value, with their environment variables.
const VALUE_FLAGS: [(&str, &str); 16] = [
    ("--listen", "DC_LISTEN"),
    ("--nodes", "DC_NODES"),
    ("--node-port", "DC_NODE_PORT"),
    ("--max-body-bytes", "DC_MAX_BODY_BYTES"),
    ("--data-dir", "DC_DATA_DIR"),
    ("--fsync", "DC_FSYNC"),
    ("--max-connections", "DC_MAX_CONNECTIONS"),
    ("--max-connections-per-ip", "DC_MAX_CONNECTIONS_PER_IP"),
    ("--header-timeout", "DC_HEADER_TIMEOUT"),
    ("--body-timeout", "DC_BODY_TIMEOUT"),
    ("--min-body-rate", "DC_MIN_BODY_RATE"),
    ("--idle-timeout", "DC_IDLE_TIMEOUT"),
    ("--write-timeout", "DC_WRITE_TIMEOUT"),
    ("--max-body-bytes-in-flight", "DC_MAX_BODY_BYTES_IN_FLIGHT"),
    ("--store", "DC_STORE"),
    ("--partition-key", "DC_PARTITION_KEY"),
];

/// The yes/no flag and its variable.
const FAULT_INJECTION: (&str, &str) = ("--fault-injection", "DC_FAULT_INJECTION");

/// The command of this process: its arguments and environment, through
/// [`utf8_args`] and [`parse`]. A variable that is read (its flag was not
/// given) and is not UTF-8 is refused rather than taken as unset.
pub fn from_process() -> Result<Command, ConfigError> {
    let args = utf8_args(std::env::args_os().skip(1))?;
    let not_utf8 = std::cell::RefCell::new(None);
    let env = |name: &str| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            not_utf8
                .borrow_mut()
                .get_or_insert_with(|| name.to_string());
            None
        }
    };
    let command = parse(args, env);
    match not_utf8.into_inner() {
        Some(name) => Err(ConfigError::VariableNotUtf8(name)),
        None => command,
    }
}

/// The command line as text for [`parse`]; an argument that is not UTF-8
/// is refused rather than guessed at (it could be a path).
pub fn utf8_args<I>(args: I) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = OsString>,
{
    args.into_iter()
        .map(|arg| {
            arg.into_string()
                .map_err(|raw| ConfigError::NotUtf8(raw.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Parses `args` (without the program name), reading `env` for flags not given.
pub fn parse<I, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut fault_injection = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--fault-injection" => fault_injection = Some(true),
            _ => {
                let Some(&(known, _)) = VALUE_FLAGS.iter().find(|(name, _)| *name == flag) else {
                    return Err(ConfigError::UnknownFlag(arg));
                };
                let value = match inline_value {
                    Some(value) => value.to_string(),
                    None => args.next().ok_or(ConfigError::MissingValue(known))?,
                };
                given.push((known, value));
            }
        }
    }
    let mut config = Config::default();
    for (flag, var) in VALUE_FLAGS {
        // The last of repeated flags wins; the variable only without a flag.
        let from_flag = given.iter().rev().find(|(name, _)| *name == flag);
        match from_flag {
            Some((_, value)) => apply_value(&mut config, flag, value.clone())?,
            None => {
                if let Some(value) = env(var) {
                    apply_value(&mut config, var, value)?;
                }
            }
        }
    }
    config.fault_injection = match fault_injection {
        Some(on) => on,
        None => match env(FAULT_INJECTION.1) {
            Some(value) => parse_bool(FAULT_INJECTION.1, &value)?,
            None => false,
        },
    };
    if config.store != StoreChoice::Memory {
        refuse_with_redis(&given, fault_injection, &config, &env)?;
    }
    let fsync_set = given.iter().any(|(flag, _)| *flag == "--fsync") || env("DC_FSYNC").is_some();
    if fsync_set && config.data_dir.is_none() {
        config
            .warnings
            .push("warning: --fsync has no effect without --data-dir (memory only)".to_string());
    }
    Ok(Command::Run(Box::new(config)))
}

/// Applies one value; `name` is the flag or variable it came from.
fn apply_value(config: &mut Config, name: &'static str, value: String) -> Result<(), ConfigError> {
    let flag = VALUE_FLAGS
        .iter()
        .find(|(flag, var)| *flag == name || *var == name)
        .map_or(name, |(flag, _)| flag);
    let bad = |expected| ConfigError::BadValue {
        flag: name,
        value: value.clone(),
        expected,
    };
    let clients = &mut config.clients;
    match flag {
        "--listen" => config.listen = parse_listen(&value).ok_or_else(|| bad(LISTEN))?,
        "--nodes" => {
            config.nodes = value
                .parse()
                .ok()
                .filter(|n| (MIN_NODES..=MAX_NODES).contains(n))
                .ok_or_else(|| bad("a whole number from 1 to 64"))?
        }
        "--node-port" => config.node_port = value.parse().map_err(|_| bad("a port, 0 to 65535"))?,
        "--max-body-bytes" => config.max_body_bytes = positive(&value).ok_or_else(|| bad(BYTES))?,
        "--data-dir" => config.data_dir = Some(parse_data_dir(&value).map_err(bad)?),
        "--fsync" => {
            config.fsync = match value.as_str() {
                "always" => FsyncPolicy::Always,
                "never" => FsyncPolicy::Never,
                _ => return Err(bad("always or never")),
            }
        }
        "--max-connections" => {
            clients.max_connections = positive(&value).ok_or_else(|| bad(COUNT))?
        }
        "--max-connections-per-ip" => {
            clients.max_connections_per_ip = positive(&value).ok_or_else(|| bad(COUNT))?
        }
        "--header-timeout" => {
            clients.header_timeout = parse_duration(&value).ok_or_else(|| bad(DURATION))?
        }
        "--body-timeout" => {
            clients.body_timeout = parse_duration(&value).ok_or_else(|| bad(DURATION))?
        }
        "--min-body-rate" => {
            clients.min_body_rate = positive(&value).ok_or_else(|| bad(BYTES))? as u64
        }
        "--idle-timeout" => {
            clients.idle_timeout = parse_duration(&value).ok_or_else(|| bad(DURATION))?
        }
        "--write-timeout" => {
            clients.write_timeout = parse_duration(&value).ok_or_else(|| bad(DURATION))?
        }
        "--max-body-bytes-in-flight" => {
            clients.max_body_bytes_in_flight = positive(&value).ok_or_else(|| bad(BYTES))?
        }
        "--store" => config.store = parse_store(&value).map_err(bad)?,
        "--partition-key" if value.is_empty() => return Err(bad("a non-empty key")),
        "--partition-key" => config.partition_key = Some(value.clone()),
        _ => return Err(ConfigError::UnknownFlag(name.to_string())),
    }
    Ok(())
}

const LISTEN: &str = "HOST:PORT, e.g. 127.0.0.1:8085 or localhost:8085";
const BYTES: &str = "a positive number of bytes";
const COUNT: &str = "a positive whole number";
const DURATION: &str = "a positive duration such as 500ms, 10s or 2m";

/// Refuses the flags (or variables) that mean nothing with a Redis Cluster:
/// there are no node threads, no data dir and no faults to inject.
fn refuse_with_redis<E>(
    given: &[(&'static str, String)],
    fault_injection: Option<bool>,
    config: &Config,
    env: &E,
) -> Result<(), ConfigError>
where
    E: Fn(&str) -> Option<String>,
{
    let refuse = |flag| ConfigError::DoesNotApply {
        flag,
        store: "redis-cluster://",
    };
    for (flag, var) in [("--nodes", "DC_NODES"), ("--data-dir", "DC_DATA_DIR")] {
        if given.iter().any(|(name, _)| *name == flag) {
            return Err(refuse(flag));
        }
        if env(var).is_some() {
            return Err(refuse(var));
        }
    }
    match (fault_injection, config.fault_injection) {
        (Some(true), _) => Err(refuse(FAULT_INJECTION.0)),
        (None, true) => Err(refuse(FAULT_INJECTION.1)),
        _ => Ok(()),
    }
}

/// `memory`, or `redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]`
/// (only in a build with the `scaleout` feature).
fn parse_store(value: &str) -> Result<StoreChoice, &'static str> {
    if value == "memory" {
        return Ok(StoreChoice::Memory);
    }
    let Some(rest) = value.strip_prefix("redis-cluster://") else {
        return Err("memory or redis-cluster://HOST:PORT[,HOST:PORT...]");
    };
    if !cfg!(feature = "scaleout") {
        return Err(
            "memory: redis-cluster:// needs a build with the scaleout feature \
             (cargo build --release --features scaleout)",
        );
    }
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    let seeds: Vec<String> = hosts.split(',').map(str::to_string).collect();
    let valid = |seed: &String| {
        seed.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    if seeds.is_empty() || !seeds.iter().all(valid) {
        return Err("redis-cluster://HOST:PORT[,HOST:PORT...]");
    }
    let (username, password) = match credentials.map(|c| c.split_once(':')) {
        None => (None, None),
        Some(Some((user, password))) => (
            (!user.is_empty()).then(|| user.to_string()),
            Some(password.to_string()),
        ),
        Some(None) => (None, credentials.map(str::to_string)),
    };
    Ok(StoreChoice::RedisCluster {
        seeds,
        username,
        password,
    })
}

fn positive(value: &str) -> Option<usize> {
    value.parse().ok().filter(|n| *n > 0)
}

/// `HOST:PORT`, where HOST is an address or a name (the first address it
/// resolves to is used).
fn parse_listen(value: &str) -> Option<SocketAddr> {
    if let Ok(addr) = value.parse() {
        return Some(addr);
    }
    value.to_socket_addrs().ok()?.next()
}

/// A data dir must be a directory if it exists (it is created otherwise).
fn parse_data_dir(value: &str) -> Result<PathBuf, &'static str> {
    if value.is_empty() {
        return Err("a directory path");
    }
    let path = PathBuf::from(value);
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_dir() => Err("a directory, but this path is not a directory"),
        _ => Ok(path),
    }
}

/// `500ms`, `10s`, `2m`, or a bare number of seconds; more than zero.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => value.split_at(split),
        None => (value, "s"),
    };
    let number: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

/// A yes/no variable: 1/true/yes/on or 0/false/no/off, in any case.
fn parse_bool(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::BadValue {
            flag: name,
            value: value.to_string(),
            expected: "1/true/yes/on or 0/false/no/off",
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

    fn run(list: &[&str], env: impl Fn(&str) -> Option<String>) -> Config {
        match parse(args(list), env) {
            Ok(Command::Run(config)) => *config,
            other => panic!("{list:?} must parse to a config, got {other:?}"),
        }
    }

    #[test]
    fn an_argument_that_is_not_utf8_is_refused_by_name() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(b"/data/\xff".to_vec());
        let error = utf8_args([OsString::from("--data-dir"), bad]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "argument \"/data/\u{fffd}\" is not UTF-8"
        );
        assert_eq!(
            utf8_args([OsString::from("--nodes"), OsString::from("2")]),
            Ok(args(&["--nodes", "2"]))
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let config = run(&[], no_env);
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8085");
        assert_eq!(config.max_body_bytes, 67_108_864);
        assert!(config.clients.max_connections >= 4096);
        assert_eq!(config.clients.header_timeout, Duration::from_secs(10));
    }

    #[test]
    fn every_flag_is_read_in_both_forms() {
        let config = run(
            &[
                "--listen=127.0.0.1:0",
                "--nodes",
                "64",
                "--node-port",
                "0",
                "--max-body-bytes=10",
                "--fault-injection",
                "--data-dir",
                "/tmp/dc-config-test-not-a-file",
                "--fsync",
                "never",
                "--max-connections=10",
                "--max-connections-per-ip",
                "5",
                "--header-timeout=250ms",
                "--body-timeout",
                "2s",
                "--min-body-rate=64",
                "--idle-timeout=1m",
                "--write-timeout=3",
                "--max-body-bytes-in-flight=1000",
            ],
            no_env,
        );
        let expected = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            nodes: 64,
            node_port: 0,
            max_body_bytes: 10,
            fault_injection: true,
            data_dir: Some("/tmp/dc-config-test-not-a-file".into()),
            fsync: FsyncPolicy::Never,
            clients: ClientLimits {
                max_connections: 10,
                max_connections_per_ip: 5,
                header_timeout: Duration::from_millis(250),
                body_timeout: Duration::from_secs(2),
                min_body_rate: 64,
                idle_timeout: Duration::from_secs(60),
                write_timeout: Duration::from_secs(3),
                max_body_bytes_in_flight: 1000,
            },
            store: StoreChoice::Memory,
            partition_key: None,
            warnings: Vec::new(),
        };
        assert_eq!(config, expected);
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
            &["--header-timeout", "0s"],
            &["--idle-timeout", "5h"],
            &["--max-connections", "-3"],
            &["--data-dir", "/proc/self/status"],
        ] {
            let err = parse(args(bad), no_env).unwrap_err();
            assert!(err.to_string().contains(bad[0]), "{err}");
        }
        let not_a_dir = parse(args(&["--data-dir", "/proc/self/status"]), no_env).unwrap_err();
        assert!(
            not_a_dir.to_string().contains("not a directory"),
            "{not_a_dir}"
        );
        assert_eq!(
            parse(args(&["--nodes"]), no_env),
            Err(ConfigError::MissingValue("--nodes"))
        );
    }

    #[test]
    fn environment_is_read_and_flags_win_even_over_a_bad_variable() {
        let env = |name: &str| match name {
            "DC_NODES" => Some("abc".to_string()),
            "DC_NODE_PORT" => Some("9000".to_string()),
            "DC_FAULT_INJECTION" => Some("Yes".to_string()),
            "DC_IDLE_TIMEOUT" => Some("5s".to_string()),
            _ => None,
        };
        let config = run(&["--nodes", "2"], env);
        assert_eq!(
            (config.nodes, config.node_port, config.fault_injection),
            (2, 9000, true)
        );
        assert_eq!(config.clients.idle_timeout, Duration::from_secs(5));
        let err = parse(args(&[]), env).unwrap_err();
        assert!(err.to_string().contains("DC_NODES"), "{err}");
    }

    #[test]
    fn yes_no_variables_take_the_same_words_everywhere() {
        for (word, on) in [
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("On", true),
            ("0", false),
            ("False", false),
            ("NO", false),
            ("off", false),
        ] {
            let env = |name: &str| (name == "DC_FAULT_INJECTION").then(|| word.to_string());
            assert_eq!(run(&[], env).fault_injection, on, "{word}");
        }
        let env = |name: &str| (name == "DC_FAULT_INJECTION").then(|| "maybe".to_string());
        assert!(parse(args(&[]), env).is_err());
    }

    #[test]
    fn host_names_are_accepted_and_fsync_alone_warns() {
        let config = run(&["--listen", "localhost:8085"], no_env);
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.listen.port(), 8085);
        let config = run(&["--fsync", "never"], no_env);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(config.warnings[0].contains("--data-dir"));
    }

    #[test]
    fn the_store_is_memory_or_a_redis_cluster_that_the_build_supports() {
        assert_eq!(
            run(&["--store", "memory"], no_env).store,
            StoreChoice::Memory
        );
        let redis = parse(args(&["--store", "redis-cluster://u:p@a:1,b:2"]), no_env);
        if cfg!(feature = "scaleout") {
            let Ok(Command::Run(config)) = redis else {
                panic!("a scaleout build takes redis-cluster://");
            };
            assert_eq!(
                config.store,
                StoreChoice::RedisCluster {
                    seeds: vec!["a:1".into(), "b:2".into()],
                    username: Some("u".into()),
                    password: Some("p".into()),
                }
            );
            for flags in [
                &["--nodes", "2"][..],
                &["--data-dir", "/tmp/x"],
                &["--fault-injection"],
            ] {
                let mut list = vec!["--store", "redis-cluster://a:1"];
                list.extend_from_slice(flags);
                let err = parse(args(&list), no_env).unwrap_err();
                assert!(err.to_string().contains("does not apply"), "{err}");
            }
        } else {
            let err = redis.unwrap_err().to_string();
            assert!(err.contains("scaleout"), "{err}");
        }
        assert!(parse(args(&["--store", "redis-cluster://nope"]), no_env).is_err());
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        for bad in ["", "0", "1.5s", "s", "10h", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn help_wins() {
        assert_eq!(
            parse(args(&["--nodes", "2", "--help"]), no_env),
            Ok(Command::Help)
        );
    }
}
