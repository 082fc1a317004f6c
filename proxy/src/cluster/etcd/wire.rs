//! The JSON shapes of etcd's v3 gRPC gateway: keys and values are base64, 64-bit
//! integers are strings (numbers are accepted too), and fields at their zero value
//! are left out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Base64 for the gateway.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let text = Option::<String>::deserialize(d)?.unwrap_or_default();
    STANDARD
        .decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}

fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Option::<Int>::deserialize(d)? {
        None => Ok(0),
        Some(Int::Number(n)) => Ok(n),
        Some(Int::Text(t)) => t.parse().map_err(serde::de::Error::custom),
    }
}

/// Every answer's header: the store revision it reflects.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "int")]
    pub revision: i64,
}

/// One stored key.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "bytes")]
    pub key: Bytes,
    #[serde(default, deserialize_with = "bytes")]
    pub value: Bytes,
    #[serde(default, deserialize_with = "int")]
    pub create_revision: i64,
    #[serde(default, deserialize_with = "int")]
    pub mod_revision: i64,
    #[serde(default, deserialize_with = "int")]
    pub lease: i64,
}

/// `/v3/kv/range`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RangeResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub kvs: Vec<KeyValue>,
    #[serde(default)]
    pub more: bool,
}

/// One operation's answer inside a transaction.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResponseOp {
    pub response_range: Option<RangeResponse>,
}

/// `/v3/kv/txn`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<ResponseOp>,
}

/// `/v3/kv/put` and `/v3/kv/deleterange`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriteResponse {
    #[serde(default)]
    pub header: Header,
}

/// `/v3/lease/grant` and `/v3/lease/keepalive` (the latter wrapped in `result`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LeaseResponse {
    #[serde(rename = "ID", default, deserialize_with = "int")]
    pub id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int")]
    pub ttl: i64,
    #[serde(default)]
    pub error: String,
}

/// `/v3/auth/authenticate`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthResponse {
    #[serde(default)]
    pub token: String,
}

/// A change seen by a watch.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Event {
    /// `PUT` is the zero value, so the gateway leaves it out.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub kv: KeyValue,
}

impl Event {
    /// Whether the key was deleted (or its lease expired).
    pub fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE")
    }
}

/// One message of a watch stream.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default, deserialize_with = "int")]
    pub compact_revision: i64,
    #[serde(default)]
    pub cancel_reason: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A streamed message: `{"result": ...}` or `{"error": ...}`.
#[derive(Debug, Deserialize)]
pub struct Streamed<T> {
    pub result: Option<T>,
    pub error: Option<ErrorBody>,
}

/// An error answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error: String,
}

/// The end of the key range that holds every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key was last modified at exactly this revision (0: it does not exist).
    ModRevision(Vec<u8>, i64),
    /// The key was last modified before this revision (a missing key passes).
    ModifiedBefore(Vec<u8>, i64),
    /// The key was created at exactly this revision (0: it does not exist).
    CreateRevision(Vec<u8>, i64),
}

impl Compare {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Compare::ModRevision(key, rev) => json!({
                "key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string(),
            }),
            Compare::ModifiedBefore(key, rev) => json!({
                "key": b64(key), "target": "MOD", "result": "LESS", "mod_revision": rev.to_string(),
            }),
            Compare::CreateRevision(key, rev) => json!({
                "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": rev.to_string(),
            }),
        }
    }
}

/// An operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Writes a key, bound to a lease when one is given.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    /// Deletes a key.
    Delete(Vec<u8>),
    /// Reads a key (or, with an end, a range).
    Get(Vec<u8>, Option<Vec<u8>>),
}

impl Op {
    pub(super) fn to_json(&self) -> Value {
        match self {
            Op::Put { key, value, lease } => {
                let mut put = json!({ "key": b64(key), "value": b64(value) });
                if let Some(lease) = lease {
                    put["lease"] = json!(lease.to_string());
                }
                json!({ "request_put": put })
            }
            Op::Delete(key) => json!({ "request_delete_range": { "key": b64(key) } }),
            Op::Get(key, end) => {
                let mut range = json!({ "key": b64(key) });
                if let Some(end) = end {
                    range["range_end"] = json!(b64(end));
                }
                json!({ "request_range": range })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_gateway_spelling() {
        let text = r#"{"header":{"cluster_id":"1","revision":"42"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"5","version":"2","value":"YmFy"}],"count":"1"}"#;
        let range: RangeResponse = serde_json::from_str(text).unwrap();
        assert_eq!(range.header.revision, 42);
        assert_eq!(range.kvs[0].key, Bytes::from_static(b"foo"));
        assert_eq!(range.kvs[0].value, Bytes::from_static(b"bar"));
        assert_eq!(range.kvs[0].mod_revision, 5);
        let watch: Streamed<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"7"},"events":[{"kv":{"key":"YQ==","mod_revision":"6","value":"Yg=="}},{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"7"}}]}}"#,
        )
        .unwrap();
        let events = watch.result.unwrap().events;
        assert!(!events[0].is_delete() && events[1].is_delete());
        assert_eq!(events[1].kv.value, Bytes::new());
        let txn: TxnResponse = serde_json::from_str(r#"{"header":{"revision":3}}"#).unwrap();
        assert!(!txn.succeeded, "a failed compare leaves `succeeded` out");
    }

    #[test]
    fn prefix_ranges_end_after_the_last_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/sy/"), b"/sy0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}
