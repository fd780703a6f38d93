//! spectral_gate
