//! Streaming drift detectors on inputs, predictions and residuals.
