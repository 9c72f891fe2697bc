//! The launcher flows of the `oriel` binary: pick a pool (or take the only one), open an
//! `oriel://` link, and register the program as the handler of such links.

// Command-line output of the binary this module serves.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use oriel::launcher::{self, Link, Login};
use oriel::resume::Reconnect;

use crate::ViewArgs;

/// Gets a desktop of `pool` (waiting, with progress, while the broker starts one) and
/// shows it.
pub(crate) async fn connect_pool(login: &Login, pool: &str, args: &ViewArgs) -> anyhow::Result<()> {
    eprintln!("asking {} for a desktop of pool '{pool}' ...", login.broker);
    let progress = |waited: std::time::Duration| {
        eprint!(
            "\rno desktop of '{pool}' is free yet; the broker is starting one ({} s) ",
            waited.as_secs()
        );
        let _ = std::io::stderr().flush();
    };
    let waited = launcher::connect_options_waiting(login, pool, args.wait, progress).await;
    let (opts, reply) = waited?;
    eprintln!("desktop {} on {}", reply.desktop, reply.address);
    // After an outage, the broker hands out a new ticket for the same desktop.
    let (again, name): (Login, String) = (login.clone(), pool.to_string());
    let reconnect: Reconnect = std::sync::Arc::new(move || {
        let (login, pool) = (again.clone(), name.clone());
        Box::pin(async move { Ok(launcher::connect_options(&login, &pool).await?.0) })
    });
    crate::view(&opts, Some(pool), Some(reconnect), args).await
}

/// `oriel` alone: the only pool, or the one chosen from a numbered list.
pub(crate) async fn choose_and_connect(args: &ViewArgs) -> anyhow::Result<()> {
    let login = launcher::load()?;
    let pools = launcher::pools(&login).await?;
    let pool = match pools.as_slice() {
        [] => bail!(
            "no pools for {}: ask your administrator for an entitlement",
            login.user
        ),
        [only] => only.name.clone(),
        many => {
            let list: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let held = p
                        .desktop
                        .as_ref()
                        .map_or(format!("{} ready", p.ready), |d| {
                            format!("your desktop {d}")
                        });
                    format!("{:>3}) {:<20} {:<10} {held}", i + 1, p.name, p.assignment)
                })
                .collect();
            if !std::io::stdin().is_terminal() {
                bail!(
                    "several pools; pick one with `oriel connect POOL`:\n{}",
                    list.join("\n")
                );
            }
            eprintln!("{}", list.join("\n"));
            eprint!("connect to [1-{}]: ", many.len());
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let n: usize = line
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=many.len()).contains(n))
                .with_context(|| format!("'{}' is not a number from the list", line.trim()))?;
            many[n - 1].name.clone()
        }
    };
    connect_pool(&login, &pool, args).await
}

/// `oriel oriel://BROKER/POOL`.
pub(crate) async fn open_link(link: &Link, args: &ViewArgs) -> anyhow::Result<()> {
    let login = launcher::load_for(link)?;
    connect_pool(&login, &link.pool, args).await
}

/// Writes the `.desktop` entry and makes it the `oriel://` handler.
pub(crate) fn register() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot tell where this program is")?;
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set")?;
    let dir = data.join("applications");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("oriel.desktop");
    std::fs::write(&path, launcher::desktop_entry(&exe))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    let registered = std::process::Command::new("xdg-mime")
        .args(["default", "oriel.desktop", "x-scheme-handler/oriel"])
        .status();
    match registered {
        Ok(s) if s.success() => println!("oriel:// links now open with {}", exe.display()),
        _ => println!(
            "xdg-mime is not available; your desktop environment picks up {} on its next scan",
            path.display()
        ),
    }
    Ok(())
}
