//! Every message type of every channel from arbitrary bytes, split at arbitrary points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_protocol::wire::MessageReader;
use oriel_protocol::*;

fn drain<T: serde::de::DeserializeOwned>(data: &[u8], split: usize, limit: usize) {
    let mut reader = MessageReader::new(limit);
    let (a, b) = data.split_at(split.min(data.len()));
    for part in [a, b] {
        reader.push(part);
        while let Ok(Some(_)) = reader.next_message::<T>() {}
    }
    let _ = reader.finish();
}

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    drain::<Hello>(data, split, Channel::Control.max_message_len());
    drain::<HelloReply>(data, split, Channel::Control.max_message_len());
    drain::<ClientControl>(data, split, Channel::Control.max_message_len());
    drain::<ServerControl>(data, split, Channel::Control.max_message_len());
    drain::<InputEvent>(data, split, Channel::Input.max_message_len());
    drain::<CursorMsg>(data, split, Channel::Cursor.max_message_len());
    drain::<VideoMsg>(data, split, Channel::Video.max_message_len());
    drain::<oriel_protocol::ClipboardMsg>(data, split, 64 * 1024);
});
