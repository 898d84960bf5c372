//! TODO(owner: lead) replay
