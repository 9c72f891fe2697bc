//! The OpenAPI 3.1 document of `/api/v1`, served at `/api/v1/openapi.json`.
//!
//! Paths, parameters, bodies and the answers particular to each operation come from the
//! handlers' `#[utoipa::path]` attributes and their types. What every operation of a kind
//! can answer is added here once: 401 where a token is required, 403 on the admin
//! operations, 400/413/415/422 where a JSON body is read, 400 where a query is parsed.

use serde_json::{json, Value};
use utoipa::PartialSchema;

use oriel_protocol::desktop_spec::{KvmParams, SyntheticParams, X11Params};

/// The finished document, as served.
pub(super) fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|_| json!({}));
    doc["info"] = json!({
        "title": "Oriel broker API",
        "version": "1",
        "description": "Users log in for a bearer token, list their pools and get a desktop with \
                        a single-use ticket. Administrators manage users, groups, pools, \
                        entitlements, hosts, desktops and sessions. Every error is \
                        {\"error\": \"…\"}.",
    });
    doc["servers"] = json!([{"url": "/api/v1"}]);
    let components = &mut doc["components"];
    components["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    for (name, schema) in [
        ("SyntheticParams", SyntheticParams::schema()),
        ("X11Params", X11Params::schema()),
        ("KvmParams", KvmParams::schema()),
    ] {
        components["schemas"][name] = serde_json::to_value(schema).unwrap_or_default();
    }
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}})
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let has_body = operation.get("requestBody").is_some();
                let has_query = operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
                let secured = operation.get("security").is_some();
                let responses = &mut operation["responses"];
                let mut add = |status: &str, description: &str| {
                    if responses.get(status).is_none() {
                        responses[status] = error(description);
                    }
                };
                if has_body {
                    add("400", "The body is not JSON, or a value is out of range");
                    add("413", "The body is larger than 64 KiB");
                    add("415", "The body is not application/json");
                    add("422", "The JSON is not what this operation takes");
                }
                if has_query {
                    add("400", "A query parameter does not parse or is out of range");
                }
                if secured {
                    add("401", "No bearer token, or an expired or revoked one");
                }
                if path.starts_with("/admin/") {
                    add("403", "Administrators only");
                }
            }
        }
    }
    add_links(&mut doc);
    doc
}

/// Links from the operations that return an object (or a list of them) to those that
/// act on it, so that clients and stateful testers (schemathesis) can follow them.
fn add_links(doc: &mut Value) {
    let links: [(&str, &str, &str, &str, &str); 9] = [
        // (path, method, status, target operation, JSON pointer into the answer)
        ("/admin/desktops", "get", "200", "reset_desktop", "/0/id"),
        ("/admin/desktops", "get", "200", "delete_desktop", "/0/id"),
        ("/admin/desktops", "get", "200", "desktop_console", "/0/id"),
        ("/admin/hosts", "get", "200", "set_host_state", "/0/id"),
        ("/admin/sessions", "get", "200", "force_logoff", "/0/id"),
        ("/admin/users", "get", "200", "set_user_enabled", "/0/name"),
        ("/admin/users", "post", "200", "set_user_enabled", "/name"),
        ("/admin/groups", "post", "200", "add_group_member", "/name"),
        ("/admin/pools", "post", "200", "update_pool", "/name"),
    ];
    for (path, method, status, target, pointer) in links {
        let parameter = if pointer.ends_with("name") {
            "name"
        } else {
            "id"
        };
        let response = &mut doc["paths"][path][method]["responses"][status];
        if response.is_object() {
            response["links"][target] = json!({
                "operationId": target,
                "parameters": {parameter: format!("$response.body#{pointer}")},
            });
        }
    }
}
