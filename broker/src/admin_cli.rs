//! `oriel-broker admin …`: administration through the HTTPS API. On the broker's own
//! machine it needs nothing more: it reads the local administrator's token, address and
//! certificate fingerprint from the broker's data directory. From elsewhere it logs in
//! with `--user` and the password from `ORIEL_PASSWORD` (or the first line of stdin).

// Command-line output of the binary this module serves.
#![allow(clippy::print_stdout)]

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;
use oriel_protocol::api::{LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// Broker URL [default: the local broker's, else https://127.0.0.1:8443].
    #[arg(long)]
    broker: Option<String>,
    /// The broker certificate's SHA-256 fingerprint (printed by `oriel-broker serve`)
    /// [default: the local broker's].
    #[arg(long)]
    fingerprint: Option<String>,
    /// Administrator name to log in as; without it, act as the local administrator of
    /// the broker whose data directory this is (on the broker's machine).
    #[arg(long)]
    user: Option<String>,
    /// The local broker's data directory [default: $XDG_DATA_HOME/oriel/broker].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Users: add NAME [--admin] (password from ORIEL_NEW_PASSWORD), list, disable NAME, enable NAME.
    User {
        action: String,
        name: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Groups: add NAME, list, member GROUP USER.
    Group {
        action: String,
        name: Option<String>,
        user: Option<String>,
    },
    /// Pools: create NAME, list, set NAME.
    Pool {
        action: String,
        name: Option<String>,
        #[arg(long, default_value = "floating")]
        assignment: String,
        #[arg(long)]
        min_ready: Option<i64>,
        #[arg(long)]
        max_size: Option<i64>,
        /// Desktop source of the pool: synthetic, x11 or kvm.
        #[arg(long, default_value = "synthetic")]
        kind: String,
        /// Source parameters as JSON, e.g. for x11
        /// '{"width":1280,"height":800,"command":"xterm","server":"xorg","layout":"de"}',
        /// for kvm '{"image":"debian","memory_mib":512,"vcpus":1,"width":1024,"height":768}'.
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        /// Synthetic workload of the pool's desktops (sets "workload" in the parameters).
        #[arg(long)]
        workload: Option<String>,
    },
    /// Entitle a user or a group to a pool.
    Entitle {
        pool: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Hosts: list, drain ID, undrain ID.
    Host { action: String, id: Option<String> },
    /// Desktops: list [--pool NAME], reset ID, delete ID, console ID (serial log of a
    /// kvm desktop).
    Desktop {
        action: String,
        id: Option<String>,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Sessions: list, logoff ID.
    Session { action: String, id: Option<String> },
    /// The newest audit entries.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn password_from_env_or_stdin(var: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    eprintln!("password ({var} not set; one line on stdin):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn need(v: Option<String>, what: &str) -> anyhow::Result<String> {
    v.with_context(|| format!("give the {what}"))
}

/// An API client logged in as `--user`, or as the local administrator.
async fn connect(args: &AdminArgs) -> anyhow::Result<ApiClient> {
    let local = match &args.user {
        Some(_) => None,
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| oriel_transport::files::data_dir("broker"));
            Some(oriel_broker::local_admin::read(&dir)?)
        }
    };
    let url = args
        .broker
        .clone()
        .or_else(|| local.as_ref().map(|l| l.url.clone()))
        .unwrap_or_else(|| "https://127.0.0.1:8443".into());
    let fingerprint = args
        .fingerprint
        .clone()
        .or_else(|| local.as_ref().map(|l| l.fingerprint.clone()));
    let pin = fingerprint
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let api = ApiClient::new(&url, pin)?;
    let token = match (&args.user, local) {
        (Some(user), _) => {
            let login: LoginResponse = api
                .post(
                    "/login",
                    &LoginRequest {
                        user: user.clone(),
                        password: password_from_env_or_stdin("ORIEL_PASSWORD")?,
                    },
                )
                .await?;
            login.token
        }
        (None, Some(local)) => local.token,
        (None, None) => unreachable!("a local token was read above"),
    };
    Ok(api.with_token(token))
}

/// A path segment of the API (a user, group, pool, host, desktop or session name or
/// id): percent-encoded, so that `/`, `?` or `#` in a name cannot change the path.
fn seg(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let api = connect(&args).await?;
    let out: Value = match args.command {
        AdminCommand::User {
            action,
            name,
            admin,
        } => match action.as_str() {
            "list" => api.get("/admin/users").await?,
            "add" => {
                let password = password_from_env_or_stdin("ORIEL_NEW_PASSWORD")?;
                api.post("/admin/users", &json!({"name": need(name, "user name")?, "password": password, "admin": admin}))
                    .await?
            }
            "disable" | "enable" => {
                let name = need(name, "user name")?;
                api.post_no_reply(
                    &format!("/admin/users/{}/enabled", seg(&name)),
                    &json!({"enabled": action == "enable"}),
                )
                .await?;
                json!({"user": name, "enabled": action == "enable"})
            }
            other => anyhow::bail!("unknown user action '{other}' (add, list, disable, enable)"),
        },
        AdminCommand::Group { action, name, user } => match action.as_str() {
            "list" => api.get("/admin/groups").await?,
            "add" => {
                api.post("/admin/groups", &json!({"name": need(name, "group name")?}))
                    .await?
            }
            "member" => {
                let group = need(name, "group name")?;
                api.post_no_reply(
                    &format!("/admin/groups/{}/members", seg(&group)),
                    &json!({"user": need(user, "user name")?}),
                )
                .await?;
                json!({"ok": true})
            }
            other => anyhow::bail!("unknown group action '{other}' (add, list, member)"),
        },
        AdminCommand::Pool {
            action,
            name,
            assignment,
            min_ready,
            max_size,
            kind,
            params,
            workload,
        } => match action.as_str() {
            "list" => api.get("/admin/pools").await?,
            "create" => {
                let params = source_params(params.as_deref(), workload)?;
                api.post(
                    "/admin/pools",
                    &json!({"name": need(name, "pool name")?, "assignment": assignment,
                            "min_ready": min_ready.unwrap_or(1), "max_size": max_size.unwrap_or(10),
                            "source_kind": kind, "source_params": params}),
                )
                .await?
            }
            "set" => {
                let name = need(name, "pool name")?;
                let mut change = serde_json::Map::new();
                if let Some(v) = min_ready {
                    change.insert("min_ready".into(), json!(v));
                }
                if let Some(v) = max_size {
                    change.insert("max_size".into(), json!(v));
                }
                if params.is_some() || workload.is_some() {
                    let params = source_params(params.as_deref(), workload)?;
                    change.insert("source_params".into(), params);
                }
                api.post(
                    &format!("/admin/pools/{}", seg(&name)),
                    &Value::Object(change),
                )
                .await?
            }
            other => anyhow::bail!("unknown pool action '{other}' (create, list, set)"),
        },
        AdminCommand::Entitle { pool, user, group } => {
            api.post_no_reply(
                "/admin/entitlements",
                &json!({"pool": pool, "user": user, "group": group}),
            )
            .await?;
            json!({"ok": true})
        }
        AdminCommand::Host { action, id } => match action.as_str() {
            "list" => api.get("/admin/hosts").await?,
            "drain" | "undrain" => {
                let id = need(id, "host id")?;
                let state = if action == "drain" {
                    "maintenance"
                } else {
                    "up"
                };
                api.post_no_reply(
                    &format!("/admin/hosts/{}/state", seg(&id)),
                    &json!({"state": state}),
                )
                .await?;
                json!({"host": id, "state": state})
            }
            other => anyhow::bail!("unknown host action '{other}' (list, drain, undrain)"),
        },
        AdminCommand::Desktop { action, id, pool } => match action.as_str() {
            "list" => match pool {
                Some(p) => {
                    api.get(&format!("/admin/desktops?pool={}", seg(&p)))
                        .await?
                }
                None => api.get("/admin/desktops").await?,
            },
            "reset" | "delete" => {
                let id = need(id, "desktop id")?;
                api.post_no_reply(
                    &format!("/admin/desktops/{}/{action}", seg(&id)),
                    &json!({}),
                )
                .await?;
                json!({"desktop": id, "done": action})
            }
            "console" => {
                let id = need(id, "desktop id")?;
                let reply: serde_json::Value = api
                    .get(&format!("/admin/desktops/{}/console", seg(&id)))
                    .await?;
                print!("{}", reply["console"].as_str().unwrap_or_default());
                return Ok(());
            }
            other => {
                anyhow::bail!("unknown desktop action '{other}' (list, reset, delete, console)")
            }
        },
        AdminCommand::Session { action, id } => match action.as_str() {
            "list" => api.get("/admin/sessions").await?,
            "logoff" => {
                let id = need(id, "session id")?;
                api.post_no_reply(&format!("/admin/sessions/{}/logoff", seg(&id)), &json!({}))
                    .await?;
                json!({"session": id, "logged_off": true})
            }
            other => anyhow::bail!("unknown session action '{other}' (list, logoff)"),
        },
        AdminCommand::Audit { limit } => api.get(&format!("/admin/audit?limit={limit}")).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The pool's source parameters: `--params` JSON (an object), with `--workload` set in it.
fn source_params(params: Option<&str>, workload: Option<String>) -> anyhow::Result<Value> {
    let mut value: Value = match params {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--params is not valid JSON: {e}"))?,
        None => json!({}),
    };
    let Some(object) = value.as_object_mut() else {
        anyhow::bail!("--params must be a JSON object, e.g. '{{\"width\":1280}}'");
    };
    if let Some(w) = workload {
        object.insert("workload".into(), json!(w));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("alice"), "alice");
        assert_eq!(seg("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(seg("Zoë"), "Zo%C3%AB");
    }

    #[test]
    fn source_params_come_from_json_and_workload() {
        assert_eq!(source_params(None, None).unwrap(), json!({}));
        assert_eq!(
            source_params(Some(r#"{"width":1280}"#), Some("typing".into())).unwrap(),
            json!({"width": 1280, "workload": "typing"})
        );
        assert!(source_params(Some("[1]"), None).is_err());
        assert!(source_params(Some("{oops"), None).is_err());
    }
}
