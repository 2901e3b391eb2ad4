use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;
use sr_faker::{Config, Device, Faker, RunningFaker};

pub async fn start(config: Config) -> RunningFaker {
    Faker::start(config).await.expect("faker starts")
}

pub async fn start_with(count: u64) -> RunningFaker {
    start(Config::local(count)).await
}

/// A minimal Armis client, strict about what the API returns.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub struct Page {
    pub status: StatusCode,
    pub body: Value,
    pub epoch: Option<u64>,
}

impl Page {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn devices(&self) -> Vec<Device> {
        serde_json::from_value(self.data()["results"].clone()).expect("results are devices")
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl Client {
    pub async fn connect(faker: &RunningFaker) -> Self {
        let mut c = Self {
            http: reqwest::Client::new(),
            base: faker.base_url(),
            token: String::new(),
        };
        c.token = c.new_token(faker.secret_key()).await;
        c
    }

    pub async fn token_response(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/access_token/", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    pub async fn new_token(&self, secret: &str) -> String {
        let (status, body) = self.token_response(&[("secret_key", secret)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["success"], true);
        body["data"]["access_token"].as_str().unwrap().to_owned()
    }

    /// A search with raw query parameters and an optional Authorization value.
    pub async fn raw(&self, params: &[(&str, &str)], auth: Option<&str>) -> Page {
        let mut req = self
            .http
            .get(format!("{}/api/v1/search/", self.base))
            .query(params);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let epoch = r
            .headers()
            .get(sr_faker::api::EPOCH_HEADER)
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let body: Value = r.json().await.expect("every answer is JSON");
        Page {
            status,
            body,
            epoch,
        }
    }

    pub async fn page(&self, aql: &str, length: u64, from: u64) -> Page {
        let (l, f) = (length.to_string(), from.to_string());
        self.raw(
            &[("aql", aql), ("length", &l), ("from", &f)],
            Some(&self.token),
        )
        .await
    }

    /// Follows `next` until 0, checking every page's bookkeeping; returns the devices and the
    /// number of pages.
    pub async fn fetch_all(&self, aql: &str, length: u64) -> (Vec<Device>, u64) {
        let mut from = 0;
        let mut out = Vec::new();
        let mut pages = 0;
        let mut total = None;
        loop {
            let page = self.page(aql, length, from).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            assert_eq!(page.body["success"], true);
            let data = page.data();
            let devices = page.devices();
            let count = data["count"].as_u64().unwrap();
            assert_eq!(
                count,
                devices.len() as u64,
                "count is the size of this page"
            );
            assert!(count <= length.min(1000));
            let t = data["total"].as_u64().unwrap();
            assert_eq!(*total.get_or_insert(t), t, "total is stable across pages");
            pages += 1;
            out.extend(devices);
            let next = data["next"].as_u64().expect("next is a number");
            if next == 0 {
                assert_eq!(from + count, t, "next reaches 0 exactly at the end");
                break;
            }
            assert_eq!(next, from + count, "next continues where this page ended");
            assert!(next < t, "next never points past the end");
            from = next;
            assert!(pages <= t + 1, "paging does not terminate");
        }
        (out, pages)
    }
}

pub fn ids(devices: &[Device]) -> Vec<u64> {
    devices.iter().map(|d| d.id).collect()
}

pub fn assert_each_id_once(devices: &[Device], n: u64) {
    let seen: HashSet<u64> = devices.iter().map(|d| d.id).collect();
    assert_eq!(seen.len(), devices.len(), "no id twice");
    assert_eq!(devices.len() as u64, n);
    assert!(seen.iter().all(|id| (1..=n).contains(id)));
}

pub fn primary_ip(d: &Device) -> &str {
    d.ip_address.split(',').next().unwrap()
}
