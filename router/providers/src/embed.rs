//! Embeddings egress, shared by the wire formats that have it (OpenAI and compatible, Gemini):
//! the inputs of a hub embeddings request, and the checks every answer passes before it
//! becomes a hub answer. The wire shapes themselves live with their formats (`openai.rs`,
//! `gemini/embed.rs`); Anthropic has no embeddings API.
//!
//! An embeddings request is a hub `ChatRequest` with `embed` set: each message is one input, in
//! order. The answer is a `ChatResponse` with no choices, `object: "list"` and `embeddings`, one
//! vector per input in input order. Upstreams are always asked for floats; the door encodes
//! base64 itself.
//!
//! IMPORTANT: an upstream's vectors are refused (`MalformedResponse`, not retried on the same
//! model: it would most likely answer the same) unless there is exactly one per input, each
//! index at most once and in range, all of one length — the length asked for when the request
//! named one — none empty, every number finite. A caller never receives a vector it did not
//! ask for, in a place it did not ask for it.

use switchyard_types::{ChatRequest, ChatResponse, Usage, new_id, unix_now};

use crate::{Call, ErrorKind, ProviderError, over_limit};

/// The inputs of an embeddings request, in order.
pub(crate) fn inputs(request: &ChatRequest) -> Result<Vec<String>, ProviderError> {
    if request.messages.is_empty() {
        return Err(ProviderError::new(
            ErrorKind::InvalidRequest,
            "an embeddings request needs at least one input",
        ));
    }
    Ok(request.messages.iter().map(|m| m.text()).collect())
}

/// The vector length the request asked for (None: the model's default).
pub(crate) fn dimensions(call: Call<'_>) -> Option<u32> {
    call.request.embed.and_then(|e| e.dimensions)
}

/// A refused answer: the upstream broke the embeddings contract.
pub(crate) fn refused(what: &str, message: impl std::fmt::Display) -> ProviderError {
    over_limit(format!("{what}: {message}"))
}

/// Vectors placed by the index the upstream gave each: exactly `count` of them, every index in
/// `0..count` once.
pub(crate) fn place(
    what: &str,
    count: usize,
    items: impl ExactSizeIterator<Item = (u64, Vec<f32>)>,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    if items.len() != count {
        return Err(refused(
            what,
            format!("{} vectors for {count} inputs", items.len()),
        ));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; count];
    for (index, vector) in items {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| slots.get_mut(i))
            .ok_or_else(|| {
                refused(
                    what,
                    format!("index {index} is out of range for {count} inputs"),
                )
            })?;
        if slot.is_some() {
            return Err(refused(what, format!("index {index} appears twice")));
        }
        *slot = Some(vector);
    }
    // Every slot is filled: `count` items, none twice, all in range.
    Ok(slots.into_iter().flatten().collect())
}

/// Checks vectors in input order against the request: one per input, none empty, all of one
/// length (`dimensions` when asked), every number finite.
pub(crate) fn check(
    what: &str,
    count: usize,
    dimensions: Option<u32>,
    vectors: Vec<Vec<f32>>,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    if vectors.len() != count {
        return Err(refused(
            what,
            format!("{} vectors for {count} inputs", vectors.len()),
        ));
    }
    let Some(first) = vectors.first() else {
        return Err(refused(what, "no vectors"));
    };
    let length = first.len();
    if let Some(want) = dimensions
        && usize::try_from(want).ok() != Some(length)
    {
        return Err(refused(
            what,
            format!("vectors of length {length}, {want} were asked for"),
        ));
    }
    for (i, v) in vectors.iter().enumerate() {
        if v.is_empty() {
            return Err(refused(what, format!("vector {i} is empty")));
        }
        if v.len() != length {
            return Err(refused(
                what,
                format!("vector {i} has length {}, vector 0 has {length}", v.len()),
            ));
        }
        if let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Err(refused(
                what,
                format!("vector {i} has a non-finite number at {j}"),
            ));
        }
    }
    Ok(vectors)
}

/// The hub answer for checked vectors. `prompt_tokens` is the upstream's count; 0 when it
/// reports none (Gemini never does), and the gateway then uses its own count.
pub(crate) fn answer(model: &str, vectors: Vec<Vec<f32>>, prompt_tokens: u32) -> ChatResponse {
    ChatResponse {
        id: new_id("emb-"),
        object: "list".to_owned(),
        created: unix_now(),
        model: model.to_owned(),
        choices: Vec::new(),
        usage: Usage::new(prompt_tokens, 0),
        system_fingerprint: None,
        embeddings: Some(vectors),
        extra: Default::default(),
    }
}

/// The error for a streamed embeddings request: there is no such thing.
pub(crate) fn no_stream() -> ProviderError {
    ProviderError::new(
        ErrorKind::InvalidRequest,
        "embeddings are not streamed: call `chat` for an embeddings request",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_refused(r: Result<Vec<Vec<f32>>, ProviderError>, want: &str) {
        let err = r.unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedResponse, "{err}");
        assert!(!err.retryable && err.kind.allows_fallback(), "{err}");
        assert!(err.message.contains(want), "{want}: {err}");
    }

    #[test]
    fn placement_refuses_wrong_counts_duplicates_and_strays() {
        let v = |i: u64| (i, vec![i as f32 + 1.0]);
        let placed = place("t", 3, [v(2), v(0), v(1)].into_iter()).unwrap();
        assert_eq!(placed, vec![vec![1.0], vec![2.0], vec![3.0]]);
        assert_refused(place("t", 3, [v(0), v(1)].into_iter()), "2 vectors for 3");
        assert_refused(
            place("t", 2, [v(0), v(0)].into_iter()),
            "index 0 appears twice",
        );
        assert_refused(
            place("t", 2, [v(0), v(2)].into_iter()),
            "index 2 is out of range",
        );
        assert_refused(
            place("t", 1, [v(u64::MAX)].into_iter()),
            "18446744073709551615 is out of range",
        );
    }

    #[test]
    fn vectors_are_checked_for_length_and_numbers() {
        let ok = vec![vec![0.6, 0.8], vec![1.0, 0.0]];
        assert_eq!(check("t", 2, None, ok.clone()).unwrap(), ok);
        assert_eq!(check("t", 2, Some(2), ok.clone()).unwrap(), ok);
        assert_refused(check("t", 2, Some(3), ok.clone()), "length 2, 3 were asked");
        assert_refused(check("t", 3, None, ok), "2 vectors for 3 inputs");
        assert_refused(check("t", 1, None, vec![vec![]]), "vector 0 is empty");
        assert_refused(check("t", 0, None, vec![]), "no vectors");
        assert_refused(
            check("t", 2, None, vec![vec![1.0, 0.0], vec![1.0]]),
            "vector 1 has length 1",
        );
        assert_refused(
            check("t", 1, None, vec![vec![0.0, f32::INFINITY]]),
            "non-finite number at 1",
        );
        assert_refused(check("t", 1, None, vec![vec![f32::NAN]]), "non-finite");
    }
}
