//! `--kernel-rate`: the whole benchmark in a network namespace of its own whose loopback
//! the kernel rate-limits with a token bucket (`tc qdisc … tbf`), the way a real
//! bottleneck router queues and drops — unlike the netem relay, which shapes in user space.

use std::process::Command;

use anyhow::{bail, Context};

/// The queue a real access router gives a flow: tbf's own burst and latency bound.
const BURST: &str = "32kb";
const QUEUE_LATENCY: &str = "100ms";

/// Moves this process into a new network namespace and limits its loopback to `rate`
/// (tc syntax, e.g. "10mbit"). Call before any thread or socket exists: a namespace
/// applies to the thread that enters it and to what it starts afterwards.
pub(crate) fn enter(rate: &str) -> anyhow::Result<()> {
    if !rate.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        bail!("--kernel-rate '{rate}' is not a tc rate such as 10mbit");
    }
    // SAFETY: unshare takes flags only; at this point the process has one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "--kernel-rate needs a network namespace of its own ({err}); run as root, \
             or under `unshare -rn`"
        );
    }
    run(&["ip", "link", "set", "lo", "up"])?;
    run(&[
        "tc",
        "qdisc",
        "add",
        "dev",
        "lo",
        "root",
        "tbf",
        "rate",
        rate,
        "burst",
        BURST,
        "latency",
        QUEUE_LATENCY,
    ])?;
    eprintln!("oriel-bench: loopback in a private network namespace, tbf rate {rate} burst {BURST} latency {QUEUE_LATENCY}");
    Ok(())
}

fn run(argv: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .with_context(|| format!("running {} (iproute2)", argv[0]))?;
    if !status.success() {
        bail!("`{}` failed ({status})", argv.join(" "));
    }
    Ok(())
}
