//! rnnoise
