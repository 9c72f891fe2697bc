//! The desktops a server runs. Desktops come and go at run time (the broker creates,
//! resets and destroys them); each has its capture loop, stopped when it is removed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::desktop::Desktop;

struct Entry {
    desktop: Arc<Desktop>,
    capture: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Desktops {
    map: RwLock<BTreeMap<String, Entry>>,
    /// Stopped desktops keep their state (like a suspended VM) until started again.
    stopped: RwLock<BTreeMap<String, Arc<Desktop>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("a desktop named '{0}' already exists")]
pub struct AlreadyExists(pub String);

impl Desktops {
    pub fn get(&self, name: &str) -> Option<Arc<Desktop>> {
        self.read().get(name).map(|e| e.desktop.clone())
    }

    /// Adds a desktop and starts its capture loop (needs a tokio runtime).
    pub fn add(&self, desktop: Arc<Desktop>) -> Result<(), AlreadyExists> {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let name = desktop.name().to_string();
        if map.contains_key(&name) {
            return Err(AlreadyExists(name));
        }
        let capture = desktop.spawn_capture_loop();
        map.insert(name, Entry { desktop, capture });
        Ok(())
    }

    /// Stops a desktop: its capture loop ends and its viewers are told it is gone.
    pub fn remove(&self, name: &str) -> Option<Arc<Desktop>> {
        let entry = self
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)?;
        entry.capture.abort();
        entry.desktop.kick_viewers();
        self.stopped
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Some(entry.desktop)
    }

    /// Stops a desktop: no more capture, its viewers are disconnected, its state kept.
    pub fn stop(&self, name: &str) -> bool {
        let Some(desktop) = self.remove(name) else {
            return self.is_stopped(name);
        };
        desktop.source().set_paused(true);
        self.stopped
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), desktop);
        true
    }

    /// Starts a stopped desktop again; false when there is none of that name.
    pub fn start(&self, name: &str) -> bool {
        let parked = self
            .stopped
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        match parked {
            Some(desktop) => {
                desktop.source().set_paused(false);
                self.add(desktop).is_ok()
            }
            None => self.get(name).is_some(),
        }
    }

    /// A desktop whether it runs or is stopped.
    pub fn get_any(&self, name: &str) -> Option<Arc<Desktop>> {
        self.get(name).or_else(|| {
            self.stopped
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()
        })
    }

    pub fn is_stopped(&self, name: &str) -> bool {
        self.stopped
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Forgets a desktop whether it runs or is stopped.
    pub fn destroy(&self, name: &str) {
        self.remove(name);
        self.stopped
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    pub fn list(&self) -> Vec<Arc<Desktop>> {
        self.read().values().map(|e| e.desktop.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn remove_all(&self) {
        let names: Vec<String> = self.read().keys().cloned().collect();
        for name in names {
            self.remove(&name);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }
}
