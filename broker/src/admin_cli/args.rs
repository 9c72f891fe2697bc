//! The command line of `oriel-broker admin`: one subcommand per object, one per action
//! on it, each with exactly the arguments that action takes.

use std::path::PathBuf;

use clap::{ArgGroup, Subcommand};

#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// TOML file with the data directory and an [admin] table (broker, fingerprint,
    /// user); flags win over the file.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Broker URL [default: the local broker's, else https://127.0.0.1:8443].
    #[arg(long, value_name = "URL")]
    pub(super) broker: Option<String>,
    /// The broker certificate's SHA-256 fingerprint (printed by `oriel-broker serve`)
    /// [default: the local broker's].
    #[arg(long, value_name = "SHA256")]
    pub(super) fingerprint: Option<String>,
    /// Administrator name to log in as (password from ORIEL_PASSWORD, else the first
    /// line of stdin); without it, act as the local administrator of the broker whose
    /// data directory this is (on the broker's machine).
    #[arg(long, value_name = "NAME")]
    pub(super) user: Option<String>,
    /// The local broker's data directory [default: $XDG_DATA_HOME/oriel/broker].
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub(super) command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Users: add, list, disable, enable.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups: add, list, member.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Pools: create, list, set, delete.
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Entitle a user or a group to a pool.
    #[command(group(ArgGroup::new("who").required(true).args(["user", "group"])))]
    Entitle {
        /// The pool.
        pool: String,
        /// The user to entitle.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The group to entitle (every member).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
    },
    /// Hosts: list, drain, undrain.
    #[command(subcommand)]
    Host(HostCommand),
    /// Desktops: list, reset, delete, console, migrate, migrations, suspend, resume.
    #[command(subcommand)]
    Desktop(DesktopCommand),
    /// Sessions: list, logoff.
    #[command(subcommand)]
    Session(SessionCommand),
    /// The newest audit entries.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// The roles a user can have, as the API spells them.
fn roles() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        oriel_broker::store::Role::ALL.iter().map(|r| r.as_str()),
    )
}

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
    /// Add a user; the password comes from ORIEL_NEW_PASSWORD, else the first line of
    /// stdin.
    Add {
        name: String,
        /// The account's role: user (desktops only), admin (everything), operator
        /// (hosts, desktops, sessions), helpdesk (see all; log off, reset, consoles),
        /// auditor (see all, change nothing).
        #[arg(long, default_value = "user", value_parser = roles())]
        role: String,
        /// The same as --role admin.
        #[arg(long, conflicts_with = "role")]
        admin: bool,
    },
    /// Set a user's password (from ORIEL_NEW_PASSWORD, else the first line of stdin);
    /// their logins end.
    Password { name: String },
    /// Give a user another role (see `user add --help`); their logins end.
    Role {
        name: String,
        #[arg(value_parser = roles())]
        role: String,
    },
    /// List the users.
    List,
    /// Disable a user: no more logins; their tokens are revoked and their desktops
    /// given back (their sessions end).
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum GroupCommand {
    /// Add a group.
    Add { name: String },
    /// List the groups.
    List,
    /// Make USER a member of GROUP.
    Member { group: String, user: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum PoolCommand {
    /// Create a pool.
    Create {
        name: String,
        /// floating: desktops go back to the pool at log-off and are reset;
        /// dedicated: a user keeps the same desktop.
        #[arg(long, default_value = "floating", value_parser = ["floating", "dedicated"])]
        assignment: String,
        /// Spare desktops kept ready.
        #[arg(long, value_name = "N", default_value_t = 1)]
        min_ready: i64,
        /// Most desktops of the pool.
        #[arg(long, value_name = "N", default_value_t = 10)]
        max_size: i64,
        /// Seconds a desktop its user left is kept as it is: then a floating desktop
        /// goes back to the pool (0: at once) and a dedicated kvm desktop is suspended
        /// to disk (0: never).
        #[arg(long, value_name = "SECONDS")]
        disconnect_timeout: Option<i64>,
        /// Desktop source of the pool.
        #[arg(long, default_value = "synthetic", value_parser = ["synthetic", "x11", "kvm"])]
        kind: String,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// List the pools.
    List,
    /// Change a pool's sizes, disconnect timeout or source parameters.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["min_ready", "max_size", "disconnect_timeout", "params", "workload"])))]
    Set {
        name: String,
        /// Spare desktops kept ready.
        #[arg(long, value_name = "N")]
        min_ready: Option<i64>,
        /// Most desktops of the pool.
        #[arg(long, value_name = "N")]
        max_size: Option<i64>,
        /// Seconds a desktop its user left is kept as it is: then a floating desktop
        /// goes back to the pool (0: at once) and a dedicated kvm desktop is suspended
        /// to disk (0: never).
        #[arg(long, value_name = "SECONDS")]
        disconnect_timeout: Option<i64>,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Delete a pool: its sessions end, its desktops are destroyed, its entitlements go.
    Delete { name: String },
}

/// A pool's source parameters.
#[derive(Debug, clap::Args)]
pub(super) struct SourceArgs {
    /// Source parameters as a JSON object, e.g. for x11
    /// '{"width":1280,"height":800,"command":"xterm","server":"xorg","layout":"de"}',
    /// for kvm '{"image":"debian","memory_mib":512,"vcpus":1,"width":1024,"height":768}'.
    #[arg(long, value_name = "JSON")]
    pub(super) params: Option<String>,
    /// Synthetic workload of the pool's desktops (sets "workload" in the parameters):
    /// idle, typing, scroll, drag, video or mixed.
    #[arg(long)]
    pub(super) workload: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(super) enum HostCommand {
    /// List the hosts.
    List,
    /// Put a host in maintenance: it takes no new desktops, its free ones move
    /// elsewhere, its kvm desktops in use are live-migrated (others stay until they are
    /// released).
    Drain { id: String },
    /// Take a host out of maintenance (it takes new desktops again).
    Undrain { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum DesktopCommand {
    /// List the desktops.
    List {
        /// Only this pool's.
        #[arg(long, value_name = "NAME")]
        pool: Option<String>,
    },
    /// Reset a desktop to a clean state (its session ends; the host resets it).
    Reset { id: String },
    /// Delete a desktop: destroyed on its host (its session ends); its record stays.
    Delete { id: String },
    /// Print a kvm desktop's serial console log.
    Console { id: String },
    /// Live-migrate a kvm desktop to another host (its viewer follows it there).
    Migrate {
        id: String,
        /// The host's id; left out, the least loaded other host.
        #[arg(long, value_name = "HOST")]
        to: Option<String>,
    },
    /// The newest live migrations, with their outcome and downtime.
    Migrations,
    /// Suspend a kvm desktop to disk: its whole state is kept on its host and it costs
    /// no RAM (its session ends). It resumes when its user connects, or by `resume`.
    Suspend { id: String },
    /// Resume a suspended desktop where it was.
    Resume { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum SessionCommand {
    /// List the sessions.
    List,
    /// Log a session off.
    Logoff { id: String },
}
