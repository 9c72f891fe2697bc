//! KVM desktops: a VM of Oriel's micro-VMM whose linear framebuffer is the screen.
//!
//! Damage comes from KVM's dirty-page log of the framebuffer slot: each poll reads the
//! log, diffs only the dirty pages against the last copy and reports the rows that
//! really changed. An idle guest writes no pages, so its desktop costs nothing to poll.
//! Keys go to the VM's PS/2 keyboard; the pointer to its PS/2 mouse as relative motion.

use std::path::Path;
use std::time::Duration;

use oriel_protocol::{Framebuffer, InputEvent, PointerButton, Rect, Size};
use oriel_vmm::image::Image;
use oriel_vmm::{i8042, Vm, VmConfig, VmState};

use super::{FrameSource, SourceMetric};

/// What a `kvm` desktop runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmDesktopConfig {
    pub image: String,
    pub size: Size,
    /// Overrides of the image's defaults.
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u8>,
    pub fps: u32,
}

impl KvmDesktopConfig {
    /// The VM this desktop runs: image `image` from the store `images`, with overrides.
    pub fn vm_config(&self, images: &Path) -> anyhow::Result<VmConfig> {
        let image = Image::open(images, &self.image)?;
        Ok(VmConfig {
            vcpus: self.vcpus.unwrap_or(image.vcpus),
            memory_mib: self.memory_mib.unwrap_or(image.memory_mib),
            width: self.size.width,
            height: self.size.height,
            boot: image.boot,
        })
    }
}

pub struct KvmSource {
    vm: Vm,
    shadow: Framebuffer,
    /// The VM boot the shadow copy follows; a reset starts a new one.
    generation: u64,
    sequence: u64,
    fps: u32,
    pointer: Option<(u32, u32)>,
    buttons: u8,
    row: Vec<u32>,
}

impl KvmSource {
    /// Starts a VM of image `config.image` from the image store `images`.
    pub fn start(images: &Path, config: &KvmDesktopConfig) -> anyhow::Result<Self> {
        let vm = Vm::start(config.vm_config(images)?)?;
        Ok(Self::new(vm, config.fps))
    }

    /// Serves a running VM.
    pub fn new(vm: Vm, fps: u32) -> Self {
        let format = vm.format();
        let size = Size::new(format.width, format.height);
        Self {
            vm,
            shadow: Framebuffer::new(size),
            generation: 0,
            sequence: 0,
            fps: fps.clamp(1, 240),
            pointer: None,
            buttons: 0,
            row: vec![0; size.width as usize],
        }
    }

    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    fn send_mouse(&self, dx: i32, dy: i32, wheel: i32) {
        self.vm.mouse(dx, dy, self.buttons, wheel);
    }
}

/// A row or column of the framebuffer, computed in `usize` from byte offsets.
#[expect(
    clippy::cast_possible_truncation,
    reason = "rows are below the framebuffer's u32 height and columns at most its u32 width"
)]
fn coord(v: usize) -> u32 {
    v as u32
}

impl FrameSource for KvmSource {
    fn size(&self) -> Size {
        self.shadow.size()
    }

    fn frame_interval(&self) -> Duration {
        Duration::from_secs(1) / self.fps
    }

    fn poll(&mut self) -> Vec<Rect> {
        let view = self.vm.framebuffer();
        let format = view.format();
        let dirty = match view.take_dirty_pages() {
            // A new boot: its framebuffer is new memory, so compare all of it.
            Ok(_) if view.generation() != self.generation => {
                self.generation = view.generation();
                (0..view.page_count()).collect()
            }
            Ok(pages) => pages,
            Err(e) => {
                tracing::warn!("framebuffer dirty log: {e}");
                return Vec::new();
            }
        };
        if dirty.is_empty() {
            return Vec::new();
        }
        let Ok(bytes) = usize::try_from(format.bytes()) else {
            tracing::warn!("framebuffer larger than the address space");
            return Vec::new();
        };
        let (width, stride) = (format.width as usize, format.stride as usize);
        // Changed columns per row, over every dirty page that covers the row.
        let mut changed: std::collections::BTreeMap<u32, (u32, u32)> = Default::default();
        for page in dirty {
            let start = page as usize * 4096;
            let end = (start + 4096).min(bytes);
            if start >= end {
                continue;
            }
            for y in start / stride..=(end - 1) / stride {
                let line = y * stride;
                let x0 = (start.max(line) - line) / 4;
                let x1 = (end.min(line + stride) - line).div_ceil(4).min(width);
                if x0 >= x1 {
                    continue;
                }
                let fresh = &mut self.row[..x1 - x0];
                view.read_row(coord(y), coord(x0), coord(x1), fresh);
                let old = &mut self.shadow.pixels_mut()[y * width + x0..y * width + x1];
                let Some(first) = fresh.iter().zip(old.iter()).position(|(a, b)| a != b) else {
                    continue;
                };
                let last = fresh
                    .iter()
                    .zip(old.iter())
                    .rposition(|(a, b)| a != b)
                    .unwrap_or(first);
                old[first..=last].copy_from_slice(&fresh[first..=last]);
                let span = (coord(x0 + first), coord(x0 + last + 1));
                changed
                    .entry(coord(y))
                    .and_modify(|s| *s = (s.0.min(span.0), s.1.max(span.1)))
                    .or_insert(span);
            }
        }
        let damage = merge_rows(&changed);
        if !damage.is_empty() {
            self.sequence += 1;
        }
        damage
    }

    fn pixels(&self) -> &Framebuffer {
        &self.shadow
    }

    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn inject(&mut self, event: &InputEvent) {
        match *event {
            InputEvent::Key { code, down } => self.vm.key(code, down),
            InputEvent::PointerMove { x, y } => {
                // PS/2 mice are relative: send the step from the last position. The
                // guest's own acceleration may make its pointer drift from the viewer's.
                if let Some((px, py)) = self.pointer {
                    let (dx, dy) = (x as i32 - px as i32, y as i32 - py as i32);
                    if dx != 0 || dy != 0 {
                        self.send_mouse(dx, dy, 0);
                    }
                }
                self.pointer = Some((x, y));
            }
            InputEvent::PointerButton { button, down } => {
                let bit = match button {
                    PointerButton::Left => i8042::BUTTON_LEFT,
                    PointerButton::Right => i8042::BUTTON_RIGHT,
                    PointerButton::Middle => i8042::BUTTON_MIDDLE,
                    // A PS/2 mouse has three buttons.
                    PointerButton::Back | PointerButton::Forward => return,
                };
                if down {
                    self.buttons |= bit;
                } else {
                    self.buttons &= !bit;
                }
                self.send_mouse(0, 0, 0);
            }
            InputEvent::Wheel { dy, .. } => {
                if dy != 0 {
                    self.send_mouse(0, 0, i32::from(dy).clamp(-32, 32));
                }
            }
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn failure(&self) -> Option<String> {
        match self.vm.state() {
            VmState::PoweredOff => Some("the VM was switched off by its guest".into()),
            VmState::Failed(reason) => Some(format!("the VM failed: {reason}")),
            VmState::Running | VmState::Paused => None,
        }
    }

    fn console_log(&self, max_bytes: usize) -> Option<String> {
        Some(self.vm.console().tail(max_bytes))
    }

    fn metrics(&self) -> Vec<SourceMetric> {
        vec![
            SourceMetric::gauge(
                "oriel_vm_guest_resident_bytes",
                "Host memory the VM's guest has touched (RAM and framebuffer)",
                self.vm.resident_bytes(),
            ),
            SourceMetric::counter(
                "oriel_vm_boots",
                "Power-ons of the VM (1 + resets and guest reboots)",
                self.vm.boots(),
            ),
            SourceMetric::counter(
                "oriel_vm_console_bytes",
                "Bytes the guest wrote to its serial console",
                self.vm.console().total(),
            ),
        ]
    }

    fn set_paused(&mut self, paused: bool) {
        if paused {
            self.vm.pause();
        } else {
            self.vm.resume();
        }
    }
}

/// One rectangle per run of consecutive rows with the same changed columns.
fn merge_rows(rows: &std::collections::BTreeMap<u32, (u32, u32)>) -> Vec<Rect> {
    let mut out: Vec<Rect> = Vec::new();
    for (&y, &(x0, x1)) in rows {
        if let Some(last) = out.last_mut() {
            if last.y + last.height == y && last.x == x0 && last.x + last.width == x1 {
                last.height += 1;
                continue;
            }
        }
        out.push(Rect::new(x0, y, x1 - x0, 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_equal_spans_merge() {
        let rows = [(3, (8, 16)), (4, (8, 16)), (5, (0, 4)), (7, (0, 4))]
            .into_iter()
            .collect();
        assert_eq!(
            merge_rows(&rows),
            [
                Rect::new(8, 3, 8, 2),
                Rect::new(0, 5, 4, 1),
                Rect::new(0, 7, 4, 1)
            ]
        );
    }
}
