//! Arbitrary bytes as display-stream messages into a client decoder: never a panic,
//! never an allocation beyond the channel limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_protocol::codec::Decoder;
use oriel_protocol::wire::MessageReader;
use oriel_protocol::{Capabilities, Channel, FrameMsg, Size};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new(Size::new(320, 200), Capabilities::all()).unwrap();
    let mut reader = MessageReader::new(Channel::Display.max_message_len());
    reader.push(data);
    while let Ok(Some(msg)) = reader.next_message::<FrameMsg>() {
        if decoder.apply(&msg).is_err() {
            break;
        }
    }
});
