//! highpass
