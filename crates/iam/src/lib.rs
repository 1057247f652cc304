//! iam (placeholder)
