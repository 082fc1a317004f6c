//! Health checks, circuit breaking, retries and failover, seen from a client.

mod support;
