//! The VM's port-I/O devices: the i8042 (keyboard and mouse), COM1 (8250 UART from
//! vm-superio, written to the console log), a CMOS clock, and Oriel's guest-status port.
//! The PIC, IOAPIC and PIT (with port 0x61) are KVM's in-kernel ones. Unclaimed ports
//! read as 0xff (no device), as on a PC.

use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use kvm_ioctls::VmFd;
use vm_superio::{Serial, Trigger};

use crate::console::ConsoleLog;
use crate::i8042::{self, I8042};

const COM1: u16 = 0x3f8;
const COM1_IRQ: u32 = 4;
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Guest-status port: a guest writes [`STATUS_READY`] when it has drawn its first
/// screen, [`STATUS_POWER_OFF`] to switch the machine off, [`STATUS_RESET`] to reboot.
pub const STATUS_PORT: u16 = 0x510;
pub const STATUS_READY: u8 = 1;
pub const STATUS_POWER_OFF: u8 = 2;
pub const STATUS_RESET: u8 = 3;

/// What a port write asks of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Ready,
    PowerOff,
    Reset,
}

/// An edge-triggered interrupt line into KVM's irqchip. KVM_IRQ_LINE, not an irqfd:
/// an irqfd is injected later by a kernel worker, so a pulse just before a save could
/// be missing from the saved PIC while the device's state says it was raised.
pub(crate) struct IrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl IrqLine {
    pub(crate) fn new(vm: Arc<VmFd>, gsi: u32) -> Self {
        Self { vm, gsi }
    }

    pub(crate) fn pulse(&self) {
        if let Err(e) = self.trigger() {
            tracing::warn!("cannot raise a guest interrupt: {e}");
        }
    }
}

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        let set = |level| {
            self.vm
                .set_irq_line(self.gsi, level)
                .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
        };
        set(true)?;
        set(false)
    }
}

pub(crate) struct Devices {
    pub i8042: I8042,
    serial: Serial<IrqLine, vm_superio::serial::NoEvents, ConsoleLog>,
    keyboard_irq: IrqLine,
    mouse_irq: IrqLine,
    cmos_index: u8,
}

impl Devices {
    /// `irq(gsi)` makes an interrupt line to the guest.
    pub(crate) fn new(
        console: ConsoleLog,
        mut irq: impl FnMut(u32) -> std::io::Result<IrqLine>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            i8042: I8042::new(),
            serial: Serial::new(irq(COM1_IRQ)?, console),
            keyboard_irq: irq(i8042::KEYBOARD_IRQ)?,
            mouse_irq: irq(i8042::MOUSE_IRQ)?,
            cmos_index: 0,
        })
    }

    /// The devices as they are now (the machine paused).
    pub(crate) fn save(&self) -> crate::snapshot::DevicesState {
        crate::snapshot::DevicesState {
            i8042: self.i8042.clone(),
            serial: crate::snapshot::SerialRegisters::from_state(&self.serial.state()),
            cmos_index: self.cmos_index,
        }
    }

    /// Devices that continue from `state`, wired like [`Devices::new`]'s.
    pub(crate) fn restore(
        state: &crate::snapshot::DevicesState,
        console: ConsoleLog,
        mut irq: impl FnMut(u32) -> std::io::Result<IrqLine>,
    ) -> std::io::Result<Self> {
        let serial = Serial::from_state(
            &state.serial.to_state(),
            irq(COM1_IRQ)?,
            vm_superio::serial::NoEvents,
            console,
        )
        .map_err(|e| std::io::Error::other(format!("serial state: {e:?}")))?;
        Ok(Self {
            i8042: state.i8042.clone(),
            serial,
            keyboard_irq: irq(i8042::KEYBOARD_IRQ)?,
            mouse_irq: irq(i8042::MOUSE_IRQ)?,
            cmos_index: state.cmos_index & 0x7f,
        })
    }

    pub(crate) fn io_in(&mut self, port: u16, data: &mut [u8]) {
        let value = match port {
            i8042::DATA_PORT | i8042::COMMAND_PORT => {
                let v = self.i8042.read(port);
                self.raise_i8042_irq();
                v
            }
            COM1..=0x3ff => self.serial.read(com1_register(port)),
            CMOS_DATA => cmos_read(self.cmos_index),
            _ => 0xff,
        };
        data.fill(0xff);
        data[0] = value;
    }

    pub(crate) fn io_out(&mut self, port: u16, data: &[u8]) -> Option<Action> {
        let value = *data.first()?;
        match port {
            i8042::DATA_PORT | i8042::COMMAND_PORT => {
                let request = self.i8042.write(port, value);
                self.raise_i8042_irq();
                if request == Some(i8042::Request::Reset) {
                    return Some(Action::Reset);
                }
            }
            COM1..=0x3ff => {
                if let Err(e) = self.serial.write(com1_register(port), value) {
                    tracing::debug!("serial: {e:?}");
                }
            }
            CMOS_INDEX => self.cmos_index = value & 0x7f,
            STATUS_PORT => {
                return match value {
                    STATUS_READY => Some(Action::Ready),
                    STATUS_POWER_OFF => Some(Action::PowerOff),
                    STATUS_RESET => Some(Action::Reset),
                    _ => None,
                }
            }
            _ => {}
        }
        None
    }

    /// Viewer input into the i8042, with its interrupt.
    pub(crate) fn input(&mut self, f: impl FnOnce(&mut I8042)) {
        f(&mut self.i8042);
        self.raise_i8042_irq();
    }

    fn raise_i8042_irq(&mut self) {
        match self.i8042.take_irq() {
            Some(i8042::KEYBOARD_IRQ) => self.keyboard_irq.pulse(),
            Some(_) => self.mouse_irq.pulse(),
            None => {}
        }
    }
}

/// The UART register of a port in `COM1..=0x3ff`.
#[expect(
    clippy::cast_possible_truncation,
    reason = "callers pass ports in COM1..=COM1 + 7, so the offset is 0..=7"
)]
fn com1_register(port: u16) -> u8 {
    (port - COM1) as u8
}

/// The MC146818 registers a guest reads for the time of day (BCD, 24-hour, UTC).
fn cmos_read(index: u8) -> u8 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    // Two BCD digits: every field is below 100 (the century until the year 9999).
    let bcd = |v: u64| u8::try_from(((v / 10) << 4) | (v % 10)).unwrap_or(0x99);
    match index {
        0x00 => bcd(secs % 60),
        0x02 => bcd(secs / 60 % 60),
        0x04 => bcd(secs / 3600 % 24),
        0x06 => bcd((days + 4) % 7 + 1),
        0x07 => bcd(day),
        0x08 => bcd(month),
        0x09 => bcd(year % 100),
        0x32 => bcd(year / 100),
        0x0a => 0x26, // divider on, 1024 Hz, no update in progress
        0x0b => 0x02, // 24-hour, BCD
        0x0d => 0x80, // battery good
        _ => 0,
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as u64, month as u64, day as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
