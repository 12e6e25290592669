//! Tests for `signals`.
