//! The server-side functions, as one Lua library, and the commands that load
//! and call them.
//!
//! Functions, not EVALSHA scripts: `FUNCTION LOAD` puts the library in the
//! dataset, so it replicates to replicas and survives a failover, while the
//! script cache is per node and empties on restart.

use super::partition::{COUNTER_KEY, PartitionKeys};
use redis::{Cmd, RedisError};

/// The library name in [`LIBRARY`]'s shebang line.
pub const LIBRARY_NAME: &str = "dcounter";

/// Applies items to one partition: `FCALL dc_apply_v1 3 ids cnt max v id tenant ...`.
/// The `_v1` is the call's signature: a change of arguments gets a new name,
/// so instances of two releases can share the cluster during an upgrade.
pub const APPLY: &str = "dc_apply_v1";

/// Raises the version counter to at least a floor: `FCALL dc_lift_v1 1 counter floor`.
pub const LIFT: &str = "dc_lift_v1";

/// The Lua library. Versions and IDs travel as decimal strings: Lua numbers
/// are doubles, so an i64 ID would lose digits; versions are compared as
/// numbers, which is exact below 2^53, the limit the library enforces.
pub const LIBRARY: &str = r#"#!lua name=dcounter

-- 2^53: above it a double no longer holds every integer, so versions could tie.
local VERSION_LIMIT = 9007199254740992

local function is_version(text)
  return string.match(text, '^[1-9]%d*$') ~= nil and #text <= 16
    and tonumber(text) < VERSION_LIMIT
end

-- Checks every argument before anything is written: Redis does not roll a
-- function back, so a bad item must refuse the call before the first write.
local function check_items(args)
  if #args % 3 ~= 0 then
    return 'arguments must be (version, ID, tenant) triples, got ' .. #args
  end
  for i = 1, #args, 3 do
    if not is_version(args[i]) then
      return 'version ' .. args[i] .. ' of ID ' .. args[i + 1] .. ' is not an integer in [1, 2^53)'
    end
    if args[i + 2] == '' then
      return 'empty tenant for ID ' .. args[i + 1]
    end
  end
  return nil
end

-- Moves one ID's count from its old tenant (nil: new ID) to the new one; a
-- tenant's field goes when it reaches 0, so memory follows live data.
local function recount(cnt, old_tenant, tenant)
  if old_tenant == tenant then
    return
  end
  if old_tenant ~= nil and redis.call('HINCRBY', cnt, old_tenant, -1) <= 0 then
    redis.call('HDEL', cnt, old_tenant)
  end
  redis.call('HINCRBY', cnt, tenant, 1)
end

-- KEYS: ids, cnt, max of one partition. ARGV: version, ID, tenant, repeated,
-- in batch order. An item whose stored version is >= its own is skipped, so a
-- retry with the same versions changes nothing. Returns the items applied.
local function apply(keys, args)
  local problem = check_items(args)
  if problem then
    return redis.error_reply('ERR dcounter: ' .. problem)
  end
  local ids, cnt, max_key = keys[1], keys[2], keys[3]
  local top = redis.call('GET', max_key) or '0'
  local applied = 0
  for i = 1, #args, 3 do
    local version, id, tenant = args[i], args[i + 1], args[i + 2]
    local stored = redis.call('HGET', ids, id)
    local old_version, old_tenant = 0, nil
    if stored then
      local space = string.find(stored, ' ', 1, true)
      old_version = tonumber(string.sub(stored, 1, space - 1))
      old_tenant = string.sub(stored, space + 1)
    end
    if tonumber(version) > old_version then
      redis.call('HSET', ids, id, version .. ' ' .. tenant)
      recount(cnt, old_tenant, tenant)
      applied = applied + 1
    end
    if tonumber(version) > tonumber(top) then
      top = version
    end
  end
  -- Written even when nothing changed: the write is what makes this call
  -- replicate, which moves the connection's replication offset past the
  -- items, so the WAIT that follows also covers an earlier attempt of the
  -- same batch (made on another connection) that this call found applied.
  redis.call('SET', max_key, top)
  return applied
end

-- KEYS: the version counter. ARGV: floor. Raises the counter to the floor if
-- it is below (after a restore, partitions may hold versions above it);
-- never lowers it. Returns the counter's value.
local function lift(keys, args)
  if not is_version(args[1]) then
    return redis.error_reply('ERR dcounter: floor ' .. args[1] .. ' is not an integer in [1, 2^53)')
  end
  local current = redis.call('GET', keys[1]) or '0'
  if tonumber(args[1]) > tonumber(current) then
    redis.call('SET', keys[1], args[1])
    return tonumber(args[1])
  end
  return tonumber(current)
end

redis.register_function('dc_apply_v1', apply)
redis.register_function('dc_lift_v1', lift)
"#;

/// `FUNCTION LOAD REPLACE`: loads or updates the library on one master.
pub fn load() -> Cmd {
    let mut cmd = redis::cmd("FUNCTION");
    cmd.arg("LOAD").arg("REPLACE").arg(LIBRARY);
    cmd
}

/// One call of [`APPLY`]: `items` are (version, ID, tenant) in batch order.
pub fn apply(keys: &PartitionKeys, items: &[(u64, i64, &str)]) -> Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(APPLY).arg(3).arg(&keys.ids).arg(&keys.cnt);
    cmd.arg(&keys.max);
    for &(version, id, tenant) in items {
        // IDs as decimal text: the hash field and the Lua string.
        cmd.arg(version).arg(id.to_string()).arg(tenant);
    }
    cmd
}

/// One call of [`LIFT`].
pub fn lift(floor: u64) -> Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(LIFT).arg(1).arg(COUNTER_KEY).arg(floor);
    cmd
}

/// True when a node does not know the library (a master added after the
/// instances connected): loading it again is the fix.
pub fn is_missing(error: &RedisError) -> bool {
    error.to_string().contains("Function not found")
}
