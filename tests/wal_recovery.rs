//! Recovery verdicts through the real binary: client bytes that look like
//! records, fake record headers, versions that were never handed out, and
//! data dirs of the previous format.

mod common;

use common::{Server, TempDir, items};
use distributed_counter::store::Entry;
use distributed_counter::tenants::TenantId;
use distributed_counter::version::Version;
use distributed_counter::wal::{crc, legacy, record};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn durable(dir: &TempDir) -> Server {
    Server::start(&["--data-dir", dir.arg()])
}

/// One item in `tenant`, as a log payload.
fn payload(id: i64, version: u64, tenant: &str) -> Vec<u8> {
    let entry = Entry {
        id,
        version: Version::new(version),
        tenant: TenantId::new(0),
    };
    let mut out = Vec::new();
    record::batch_payload(&mut out, &[entry], |_| Arc::from(tenant));
    out
}

/// A format-1 record: magic, length, CRC-32, payload.
fn legacy_record(payload: &[u8]) -> Vec<u8> {
    let mut out = legacy::MAGIC.to_le_bytes().to_vec();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc::crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// A format-2 record under `seed`.
fn stuffed_record(seed: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    record::Encoder::new(seed).raw(&mut out, payload);
    out
}

/// The first record `make(id)` that a client can send as a tenant name.
fn as_tenant(make: impl Fn(i64) -> Vec<u8>) -> String {
    (1..100_000)
        .find_map(|id| String::from_utf8(make(id)).ok())
        .expect("one in about 16 has a checksum of valid UTF-8")
}

/// The closest a tenant name comes to holding a format-2 record under
/// `seed`. A stuffed record always holds 0xFF (inverted zeros of its
/// counts), which UTF-8 never holds, so a name carries it with those bytes
/// replaced; then the record's content (payload and seeded checksum, what
/// a reader accepts once unstuffed) and a record end.
fn closest_to_a_record(seed: u64) -> String {
    let stuffed = stuffed_record(seed, &payload(666, 7, "evil"));
    assert!(String::from_utf8(stuffed.clone()).is_err());
    let content = as_tenant(|id| {
        let mut content = payload(id, 7, "evil");
        let checksum = crc::seeded(seed, &content);
        content.extend_from_slice(&checksum.to_le_bytes());
        content
    });
    format!("{}{content}\0", String::from_utf8_lossy(&stuffed))
}

/// The seed in the header of a format-2 segment.
fn seed_of(segment: &Path) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    u64::from_le_bytes(bytes[8..16].try_into().unwrap())
}

/// Cuts `bytes` off the end of `path`: the last record was being written.
fn tear(path: &Path, bytes: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
}

/// POSTs ten items in "t", then one batch whose first tenant is `evil`,
/// kills the server and tears that batch's record after the tenant name.
fn torn_after(dir: &TempDir, evil: impl FnOnce(&Path) -> String) -> Server {
    let server = durable(dir);
    for id in 0..10 {
        assert_eq!(server.post_items(&items([(id, "t")])).status, 200);
    }
    let name = evil(&dir.newest_segment());
    let batch = json!([{"ID": 100, "tenant": name}, {"ID": 101, "tenant": "after"}]);
    assert_eq!(server.post_items(&batch).status, 200);
    server.kill9();
    // Two entries (40 bytes), the checksum and the record end follow the name.
    tear(&dir.newest_segment(), 10);
    durable(dir)
}

fn assert_kept_everything_before_the_tail(server: &Server) {
    assert_eq!(server.count("t"), 10);
    assert_eq!(server.count("after"), 0);
    let log = server.log();
    assert!(log.contains("dropped a torn record"), "{log}");
    assert_eq!(server.post_items(&items([(10, "t")])).status, 200);
    assert_eq!(server.count("t"), 11);
}

#[test]
fn a_tenant_holding_a_valid_old_format_record_does_not_make_a_torn_tail_damage() {
    let dir = TempDir::new("embed-v1");
    let server = torn_after(&dir, |_| {
        as_tenant(|id| legacy_record(&payload(id, 7, "evil")))
    });
    assert_kept_everything_before_the_tail(&server);
}

#[test]
fn a_tenant_holding_a_new_format_record_as_far_as_a_name_can_does_not_either() {
    // Even under the segment's own seed, which no client can read.
    let dir = TempDir::new("embed-v2");
    let server = torn_after(&dir, |segment| closest_to_a_record(seed_of(segment)));
    assert_kept_everything_before_the_tail(&server);
}

/// Distinct 1000-byte tenants: `fill` repeated after a number.
fn tenants_of(fill: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let mut name = format!("{i:06}");
            while name.len() + fill.len() <= 1000 {
                name.push_str(fill);
            }
            name
        })
        .collect()
}

/// Format-1 record headers that claim payloads of 1 GiB, 1 MiB and 64 KiB:
/// all but the first fit in the file, so checksumming each claim costs
/// gigabytes. Every byte is valid UTF-8.
fn fake_headers() -> String {
    [1u32 << 30, 1 << 20, 1 << 16]
        .iter()
        .map(|claim| {
            let length = String::from_utf8(claim.to_le_bytes().to_vec()).unwrap();
            format!("DCWR{length}crc!")
        })
        .collect()
}

/// Fills a dir with one big batch of 1000-byte tenants made of `fill`,
/// kills the server and tears that batch; the restart's time and log.
fn restart_after_big_torn_batch(fill: &str) -> (Duration, String, u64) {
    let dir = TempDir::new("big-torn");
    let server = durable(&dir);
    let tenants = tenants_of(fill, 1500);
    let batch = items(
        tenants
            .iter()
            .enumerate()
            .map(|(id, t)| (id as i64, t.as_str())),
    );
    for _ in 0..2 {
        let reply = server.post_items(&batch);
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    server.kill9();
    tear(&dir.newest_segment(), 10);
    let bytes = dir.bytes();
    let started = Instant::now();
    let server = durable(&dir);
    let took = started.elapsed();
    assert_eq!(
        server.count(&percent_encoded(&tenants[0])),
        1,
        "the first batch is kept"
    );
    (took, server.log(), bytes)
}

/// Every byte as a %-escape, for a path segment.
fn percent_encoded(tenant: &str) -> String {
    tenant.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The bytes recovery checksummed, from its log line.
fn checked_bytes(log: &str) -> u64 {
    log.lines()
        .find_map(|line| {
            line.split(" bytes checked")
                .next()?
                .rsplit('(')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no recovery line with the bytes checked in\n{log}"))
}

#[test]
fn fake_record_headers_in_tenants_do_not_slow_recovery() {
    let (plain, plain_log, plain_bytes) = restart_after_big_torn_batch("abcdefghijkl");
    let (faked, faked_log, faked_bytes) = restart_after_big_torn_batch(&fake_headers());
    // The work done: every byte checked at most once.
    assert!(checked_bytes(&faked_log) <= faked_bytes, "{faked_log}");
    assert!(checked_bytes(&plain_log) <= plain_bytes, "{plain_log}");
    // And the time, against a restart of the same size (generously: the
    // format-1 scan took hours here).
    assert!(
        faked < plain * 5 + Duration::from_secs(2),
        "{faked:?} with fake headers, {plain:?} without"
    );
}

fn item(version: u64) -> Vec<u8> {
    payload(1, version, "x")
}

/// A data dir holding one file; its path.
fn dir_with(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.0.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_data_dir_holding_version_2_64_minus_1_is_refused() {
    let seed = 42;
    let end = {
        let mut end = vec![2u8];
        end.extend_from_slice(&1u64.to_le_bytes());
        end
    };
    let mut snapshot_v2 = record::snapshot_header(seed, 0).to_vec();
    snapshot_v2.extend_from_slice(&stuffed_record(seed, &item(u64::MAX)));
    snapshot_v2.extend_from_slice(&stuffed_record(seed, &end));
    let mut snapshot_v1 = legacy::SNAPSHOT_MAGIC.to_vec();
    snapshot_v1.extend_from_slice(&0u64.to_le_bytes());
    snapshot_v1.extend_from_slice(&legacy_record(&item(u64::MAX)));
    snapshot_v1.extend_from_slice(&legacy_record(&end));
    let mut segment_v2 = record::segment_header(seed).to_vec();
    segment_v2.extend_from_slice(&stuffed_record(seed, &item(3)));
    let bad_at = segment_v2.len();
    segment_v2.extend_from_slice(&stuffed_record(seed, &item(u64::MAX)));
    let segment_v1 = legacy_record(&item(u64::MAX));
    let cases = [
        ("snapshot", snapshot_v2, record::SNAPSHOT_HEADER_BYTES),
        ("snapshot", snapshot_v1, 16),
        ("wal-0000000000000000.log", segment_v2, bad_at),
        ("wal-0000000000000000.log", segment_v1, 0),
    ];
    for (name, bytes, offset) in cases {
        let dir = TempDir::new("version");
        let path = dir_with(&dir, name, &bytes);
        let stderr = dir.start_must_fail();
        let expected = format!(
            "{} is damaged at offset {offset}: a version is at or above 2^63",
            path.display()
        );
        assert!(stderr.contains(&expected), "{stderr}");
    }
}

#[test]
fn an_old_format_data_dir_is_recovered_and_new_files_use_format_2() {
    let dir = TempDir::new("upgrade");
    let mut snapshot = legacy::SNAPSHOT_MAGIC.to_vec();
    snapshot.extend_from_slice(&1u64.to_le_bytes());
    snapshot.extend_from_slice(&legacy_record(&payload(1, 1, "old")));
    let mut end = vec![2u8];
    end.extend_from_slice(&1u64.to_le_bytes());
    snapshot.extend_from_slice(&legacy_record(&end));
    dir_with(&dir, "snapshot", &snapshot);
    let mut segment = legacy_record(&payload(2, 2, "old"));
    segment.extend_from_slice(&legacy_record(&payload(1, 3, "moved")));
    segment.extend_from_slice(&legacy::MAGIC.to_le_bytes()); // a torn record
    dir_with(&dir, "wal-0000000000000001.log", &segment);

    let server = durable(&dir);
    assert_eq!((server.count("old"), server.count("moved")), (1, 1));
    let newest = dir.newest_segment();
    assert!(newest.ends_with("wal-0000000000000002.log"));
    assert!(
        std::fs::read(&newest)
            .unwrap()
            .starts_with(record::SEGMENT_MAGIC)
    );
    // New writes are ordered after the recovered versions.
    assert_eq!(server.post_items(&items([(2, "new")])).status, 200);
    server.kill9();
    let server = durable(&dir);
    let counts = (
        server.count("old"),
        server.count("moved"),
        server.count("new"),
    );
    assert_eq!(counts, (0, 1, 1));
}
