//! Buffers of floats kept by the calling thread between kernel calls, for the kernels'
//! intermediate products (unfolded patches, gathered gradients, products before their
//! scatter, Winograd's transformed tiles and weights).

/// A buffer of floats from a pool kept by the calling thread, with stale contents: every user
/// writes an element before reading it. Saves the zeroing and page faults of a fresh
/// allocation per call (the transformed weights of a 512-channel layer alone are 37 MB).
pub(crate) struct Scratch(Vec<f32>, usize);

thread_local! {
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    /// `n` floats: the pool's smallest buffer that holds them, else its largest, grown.
    pub(crate) fn new(n: usize) -> Scratch {
        let mut v = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let fits = (0..p.len())
                .filter(|&i| p[i].len() >= n)
                .min_by_key(|&i| p[i].len());
            let pick = fits.or_else(|| (0..p.len()).max_by_key(|&i| p[i].len()));
            pick.map(|i| p.swap_remove(i)).unwrap_or_default()
        });
        if v.len() < n {
            // grown without copying the stale contents
            v.clear();
            v.resize(n, 0.0);
        }
        Scratch(v, n)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.with(|p| p.borrow_mut().push(v));
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[..self.1]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0[..self.1]
    }
}
