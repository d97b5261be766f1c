//! `Derived<T>`: a value computed from the fleet as it is now, kept until the next fold
//! (`Fleet::apply` clears it). `opsctl status` pages, the failover wait and the alert engine
//! ask for the digest and the maintenance set far more often than a busy fleet changes
//! between two batches. Derived, so ignored by `==` and copied by `clone`.

#[derive(Debug)]
pub(super) struct Derived<T>(std::sync::Mutex<Option<T>>);

impl<T> Default for Derived<T> {
    fn default() -> Self {
        Derived(std::sync::Mutex::new(None))
    }
}

impl<T: Clone> Derived<T> {
    pub(super) fn get(&self) -> Option<T> {
        self.0.lock().ok().and_then(|d| d.clone())
    }

    pub(super) fn set(&self, value: T) {
        if let Ok(mut d) = self.0.lock() {
            *d = Some(value);
        }
    }

    pub(super) fn clear(&mut self) {
        if let Ok(d) = self.0.get_mut() {
            *d = None;
        }
    }
}

impl<T: Clone> Clone for Derived<T> {
    fn clone(&self) -> Self {
        Derived(std::sync::Mutex::new(self.get()))
    }
}

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Derived<T> {}
