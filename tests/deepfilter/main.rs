//! The DeepFilterNet3 denoiser (feature `deepfilter`): loading exports, and the stage
//! against the reference runtime's output.

#[path = "../support/mod.rs"]
mod support;

/// Loading DeepFilterNet exports, good and bad, through the library and the CLI.
mod model;
/// The stage against golden vectors of the reference runtime.
mod reference;
