//! Tests for `indicators`.
