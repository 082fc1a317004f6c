//! `GET /plugins/{name}/samples`: a routing plugin's recent decisions, with the
//! inputs it saw, for authors to inspect and to replay with `switchyard plugin run`.

use http::{Method, Response, StatusCode};
use serde_json::json;

use super::respond::{json, method_not_allowed};
use crate::error::ProxyBody;
use crate::plugin::PluginKind;
use crate::server::Server;

/// The plugin name of a `/plugins/{name}/samples` path.
pub fn parse_samples(path: &str) -> Option<&str> {
    path.strip_prefix("/plugins/")?
        .strip_suffix("/samples")
        .filter(|name| !name.is_empty() && !name.contains('/'))
}

/// The samples of plugin `name`: 404 for an unknown plugin, 409 for one that is not
/// a routing plugin.
pub fn samples(server: &Server, method: &Method, name: &str) -> Response<ProxyBody> {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let Some(slot) = server.plugins().slot(name) else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no plugin named `{name}`") }),
        );
    };
    let kind = slot.current().plugin.kind();
    if kind != PluginKind::Routing {
        return json(
            StatusCode::CONFLICT,
            &json!({
                "error": format!("`{name}` is a {} plugin; only routing plugins are sampled", kind.world())
            }),
        );
    }
    json(
        StatusCode::OK,
        &json!({
            "plugin": name,
            "kind": kind.world(),
            "digest": slot.current().plugin.digest(),
            "samples": slot.samples().snapshot(),
        }),
    )
}
