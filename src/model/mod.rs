//! Online models of the log-mid: a local-level Kalman filter for irregular spacing, recursive least
//! squares with exponential forgetting over features, and EWMA volatility.
