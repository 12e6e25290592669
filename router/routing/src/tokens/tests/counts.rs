//! Exact counts, chat framing, margins, tools, schemas and media allowances.

use serde_json::json;

use super::*;

#[test]
fn known_counts_in_both_encodings() {
    load_blocking();
    let cases = [
        ("hello world", 2, 2),
        ("The quick brown fox jumps over the lazy dog.", 10, 10),
        ("tiktoken is great!", 6, 6),
        ("你好，世界！今天天气很好。", 9, 16),
        ("Привет, мир!", 5, 7),
        ("", 0, 0),
    ];
    for (text, o200k, cl100k) in cases {
        let exact = |tokens| TokenCount {
            tokens,
            exact: true,
        };
        assert_eq!(count_text(O200k, text), exact(o200k), "o200k {text:?}");
        assert_eq!(count_text(Cl100k, text), exact(cl100k), "cl100k {text:?}");
    }
}

#[test]
fn special_token_text_is_counted_as_ordinary_text() {
    load_blocking();
    // As the API treats user content: the literal string, not the single special token.
    assert_eq!(count_text(O200k, "<|endoftext|>").tokens, 7);
    assert_eq!(count_text(Cl100k, "<|endoftext|>").tokens, 7);
}

#[test]
fn cookbook_example_matches_the_published_counts() {
    let request = ChatRequest::new("gpt-4o", cookbook());
    // The cookbook's figures, which it checks against the API's `usage.prompt_tokens`.
    assert_eq!(exact(O200k, &request).tokens, 124);
    assert_eq!(exact(Cl100k, &request).tokens, 129);
    assert!(exact(O200k, &request).exact);
}

#[test]
fn agrees_with_tiktoken_num_tokens_from_messages() {
    let conversations = [
        cookbook(),
        tool_conversation(),
        vec![Message::new(Role::User, "hi")],
        vec![
            Message::new(Role::System, "You are terse."),
            Message::new(Role::User, ENGLISH[2]),
            Message::new(Role::Assistant, ENGLISH[1]),
            named(Role::User, "sam", ENGLISH[3]),
        ],
    ];
    for messages in conversations {
        let theirs = to_tiktoken(&messages);
        let request = ChatRequest::new("m", messages);
        for (family, model) in [(O200k, "gpt-4o"), (Cl100k, "gpt-4")] {
            let expected = num_tokens_from_messages(model, &theirs).expect("chat model");
            let ours = exact(family, &request);
            assert_eq!(
                ours.tokens as usize, expected,
                "{family:?} {:?}",
                request.messages
            );
            assert!(ours.exact);
        }
    }
}

#[test]
fn chat_overhead_per_message_name_and_reply() {
    let one = ChatRequest::new("m", vec![Message::new(Role::User, "")]);
    // 3 framing + 1 for the role + 3 reply priming.
    assert_eq!(exact(O200k, &one).tokens, 7);
    let with_name = ChatRequest::new("m", vec![named(Role::User, "sam", "")]);
    // + "sam" (1 token) + 1 per name.
    assert_eq!(exact(O200k, &with_name).tokens, 9);
}

#[test]
fn other_families_apply_their_margin_and_are_not_exact() {
    load_blocking();
    let request = ChatRequest::new("m", cookbook());
    let text = ENGLISH[1];
    for (family, base, percent) in [
        (Claude, Cl100k, 125),
        (Gemini, O200k, 115),
        (Llama, Cl100k, 115),
    ] {
        assert_eq!(margin(family), percent as f64 / 100.0);
        let scaled = |n: u32| (u64::from(n) * percent).div_ceil(100) as u32;
        let got = count_text(family, text);
        assert_eq!(
            got.tokens,
            scaled(count_text(base, text).tokens),
            "{family:?}"
        );
        assert!(!got.exact);
        let got = exact(family, &request);
        assert_eq!(
            got.tokens,
            scaled(exact(base, &request).tokens),
            "{family:?}"
        );
        assert!(!got.exact);
    }
    assert_eq!(margin(O200k), 1.0);
    assert_eq!(margin(Cl100k), 1.0);
    assert_eq!(count_request(Claude, &request).tokens, 162); // ceil(129 × 1.25)
}

#[test]
fn margins_round_up_in_integers() {
    assert_eq!(
        finish(20, 115, true),
        TokenCount {
            tokens: 23,
            exact: false
        }
    );
    assert_eq!(finish(1, 125, true).tokens, 2);
    assert_eq!(finish(0, 125, true).tokens, 0);
    assert_eq!(
        finish(7, 100, true),
        TokenCount {
            tokens: 7,
            exact: true
        }
    );
    assert!(!finish(7, 100, false).exact);
    assert_eq!(finish(u64::MAX, 125, true).tokens, u32::MAX);
}

#[test]
fn tool_definitions_and_schemas_add_tokens_and_make_the_count_approximate() {
    let plain = ChatRequest::new("m", tool_conversation());
    let mut tools = plain.clone();
    tools.tools = Some(vec![weather_tool()]);
    let mut schema = plain.clone();
    schema.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: JsonSchemaFormat {
            name: "forecast".to_owned(),
            description: None,
            schema: weather_tool().function.parameters,
            strict: Some(true),
        },
    });
    for family in ALL {
        for counted in [exact, estimated] {
            let base = counted(family, &plain).tokens;
            for richer in [&tools, &schema] {
                let got = counted(family, richer);
                assert!(
                    got.tokens > base + 20,
                    "{family:?}: {} vs {base}",
                    got.tokens
                );
                assert!(!got.exact);
            }
        }
    }
    // A JSON-object format has no schema to count.
    let mut object = plain.clone();
    object.response_format = Some(ResponseFormat::JsonObject);
    assert_eq!(exact(O200k, &object), exact(O200k, &plain));
}

#[test]
fn images_and_media_use_fixed_allowances() {
    let image = |detail: Option<&str>| ContentPart::ImageUrl {
        image_url: ImageUrl {
            url: "https://example.com/cat.png".to_owned(),
            detail: detail.map(str::to_owned),
        },
    };
    let parts = |extra: Vec<ContentPart>| {
        let mut parts = vec![ContentPart::Text {
            text: "What is in this picture?".to_owned(),
        }];
        parts.extend(extra);
        let message = Message {
            content: Some(Content::Parts(parts)),
            ..Message::new(Role::User, "")
        };
        ChatRequest::new("m", vec![message])
    };
    let text_only = exact(O200k, &parts(vec![]));
    assert!(text_only.exact);
    let with = |extra| exact(O200k, &parts(extra));
    assert_eq!(with(vec![image(None)]).tokens, text_only.tokens + 765);
    assert_eq!(
        with(vec![image(Some("high"))]).tokens,
        text_only.tokens + 765
    );
    assert_eq!(with(vec![image(Some("low"))]).tokens, text_only.tokens + 85);
    let audio = ContentPart::InputAudio {
        input_audio: json!({"data": "AAAA", "format": "wav"}),
    };
    assert_eq!(with(vec![audio]).tokens, text_only.tokens + 765);
    assert!(!with(vec![image(Some("low"))]).exact);
}

#[test]
fn request_tokens_shares_one_pass_per_encoding() {
    let request = ChatRequest::new("m", cookbook());
    let counts = RequestTokens::new(&request);
    for family in ALL {
        assert_eq!(counts.get(family), count_request(family, &request));
    }
}
