//! TODO(owner: lead) config
