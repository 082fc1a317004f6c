//! Checks shared by several sections: host names and socket addresses.

use std::net::SocketAddr;

use toml::Spanned;

use crate::config::error::Reporter;

/// A DNS host name: dot-separated labels of letters, digits and `-` (and `_` where
/// `underscore`, for SRV names), 1 to 63 bytes each, 253 in all.
pub(super) fn is_host_name(name: &str, underscore: bool) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        })
        && name.parse::<std::net::IpAddr>().is_err()
}

/// A listening address (`ip:port`); `None` (recorded) when it is not one.
pub(super) fn socket_address(
    value: &Spanned<String>,
    field: &str,
    r: &mut Reporter<'_>,
) -> Option<SocketAddr> {
    let text = value.get_ref().trim();
    match text.parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            let hint = if text.parse::<std::net::IpAddr>().is_ok() {
                format!("`{text}` has no port: write e.g. \"{text}:8080\"")
            } else {
                format!(
                    "`{text}` is not an ip:port address such as \"127.0.0.1:8080\" or \"[::]:443\""
                )
            };
            r.at(value.span(), field, hint);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::problems;
    use super::*;

    #[test]
    fn host_names() {
        assert!(is_host_name("app.example.com", false));
        assert!(is_host_name("app.example.com.", false));
        assert!(!is_host_name("_http._tcp.app", false));
        assert!(is_host_name("_http._tcp.app", true));
        assert!(!is_host_name("-app", false));
        assert!(!is_host_name("10.0.0.1", false));
        assert!(!is_host_name("", false));
    }

    #[test]
    fn addresses_without_a_port_or_with_a_name_are_refused() {
        assert_eq!(
            problems("[[listener]]\nname = \"web\"\nlisten = \"0.0.0.0\"\n"),
            ["t.toml:3:10: listener[0].listen: `0.0.0.0` has no port: write e.g. \"0.0.0.0:8080\""]
        );
        assert_eq!(
            problems("[[listener]]\nname = \"web\"\nlisten = \"localhost:80\"\n"),
            [
                "t.toml:3:10: listener[0].listen: `localhost:80` is not an ip:port address such as \"127.0.0.1:8080\" or \"[::]:443\""
            ]
        );
    }
}
