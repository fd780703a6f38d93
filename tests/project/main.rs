//! Facts about the source tree and the manifest that no compiler checks: the modules of
//! the library import each other without a cycle, and `rust-version` is what the
//! locked dependencies need.

/// No import cycle between the library's modules.
mod module_graph;
/// `rust-version` against the dependencies in Cargo.lock.
mod rust_version;
