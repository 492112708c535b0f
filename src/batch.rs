//! Parsing and validating a `POST /items` body.
//!
//! The whole batch is checked before anything is stored, so a bad item rejects
//! its batch. Tenants are borrowed from the body where they have no escapes:
//! parsing allocates one vector per batch, not one string per item.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
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
        .deserialize_any(BatchVisitor {
            item_error: &item_error,
        })
        .and_then(|items| deserializer.end().map(|()| items));
    match (parsed, item_error.into_inner()) {
        (Ok(items), _) => Ok(items),
        (Err(_), Some(item_error)) => Err(item_error),
        (Err(syntax), None) => {
            Err(bare_number_item(body)
                .unwrap_or_else(|| BatchError::NotAnArray(syntax.to_string())))
        }
    }
}

/// On the error path only: serde_json fails on an item that is a number
/// beyond f64 (`[1e400]`) before our visitor sees it. If the body is an
/// array of well-formed JSON values, its first bare number is that item.
fn bare_number_item(body: &[u8]) -> Option<BatchError> {
    let index = serde_json::Deserializer::from_slice(body)
        .deserialize_seq(FirstBareNumber)
        .ok()??;
    Some(BatchError::Item {
        index,
        field: Field::Item,
        problem: "must be a JSON object, not a number".to_string(),
    })
}

/// The index of the first element of an array that is a number, reading
/// each as raw text (which never fails on its size) and keeping none.
struct FirstBareNumber;

impl<'de> Visitor<'de> for FirstBareNumber {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array")
    }

    /// Reads to the end: serde_json refuses an array left half-read.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        let mut index = 0;
        while let Some(value) = seq.next_element::<&RawValue>()? {
            let number = matches!(value.get().as_bytes().first(), Some(b'-' | b'0'..=b'9'));
            if number && first.is_none() {
                first = Some(index);
            }
            index += 1;
        }
        Ok(first)
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

    // Anything but an array is named by its kind only: serde_json's own
    // "invalid type" message would quote a string body whole, however long.

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom("expected an array, found an object"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom("expected an array, found null"))
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
        // The values are kept as their raw JSON text and checked only once
        // the whole object is read, since a later duplicate key replaces them
        // (Go's encoding/json keeps the last too). Raw text, because serde's
        // own number parsing cannot be trusted with them: it turns `-0` into
        // a float and fails on `1e400` before we could name the item.
        let mut id: Option<&'de RawValue> = None;
        let mut tenant: Option<&'de RawValue> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => id = Some(map.next_value()?),
                Key::Tenant => tenant = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let id = match id {
            None => return Err(self.fail(Field::Id, "is missing")),
            Some(raw) => parse_id(raw.get()).map_err(|problem| self.fail(Field::Id, problem))?,
        };
        let tenant = match tenant {
            None => return Err(self.fail(Field::Tenant, "is missing")),
            Some(raw) => {
                parse_tenant(raw.get()).map_err(|problem| self.fail(Field::Tenant, problem))?
            }
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

/// What an item's key names. Go's encoding/json matches field names
/// case-insensitively; keys are compared as they come, never copied.
enum Key {
    Id,
    Tenant,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    /// Borrowed or unescaped into serde_json's scratch buffer: no allocation.
    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(if key.eq_ignore_ascii_case("id") {
            Key::Id
        } else if key.eq_ignore_ascii_case("tenant") {
            Key::Tenant
        } else {
            Key::Other
        })
    }
}

const ID_RANGE: &str = "must be an integer in [-9223372036854775808, 9223372036854775807]";

/// Numbers longer than this are described by their length, not echoed.
const MAX_ECHOED_NUMBER: usize = 40;

/// Reads an ID from its raw JSON text (one valid JSON value, no surrounding
/// whitespace: serde_json checked the syntax). Only the JSON integer grammar
/// `-?(0|[1-9][0-9]*)` within the i64 range is accepted; `-0` is 0.
fn parse_id(text: &str) -> Result<i64, String> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'0'..=b'9', _)) => (false, bytes),
        _ => return Err(format!("{ID_RANGE}, not {}", json_kind(text))),
    };
    let integer = match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !integer {
        return Err(format!(
            "{ID_RANGE}, not a fraction or exponent (got {})",
            echo(text, "character number")
        ));
    }
    // At most 19 digits fit; 2^63 itself is the magnitude of the minimum.
    let magnitude = digits.iter().try_fold(0u64, |value, &digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    });
    match (negative, magnitude) {
        (false, Some(magnitude)) if magnitude <= i64::MAX as u64 => Ok(magnitude as i64),
        (true, Some(magnitude)) if magnitude <= i64::MIN.unsigned_abs() => {
            // 2^63 wraps to i64::MIN, which is what `-2^63` is.
            Ok((magnitude as i64).wrapping_neg())
        }
        (false, _) => Err(format!(
            "{ID_RANGE}, got {}, which is above the maximum {}",
            echo(text, "digit number"),
            i64::MAX
        )),
        (true, _) => Err(format!(
            "{ID_RANGE}, got {}, which is below the minimum {}",
            echo(text, "digit negative number"),
            i64::MIN
        )),
    }
}

/// `text` itself when short, else `a N-<what>` (N counts its digits or characters).
fn echo(text: &str, what: &str) -> String {
    if text.len() <= MAX_ECHOED_NUMBER {
        text.to_string()
    } else if what.starts_with("digit") {
        format!("a {}-{what}", text.trim_start_matches('-').len())
    } else {
        format!("a {}-{what}", text.len())
    }
}

/// Reads a tenant from its raw JSON text: borrowed from the body unless it
/// has escapes.
fn parse_tenant(text: &str) -> Result<Cow<'_, str>, String> {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return Err(format!("must be a string, not {}", json_kind(text)));
    };
    let tenant = if inner.contains('\\') {
        // serde_json checked the escapes' syntax, not that `\uXXXX` makes
        // valid Unicode: a lone surrogate fails here.
        Cow::Owned(serde_json::from_str::<String>(text).map_err(|_| {
            "has a \\u escape that is not valid Unicode (a lone surrogate)".to_string()
        })?)
    } else {
        Cow::Borrowed(inner)
    };
    if tenant.is_empty() {
        Err("must not be empty".to_string())
    } else if tenant.len() > MAX_TENANT_BYTES {
        Err(format!(
            "is {} bytes long; at most {MAX_TENANT_BYTES} are allowed",
            tenant.len()
        ))
    } else {
        Ok(tenant)
    }
}

/// What kind of JSON value `text` is, for messages: "a number", "null"...
fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
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

    fn id_error(id: &str) -> String {
        err(&format!(
            r#"[{{"ID":1,"tenant":"a"}},{{"ID":2,"tenant":"a"}},{{"ID":3,"tenant":"a"}},{{"tenant":"a","ID":{id}}}]"#
        ))
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        assert_eq!(ok(r#"[{"ID":-0,"tenant":"a"}]"#), vec![(0, "a".into())]);
        assert_eq!(ok(r#"[{"ID":0,"tenant":"a"}]"#), vec![(0, "a".into())]);
    }

    #[test]
    fn out_of_range_ids_say_which_bound() {
        assert_eq!(
            id_error("9223372036854775808"),
            "item 3: field \"ID\" must be an integer in [-9223372036854775808, 9223372036854775807], \
             got 9223372036854775808, which is above the maximum 9223372036854775807"
        );
        assert_eq!(
            id_error("-9223372036854775809"),
            "item 3: field \"ID\" must be an integer in [-9223372036854775808, 9223372036854775807], \
             got -9223372036854775809, which is below the minimum -9223372036854775808"
        );
        // u64 overflows too: 2^64 and beyond.
        assert!(
            id_error("18446744073709551616").ends_with("above the maximum 9223372036854775807")
        );
        assert!(
            id_error("-18446744073709551616").ends_with("below the minimum -9223372036854775808")
        );
    }

    #[test]
    fn huge_numbers_keep_the_item_index_and_field() {
        let digits = format!("1{}", "0".repeat(399));
        assert_eq!(
            id_error(&digits),
            "item 3: field \"ID\" must be an integer in [-9223372036854775808, 9223372036854775807], \
             got a 400-digit number, which is above the maximum 9223372036854775807"
        );
        assert!(id_error(&format!("-{digits}")).ends_with(
            "got a 400-digit negative number, which is below the minimum -9223372036854775808"
        ));
        assert_eq!(
            id_error("1e400"),
            "item 3: field \"ID\" must be an integer in [-9223372036854775808, 9223372036854775807], \
             not a fraction or exponent (got 1e400)"
        );
        let message = id_error(&format!("{digits}.5"));
        assert!(message.starts_with("item 3: field \"ID\""), "{message}");
        assert!(
            message.ends_with("not a fraction or exponent (got a 402-character number)"),
            "{message}"
        );
        for tiny in ["-1e400", "1e-400", "0.0", "-0.0", "1E3", "1.5e+2"] {
            let message = id_error(tiny);
            assert!(
                message.starts_with("item 3: field \"ID\" must be an integer")
                    && message.ends_with(&format!("not a fraction or exponent (got {tiny})")),
                "{tiny}: {message}"
            );
        }
    }

    #[test]
    fn id_messages_name_the_kind_of_value() {
        for (value, kind) in [
            ("\"1\"", "a string"),
            ("true", "a boolean"),
            ("false", "a boolean"),
            ("null", "null"),
            ("[1e400]", "an array"),
            ("{\"a\":1}", "an object"),
        ] {
            assert_eq!(
                id_error(value),
                format!(
                    "item 3: field \"ID\" must be an integer in [-9223372036854775808, 9223372036854775807], not {kind}"
                )
            );
        }
    }

    #[test]
    fn strict_integer_grammar_matches_json() {
        for (text, id) in [
            ("0", Ok(0)),
            ("-0", Ok(0)),
            ("7", Ok(7)),
            ("-7", Ok(-7)),
            ("9223372036854775807", Ok(i64::MAX)),
            ("-9223372036854775808", Ok(i64::MIN)),
        ] {
            assert_eq!(parse_id(text), id, "{text}");
        }
        // serde_json never hands these over, but the grammar refuses them too.
        for text in ["", "-", "01", "-01", "+1", "1a", " 1"] {
            assert!(parse_id(text).is_err(), "{text}");
        }
    }

    #[test]
    fn tenants_other_than_strings_keep_the_index() {
        assert_eq!(
            err(r#"[{"ID":1,"tenant":"a"},{"ID":2,"tenant":1e400}]"#),
            "item 1: field \"tenant\" must be a string, not a number"
        );
        assert_eq!(
            err(r#"[{"ID":1,"tenant":"a"},{"ID":2,"tenant":{"x":1}}]"#),
            "item 1: field \"tenant\" must be a string, not an object"
        );
        assert_eq!(
            err(r#"[{"ID":1,"tenant":"\ud800"}]"#),
            "item 0: field \"tenant\" has a \\u escape that is not valid Unicode (a lone surrogate)"
        );
        // Plain tenants are borrowed from the body, escaped ones decoded.
        let body = br#"[{"ID":1,"tenant":"plain"},{"ID":2,"tenant":"\u0041"}]"#;
        let items = parse(body).map_err(|e| e.to_string());
        assert!(
            matches!(items.as_deref(), Ok([
                Item { tenant: Cow::Borrowed("plain"), .. },
                Item { tenant: Cow::Owned(a), .. },
            ]) if a == "A"),
            "{items:?}"
        );
    }

    #[test]
    fn huge_numbers_elsewhere_do_not_lose_the_index() {
        // Ignored keys may hold any JSON value.
        assert_eq!(
            ok(r#"[{"ID":1,"tenant":"a","x":1e400,"y":[-1e999]}]"#),
            vec![(1, "a".into())]
        );
        assert_eq!(
            err(r#"[{"ID":1,"tenant":"a"},1e400]"#),
            "item 1: the item must be a JSON object, not a number"
        );
        let digits = "9".repeat(400);
        assert_eq!(
            err(&format!(
                r#"[{{"ID":1,"tenant":"a"}},{{"ID":2,"tenant":"a"}},-{digits}]"#
            )),
            "item 2: the item must be a JSON object, not a number"
        );
        assert_eq!(
            err(r#"[{"ID":1,"tenant":"a"},1e400,{"ID":2,"tenant":"b"},2e400]"#),
            "item 1: the item must be a JSON object, not a number"
        );
        // A bare huge number is not an array at all.
        assert!(err("1e400").starts_with("body must be one JSON array"));
        assert!(err("[1e400").starts_with("body must be one JSON array"));
    }

    #[test]
    fn other_bodies_are_named_by_kind_without_quoting_them() {
        for (body, kind) in [
            ("{\"ID\":1}", "an object"),
            ("true", "a boolean"),
            ("-5", "a number"),
            ("5", "a number"),
            ("1.5", "a number"),
            ("null", "null"),
        ] {
            let message = err(body);
            let expected = format!(
                "body must be one JSON array of items: expected an array, found {kind} at line 1 column "
            );
            assert!(message.starts_with(&expected), "{body}: {message}");
        }
        let huge = format!("\"{}\"", "x".repeat(1 << 20));
        let message = err(&huge);
        assert!(
            message.starts_with(
                "body must be one JSON array of items: expected an array, found a string"
            ),
            "{}",
            &message[..200]
        );
        assert!(
            message.len() < 200,
            "the message quotes the body: {} bytes",
            message.len()
        );
    }

    #[test]
    fn escaped_keys_are_matched_after_decoding() {
        assert_eq!(
            ok(r#"[{"\u0049D":5,"tena\u006et":"k"}]"#),
            vec![(5, "k".into())]
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
