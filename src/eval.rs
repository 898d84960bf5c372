//! TODO(owner: lead) eval
