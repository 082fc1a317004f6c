//! Picking the declared headers out of a header map without allocating.
#![forbid(unsafe_code)]

use http::{HeaderMap, HeaderName};

use super::bindings::routing::switchyard::policy::types::Header;
use super::limits::MAX_HEADER_ENTRIES;

/// The headers a plugin declared, borrowed from the map, on the stack.
pub(crate) struct SelectedHeaders<'a> {
    buf: [Header<'a>; MAX_HEADER_ENTRIES],
    len: usize,
}

impl<'a> SelectedHeaders<'a> {
    /// Every value of every `wanted` header in `map`, in `wanted` order, up
    /// to [`MAX_HEADER_ENTRIES`]. Values that are not UTF-8 are skipped.
    pub(crate) fn select(wanted: &'a [HeaderName], map: &'a HeaderMap) -> Self {
        const EMPTY: Header<'static> = Header {
            name: "",
            value: "",
        };
        let mut out = Self {
            buf: [EMPTY; MAX_HEADER_ENTRIES],
            len: 0,
        };
        for name in wanted {
            for value in map.get_all(name) {
                if out.len == MAX_HEADER_ENTRIES {
                    return out;
                }
                if let Ok(value) = value.to_str() {
                    out.buf[out.len] = Header {
                        name: name.as_str(),
                        value,
                    };
                    out.len += 1;
                }
            }
        }
        out
    }

    pub(crate) fn as_slice(&self) -> &[Header<'a>] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_wanted_headers_in_order_and_bounded() {
        let mut map = HeaderMap::new();
        map.insert("x-b", HeaderValue::from_static("2"));
        map.insert("x-a", HeaderValue::from_static("1"));
        map.insert("x-other", HeaderValue::from_static("no"));
        map.insert("x-bin", HeaderValue::from_bytes(b"\xff").expect("value"));
        let wanted = [
            HeaderName::from_static("x-a"),
            HeaderName::from_static("x-b"),
            HeaderName::from_static("x-bin"),
        ];
        let sel = SelectedHeaders::select(&wanted, &map);
        let got: Vec<(&str, &str)> = sel.as_slice().iter().map(|h| (h.name, h.value)).collect();
        assert_eq!(got, [("x-a", "1"), ("x-b", "2")]);

        let mut many = HeaderMap::new();
        for _ in 0..100 {
            many.append("x-a", HeaderValue::from_static("v"));
        }
        assert_eq!(
            SelectedHeaders::select(&wanted, &many).as_slice().len(),
            MAX_HEADER_ENTRIES
        );
    }
}
