//! Parsing and validating a `POST /items` body.
//!
//! The whole batch is checked before anything is stored, so a bad item rejects
//! its batch. Tenants are borrowed from the body where they have no escapes:
//! parsing allocates one vector per batch, not one string per item.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

/// Longest tenant name accepted, in bytes of UTF-8.
pub const MAX_TENANT_BYTES: usize = 1024;

/// One valid item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<'a> {
    pub id: i64,
    pub tenant: Cow<'a, str>,
}

/// The field of an item that an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Tenant,
    Item,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Id => "field \"ID\"",
            Field::Tenant => "field \"tenant\"",
            Field::Item => "the item",
        })
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The body is not a single JSON array (bad syntax, another type, trailing data).
    NotAnArray(String),
    /// Item `index` (counting from 0) is invalid.
    Item {
        index: usize,
        field: Field,
        problem: String,
    },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::NotAnArray(why) => {
                write!(f, "body must be one JSON array of items: {why}")
            }
            BatchError::Item {
                index,
                field,
                problem,
            } => write!(f, "item {index}: {field} {problem}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Parses a batch, or says which item and field is wrong.
pub fn parse(body: &[u8]) -> Result<Vec<Item<'_>>, BatchError> {
    let item_error = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = deserializer
        .deserialize_seq(BatchVisitor {
            item_error: &item_error,
        })
        .and_then(|items| deserializer.end().map(|()| items));
    match (parsed, item_error.into_inner()) {
        (Ok(items), _) => Ok(items),
        (Err(_), Some(item_error)) => Err(item_error),
        (Err(syntax), None) => Err(BatchError::NotAnArray(syntax.to_string())),
    }
}

/// Visits the top-level array. An invalid item is recorded in `item_error`
/// (serde's own error type cannot carry the index and field) and parsing stops.
struct BatchVisitor<'e> {
    item_error: &'e RefCell<Option<BatchError>>,
}

impl<'de> Visitor<'de> for BatchVisitor<'_> {
    type Value = Vec<Item<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            let seed = ItemSeed {
                index: items.len(),
                item_error: self.item_error,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(items),
            }
        }
    }
}

struct ItemSeed<'e> {
    index: usize,
    item_error: &'e RefCell<Option<BatchError>>,
}

impl ItemSeed<'_> {
    fn fail<E: de::Error>(&self, field: Field, problem: impl Into<String>) -> E {
        *self.item_error.borrow_mut() = Some(BatchError::Item {
            index: self.index,
            field,
            problem: problem.into(),
        });
        E::custom("invalid item")
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with \"ID\" and \"tenant\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        let mut tenant = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            // Go's encoding/json matches field names case-insensitively; the
            // last of duplicate keys wins there too.
            if key.eq_ignore_ascii_case("id") {
                id = Some(map.next_value::<JsonValue<'de>>()?);
            } else if key.eq_ignore_ascii_case("tenant") {
                tenant = Some(map.next_value::<JsonValue<'de>>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        let id = match id {
            None => return Err(self.fail(Field::Id, "is missing")),
            Some(value) => value
                .into_id()
                .map_err(|problem| self.fail(Field::Id, problem))?,
        };
        let tenant = match tenant {
            None => return Err(self.fail(Field::Tenant, "is missing")),
            Some(value) => value
                .into_tenant()
                .map_err(|problem| self.fail(Field::Tenant, problem))?,
        };
        Ok(Item { id, tenant })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.fail(Field::Item, "must be a JSON object, not an array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.fail(Field::Item, "must be a JSON object, not null"))
    }
}

/// A field's value as JSON gave it, kept small and borrowed; checked only
/// once the whole object is read, since a later duplicate key replaces it.
enum JsonValue<'a> {
    Signed(i64),
    Unsigned(u64),
    Float,
    Text(Cow<'a, str>),
    Other(&'static str),
}

impl<'a> JsonValue<'a> {
    fn into_id(self) -> Result<i64, String> {
        const RANGE: &str = "must be an integer in [-9223372036854775808, 9223372036854775807]";
        match self {
            JsonValue::Signed(id) => Ok(id),
            JsonValue::Unsigned(id) => i64::try_from(id).map_err(|_| format!("{RANGE}, got {id}")),
            JsonValue::Float => Err(format!(
                "{RANGE}, not a fraction, exponent or larger number"
            )),
            JsonValue::Text(_) => Err(format!("{RANGE}, not a string")),
            JsonValue::Other(kind) => Err(format!("{RANGE}, not {kind}")),
        }
    }

    fn into_tenant(self) -> Result<Cow<'a, str>, String> {
        match self {
            JsonValue::Text(tenant) if tenant.is_empty() => Err("must not be empty".to_string()),
            JsonValue::Text(tenant) if tenant.len() > MAX_TENANT_BYTES => Err(format!(
                "is {} bytes long; at most {MAX_TENANT_BYTES} are allowed",
                tenant.len()
            )),
            JsonValue::Text(tenant) => Ok(tenant),
            JsonValue::Signed(_) | JsonValue::Unsigned(_) | JsonValue::Float => {
                Err("must be a string, not a number".to_string())
            }
            JsonValue::Other(kind) => Err(format!("must be a string, not {kind}")),
        }
    }
}

impl<'de> de::Deserialize<'de> for JsonValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonValueVisitor)
    }
}

struct JsonValueVisitor;

impl<'de> Visitor<'de> for JsonValueVisitor {
    type Value = JsonValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonValue::Signed(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonValue::Unsigned(v))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(JsonValue::Float)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonValue::Text(Cow::Owned(v)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(JsonValue::Other("a boolean"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(JsonValue::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonValue::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Vec<(i64, String)> {
        match parse(body.as_bytes()) {
            Ok(items) => items
                .into_iter()
                .map(|i| (i.id, i.tenant.into_owned()))
                .collect(),
            Err(e) => panic!("{body} must parse: {e}"),
        }
    }

    fn err(body: &str) -> String {
        match parse(body.as_bytes()) {
            Ok(items) => panic!("{body} must fail, parsed {items:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn keys_match_case_insensitively_and_extras_are_ignored() {
        let items = ok(
            r#"[{"ID":1,"tenant":"a"},{"id":2,"Tenant":"b","x":[1,{"y":2}]},{"Id":-3,"TENANT":"c"}]"#,
        );
        assert_eq!(
            items,
            vec![(1, "a".into()), (2, "b".into()), (-3, "c".into())]
        );
        assert_eq!(ok("[]"), vec![]);
        assert_eq!(ok(" [ ] \n"), vec![]);
    }

    #[test]
    fn the_i64_range_is_exact() {
        let items = ok(
            r#"[{"ID":9223372036854775807,"tenant":"a"},{"ID":-9223372036854775808,"tenant":"a"}]"#,
        );
        assert_eq!(items[0].0, i64::MAX);
        assert_eq!(items[1].0, i64::MIN);
        assert!(
            err(r#"[{"ID":9223372036854775808,"tenant":"a"}]"#).starts_with("item 0: field \"ID\"")
        );
        assert!(
            err(r#"[{"ID":-9223372036854775809,"tenant":"a"}]"#)
                .starts_with("item 0: field \"ID\"")
        );
    }

    #[test]
    fn ids_must_be_json_integers() {
        for bad in ["1.5", "1e3", "\"1\"", "null", "true", "[1]", "{}"] {
            let message = err(&format!(
                r#"[{{"ID":1,"tenant":"a"}},{{"ID":{bad},"tenant":"a"}}]"#
            ));
            assert!(
                message.starts_with("item 1: field \"ID\" must be an integer"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn tenants_must_be_short_non_empty_strings() {
        assert!(
            err(r#"[{"ID":1,"tenant":""}]"#).contains("item 0: field \"tenant\" must not be empty")
        );
        assert!(
            err(r#"[{"ID":1,"tenant":7}]"#).contains("item 0: field \"tenant\" must be a string")
        );
        assert!(err(r#"[{"ID":1,"tenant":null}]"#).contains("field \"tenant\""));
        let longest = "x".repeat(MAX_TENANT_BYTES);
        assert_eq!(
            ok(&format!(r#"[{{"ID":1,"tenant":"{longest}"}}]"#))[0].1,
            longest
        );
        let message = err(&format!(r#"[{{"ID":1,"tenant":"{longest}y"}}]"#));
        assert!(message.contains("1025 bytes"), "{message}");
    }

    #[test]
    fn missing_fields_are_named() {
        assert_eq!(
            err(r#"[{"tenant":"a"}]"#),
            "item 0: field \"ID\" is missing"
        );
        assert_eq!(
            err(r#"[{"ID":1},{"ID":2}]"#),
            "item 0: field \"tenant\" is missing"
        );
        assert!(
            err(r#"[{"ID":1,"tenant":"a"},5]"#)
                .starts_with("item 1: the item must be a JSON object")
        );
    }

    #[test]
    fn escaped_and_non_ascii_tenants_are_decoded() {
        assert_eq!(ok(r#"[{"ID":1,"tenant":"a\"b\u00e9"}]"#)[0].1, "a\"bé");
        assert_eq!(ok(r#"[{"ID":1,"tenant":"日本"}]"#)[0].1, "日本");
    }

    #[test]
    fn later_duplicate_keys_win() {
        assert_eq!(
            ok(r#"[{"ID":1,"id":2,"tenant":"a","Tenant":"b"}]"#),
            vec![(2, "b".into())]
        );
    }

    /// A 1000-item body shaped like real traffic: mixed key case, a few
    /// negative IDs, tenants with and without escapes.
    fn thousand_items() -> String {
        let items: Vec<String> = (0..1000_i64)
            .map(|i| {
                let id = if i % 7 == 0 {
                    -i * 1_000_003
                } else {
                    i * 9_876_543
                };
                let (id_key, tenant_key) = if i % 2 == 0 {
                    ("ID", "tenant")
                } else {
                    ("id", "Tenant")
                };
                let tenant = if i % 50 == 0 {
                    format!("t\\u00e9{}", i % 13)
                } else {
                    format!("tenant-{}", i % 13)
                };
                format!(r#"{{"{id_key}":{id},"{tenant_key}":"{tenant}"}}"#)
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// Not a pass/fail test: the time of a 1000-item parse, to compare
    /// changes to the parser. Run it in release:
    /// `cargo test --release --lib batch::tests::parse_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn parse_timing() {
        let body = thousand_items();
        assert_eq!(parse(body.as_bytes()).map(|items| items.len()), Ok(1000));
        let mut best = std::time::Duration::MAX;
        for _ in 0..20 {
            let start = std::time::Instant::now();
            for _ in 0..500 {
                std::hint::black_box(parse(std::hint::black_box(body.as_bytes())).ok());
            }
            best = best.min(start.elapsed() / 500);
        }
        println!(
            "1000-item parse ({} bytes): best of 20 runs: {best:?}",
            body.len()
        );
    }

    #[test]
    fn anything_but_one_array_is_refused() {
        for bad in [
            "",
            "{}",
            "1",
            "\"x\"",
            "[",
            "[{\"ID\":1,\"tenant\":\"a\"}",
            "[] []",
            "[]x",
            "nul",
        ] {
            let message = err(bad);
            assert!(
                message.starts_with("body must be one JSON array"),
                "{bad:?}: {message}"
            );
        }
    }
}
