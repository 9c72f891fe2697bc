//! The i8042 keyboard controller with a PS/2 keyboard (port 1, IRQ 1) and a PS/2 mouse
//! (port 2, IRQ 12), as on a PC: data port 0x60, status/command port 0x64.
//!
//! Pure state: the VMM calls [`I8042::read`]/[`I8042::write`] on port exits and
//! [`I8042::key`]/[`I8042::mouse`] for viewer input, then raises the interrupt
//! [`I8042::take_irq`] returns.

use std::collections::VecDeque;

use crate::scancode;

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;
pub const MOUSE_IRQ: u32 = 12;

/// Bytes waiting for the guest; a real keyboard's buffer holds 16, so more than this
/// is a guest not reading (input is dropped, like a full hardware buffer).
const QUEUE_LIMIT: usize = 256;

// Command byte bits.
const CB_KBD_IRQ: u8 = 0x01;
const CB_AUX_IRQ: u8 = 0x02;
const CB_SYSTEM: u8 = 0x04;
const CB_KBD_DISABLED: u8 = 0x10;
const CB_AUX_DISABLED: u8 = 0x20;
const CB_TRANSLATE: u8 = 0x40;

// Status bits.
const ST_OUTPUT_FULL: u8 = 0x01;
const ST_SYSTEM: u8 = 0x04;
const ST_COMMAND: u8 = 0x08;
const ST_UNLOCKED: u8 = 0x10;
const ST_AUX_DATA: u8 = 0x20;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Port {
    Keyboard,
    Mouse,
}

/// What a guest write asks of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Pulse of the CPU reset line (command 0xFE): how Linux and DOS reboot.
    Reset,
}

/// Mouse buttons as the PS/2 packet orders them.
pub const BUTTON_LEFT: u8 = 1;
pub const BUTTON_RIGHT: u8 = 2;
pub const BUTTON_MIDDLE: u8 = 4;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct I8042 {
    command_byte: u8,
    /// The output register: the byte the next data read returns.
    output: Option<(u8, Port)>,
    last_output: u8,
    queue: VecDeque<(u8, Port)>,
    /// The controller command whose data byte comes next on port 0x60.
    awaiting: Option<u8>,
    last_was_command: bool,
    keyboard: Keyboard,
    mouse: Mouse,
    irq: Option<u32>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Keyboard {
    scanning: bool,
    set: u8,
    /// A device command whose argument byte comes next.
    awaiting: Option<u8>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Mouse {
    reporting: bool,
    awaiting: Option<u8>,
    sample_rate: u8,
    resolution: u8,
    scaling_2_1: bool,
    /// The last three sample rates set: 200, 100, 80 switches on the wheel (IntelliMouse).
    rates: [u8; 3],
    wheel: bool,
    buttons: u8,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    pub fn new() -> Self {
        Self {
            command_byte: CB_KBD_IRQ | CB_SYSTEM | CB_TRANSLATE | CB_AUX_DISABLED,
            output: None,
            last_output: 0,
            queue: VecDeque::new(),
            awaiting: None,
            last_was_command: false,
            keyboard: Keyboard {
                scanning: true,
                set: 2,
                awaiting: None,
            },
            mouse: Mouse::new(),
            irq: None,
        }
    }

    /// What a controller of ours never holds (a restored state is checked with it).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.queue.len() > QUEUE_LIMIT {
            return Err("the i8042 queue overflows");
        }
        if !matches!(self.irq, None | Some(KEYBOARD_IRQ | MOUSE_IRQ)) {
            return Err("the i8042 raises an interrupt it has not");
        }
        if !(1..=3).contains(&self.keyboard.set) {
            return Err("the keyboard uses a scan code set that does not exist");
        }
        Ok(())
    }

    /// The interrupt to raise after the last call, if any.
    pub fn take_irq(&mut self) -> Option<u32> {
        self.irq.take()
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            DATA_PORT => {
                if let Some((byte, _)) = self.output.take() {
                    self.last_output = byte;
                }
                self.refill();
                self.last_output
            }
            COMMAND_PORT => self.status(),
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) -> Option<Request> {
        match port {
            DATA_PORT => {
                self.last_was_command = false;
                self.data_write(value);
                None
            }
            COMMAND_PORT => {
                self.last_was_command = true;
                self.command(value)
            }
            _ => None,
        }
    }

    /// A key pressed or released, by Linux evdev code. Ignored while the guest has the
    /// keyboard disabled, and for keys a PS/2 keyboard does not have.
    pub fn key(&mut self, evdev: u16, down: bool) {
        if !self.keyboard.scanning || self.command_byte & CB_KBD_DISABLED != 0 {
            return;
        }
        let Some(code) = scancode::scan_code(evdev) else {
            return;
        };
        let set1 = self.keyboard.set == 1 || self.command_byte & CB_TRANSLATE != 0;
        for byte in scancode::bytes(code, down, set1) {
            self.push(byte, Port::Keyboard);
        }
    }

    /// Relative pointer motion (x right, y down, in device counts), the buttons held
    /// (`BUTTON_*`) and wheel clicks (positive: towards the user). Large moves become
    /// several packets.
    pub fn mouse(&mut self, mut dx: i32, mut dy: i32, buttons: u8, mut wheel: i32) {
        if !self.mouse.reporting || self.command_byte & CB_AUX_DISABLED != 0 {
            self.mouse.buttons = buttons;
            return;
        }
        loop {
            let (sx, sy) = (dx.clamp(-255, 255), dy.clamp(-255, 255));
            let sz = wheel.clamp(-8, 7);
            // PS/2 y grows upwards.
            let py = -sy;
            let mut head = 0x08 | (buttons & 7);
            if sx < 0 {
                head |= 0x10;
            }
            if py < 0 {
                head |= 0x20;
            }
            self.push(head, Port::Mouse);
            // The low bytes of the two's complement; the sign bits are in the head.
            self.push(sx.to_le_bytes()[0], Port::Mouse);
            self.push(py.to_le_bytes()[0], Port::Mouse);
            if self.mouse.wheel {
                self.push(sz.to_le_bytes()[0] & 0x0f, Port::Mouse);
                wheel -= sz;
            }
            dx -= sx;
            dy -= sy;
            if dx == 0 && dy == 0 && (wheel == 0 || !self.mouse.wheel) {
                break;
            }
        }
        self.mouse.buttons = buttons;
    }

    fn status(&self) -> u8 {
        let mut status = ST_UNLOCKED;
        if let Some((_, port)) = self.output {
            status |= ST_OUTPUT_FULL;
            if port == Port::Mouse {
                status |= ST_AUX_DATA;
            }
        }
        if self.command_byte & CB_SYSTEM != 0 {
            status |= ST_SYSTEM;
        }
        if self.last_was_command {
            status |= ST_COMMAND;
        }
        status
    }

    fn command(&mut self, value: u8) -> Option<Request> {
        self.awaiting = None;
        match value {
            0x20 => self.reply(self.command_byte, Port::Keyboard),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.awaiting = Some(value),
            0xa7 => self.command_byte |= CB_AUX_DISABLED,
            0xa8 => self.command_byte &= !CB_AUX_DISABLED,
            0xa9 | 0xab => self.reply(0x00, Port::Keyboard), // port tests pass
            0xaa => {
                // Self-test: the controller resets its configuration too.
                self.command_byte = CB_KBD_DISABLED | CB_AUX_DISABLED | CB_SYSTEM | CB_TRANSLATE;
                self.reply(0x55, Port::Keyboard);
            }
            0xad => self.command_byte |= CB_KBD_DISABLED,
            0xae => self.command_byte &= !CB_KBD_DISABLED,
            0xc0 => self.reply(0x80, Port::Keyboard), // input port: keyboard not locked
            0xd0 => self.reply(0x03, Port::Keyboard), // output port: A20 on, not in reset
            0xfe => return Some(Request::Reset),
            // 0xf0..=0xfd pulse other output lines; nothing is wired to them.
            _ => {}
        }
        None
    }

    fn data_write(&mut self, value: u8) {
        match self.awaiting.take() {
            Some(0x60) => {
                self.command_byte = value;
                // The IRQ line follows "output full and enabled": enabling interrupts
                // with a byte waiting raises it.
                self.interrupt_for_output();
            }
            Some(0xd1) => {} // output port: A20 is always on
            Some(0xd2) => self.reply(value, Port::Keyboard),
            Some(0xd3) => self.reply(value, Port::Mouse),
            Some(0xd4) => self.mouse_command(value),
            _ => {
                // Bytes to port 0x60 go to the keyboard and enable its port.
                self.command_byte &= !CB_KBD_DISABLED;
                self.keyboard_command(value);
            }
        }
        self.refill();
    }

    fn keyboard_command(&mut self, value: u8) {
        if let Some(command) = self.keyboard.awaiting.take() {
            match command {
                0xf0 => match value {
                    0 => {
                        self.reply(ACK, Port::Keyboard);
                        self.reply(self.keyboard.set, Port::Keyboard);
                    }
                    1 | 2 => {
                        self.keyboard.set = value;
                        self.reply(ACK, Port::Keyboard);
                    }
                    _ => self.reply(RESEND, Port::Keyboard), // set 3 is not offered
                },
                _ => self.reply(ACK, Port::Keyboard), // LEDs (0xed), typematic (0xf3)
            }
            return;
        }
        match value {
            0xed | 0xf0 | 0xf3 => {
                self.keyboard.awaiting = Some(value);
                self.reply(ACK, Port::Keyboard);
            }
            0xee => self.reply(0xee, Port::Keyboard),
            0xf2 => {
                self.reply(ACK, Port::Keyboard);
                self.reply(0xab, Port::Keyboard);
                self.reply(0x83, Port::Keyboard);
            }
            0xf4 => {
                self.keyboard.scanning = true;
                self.reply(ACK, Port::Keyboard);
            }
            0xf5 => {
                self.keyboard.scanning = false;
                self.keyboard.set = 2;
                self.reply(ACK, Port::Keyboard);
            }
            0xf6 => {
                self.keyboard.scanning = true;
                self.keyboard.set = 2;
                self.reply(ACK, Port::Keyboard);
            }
            0xff => {
                self.keyboard.scanning = true;
                self.keyboard.set = 2;
                self.queue.retain(|(_, p)| *p != Port::Keyboard);
                self.reply(ACK, Port::Keyboard);
                self.reply(0xaa, Port::Keyboard);
            }
            _ => self.reply(RESEND, Port::Keyboard),
        }
    }

    fn mouse_command(&mut self, value: u8) {
        // Writing to the mouse enables its port, as on real controllers.
        self.command_byte &= !CB_AUX_DISABLED;
        if let Some(command) = self.mouse.awaiting.take() {
            match command {
                0xf3 => {
                    self.mouse.sample_rate = value;
                    self.mouse.rates = [self.mouse.rates[1], self.mouse.rates[2], value];
                    if self.mouse.rates == [200, 100, 80] {
                        self.mouse.wheel = true;
                    }
                }
                0xe8 => self.mouse.resolution = value.min(3),
                _ => {}
            }
            self.reply(ACK, Port::Mouse);
            return;
        }
        match value {
            0xe6 | 0xe7 => {
                self.mouse.scaling_2_1 = value == 0xe7;
                self.reply(ACK, Port::Mouse);
            }
            0xe8 | 0xf3 => {
                self.mouse.awaiting = Some(value);
                self.reply(ACK, Port::Mouse);
            }
            0xe9 => {
                self.reply(ACK, Port::Mouse);
                let m = &self.mouse;
                let status = (u8::from(m.reporting) << 5) | (u8::from(m.scaling_2_1) << 4);
                let (resolution, rate) = (m.resolution, m.sample_rate);
                self.reply(status | (m.buttons & 7), Port::Mouse);
                self.reply(resolution, Port::Mouse);
                self.reply(rate, Port::Mouse);
            }
            0xeb => {
                self.reply(ACK, Port::Mouse);
                self.mouse(0, 0, self.mouse.buttons, 0);
            }
            0xf2 => {
                self.reply(ACK, Port::Mouse);
                self.reply(if self.mouse.wheel { 3 } else { 0 }, Port::Mouse);
            }
            0xf4 => {
                self.mouse.reporting = true;
                self.reply(ACK, Port::Mouse);
            }
            0xf5 => {
                self.mouse.reporting = false;
                self.reply(ACK, Port::Mouse);
            }
            0xf6 => {
                let buttons = self.mouse.buttons;
                self.mouse = Mouse::new();
                self.mouse.buttons = buttons;
                self.reply(ACK, Port::Mouse);
            }
            0xff => {
                let buttons = self.mouse.buttons;
                self.mouse = Mouse::new();
                self.mouse.buttons = buttons;
                self.queue.retain(|(_, p)| *p != Port::Mouse);
                self.reply(ACK, Port::Mouse);
                self.reply(0xaa, Port::Mouse);
                self.reply(0x00, Port::Mouse);
            }
            // Wrap mode, remote mode and the rest: acknowledged, not emulated.
            _ => self.reply(ACK, Port::Mouse),
        }
    }

    /// A response byte: always queued, even while scanning is off.
    fn reply(&mut self, byte: u8, port: Port) {
        self.push(byte, port);
    }

    fn push(&mut self, byte: u8, port: Port) {
        if self.queue.len() < QUEUE_LIMIT {
            self.queue.push_back((byte, port));
        }
        self.refill();
    }

    /// Moves the next queued byte into the empty output register and interrupts for it.
    fn refill(&mut self) {
        if self.output.is_some() {
            return;
        }
        let Some((byte, port)) = self.queue.pop_front() else {
            return;
        };
        self.output = Some((byte, port));
        self.interrupt_for_output();
    }

    /// Interrupts for the byte in the output register, if its port's interrupt is on.
    fn interrupt_for_output(&mut self) {
        let Some((_, port)) = self.output else {
            return;
        };
        let (enabled, irq) = match port {
            Port::Keyboard => (self.command_byte & CB_KBD_IRQ != 0, KEYBOARD_IRQ),
            Port::Mouse => (self.command_byte & CB_AUX_IRQ != 0, MOUSE_IRQ),
        };
        if enabled {
            self.irq = Some(irq);
        }
    }
}

impl Mouse {
    fn new() -> Self {
        Self {
            reporting: false,
            awaiting: None,
            sample_rate: 100,
            resolution: 2,
            scaling_2_1: false,
            rates: [0; 3],
            wheel: false,
            buttons: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(c: &mut I8042) -> Vec<u8> {
        let mut out = Vec::new();
        while c.read(COMMAND_PORT) & ST_OUTPUT_FULL != 0 {
            out.push(c.read(DATA_PORT));
        }
        out
    }

    #[test]
    fn keys_are_translated_to_set1_unless_the_guest_turns_translation_off() {
        let mut c = I8042::new();
        c.key(30, true);
        assert_eq!(c.take_irq(), Some(KEYBOARD_IRQ));
        c.key(30, false);
        assert_eq!(drain(&mut c), [0x1e, 0x9e]);
        c.write(COMMAND_PORT, 0x60);
        c.write(DATA_PORT, CB_KBD_IRQ);
        c.key(111, false);
        assert_eq!(drain(&mut c), [0xe0, 0xf0, 0x71]);
    }

    #[test]
    fn enabling_interrupts_with_a_byte_waiting_raises_one() {
        let mut c = I8042::new();
        c.write(COMMAND_PORT, 0x60);
        c.write(DATA_PORT, CB_TRANSLATE);
        c.key(30, true);
        assert_eq!(c.take_irq(), None);
        c.write(COMMAND_PORT, 0x60);
        c.write(DATA_PORT, CB_TRANSLATE | CB_KBD_IRQ);
        assert_eq!(c.take_irq(), Some(KEYBOARD_IRQ));
        assert_eq!(drain(&mut c), [0x1e]);
    }

    #[test]
    fn linux_style_probe() {
        let mut c = I8042::new();
        c.write(COMMAND_PORT, 0xaa);
        assert_eq!(drain(&mut c), [0x55]);
        c.write(COMMAND_PORT, 0x20);
        let cb = drain(&mut c)[0];
        assert!(cb & CB_TRANSLATE != 0);
        c.write(DATA_PORT, 0xf2);
        assert_eq!(drain(&mut c), [ACK, 0xab, 0x83]);
        c.write(DATA_PORT, 0xf0);
        c.write(DATA_PORT, 0x00);
        assert_eq!(drain(&mut c), [ACK, ACK, 2]);
        c.write(DATA_PORT, 0xed);
        c.write(DATA_PORT, 0x07);
        assert_eq!(drain(&mut c), [ACK, ACK]);
        assert_eq!(c.write(COMMAND_PORT, 0xfe), Some(Request::Reset));
    }

    #[test]
    fn mouse_packets_and_wheel() {
        let mut c = I8042::new();
        c.write(COMMAND_PORT, 0x60);
        c.write(DATA_PORT, CB_KBD_IRQ | CB_AUX_IRQ | CB_TRANSLATE);
        for byte in [0xf3, 200, 0xf3, 100, 0xf3, 80, 0xf2, 0xf4] {
            c.write(COMMAND_PORT, 0xd4);
            c.write(DATA_PORT, byte);
        }
        assert_eq!(c.take_irq(), Some(MOUSE_IRQ));
        assert_eq!(drain(&mut c), [ACK, ACK, ACK, ACK, ACK, ACK, ACK, 3, ACK]);
        c.mouse(300, -2, BUTTON_LEFT, 1);
        let bytes = drain(&mut c);
        assert_eq!(bytes, [0x09, 255, 2, 1, 0x09, 45, 0, 0]);
        assert_eq!(c.read(COMMAND_PORT) & ST_AUX_DATA, 0);
    }

    #[test]
    fn a_guest_that_never_reads_loses_input_not_memory() {
        let mut c = I8042::new();
        for _ in 0..10_000 {
            c.key(30, true);
        }
        assert_eq!(drain(&mut c).len(), QUEUE_LIMIT + 1);
    }
}
