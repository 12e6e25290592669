//! Every demo model answers through async-openai as a client, streaming and not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequestArgs, FinishReason,
};
use futures::StreamExt;
use switchyard_e2e::{DEMO_MODELS, Running};

fn client(gw: &Running) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", gw.base_url))
            .with_api_key("unused-by-the-demo"),
    )
}

fn request(model: &str, stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    let mut b = CreateChatCompletionRequestArgs::default();
    b.model(model)
        .max_completion_tokens(20u32)
        .temperature(0.0)
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("You are terse.")
                .build()
                .unwrap()
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Say hello.")
                .build()
                .unwrap()
                .into(),
        ]);
    if stream {
        // Set explicitly: with async-openai's `byot` feature on (the gateway enables it, and
        // cargo unifies features across the workspace), `create_stream` does not set it.
        b.stream(true);
        b.stream_options(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        });
    }
    b.build().unwrap()
}

#[tokio::test]
async fn every_demo_model_answers_non_streaming() {
    let gw = Running::demo();
    let client = client(&gw);
    for model in DEMO_MODELS {
        let response = client
            .chat()
            .create(request(model, false))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(response.model, *model);
        let choice = &response.choices[0];
        let text = choice.message.content.clone().unwrap_or_default();
        assert!(!text.trim().is_empty(), "{model}: empty answer");
        let usage = response.usage.expect("usage");
        assert!(usage.prompt_tokens > 0, "{model}: no prompt tokens");
        assert!(
            usage.completion_tokens > 0 && usage.completion_tokens <= 20,
            "{model}: completion tokens {}",
            usage.completion_tokens
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
    }
}

#[tokio::test]
async fn every_demo_model_streams_with_usage() {
    let gw = Running::demo();
    let client = client(&gw);
    for model in DEMO_MODELS {
        let mut stream = client
            .chat()
            .create_stream(request(model, true))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        let mut text = String::new();
        let mut finish = None;
        let mut usage = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{model}: {e}"));
            for choice in chunk.choices {
                if let Some(c) = choice.delta.content {
                    text.push_str(&c);
                }
                if choice.finish_reason.is_some() {
                    finish = choice.finish_reason;
                }
            }
            if chunk.usage.is_some() {
                usage = chunk.usage;
            }
        }
        assert!(!text.trim().is_empty(), "{model}: empty stream");
        assert!(
            matches!(finish, Some(FinishReason::Stop | FinishReason::Length)),
            "{model}: finish {finish:?}"
        );
        let usage = usage.unwrap_or_else(|| panic!("{model}: no usage chunk"));
        assert!(usage.completion_tokens > 0, "{model}");
    }
}

#[tokio::test]
async fn unknown_models_are_a_404_the_sdk_understands() {
    let gw = Running::demo();
    let err = client(&gw)
        .chat()
        .create(request("gpt-9-ultra", false))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("model_not_found"), "{text}");
}
