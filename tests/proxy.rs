//! The core proxy seen from a client: balancing, streaming, protocols, headers, limits, admin.

mod support;
