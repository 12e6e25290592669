//! An HTTP client of one gateway process, for the end-to-end tests.
#![allow(clippy::unwrap_used)]

use serde_json::Value;

use crate::Running;

/// A client of one gateway process: its admin key, model calls with a virtual key, reads.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    admin: String,
}

impl Client {
    pub fn new(gw: &Running, admin: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: gw.base_url.clone(),
            admin: admin.to_owned(),
        }
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Create a key; (id, secret).
    pub async fn key(&self, spec: Value) -> (String, String) {
        let (s, v) = self
            .admin(reqwest::Method::POST, "/admin/keys", Some(spec))
            .await;
        assert_eq!(s, 201, "{v}");
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn chat(
        &self,
        key: Option<&str>,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post("/v1/chat/completions", key, body).await
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// One unlabelled sample of `/metrics` (scraped with the admin key).
    pub async fn metric(&self, name: &str) -> f64 {
        let (s, text) = self.get("/metrics", Some(&self.admin)).await;
        assert_eq!(s, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in /metrics"))
    }
}
