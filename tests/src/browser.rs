//! A real browser for the pages' tests: Debian's headless Chromium driven through chromedriver
//! (WebDriver over loopback HTTP). Every wait polls the page's own DOM, so a test waits for what a
//! person would see, and fails with what the page showed instead.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session at `width` x `height`.
    pub async fn start(width: u32, height: u32) -> Self {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: the test command installs Debian's chromium and chromium-driver (scripts/system-deps.sh)"
            );
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                // en-US: the pages format money and times in the browser's language, and the tests
                // read them.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--lang=en-US",
                    format!("--window-size={width},{height}")],
            }),
        );
        let started = Instant::now();
        let (mut driver, mut url) = spawn_driver();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(err) => {
                    assert!(
                        started.elapsed() < PATIENCE,
                        "no WebDriver session from chromedriver: {err}"
                    );
                    // Another process took the free port before chromedriver bound it: try another.
                    if driver.try_wait().ok().flatten().is_some() {
                        (driver, url) = spawn_driver();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Self { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` in the page (its `arguments` are `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    /// The text of the first element matching `css`, `None` when there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.eval(
            "const n = document.querySelector(arguments[0]); return n ? n.textContent : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Waits until the text of `css` satisfies `wanted`; returns it. Fails with the last text seen.
    pub async fn wait_text(&self, css: &str, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if let Some(text) = text.as_deref().filter(|text| wanted(text)) {
                return text.to_owned();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {what} in {css}; it shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `script` (returning a boolean) is true in the page.
    pub async fn wait_until(&self, what: &str, script: &str, args: Vec<Value>) {
        let started = Instant::now();
        while self.eval(script, args.clone()).await != Value::Bool(true) {
            assert!(
                started.elapsed() < PATIENCE,
                "waited {PATIENCE:?} for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
            .click()
            .await
            .unwrap_or_else(|err| panic!("click {css}: {err}"));
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Picks the option labelled `label` in the select `css`, once the page has listed it.
    pub async fn select_label(&self, css: &str, label: &str) {
        self.wait_until(
            &format!("the option {label:?} in {css}"),
            "const s = document.querySelector(arguments[0]); return !!s && [...s.options].some(o => o.label === arguments[1]);",
            vec![json!(css), json!(label)],
        )
        .await;
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css}: {err}"))
            .select_by_label(label)
            .await
            .unwrap_or_else(|err| panic!("no option {label:?} in {css}: {err}"));
    }

    /// Signs in on a page's form with `token` and waits for the page behind it.
    pub async fn sign_in(&self, token: &str) {
        self.type_into("#token", token).await;
        self.click("#signin-button").await;
        self.wait_until(
            "the signed-in page",
            "return !document.getElementById('app').hidden;",
            vec![],
        )
        .await;
    }

    /// Writes a screenshot of the window to `<folder>/screenshots/<name>.png` and prints its path (for
    /// people to look at; nothing compares pixels). Tests pass their `CARGO_TARGET_TMPDIR`.
    pub async fn screenshot(&self, folder: &str, name: &str) -> PathBuf {
        let dir = PathBuf::from(folder).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(&path, png).expect("write the screenshot");
        println!("screenshot: {}", path.display());
        path
    }

    /// Ends the session (Chromium quits) and chromedriver.
    pub async fn stop(self) {
        let _ = self.client.clone().close().await;
        // Drop stops chromedriver.
    }
}

impl Drop for Browser {
    /// Also when a test fails halfway: chromedriver does not outlive it.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// chromedriver on a free loopback port, and its URL.
fn spawn_driver() -> (Child, String) {
    let port = crate::free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    (driver, format!("http://127.0.0.1:{port}"))
}
