//! The one request-path normalisation (RFC 3986 §6.2.2) that routing, routing
//! plugins, the access log and (by default) the backend all see, so `/%61dmin`,
//! `//admin` and `/x/../admin` are the same path everywhere.
//!
//! In order: percent-encoded unreserved characters are decoded (`%61` → `a`, `%2E`
//! → `.`), other percent-encodings are kept with upper-case hex (`%2f` → `%2F`; an
//! encoded slash stays an encoded slash, never a separator), dot segments are
//! removed, and runs of slashes are merged into one. A `%` not followed by two hex
//! digits is an error: the edge answers 400 rather than guess.

use std::borrow::Cow;

/// Why a path could not be normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the request path")]
    BadPercent,
    /// Neither `/...` nor the asterisk form `*`.
    #[error("the request path must start with `/`")]
    NotAbsolute,
}

/// The normalised form of `path` (the path component only, no query). Borrows when
/// the path is already normal, which is the common case.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if path == "*" {
        return Ok(Cow::Borrowed(path));
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes())?;
    Ok(Cow::Owned(clean_segments(&decoded)))
}

/// True when nothing would change: no `%`, no empty segment (other than a
/// trailing slash), no `.` or `..` segment.
fn is_normal(bytes: &[u8]) -> bool {
    let mut segment_start = 1;
    for i in 1..=bytes.len() {
        if i < bytes.len() && bytes[i] != b'/' {
            if bytes[i] == b'%' {
                return false;
            }
            continue;
        }
        let segment = &bytes[segment_start..i];
        let trailing = i == bytes.len();
        if (segment.is_empty() && !trailing && i > 0) || segment == b"." || segment == b".." {
            return false;
        }
        segment_start = i + 1;
    }
    // A lone "/" has an empty first segment that is also trailing: normal.
    true
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` of unreserved characters and upper-cases the hex of the others.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadPercent);
        };
        let value = hi << 4 | lo;
        if is_unreserved(value) {
            out.push(value);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
        }
        i += 3;
    }
    // Only ASCII was replaced by ASCII, so UTF-8 input stays UTF-8.
    String::from_utf8(out).map_err(|_| PathError::BadPercent)
}

/// Removes dot segments (RFC 3986 §5.2.4) and merges repeated slashes; keeps a
/// trailing slash (and the one implied by a final `.` or `..`).
fn clean_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                kept.pop();
                trailing_slash = true;
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn equivalent_spellings_of_admin_normalise_alike() {
        for p in [
            "/admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "//admin",
            "///admin",
            "/x/../admin",
            "/./admin",
            "/x/y/../../admin",
            "/../admin",
            "/%2E%2E/admin",
            "/x/%2e%2e/admin",
        ] {
            assert_eq!(n(p), "/admin", "{p}");
        }
    }

    #[test]
    fn keeps_what_is_meaningful() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/"), "/a/");
        assert_eq!(n("/a//"), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/%2fb"), "/a/%2Fb", "an encoded slash stays encoded");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("*"), "*");
        assert_eq!(n("/a..b/.c"), "/a..b/.c");
        assert_eq!(n("/caf\u{e9}//%7E"), "/caf\u{e9}/~");
    }

    #[test]
    fn clean_paths_are_borrowed() {
        for p in ["/", "/api/v1/users", "/a/", "/a.b/c..d/~x"] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(normalize("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(normalize("/a%2"), Err(PathError::BadPercent));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
    }
}
