//! `oriel-broker admin …`: administration through the HTTPS API. On the broker's own
//! machine it needs nothing more: it reads the local administrator's token, address and
//! certificate fingerprint from the broker's data directory. From elsewhere it logs in
//! with `--user` and the password from `ORIEL_PASSWORD` (or the first line of stdin).

// Command-line output of the binary this module serves.
#![allow(clippy::print_stdout)]

use std::io::BufRead;

use oriel_broker::config::{AdminFileConfig, FileConfig, DEFAULT_ADMIN_URL};
use oriel_protocol::api::{LoginRequest, LoginResponse};
use oriel_transport::api_client::ApiClient;
use serde_json::{json, Value};

mod args;

pub(crate) use args::AdminArgs;
use args::{
    AdminCommand, DesktopCommand, GroupCommand, HostCommand, PoolCommand, SessionCommand,
    SourceArgs, UserCommand,
};

fn password_from_env_or_stdin(var: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    eprintln!("password ({var} not set; one line on stdin):");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

impl AdminArgs {
    /// The flags over the `--config` file.
    fn settings(&self) -> anyhow::Result<FileConfig> {
        let file = FileConfig::read_optional(self.config.as_deref())?;
        let flags = FileConfig {
            data_dir: self.data_dir.clone(),
            admin: AdminFileConfig {
                broker: self.broker.clone(),
                fingerprint: self.fingerprint.clone(),
                user: self.user.clone(),
            },
            ..FileConfig::default()
        };
        Ok(flags.or(file))
    }
}

/// An API client logged in as `user`, or as the local administrator.
async fn connect(settings: FileConfig) -> anyhow::Result<ApiClient> {
    let AdminFileConfig {
        broker,
        fingerprint,
        user,
    } = settings.admin.clone();
    let local = match &user {
        Some(_) => None,
        None => Some(oriel_broker::local_admin::read(&settings.data_dir())?),
    };
    let url = broker
        .or_else(|| local.as_ref().map(|l| l.url.clone()))
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.into());
    let fingerprint = fingerprint.or_else(|| local.as_ref().map(|l| l.fingerprint.clone()));
    let pin = fingerprint
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let api = ApiClient::new(&url, pin)?;
    tracing::debug!(%url, as_user = ?user, "admin connecting");
    let token = match (user, local) {
        (Some(user), _) => {
            let login: LoginResponse = api
                .post(
                    "/login",
                    &LoginRequest {
                        user,
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
    let api = connect(args.settings()?).await?;
    let out: Value = match args.command {
        AdminCommand::User(command) => user(&api, command).await?,
        AdminCommand::Group(command) => group(&api, command).await?,
        AdminCommand::Pool(command) => pool(&api, command).await?,
        AdminCommand::Entitle { pool, user, group } => {
            // Exactly one of them (clap's "who" group), and only it in the body.
            let body = match (user, group) {
                (Some(user), _) => json!({"pool": pool, "user": user}),
                (None, group) => json!({"pool": pool, "group": group}),
            };
            api.post_no_reply("/admin/entitlements", &body).await?;
            json!({"ok": true})
        }
        AdminCommand::Host(command) => host(&api, command).await?,
        AdminCommand::Desktop(DesktopCommand::Console { id }) => {
            let reply: Value = api
                .get(&format!("/admin/desktops/{}/console", seg(&id)))
                .await?;
            print!("{}", reply["console"].as_str().unwrap_or_default());
            return Ok(());
        }
        AdminCommand::Desktop(DesktopCommand::List { pool: Some(pool) }) => {
            api.get(&format!("/admin/desktops?pool={}", seg(&pool)))
                .await?
        }
        AdminCommand::Desktop(DesktopCommand::List { pool: None }) => {
            api.get("/admin/desktops").await?
        }
        AdminCommand::Desktop(DesktopCommand::Reset { id }) => {
            desktop_action(&api, id, "reset").await?
        }
        AdminCommand::Desktop(DesktopCommand::Delete { id }) => {
            desktop_action(&api, id, "delete").await?
        }
        AdminCommand::Desktop(DesktopCommand::Migrate { id, to }) => {
            eprintln!("migrating desktop {id} ...");
            api.post(
                &format!("/admin/desktops/{}/migrate", seg(&id)),
                &json!({ "to": to }),
            )
            .await?
        }
        AdminCommand::Desktop(DesktopCommand::Migrations) => api.get("/admin/migrations").await?,
        AdminCommand::Desktop(DesktopCommand::Suspend { id }) => {
            eprintln!("suspending desktop {id} to disk ...");
            api.post(&format!("/admin/desktops/{}/suspend", seg(&id)), &json!({}))
                .await?
        }
        AdminCommand::Desktop(DesktopCommand::Resume { id }) => {
            eprintln!("resuming desktop {id} ...");
            api.post(&format!("/admin/desktops/{}/resume", seg(&id)), &json!({}))
                .await?
        }
        AdminCommand::Session(SessionCommand::List) => api.get("/admin/sessions").await?,
        AdminCommand::Session(SessionCommand::Logoff { id }) => {
            api.post_no_reply(&format!("/admin/sessions/{}/logoff", seg(&id)), &json!({}))
                .await?;
            json!({"session": id, "logged_off": true})
        }
        AdminCommand::Audit { limit } => api.get(&format!("/admin/audit?limit={limit}")).await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn user(api: &ApiClient, command: UserCommand) -> anyhow::Result<Value> {
    Ok(match command {
        UserCommand::List => api.get("/admin/users").await?,
        UserCommand::Add { name, role, admin } => {
            let role = if admin { "admin".to_string() } else { role };
            let password = password_from_env_or_stdin("ORIEL_NEW_PASSWORD")?;
            api.post(
                "/admin/users",
                &json!({"name": name, "password": password, "role": role}),
            )
            .await?
        }
        UserCommand::Password { name } => {
            let password = password_from_env_or_stdin("ORIEL_NEW_PASSWORD")?;
            api.post_no_reply(
                &format!("/admin/users/{}/password", seg(&name)),
                &json!({"password": password}),
            )
            .await?;
            json!({"user": name, "password_set": true})
        }
        UserCommand::Role { name, role } => {
            api.post(
                &format!("/admin/users/{}/role", seg(&name)),
                &json!({"role": role}),
            )
            .await?
        }
        UserCommand::Disable { name } => set_enabled(api, name, false).await?,
        UserCommand::Enable { name } => set_enabled(api, name, true).await?,
    })
}

async fn set_enabled(api: &ApiClient, name: String, enabled: bool) -> anyhow::Result<Value> {
    api.post_no_reply(
        &format!("/admin/users/{}/enabled", seg(&name)),
        &json!({"enabled": enabled}),
    )
    .await?;
    Ok(json!({"user": name, "enabled": enabled}))
}

async fn group(api: &ApiClient, command: GroupCommand) -> anyhow::Result<Value> {
    Ok(match command {
        GroupCommand::List => api.get("/admin/groups").await?,
        GroupCommand::Add { name } => api.post("/admin/groups", &json!({"name": name})).await?,
        GroupCommand::Member { group, user } => {
            api.post_no_reply(
                &format!("/admin/groups/{}/members", seg(&group)),
                &json!({"user": user}),
            )
            .await?;
            json!({"ok": true})
        }
    })
}

async fn pool(api: &ApiClient, command: PoolCommand) -> anyhow::Result<Value> {
    Ok(match command {
        PoolCommand::List => api.get("/admin/pools").await?,
        PoolCommand::Create {
            name,
            assignment,
            min_ready,
            max_size,
            disconnect_timeout,
            kind,
            source,
        } => {
            let params = source_params(source)?;
            let mut pool = json!({"name": name, "assignment": assignment,
                    "min_ready": min_ready, "max_size": max_size,
                    "source_kind": kind, "source_params": params});
            if let Some(v) = disconnect_timeout {
                pool["disconnect_timeout_s"] = json!(v);
            }
            api.post("/admin/pools", &pool).await?
        }
        PoolCommand::Set {
            name,
            min_ready,
            max_size,
            disconnect_timeout,
            source,
        } => {
            let mut change = serde_json::Map::new();
            if let Some(v) = disconnect_timeout {
                change.insert("disconnect_timeout_s".into(), json!(v));
            }
            if let Some(v) = min_ready {
                change.insert("min_ready".into(), json!(v));
            }
            if let Some(v) = max_size {
                change.insert("max_size".into(), json!(v));
            }
            if source.params.is_some() || source.workload.is_some() {
                change.insert("source_params".into(), source_params(source)?);
            }
            api.post(
                &format!("/admin/pools/{}", seg(&name)),
                &Value::Object(change),
            )
            .await?
        }
        PoolCommand::Delete { name } => {
            api.delete(&format!("/admin/pools/{}", seg(&name))).await?;
            json!({"ok": true})
        }
    })
}

async fn host(api: &ApiClient, command: HostCommand) -> anyhow::Result<Value> {
    let (id, state) = match command {
        HostCommand::List => return Ok(api.get("/admin/hosts").await?),
        HostCommand::Drain { id } => (id, "maintenance"),
        HostCommand::Undrain { id } => (id, "up"),
    };
    api.post_no_reply(
        &format!("/admin/hosts/{}/state", seg(&id)),
        &json!({"state": state}),
    )
    .await?;
    Ok(json!({"host": id, "state": state}))
}

/// `reset` or `delete` a desktop.
async fn desktop_action(api: &ApiClient, id: String, action: &str) -> anyhow::Result<Value> {
    api.post_no_reply(
        &format!("/admin/desktops/{}/{action}", seg(&id)),
        &json!({}),
    )
    .await?;
    Ok(json!({"desktop": id, "done": action}))
}

/// The pool's source parameters: `--params` JSON (an object), with `--workload` set in it.
fn source_params(source: SourceArgs) -> anyhow::Result<Value> {
    let SourceArgs { params, workload } = source;
    let mut value: Value = match params.as_deref() {
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
        let source = |params: Option<&str>, workload: Option<&str>| SourceArgs {
            params: params.map(str::to_string),
            workload: workload.map(str::to_string),
        };
        assert_eq!(source_params(source(None, None)).unwrap(), json!({}));
        assert_eq!(
            source_params(source(Some(r#"{"width":1280}"#), Some("typing"))).unwrap(),
            json!({"width": 1280, "workload": "typing"})
        );
        assert!(source_params(source(Some("[1]"), None)).is_err());
        assert!(source_params(source(Some("{oops"), None)).is_err());
    }

    fn admin(args: &[&str]) -> Result<AdminArgs, clap::Error> {
        use clap::Parser;
        let argv = ["oriel-broker", "admin"]
            .into_iter()
            .chain(args.iter().copied());
        match crate::Cli::try_parse_from(argv)?.command {
            crate::Command::Admin(admin) => Ok(admin),
            other => panic!("not admin: {other:?}"),
        }
    }

    #[test]
    fn the_documented_invocations_parse() {
        let ok = |args: &[&str]| admin(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(matches!(
            ok(&["user", "add", "alice", "--admin"]).command,
            AdminCommand::User(UserCommand::Add { name, admin: true, .. }) if name == "alice"
        ));
        assert!(matches!(
            ok(&["user", "add", "olga", "--role", "operator"]).command,
            AdminCommand::User(UserCommand::Add { role, admin: false, .. }) if role == "operator"
        ));
        assert!(matches!(
            ok(&["user", "role", "olga", "auditor"]).command,
            AdminCommand::User(UserCommand::Role { name, role }) if name == "olga" && role == "auditor"
        ));
        assert!(admin(&["user", "role", "olga", "root"]).is_err());
        assert!(matches!(
            ok(&["user", "password", "olga"]).command,
            AdminCommand::User(UserCommand::Password { name }) if name == "olga"
        ));
        assert!(admin(&["user", "add", "x", "--admin", "--role", "auditor"]).is_err());
        assert!(matches!(
            ok(&["--data-dir", "/d", "user", "list"]).command,
            AdminCommand::User(UserCommand::List)
        ));
        assert!(matches!(
            ok(&[
                "pool",
                "create",
                "office",
                "--assignment",
                "floating",
                "--min-ready",
                "2",
                "--max-size",
                "10",
                "--workload",
                "typing"
            ])
            .command,
            AdminCommand::Pool(PoolCommand::Create {
                min_ready: 2,
                max_size: 10,
                ..
            })
        ));
        assert!(matches!(
            ok(&["pool", "create", "vms", "--kind", "kvm", "--params", "{}"]).command,
            AdminCommand::Pool(PoolCommand::Create { min_ready: 1, max_size: 10, kind, .. })
                if kind == "kvm"
        ));
        assert!(matches!(
            ok(&["pool", "set", "office", "--max-size", "20"]).command,
            AdminCommand::Pool(PoolCommand::Set {
                max_size: Some(20),
                min_ready: None,
                ..
            })
        ));
        assert!(matches!(
            ok(&["entitle", "office", "--group", "staff"]).command,
            AdminCommand::Entitle {
                user: None,
                group: Some(_),
                ..
            }
        ));
        assert!(matches!(
            ok(&["group", "member", "staff", "alice"]).command,
            AdminCommand::Group(GroupCommand::Member { group, user })
                if group == "staff" && user == "alice"
        ));
        assert!(matches!(
            ok(&["host", "drain", "h1"]).command,
            AdminCommand::Host(HostCommand::Drain { id }) if id == "h1"
        ));
        assert!(matches!(
            ok(&["desktop", "list", "--pool", "office"]).command,
            AdminCommand::Desktop(DesktopCommand::List { pool: Some(_) })
        ));
        assert!(matches!(
            ok(&["desktop", "console", "d1"]).command,
            AdminCommand::Desktop(DesktopCommand::Console { .. })
        ));
        assert!(matches!(
            ok(&["session", "logoff", "s1"]).command,
            AdminCommand::Session(SessionCommand::Logoff { .. })
        ));
        assert!(matches!(
            ok(&["audit", "--limit", "5"]).command,
            AdminCommand::Audit { limit: 5 }
        ));
    }

    #[test]
    fn wrong_invocations_are_refused_by_the_parser() {
        for args in [
            &["user", "frobnicate"][..],
            &["user", "add"],
            &["user", "list", "alice"],
            &["host", "drain"],
            &["group", "member", "staff"],
            &["entitle", "office"],
            &["entitle", "office", "--user", "a", "--group", "b"],
            &["pool", "set", "office"],
            &["pool", "create", "x", "--kind", "vnc"],
            &["pool", "create", "x", "--assignment", "shared"],
            &["desktop", "list", "--pool"],
        ] {
            let err = admin(args).expect_err(&format!("{args:?} parsed"));
            assert_ne!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        }
    }

    #[test]
    fn admin_settings_come_from_flags_then_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            "data-dir = \"/srv/oriel\"\n[admin]\nbroker = \"https://b:1\"\nuser = \"root\"\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let settings = admin(&["--config", file, "user", "list"])
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(settings.data_dir(), std::path::PathBuf::from("/srv/oriel"));
        assert_eq!(settings.admin.broker.as_deref(), Some("https://b:1"));
        assert_eq!(settings.admin.user.as_deref(), Some("root"));
        let settings = admin(&[
            "--config",
            file,
            "--user",
            "bob",
            "--broker",
            "https://c:2",
            "user",
            "list",
        ])
        .unwrap()
        .settings()
        .unwrap();
        assert_eq!(settings.admin.user.as_deref(), Some("bob"));
        assert_eq!(settings.admin.broker.as_deref(), Some("https://c:2"));
    }
}
