//! MIT-SHM capture: the X server writes screen pixels straight into a System V shared
//! memory segment we map, instead of sending them over the socket (GetImage copies every
//! pixel through the connection twice). Only works when the X server is on this host and
//! shares our IPC namespace; [`ShmSegment::attach`] returns `None` otherwise and the
//! source falls back to GetImage.

use oriel_protocol::Rect;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{self, ImageFormat};
use x11rb::rust_connection::RustConnection;

use super::x11_error::{request, x11_rect, X11Error};

pub(super) struct ShmSegment {
    seg: shm::Seg,
    addr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and only read through `&self` after
// the X server's reply says it finished writing.
unsafe impl Send for ShmSegment {}

impl ShmSegment {
    /// A segment of `len` bytes shared with the X server, or `None` when the server has
    /// no MIT-SHM or cannot attach our segment (a remote X server, another IPC namespace).
    pub(super) fn attach(conn: &RustConnection, len: usize) -> Result<Option<Self>, X11Error> {
        if conn
            .extension_information(shm::X11_EXTENSION_NAME)
            .map_err(request)?
            .is_none()
        {
            return Ok(None);
        }
        if conn.shm_query_version().map_err(request)?.reply().is_err() {
            return Ok(None);
        }
        // SAFETY: plain System V calls; failures are checked below.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            tracing::warn!(
                "MIT-SHM: shmget failed ({}); capturing with GetImage",
                std::io::Error::last_os_error()
            );
            return Ok(None);
        }
        // SAFETY: `id` is the segment just created; a null address lets the kernel choose.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if addr as isize == -1 {
            // SAFETY: removing the segment we created.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            return Ok(None);
        }
        let seg = conn.generate_id().map_err(request)?;
        let attached = conn
            .shm_attach(seg, id as u32, false)
            .map_err(request)?
            .check()
            .is_ok();
        // Both sides have it mapped now (or the server refused): mark it for removal so
        // it goes away with the last detach, even if this process is killed.
        // SAFETY: our segment id.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        let segment = ShmSegment {
            seg,
            addr: addr.cast(),
            len,
        };
        if !attached {
            tracing::info!("MIT-SHM: the X server cannot attach our segment; using GetImage");
            return Ok(None); // dropping `segment` unmaps it
        }
        Ok(Some(segment))
    }

    /// Captures `rect` of `drawable` into the segment and returns its pixels, packed rows
    /// of `rect.width` 32-bit pixels; `depth` is the image depth the server reported.
    pub(super) fn get_image(
        &self,
        conn: &RustConnection,
        drawable: xproto::Drawable,
        rect: &Rect,
    ) -> Result<(&[u8], u8), X11Error> {
        let bytes = rect.pixel_count().saturating_mul(4);
        if bytes > self.len {
            return Err(X11Error::Request(format!(
                "{}x{} does not fit the shared segment",
                rect.width, rect.height
            )));
        }
        let (x, y, width, height) = x11_rect(rect)?;
        let reply = conn
            .shm_get_image(
                drawable,
                x,
                y,
                width,
                height,
                !0,
                ImageFormat::Z_PIXMAP.into(),
                self.seg,
                0,
            )
            .map_err(request)?
            .reply()
            .map_err(request)?;
        if (reply.size as usize) < bytes {
            return Err(X11Error::Request(format!(
                "ShmGetImage wrote {} bytes, expected {bytes} (depth {})",
                reply.size, reply.depth
            )));
        }
        // SAFETY: the mapping is `self.len` bytes long and stays mapped while `self`
        // lives; the server finished writing before it replied.
        let data = unsafe { std::slice::from_raw_parts(self.addr, bytes) };
        Ok((data, reply.depth))
    }

    /// Bytes the segment holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Tells the X server to let go of the segment (it also does when the connection
    /// closes; the segment is already marked for removal).
    pub(super) fn detach(&self, conn: &RustConnection) {
        if conn.shm_detach(self.seg).is_ok() {
            let _ = conn.flush();
        }
    }
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; nothing borrows it past `&self` methods.
        unsafe { libc::shmdt(self.addr.cast()) };
    }
}
