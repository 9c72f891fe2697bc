//! The OpenAPI 3 document of `/api/v1`, served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{json, Value};

fn op(summary: &str, body: Option<&str>, auth: bool) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": {
            "200": {"description": "OK"},
            "204": {"description": "Done"},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "409": {"$ref": "#/components/responses/Error"}
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    if auth {
        o["security"] = json!([{"bearer": []}]);
    }
    o
}

pub async fn document() -> Json<Value> {
    Json(json!({
        "openapi": "3.0.3",
        "info": {"title": "Oriel broker API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "paths": {
            "/login": {"post": op("Log in; returns a bearer token", Some("LoginRequest"), false)},
            "/pools": {"get": op("Pools I am entitled to", None, true)},
            "/connect": {"post": op("Get a desktop of a pool and a ticket for it", Some("ConnectRequest"), true)},
            "/logoff": {"post": op("Give back my desktop of a pool", Some("LogoffRequest"), true)},
            "/admin/users": {"get": op("List users", None, true), "post": op("Create a user", Some("NewUser"), true)},
            "/admin/users/{name}/enabled": {"post": op("Enable or disable a user", Some("Enabled"), true)},
            "/admin/groups": {"get": op("List groups", None, true), "post": op("Create a group", Some("Named"), true)},
            "/admin/groups/{name}/members": {"post": op("Add a user to a group", Some("Member"), true)},
            "/admin/pools": {"get": op("List pools", None, true), "post": op("Create a pool", Some("NewPool"), true)},
            "/admin/pools/{name}": {"post": op("Change a pool", Some("PoolChange"), true)},
            "/admin/entitlements": {"get": op("List entitlements", None, true), "post": op("Entitle a user or group to a pool", Some("Entitle"), true)},
            "/admin/hosts": {"get": op("List hosts", None, true)},
            "/admin/hosts/{id}/state": {"post": op("Drain (maintenance) or undrain (up) a host", Some("HostState"), true)},
            "/admin/desktops": {"get": op("List desktops (?pool=NAME)", None, true)},
            "/admin/desktops/{id}/reset": {"post": op("Reset a desktop", None, true)},
            "/admin/desktops/{id}/delete": {"post": op("Delete a desktop (destroyed on its host; its record stays)", None, true)},
            "/admin/desktops/{id}/console": {"get": op("The desktop's serial console log, newest bytes (?bytes=N, at most 262144; kvm desktops)", None, true)},
            "/admin/sessions": {"get": op("List sessions (?all=true for ended ones)", None, true)},
            "/admin/sessions/{id}/logoff": {"post": op("Force a logoff", None, true)},
            "/admin/audit": {"get": op("Audit log, newest first (?limit=N)", None, true)}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}},
            "schemas": {
                "LoginRequest": {"type": "object", "additionalProperties": false, "required": ["user", "password"], "properties": {"user": {"type": "string"}, "password": {"type": "string"}}},
                "ConnectRequest": {"type": "object", "additionalProperties": false, "required": ["pool"], "properties": {"pool": {"type": "string"}}},
                "LogoffRequest": {"type": "object", "additionalProperties": false, "required": ["pool"], "properties": {"pool": {"type": "string"}}},
                "NewUser": {"type": "object", "additionalProperties": false, "required": ["name", "password"], "properties": {"name": {"type": "string"}, "password": {"type": "string", "minLength": 8}, "admin": {"type": "boolean"}}},
                "Enabled": {"type": "object", "additionalProperties": false, "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}},
                "Named": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {"name": {"type": "string"}}},
                "Member": {"type": "object", "additionalProperties": false, "required": ["user"], "properties": {"user": {"type": "string"}}},
                "NewPool": {"type": "object", "additionalProperties": false, "required": ["name", "assignment", "max_size"], "properties": {"name": {"type": "string"}, "source_kind": {"type": "string"}, "source_params": {"type": "object"}, "assignment": {"enum": ["dedicated", "floating"]}, "min_ready": {"type": "integer"}, "max_size": {"type": "integer"}, "idle_timeout_s": {"type": "integer"}, "disconnect_timeout_s": {"type": "integer"}}},
                "PoolChange": {"type": "object", "additionalProperties": false, "properties": {"min_ready": {"type": "integer"}, "max_size": {"type": "integer"}, "source_params": {"type": "object"}, "idle_timeout_s": {"type": "integer"}, "disconnect_timeout_s": {"type": "integer"}}},
                "Entitle": {"type": "object", "additionalProperties": false, "required": ["pool"], "properties": {"pool": {"type": "string"}, "user": {"type": "string"}, "group": {"type": "string"}}},
                "HostState": {"type": "object", "additionalProperties": false, "required": ["state"], "properties": {"state": {"enum": ["up", "maintenance"]}}}
            }
        }
    }))
}
