//! Routing plugins: pick the backend for each request.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::IpAddr;

use http::{HeaderMap, HeaderName, StatusCode};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::routing::switchyard::policy::routing_types as wit;
use super::bindings::routing::{Routing, RoutingPre};
use super::error::PluginError;
use super::headers::SelectedHeaders;
use super::host::HostState;
use super::instance::{Instances, Slot, world};
use super::limits;
use super::stats::PluginStats;

/// The request being routed, borrowed from the proxy's own request.
///
/// Only the headers the plugin declared (see
/// [`RoutingPlugin::wanted_headers`]) are copied into the call.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Method, e.g. `"GET"`.
    pub method: &'a str,
    /// Path without query.
    pub path: &'a str,
    /// Host the client asked for.
    pub host: &'a str,
    /// Client address.
    pub client_ip: IpAddr,
    /// All request headers; the plugin sees only those it declared.
    pub headers: &'a HeaderMap,
}

/// One backend the request may go to, as the plugin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteCandidate {
    /// Stable backend index; [`RouteDecision::Backend`] names one of these.
    pub index: u32,
    /// Configured weight.
    pub weight: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Latency moving average, in microseconds.
    pub latency_ewma_us: u32,
    /// Recent error rate, in thousandths.
    pub error_rate_permille: u16,
    /// Whether health checks and the breaker admit this backend.
    pub healthy: bool,
}

/// What a routing plugin decided, after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// Forward to the candidate whose `index` this is (guaranteed to be one
    /// of the candidates passed in).
    Backend(u32),
    /// Answer directly (status guaranteed 200..=599, body at most 4 KiB).
    Respond {
        /// Response status.
        status: StatusCode,
        /// Response body.
        body: String,
    },
    /// Refuse the request (the proxy answers 403).
    Reject,
}

/// A routing world instance plus its reusable candidate buffer.
pub(crate) struct RoutingInstance {
    bindings: Routing,
    candidates: Vec<wit::Candidate>,
}

world!(
    RoutingInstance { candidates },
    RoutingPre,
    "routing",
    ["init", "wanted-headers", "choose"]
);

/// A loaded routing plugin. Cheap to share; `choose` may be called from
/// many threads at once.
#[derive(Debug)]
pub struct RoutingPlugin {
    instances: Instances<RoutingInstance>,
    wanted: Vec<HeaderName>,
}

impl RoutingPlugin {
    /// Runs the load-time smoke test: one instance, `init`, `wanted-headers`.
    pub(crate) fn load(instances: Instances<RoutingInstance>) -> Result<Self, PluginError> {
        let names =
            instances.smoke(|slot| slot.world.bindings.call_wanted_headers(&mut slot.store))?;
        let wanted = limits::header_names(names)?;
        Ok(Self { instances, wanted })
    }

    /// Live statistics of this plugin version.
    pub fn stats(&self) -> &PluginStats {
        self.instances.stats()
    }

    /// The request headers this plugin reads; the proxy may use it to skip
    /// work, and only these are passed to [`Self::choose`].
    pub fn wanted_headers(&self) -> &[HeaderName] {
        &self.wanted
    }

    /// The recent average time of one call inside the plugin (instantiation not
    /// counted), for [`InlineGate`](super::InlineGate).
    pub fn typical_call(&self) -> std::time::Duration {
        self.instances.typical_call()
    }

    /// Asks the plugin where `req` should go. The result is validated: a
    /// backend index is one of `candidates`, a response is well-formed.
    /// Fails with the plugin's error (trap, timeout, ...) or `Quarantined`.
    pub fn choose(
        &self,
        req: &RouteRequest<'_>,
        candidates: &[RouteCandidate],
    ) -> Result<RouteDecision, PluginError> {
        let headers = SelectedHeaders::select(&self.wanted, req.headers);
        let mut ip_buf = [0u8; 48];
        let client_ip = format_ip(req.client_ip, &mut ip_buf);
        let request = wit::Request {
            method: req.method,
            path: req.path,
            host: req.host,
            client_ip,
            headers: headers.as_slice(),
        };
        self.instances.call(
            |slot: &mut Slot<RoutingInstance>| {
                let RoutingInstance {
                    bindings,
                    candidates: buf,
                } = &mut slot.world;
                buf.clear();
                buf.extend(candidates.iter().map(|c| wit::Candidate {
                    index: c.index,
                    weight: c.weight,
                    in_flight: c.in_flight,
                    latency_ewma_us: c.latency_ewma_us,
                    error_rate_permille: c.error_rate_permille,
                    healthy: c.healthy,
                }));
                bindings.call_choose(&mut slot.store, request, buf)
            },
            |decision| validate(decision, candidates),
        )
    }
}

/// Checks a decision against the candidates it was made from.
fn validate(
    decision: wit::Decision,
    candidates: &[RouteCandidate],
) -> Result<RouteDecision, PluginError> {
    match decision {
        wit::Decision::Backend(index) => {
            if candidates.iter().any(|c| c.index == index) {
                Ok(RouteDecision::Backend(index))
            } else {
                Err(PluginError::Invalid(format!(
                    "backend index {index} is not among the {} candidates",
                    candidates.len()
                )))
            }
        }
        wit::Decision::Respond(r) => {
            let status = limits::status(r.status)?;
            limits::body(&r.body)?;
            Ok(RouteDecision::Respond {
                status,
                body: r.body,
            })
        }
        wit::Decision::Reject => Ok(RouteDecision::Reject),
    }
}

/// Formats an address into `buf` without allocating (IPv4 digit by digit: the
/// formatting machinery cost more than the rest of a call's request).
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    if let IpAddr::V4(v4) = ip {
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                buf[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                buf[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            buf[len] = b'0' + octet % 10;
            len += 1;
        }
        return std::str::from_utf8(&buf[..len]).unwrap_or("");
    }
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // An IPv6 address is at most 45 characters, so this cannot fail.
    let len = match write!(cursor, "{ip}") {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_addresses_without_allocating() {
        for v4 in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "10.100.9.99",
            "1.20.103.240",
        ] {
            let mut buf = [0u8; 48];
            assert_eq!(format_ip(v4.parse().unwrap(), &mut buf), v4);
        }
        let v6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        let mut buf = [0u8; 48];
        assert_eq!(format_ip(v6, &mut buf), v6.to_string());
    }

    #[test]
    fn decisions_are_validated() {
        let cands = [RouteCandidate {
            index: 7,
            ..Default::default()
        }];
        assert_eq!(
            validate(wit::Decision::Backend(7), &cands).ok(),
            Some(RouteDecision::Backend(7))
        );
        assert!(validate(wit::Decision::Backend(0), &cands).is_err());
        let bad = wit::Decision::Respond(wit::Response {
            status: 99,
            body: String::new(),
        });
        assert!(validate(bad, &cands).is_err());
        let big = wit::Decision::Respond(wit::Response {
            status: 200,
            body: "x".repeat(5000),
        });
        assert!(validate(big, &cands).is_err());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn candidates() -> impl Strategy<Value = Vec<RouteCandidate>> {
            prop::collection::btree_set(any::<u32>(), 0..12).prop_map(|indexes| {
                indexes
                    .into_iter()
                    .map(|index| RouteCandidate {
                        index,
                        ..Default::default()
                    })
                    .collect()
            })
        }

        fn decision() -> impl Strategy<Value = wit::Decision> {
            prop_oneof![
                any::<u32>().prop_map(wit::Decision::Backend),
                (any::<u16>(), 0..6000usize).prop_map(|(status, len)| {
                    wit::Decision::Respond(wit::Response {
                        status,
                        body: "b".repeat(len),
                    })
                }),
                Just(wit::Decision::Reject),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever a plugin returns, the proxy only ever acts on a backend that
            /// was offered, or a well-formed answer.
            #[test]
            fn only_offered_backends_and_well_formed_answers_pass(
                decision in decision(),
                cands in candidates(),
                pick in any::<prop::sample::Index>(),
            ) {
                // Half the time, name one of the candidates.
                let decision = match decision {
                    wit::Decision::Backend(i) if i % 2 == 0 && !cands.is_empty() => {
                        wit::Decision::Backend(cands[pick.index(cands.len())].index)
                    }
                    other => other,
                };
                let offered = |i: u32| cands.iter().any(|c| c.index == i);
                let expected_ok = match &decision {
                    wit::Decision::Backend(i) => offered(*i),
                    wit::Decision::Respond(r) => {
                        (200..=599).contains(&r.status) && r.body.len() <= limits::MAX_BODY_BYTES
                    }
                    wit::Decision::Reject => true,
                };
                match validate(decision, &cands) {
                    Ok(RouteDecision::Backend(i)) => prop_assert!(offered(i)),
                    Ok(RouteDecision::Respond { status, body }) => {
                        prop_assert!((200..=599).contains(&status.as_u16()));
                        prop_assert!(body.len() <= limits::MAX_BODY_BYTES);
                    }
                    Ok(RouteDecision::Reject) => {}
                    Err(e) => {
                        prop_assert!(!expected_ok, "refused a valid decision: {e}");
                        prop_assert!(matches!(e, PluginError::Invalid(_)));
                    }
                }
            }

            /// Header names a plugin declares are legal, lower-case and few, or refused.
            #[test]
            fn declared_header_names_are_checked(names in prop::collection::vec("[ -~]{0,12}", 0..20)) {
                match limits::header_names(names.clone()) {
                    Ok(parsed) => {
                        prop_assert!(names.len() <= limits::MAX_WANTED_HEADERS);
                        prop_assert!(parsed.len() <= names.len());
                        for n in &parsed {
                            prop_assert_eq!(n.as_str(), n.as_str().to_ascii_lowercase());
                        }
                    }
                    Err(e) => prop_assert!(matches!(e, PluginError::Invalid(_))),
                }
            }
        }
    }
}
