//! The certificate audit report for security reviewers.
