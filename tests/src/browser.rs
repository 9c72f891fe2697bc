//! Debian's chromium, headless, driven through chromedriver (WebDriver) on loopback:
//! the console tests use the real browser a user would.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A browser session; chromedriver (and with it chromium) ends when it is dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// chromedriver's address.
    url: String,
}

/// How a browser is started beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct BrowserSetup {
    /// Window (and, headless, viewport) size; 1366x900 when `None`.
    pub window: Option<(u32, u32)>,
    /// More chromium switches.
    pub args: Vec<String>,
    /// Environment of chromedriver and the chromium it starts (e.g. `PULSE_SERVER`).
    pub env: Vec<(String, String)>,
}

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile in `dir`. The
    /// broker's certificate is self-signed (the native client pins it; a page cannot),
    /// so the browser accepts it: everything here is on loopback.
    pub async fn start(dir: &std::path::Path) -> Browser {
        Self::start_with(dir, BrowserSetup::default()).await
    }

    /// [`Browser::start`] with a window of `width` x `height` (headless: no frame, so
    /// also the page's viewport).
    pub async fn start_with_window(dir: &std::path::Path, width: u32, height: u32) -> Browser {
        let setup = BrowserSetup {
            window: Some((width, height)),
            ..Default::default()
        };
        Self::start_with(dir, setup).await
    }

    /// [`Browser::start`] as `setup` says.
    pub async fn start_with(dir: &std::path::Path, setup: BrowserSetup) -> Browser {
        let (width, height) = setup.window.unwrap_or((1366, 900));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver runs (./scripts/install-deps installs chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let profile = dir.join("chromium-profile");
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend(setup.args);
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        url,
                    }
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromium did not start: {last:?}");
    }

    /// Waits (up to 20 s) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within 20 s: {e}"))
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Clicks the element matching `css` (waiting for it). A live page may replace
    /// the element between finding and clicking it: then it is found again.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            match self.wait_for(css).await.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("cannot click {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    /// Chooses `value` in the select matching `css`, focused first as a user's click
    /// does (live pages leave a part alone while the user is in its form).
    pub async fn select(&self, css: &str, value: &str) {
        for _ in 0..20 {
            let select = self.wait_for(css).await;
            let chosen = match select.click().await {
                Ok(()) => select.select_by_value(value).await,
                Err(e) => Err(e),
            };
            match chosen {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("cannot choose {value} in {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.wait_for(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Waits (up to 20 s) until the page's text contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        for _ in 0..200 {
            if self.text().await.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {text:?} on the page within 20 s: {}", self.text().await);
    }

    /// The page's text (read in one step: a page that is being replaced has none).
    pub async fn text(&self) -> String {
        let text = self
            .client
            .execute(
                "return document.body ? document.body.innerText : '';",
                vec![],
            )
            .await
            .unwrap_or_default();
        text.as_str().unwrap_or_default().to_string()
    }

    /// Saves a screenshot as `target/screenshots/NAME.png` (to look at by hand).
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Fills the console's sign-in form and submits it.
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.client
            .goto(&format!("{base}/admin/login"))
            .await
            .unwrap();
        self.wait_for("#user").await.send_keys(user).await.unwrap();
        self.wait_for("#password")
            .await
            .send_keys(password)
            .await
            .unwrap();
        self.click("form.signin button").await;
        // Until the answer has come (signed in, refused, or not staff): going elsewhere
        // before would cancel it, and its cookie with it (password checks are slow on
        // a busy machine).
        let answered = "return document.readyState === 'complete' && \
             (!!document.querySelector('header form') || \
              !!document.querySelector('.flash.error') || \
              !document.querySelector('form.signin'));";
        for _ in 0..200 {
            if self.client.execute(answered, vec![]).await.ok() == Some(json!(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "signing in as {user} got no answer within 20 s: {}",
            self.text().await
        );
    }

    /// Signs out with the header's button and waits for the sign-in page.
    pub async fn sign_out(&self) {
        self.click("header form button").await;
        self.wait_for("form.signin").await;
    }

    /// The CSRF token of the signed-in session (from the sign-out form).
    pub async fn csrf(&self) -> String {
        self.wait_for("header form input[name=csrf]")
            .await
            .attr("value")
            .await
            .unwrap()
            .expect("a CSRF field")
    }

    /// POSTs a form from the page (with its cookies) and returns the status.
    pub async fn post_form(&self, path: &str, fields: serde_json::Value) -> u16 {
        let script = "const [path, fields, done] = arguments; \
             fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'}) \
             .then(r => done(r.status), e => done(String(e)));";
        let status = self
            .client
            .execute_async(script, vec![json!(path), fields])
            .await
            .unwrap();
        status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or_else(|| panic!("fetch failed: {status}"))
    }

    /// Grants the page's origin a permission (e.g. `clipboard-read`) without asking, as
    /// a user answering the browser's prompt would (WebDriver's Set Permission).
    pub async fn grant(&self, permission: &str) {
        let session = self.client.session_id().await.unwrap().expect("a session");
        // Plain HTTP to chromedriver; reqwest still wants a TLS setup to be built.
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let response = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap()
            .post(format!("{}/session/{session}/permissions", self.url))
            .json(&json!({"descriptor": {"name": permission}, "state": "granted"}))
            .send()
            .await
            .expect("chromedriver answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "cannot grant {permission}: {status} {body}"
        );
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Also after a failed test: chromedriver and the chromium it started share a
    /// process group of their own, which goes whole (killing chromedriver alone would
    /// leave chromium running).
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.driver.id()) {
            // SAFETY: a signal to the process group this Browser created; no memory involved.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
