//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint of both roles.
//!
//! Role: the document is not written by hand. Each route of [`super::routes`] carries its own
//! `#[utoipa::path]` description, and the routers of both roles are built from those same
//! route definitions (`utoipa_axum::routes!`), so a route cannot exist without its description
//! or the other way round. Request and answer bodies are the wire types of `crate::protocol`
//! where the code has them, and the types below where a handler builds its JSON by hand.
//!
//! Invariants: every operation has an `x-replog-roles` extension listing the roles whose
//! router serves it (`master`, `secondary`); [`document`] is the union of both roles' routers;
//! the unit tests below and `tests/it/t84_openapi.rs` compare the routers with the document.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// Every error answer: a sentence, and for some statuses more fields (named in each response's
/// description; other fields may be added).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, as a sentence for a human.
    #[schema(example = "`value` is missing")]
    pub error: String,
}

/// A write concern: a number of nodes (master included, 1..=ALL), `"all"` or `"majority"`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum WriteConcernDoc {
    Nodes(NodeCount),
    Rule(WriteConcernRule),
}

/// A number of nodes, the master included (1..=ALL). Written by hand: the derive cannot put
/// a minimum on a newtype.
#[derive(Serialize)]
pub struct NodeCount(u64);

impl utoipa::PartialSchema for NodeCount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .into()
    }
}

impl ToSchema for NodeCount {}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteConcernRule {
    All,
    Majority,
}

/// `POST /message` body.
#[derive(Serialize, ToSchema)]
pub struct AppendBody {
    /// The message (at most `limits.max_message_bytes`, default 1 MiB).
    #[schema(example = "hello")]
    pub value: String,
    /// How many nodes must hold the message before the answer; default
    /// `master.default_write_concern` ("all").
    pub write_concern: Option<WriteConcernDoc>,
    /// Idempotency key, 1 to 256 bytes: an append with an id already in the log (within
    /// `master.dedup_window`) appends nothing and answers 200 with the original key.
    #[schema(example = "order-7f3a", min_length = 1, max_length = 256)]
    pub id: Option<String>,
    /// Stop waiting for the write concern after this long (0 to 86400000) and answer 504; the
    /// message stays appended. Default `master.default_timeout_ms` (none: wait forever).
    #[schema(maximum = 86_400_000, example = 5000)]
    pub timeout_ms: Option<u64>,
}

/// `POST /message` answer: 201 appended, 200 duplicate id.
#[derive(Serialize, ToSchema)]
pub struct AppendAnswer {
    pub key: u64,
    /// The value stored under `key` (for a duplicate: the original one).
    pub value: String,
    /// The write concern, resolved to a number of nodes.
    pub write_concern: u64,
    /// Nodes holding the message when the answer was sent (≥ write_concern).
    pub acks: u64,
    /// The request's id, when it had one.
    pub id: Option<String>,
    /// Present and true on a 200: the id was already in the log.
    pub duplicate: Option<bool>,
}

/// `POST /message` answer 504: appended, replication pending.
#[derive(Serialize, ToSchema)]
pub struct TimeoutAnswer {
    pub error: String,
    /// The key the message was appended under; a retry with the same id answers with it.
    pub key: u64,
    /// Nodes holding it when the wait ran out.
    pub acks: u64,
    pub write_concern: u64,
}

/// `PUT /message` body (internal).
#[derive(Serialize, ToSchema)]
pub struct PutBody {
    /// ≥ 1.
    #[schema(minimum = 1)]
    pub key: u64,
    pub value: String,
    /// The client's idempotency id, when the message had one (1 to 256 bytes).
    #[schema(min_length = 1, max_length = 256)]
    pub id: Option<String>,
}

/// `PUT /message` answer: 201 stored, 200 already held with the same content.
#[derive(Serialize, ToSchema)]
pub struct PutAnswer {
    pub key: u64,
    pub value: String,
    pub stored: bool,
    /// The end of this secondary's contiguous prefix after storing.
    pub contiguous_key: u64,
    /// This secondary process's incarnation.
    pub instance: String,
}

/// A binary replication batch (layout in `crate::protocol`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct BatchBytes(Vec<u8>);

/// `GET /health` answer: the master's or a secondary's.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum HealthAnswer {
    Master(crate::protocol::MasterHealth),
    Secondary(crate::protocol::SecondaryHealth),
}

/// `POST /delay` body (test).
#[derive(Serialize, ToSchema)]
pub struct DelayBody {
    /// Seconds (0 to 86400; a number or a numeric string) the next replication request waits.
    #[schema(value_type = f64, example = 30, minimum = 0, maximum = 86_400)]
    pub value: f64,
}

/// `POST /delay` answer.
#[derive(Serialize, ToSchema)]
pub struct DelayAnswer {
    pub delay_s: f64,
    pub applies_to: String,
}

/// `POST /fault` body (test).
#[derive(Serialize, ToSchema)]
pub struct FaultBody {
    /// Probability (0.0 to 1.0) that a replication request is stored and then answered 500.
    #[schema(minimum = 0, maximum = 1)]
    pub error_rate: f64,
}

/// `GET` / `POST /fault` answer.
#[derive(Serialize, ToSchema)]
pub struct FaultAnswer {
    pub enabled: bool,
    pub error_rate: f64,
}

/// `GET /messages` query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MessagesQuery {
    /// First key (default 1, at least 1).
    #[param(minimum = 1)]
    from: Option<u64>,
    /// At most this many messages (default: all).
    limit: Option<u64>,
    /// Long poll: when the node holds nothing at or after `from`, wait up to this many
    /// milliseconds (at most 600000) for it.
    #[param(maximum = 600_000)]
    wait_ms: Option<u64>,
}

/// `GET /replicate` query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BatchQuery {
    /// First key (default 1, at least 1).
    #[param(minimum = 1)]
    from: Option<u64>,
    /// At most this many entries (default and maximum 4096).
    #[param(maximum = 4096)]
    limit: Option<u64>,
}

/// The document's root: title, tags, and the `cluster_token` security scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "replog",
        description = "A replicated, append-only message log. One master assigns keys 1, 2, 3, … and replicates every message to its secondaries; each append says how many nodes must hold it (its write concern). Operations carry `x-replog-roles`: the roles (master, secondary) that serve them.",
        license(name = "see the repository")
    ),
    tags(
        (name = "public", description = "The client API"),
        (name = "internal", description = "Between the master and its secondaries; with `node.cluster_token` set they need `Authorization: Bearer <token>`"),
        (name = "test", description = "Fault injection; only with `fault.enabled = true` (404 otherwise)"),
        (name = "operations", description = "Monitoring and this document"),
        (name = "page", description = "The live cluster page and its event stream"),
    ),
    modifiers(&ClusterToken)
)]
pub struct ApiDoc;

struct ClusterToken;

impl Modify for ClusterToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cluster_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document of both roles and its JSON, installed once by `super::router` from the route
/// table (`super::routes::document`): the document is built from the routes, one of which
/// serves it, so it is handed over here rather than built by this module.
static DOC: OnceLock<(utoipa::openapi::OpenApi, String)> = OnceLock::new();

/// Installs the document (the first call wins: it is the same every time).
pub fn install(doc: utoipa::openapi::OpenApi) {
    DOC.get_or_init(|| {
        let json = serde_json::to_string(&doc).unwrap_or_else(|e| {
            // Serialising a utoipa document cannot fail; still, answer with something valid.
            format!("{{\"error\": \"cannot serialise the OpenAPI document: {e}\"}}")
        });
        (doc, json)
    });
}

/// The installed document, if any.
pub fn document() -> Option<&'static utoipa::openapi::OpenApi> {
    DOC.get().map(|(doc, _)| doc)
}

fn document_json() -> &'static str {
    DOC.get().map_or(
        "{\"error\": \"the OpenAPI document is not installed\"}",
        |(_, json)| json,
    )
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    let mut resp = document_json().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `(method, path)` of every operation of `doc` whose `x-replog-roles` has `role` (or of
/// every operation with `role` None), sorted.
pub fn operations(doc: &utoipa::openapi::OpenApi, role: Option<&str>) -> Vec<(String, String)> {
    let v = serde_json::to_value(doc).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(paths) = v.get("paths").and_then(|p| p.as_object()) {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let roles = op.get("x-replog-roles").and_then(|r| r.as_array());
                let served = match role {
                    None => true,
                    Some(role) => roles.is_some_and(|rs| rs.iter().any(|r| r == role)),
                };
                if served {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> &'static utoipa::openapi::OpenApi {
        install(super::super::routes::document());
        document().expect("installed")
    }

    #[test]
    fn each_role_router_serves_exactly_the_operations_the_document_gives_that_role() {
        for (master, role) in [(true, "master"), (false, "secondary")] {
            let routed = operations(
                &super::super::routes::role_router(master).into_openapi(),
                None,
            );
            assert_eq!(routed, operations(doc(), Some(role)), "{role}");
        }
        // Every operation names its roles and a tag.
        let v = serde_json::to_value(doc()).unwrap();
        for (path, item) in v["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op["x-replog-roles"].is_array(), "{method} {path}");
                assert!(op["tags"].is_array(), "{method} {path}");
            }
        }
    }

    #[test]
    fn the_document_lists_the_known_endpoints() {
        let all = operations(doc(), None);
        for (m, p) in [
            ("POST", "/message"),
            ("PUT", "/message"),
            ("GET", "/messages"),
            ("GET", "/health"),
            ("GET", "/heartbeat"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
            ("POST", "/replicate"),
            ("GET", "/replicate"),
            ("POST", "/delay"),
            ("GET", "/fault"),
            ("POST", "/fault"),
        ] {
            assert!(
                all.contains(&(m.to_string(), p.to_string())),
                "{m} {p} in {all:?}"
            );
        }
        let json = document_json();
        assert!(json.starts_with('{') && json.contains("\"openapi\":\"3.1"));
    }
}
