//! The broker API refuses bad input with 4xx (never a 500 or a panic) and keeps users
//! and admins apart.

use oriel_broker::store::Assignment;
use oriel_e2e::broker::Harness;
use oriel_transport::tls::pinned_tls_client_config;

fn http(h: &Harness) -> reqwest::Client {
    let tls = pinned_tls_client_config(h.broker.fingerprint, &[b"http/1.1"]).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_and_users_are_not_admins() {
    let h = Harness::start("api-bad").await;
    h.pool("p", Assignment::Floating, 0, 1, "{}").await;
    let alice = h.user("alice", "p").await;
    let client = http(&h);
    let url = |p: &str| format!("{}/api/v1{p}", h.broker.url());

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("/login", b"{not json".to_vec()),
        (
            "/login",
            br#"{"user":"a","password":"b","extra":1}"#.to_vec(),
        ),
        ("/login", br#"{"user":5}"#.to_vec()),
        ("/login", vec![b'{'; 200 * 1024]),
        (
            "/login",
            format!(r#"{{"user":"{}","password":"x"}}"#, "a".repeat(100 * 1024)).into_bytes(),
        ),
        ("/connect", br#"{"pool":"p"}"#.to_vec()),
    ];
    for (path, body) in cases {
        let oversized = body.len() > 64 * 1024;
        let sent = client
            .post(url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                assert!((400..500).contains(&status), "{path}: got {status}");
                if oversized {
                    assert_eq!(status, 413, "{path}");
                }
            }
            // The server answers 413 as soon as the body passes its limit and stops
            // reading; the client may still be writing and then sees the connection
            // close instead of the answer. That is a refusal too.
            Err(e) if oversized && e.is_request() => {}
            Err(e) => panic!("{path}: {e:?}"),
        }
    }
    let health = client
        .get(format!("{}/healthz", h.broker.url()))
        .send()
        .await
        .unwrap();
    assert!(
        health.status().is_success(),
        "the broker survives refused bodies"
    );
    // Unknown field on an authenticated endpoint.
    let resp = client
        .post(url("/connect"))
        .bearer_auth(&alice.token)
        .json(&serde_json::json!({"pool": "p", "hack": true}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error());
    // Pools name a desktop kind hosts run, with parameters as an object.
    let admin = h.admin("root").await;
    for (pool, status) in [
        (
            serde_json::json!({"name": "f", "assignment": "floating", "max_size": 1, "source_kind": "floppy"}),
            422,
        ),
        (
            serde_json::json!({"name": "g", "assignment": "floating", "max_size": 1, "source_kind": "x11", "source_params": [1]}),
            400,
        ),
        (
            serde_json::json!({"name": "x", "assignment": "floating", "max_size": 1, "source_kind": "x11", "source_params": {"server": "xorg"}}),
            200,
        ),
    ] {
        let resp = client
            .post(url("/admin/pools"))
            .bearer_auth(&admin.token)
            .json(&pool)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{pool}");
    }
    // A user is not an admin.
    let resp = client
        .get(url("/admin/users"))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    // A forged token.
    let resp = client
        .get(url("/pools"))
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Health, metrics and the OpenAPI document.
    for path in ["/healthz", "/metrics"] {
        let resp = client
            .get(format!("{}{path}", h.broker.url()))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}");
    }
    let doc: serde_json::Value = client
        .get(url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let enabled = &doc["paths"]["/admin/users/{name}/enabled"]["post"];
    assert_eq!(
        enabled["parameters"][0]["in"], "path",
        "path parameters are declared"
    );
    assert!(enabled["responses"]["409"].is_object());
    assert!(doc["paths"]["/connect"].is_object());
    h.shutdown().await;
}
