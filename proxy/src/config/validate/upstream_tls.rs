//! A pool's `tls` table: the settings are checked here; the load step reads the
//! CA and client certificate files and builds the client.

use toml::Spanned;

use super::listeners::alpn;
use crate::config::error::Reporter;
use crate::config::file::UpstreamTlsSection;
use crate::config::resolve::{Reads, UpstreamTlsSettings};

pub(super) fn upstream_tls(
    pool: &str,
    field: &str,
    spanned: &Spanned<UpstreamTlsSection>,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) {
    let t = spanned.get_ref();
    let field = format!("{field}.tls");
    let before = r.problem_count();
    let sni = t.sni.as_ref().map(|s| {
        let name = s.get_ref().trim().to_ascii_lowercase();
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            r.at(
                s.span(),
                format!("{field}.sni"),
                format!("`{name}` is not a host name or IP address"),
            );
        }
        name
    });
    let ca = t.ca.as_ref().map(|c| reads.file(c, format!("{field}.ca")));
    let (client_cert, client_key) = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => (
            Some(reads.file(c, format!("{field}.client_cert"))),
            Some(reads.file(k, format!("{field}.client_key"))),
        ),
        (Some(c), None) => {
            r.at(
                c.span(),
                format!("{field}.client_key"),
                "`client_cert` needs `client_key`",
            );
            (None, None)
        }
        (None, Some(k)) => {
            r.at(
                k.span(),
                format!("{field}.client_cert"),
                "`client_key` needs `client_cert`",
            );
            (None, None)
        }
        (None, None) => (None, None),
    };
    let alpn = alpn(t.alpn.as_ref(), &format!("{field}.alpn"), r);
    if r.problem_count() > before {
        return;
    }
    reads.upstream_tls(UpstreamTlsSettings {
        pool: pool.to_string(),
        field,
        span: spanned.span(),
        sni,
        verify: t.verify.unwrap_or(true),
        ca,
        client_cert,
        client_key,
        alpn,
    });
}

#[cfg(test)]
mod tests {
    use super::super::testing::problems_with;

    #[test]
    fn refuses_half_pairs_and_bad_names() {
        assert_eq!(
            problems_with(
                "[pool.web]\nbackends = [{ address = \"127.0.0.1:2\" }]\ntls = { sni = \"a b\", client_cert = \"c.pem\", alpn = [] }\n"
            ),
            [
                "t.toml:12:15: pool.web.tls.sni: `a b` is not a host name or IP address",
                "t.toml:12:36: pool.web.tls.client_key: `client_cert` needs `client_key`",
                "t.toml:12:52: pool.web.tls.alpn: list at least one protocol: \"h2\" or \"http/1.1\"",
            ]
        );
    }
}
