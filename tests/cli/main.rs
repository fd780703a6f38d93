//! The command-line programs as a user runs them, as child processes: `clearvox enhance`
//! and `clearvox metrics` on good and bad input.

#[path = "../support/mod.rs"]
mod support;

/// Every kind of bad input: one line, a non-zero exit and no output file.
mod bad_input;
/// `clearvox enhance` and its options.
mod enhance;
/// `clearvox metrics`.
mod metrics;
/// Outputs and the report under misuse: no input or output replaced, no link followed,
/// permissions kept, `-o -` streamed.
mod output_files;
