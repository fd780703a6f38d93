//! `clearvox metrics`.

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::MetricsArgs;

/// Runs `clearvox metrics`.
pub fn run(_args: &MetricsArgs) -> Result<ExitCode> {
    bail!("metrics: not available yet")
}
