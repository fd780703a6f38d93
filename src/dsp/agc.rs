//! agc
