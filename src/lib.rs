//! clearvox: real-time voice enhancement.
#![deny(missing_docs)]

pub mod dsp;
pub mod error;
pub mod io;

pub use error::{Error, Result};
