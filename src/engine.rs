//! TODO(owner: lead) engine
