//! The i8042 as a hostile guest drives it: any sequence of port reads and writes, mixed
//! with viewer keys and mouse motion, must not panic or grow without bound.

#![no_main]

use libfuzzer_sys::fuzz_target;
use oriel_vmm::i8042::{I8042, COMMAND_PORT, DATA_PORT};

fuzz_target!(|data: &[u8]| {
    let mut c = I8042::new();
    for pair in data.chunks(2) {
        let (op, value) = (pair[0], *pair.get(1).unwrap_or(&0));
        match op % 6 {
            0 => {
                c.write(DATA_PORT, value);
            }
            1 => {
                c.write(COMMAND_PORT, value);
            }
            2 => {
                c.read(DATA_PORT);
            }
            3 => {
                c.read(COMMAND_PORT);
            }
            4 => c.key(u16::from(value), op & 0x80 != 0),
            _ => c.mouse(i32::from(value as i8) * 40, -i32::from(value as i8), value & 7, i32::from(op >> 6)),
        }
        c.take_irq();
    }
    // Whatever the guest did, draining the controller ends.
    let mut reads = 0;
    while c.read(COMMAND_PORT) & 1 == 1 {
        c.read(DATA_PORT);
        reads += 1;
        assert!(reads <= 4096, "the output queue is unbounded");
    }
});
