//! The host link from both ends: arbitrary bytes as host messages (what the broker reads
//! from a host, authenticated or not) and as broker messages (what a display server
//! reads), split at arbitrary points. Then what the broker does first with a register
//! or a report: bound the text it logs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_protocol::host_link::{BrokerMsg, HostMsg, MAX_HOST_MESSAGE};
use oriel_protocol::text;
use oriel_protocol::wire::MessageReader;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let (a, b) = data.split_at(split.min(data.len()));
    let mut hosts = MessageReader::new(MAX_HOST_MESSAGE);
    let mut brokers = MessageReader::new(MAX_HOST_MESSAGE);
    for part in [a, b] {
        hosts.push(part);
        brokers.push(part);
        while let Ok(Some(msg)) = hosts.next_message::<HostMsg>() {
            let logged = match &msg {
                HostMsg::Register(r) => text::for_log(&r.name).len(),
                HostMsg::TicketRefused { desktop, reason } => {
                    text::for_log(desktop).len() + text::for_log(reason).len()
                }
                HostMsg::Session { desktop, user, .. } => {
                    text::for_log(desktop).len() + text::for_log(user).len()
                }
                _ => 0,
            };
            assert!(logged <= 2 * (text::MAX_LOGGED + 3));
        }
        while let Ok(Some(_)) = brokers.next_message::<BrokerMsg>() {}
    }
});
