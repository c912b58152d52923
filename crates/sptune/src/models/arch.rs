//! The architecture registry (stub; filled in next).

/// Names of the registered architectures.
pub fn names() -> Vec<&'static str> {
    super::ARCHS.to_vec()
}
