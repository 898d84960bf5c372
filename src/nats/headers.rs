//! Every NATS header name cambio reads or writes, defined once.

/// Set by `cambio replay --nats` on every message it publishes: the data is historical, so the service
/// does not stamp it with a wall-clock arrival time (its timestamp would look hours or years late), and
/// `cambio record` does not either.
pub const REPLAY: &str = "Cambio-Replay";

/// The de-duplication id of a published forecast, `<PAIR>-<position>` (JetStream drops a re-publication
/// with the same id inside its duplicate window).
pub const MSG_ID: &str = "Nats-Msg-Id";

/// NATS micro protocol: the error message of a failed request.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";

/// NATS micro protocol: the error code of a failed request.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
