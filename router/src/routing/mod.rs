//! Routing: which models may take a request (hard filters), and in which order (the score).

mod breaker;
mod budget;
pub mod candidates;
pub mod health;
pub mod score;
mod window;
