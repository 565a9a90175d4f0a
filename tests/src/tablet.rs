//! The checkout tablet, for real: pcscd with its virtual reader driver (vpcd), a `virtual-card` process
//! on the first virtual reader, and `reader-agent` processes talking to a hub over HTTP and WebSocket.
//!
//! pcscd is one per machine (scripts/test.sh starts it); tests that use its virtual reader take turns
//! (nextest test group `pcsc`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use card_protocol::card::CardFile;
use serde_json::Value;

use crate::workspace_binary;

/// pcscd's socket: the tests need a running pcscd with vpcd.
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";
/// The first virtual reader, as vpcd names it.
pub const VIRTUAL_READER: &str = "Virtual PCD 00 00";

fn require_pcscd() {
    assert!(
        Path::new(PCSCD_SOCKET).exists(),
        "pcscd is not running ({PCSCD_SOCKET} is missing): scripts/test.sh installs and starts it"
    );
}

/// A `virtual-card` process holding a card file, on the first virtual reader.
pub struct VirtualCardProcess {
    child: Child,
    control: PathBuf,
    pub card_path: PathBuf,
    dir: tempfile::TempDir,
}

impl VirtualCardProcess {
    /// Starts a card from `card` (saved to a private file first), off the reader.
    pub async fn start(card: &CardFile) -> Self {
        Self::start_with(card, &[]).await
    }

    /// Starts a card of another application (no payment application on it).
    pub async fn start_foreign(card: &CardFile) -> Self {
        Self::start_with(card, &["--foreign"]).await
    }

    async fn start_with(card: &CardFile, flags: &[&str]) -> Self {
        require_pcscd();
        let dir = tempfile::tempdir().expect("card dir");
        let card_path = dir.path().join("card.json");
        card.save(&card_path).expect("card file");
        let control = dir.path().join("card.sock");
        let log = std::fs::File::create(dir.path().join("card.log")).expect("log");
        let child = Command::new(workspace_binary("virtual-card"))
            .arg("--control")
            .arg(&control)
            .arg("run")
            .arg("--card")
            .arg(&card_path)
            .args(flags)
            .env("VIRTUAL_CARD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("virtual-card starts");
        let card = Self {
            child,
            control,
            card_path,
            dir,
        };
        wait_until(
            "the virtual card's control socket",
            Duration::from_secs(10),
            || card.control.exists(),
        )
        .await;
        // A card of an earlier test may still be on the reader in pcscd's eyes: start from an empty one.
        card.wait_off_reader().await;
        card
    }

    pub fn command(&self, line: &str) -> String {
        reader_agent::virtual_card::command(&self.control, line).expect("virtual card answers")
    }

    /// `status`: on the reader or not, payments answered, numbers left.
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.command("status")).expect("status JSON")
    }

    /// A tap: on the reader until it has answered a payment (or 10 s passed), then off.
    pub fn tap(&self) {
        self.command("tap 10000");
    }

    /// Taps and waits until the card has answered a payment and left the reader.
    pub async fn tap_and_wait(&self) {
        let before = self.status()["payments"].as_u64().expect("payments");
        self.tap();
        wait_until(
            "the card to answer a payment",
            Duration::from_secs(30),
            || self.status()["payments"].as_u64() > Some(before),
        )
        .await;
        self.wait_off_reader().await;
    }

    pub async fn wait_off_reader(&self) {
        wait_until(
            "the card to leave the reader",
            Duration::from_secs(30),
            || self.status()["onReader"] == false,
        )
        .await;
        // pcscd polls vpcd about every 0.45 s: wait until pcscd itself shows the reader empty.
        wait_until(
            "pcscd to see the reader empty",
            Duration::from_secs(30),
            || !card_on_virtual_reader(),
        )
        .await;
    }

    pub fn numbers_left(&self) -> u64 {
        self.status()["numbersLeft"].as_u64().expect("numbersLeft")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("card.log")).unwrap_or_default()
    }
}

impl Drop for VirtualCardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reader agent's state directory and the processes run on it.
pub struct Agent {
    pub state_dir: tempfile::TempDir,
    pub device: String,
    pub hub_url: String,
    running: Option<Child>,
    runs: usize,
}

impl Agent {
    /// `reader-agent init` in a fresh state directory; returns the agent and the public key it printed.
    pub fn init(hub_url: &str) -> (Self, String) {
        let state_dir = tempfile::tempdir().expect("state dir");
        let output = Command::new(workspace_binary("reader-agent"))
            .arg("--state-dir")
            .arg(state_dir.path())
            .arg("init")
            .output()
            .expect("reader-agent init runs");
        assert!(output.status.success(), "init failed: {output:?}");
        let public_key = String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        (
            Self {
                state_dir,
                device: String::new(),
                hub_url: hub_url.to_owned(),
                running: None,
                runs: 0,
            },
            public_key,
        )
    }

    fn command(&self) -> Command {
        let mut command = Command::new(workspace_binary("reader-agent"));
        command
            .env("READER_AGENT_STATE_DIR", self.state_dir.path())
            .env("READER_AGENT_HUB", &self.hub_url)
            .env("READER_AGENT_DEVICE", &self.device)
            .env("READER_AGENT_READER", VIRTUAL_READER)
            .env("READER_AGENT_LOG", "info,reader_agent=debug");
        command
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.state_dir.path().join(format!("agent-{run}.log"))
    }

    /// Starts `reader-agent run` (the previous run must be stopped).
    pub fn start(&mut self) {
        assert!(self.running.is_none(), "stop the running agent first");
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).expect("log");
        let child = self
            .command()
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("reader-agent run starts");
        self.running = Some(child);
    }

    /// Waits (at most 60 s) until the running agent exits; its exit code.
    pub async fn wait_for_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.exited() {
                self.running = None;
                return status.code().expect("exit code");
            }
            assert!(Instant::now() < deadline, "the agent did not exit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `reader-agent run` and waits until it follows its terminal's payment requests.
    pub async fn start_following(&mut self) {
        self.start();
        self.wait_for_log("following the terminal's payment requests", 1)
            .await;
    }

    /// `kill -9`: whatever the agent was doing stops there.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status of the running agent, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.running
            .as_mut()
            .and_then(|child| child.try_wait().expect("agent status"))
    }

    /// What the current (or last) run logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default()
    }

    /// Waits until the current run's log has `count` lines containing `needle`.
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        wait_until(
            &format!("{count} × {needle:?} in the agent's log"),
            Duration::from_secs(60),
            || self.log().matches(needle).count() >= count,
        )
        .await;
    }

    /// `reader-agent pay --request ID`: the exit code and the JSON it printed. When the agent asks for a
    /// tap, `card_action` (a virtual-card command such as `tap` or `tear`) is sent to `card`: a card
    /// that lay on the reader before the agent asked does not count.
    pub async fn pay(
        &self,
        request: &str,
        wait: &str,
        card: Option<(&VirtualCardProcess, &str)>,
    ) -> (i32, Value) {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = tokio::process::Command::from(self.command())
            .args([
                "pay",
                "--request",
                request,
                "--wait",
                wait,
                "--submit-for",
                "5s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("reader-agent pay runs");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut stderr = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("tap a card") {
                if let Some((card, action)) = card {
                    card.command(action);
                }
                break;
            }
        }
        let rest = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let output = child.wait_with_output().await.expect("pay ends");
        stderr.push_str(&rest.await.unwrap_or_default());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|_| panic!("pay printed no JSON: {stdout}\nstderr: {stderr}"));
        (output.status.code().expect("exit code"), report)
    }

    /// `pay` that must stop with `exit_code` and the error `code`; returns its report.
    pub async fn pay_refused(
        &self,
        request: &str,
        wait: &str,
        card: Option<(&VirtualCardProcess, &str)>,
        (exit_code, code): (i32, &str),
    ) -> Value {
        let (exit, report) = self.pay(request, wait, card).await;
        assert_eq!(
            (exit, report["error"]["code"].as_str()),
            (exit_code, Some(code)),
            "{report}"
        );
        report
    }

    /// `reader-agent outbox`: exit code and what it printed.
    pub async fn outbox_listing(&self) -> (i32, String) {
        let output = tokio::process::Command::from(self.command())
            .arg("outbox")
            .output()
            .await
            .expect("reader-agent outbox runs");
        (
            output.status.code().expect("exit code"),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.state_dir.path().join("outbox")
    }

    /// The sealed entries waiting in the outbox.
    pub fn outbox_entries(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.outbox_dir()) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "tap"))
            .collect();
        paths.sort();
        paths
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for run in 1..=self.runs {
                eprintln!(
                    "--- reader-agent run {run} ---\n{}",
                    std::fs::read_to_string(self.log_path(run)).unwrap_or_default()
                );
            }
        }
        self.kill();
    }
}

/// Whether pcscd sees a card on the first virtual reader.
fn card_on_virtual_reader() -> bool {
    reader_agent::reader::Readers::connect()
        .and_then(|readers| readers.list())
        .expect("pcscd answers")
        .iter()
        .any(|reader| reader.name == VIRTUAL_READER && reader.card_present)
}

/// Fails if `log` shows any of `card`'s numbers (digits) or tokens: a card number never reaches a log.
pub fn assert_no_card_secrets(log: &str, card: &CardFile) {
    for text in &card.numbers {
        let token = card_protocol::token::Token::from_base64url(text).expect("token");
        let digits = std::str::from_utf8(token.body.number.digits()).expect("digits");
        assert!(!log.contains(digits), "a card number in the log");
        assert!(!log.contains(&text[..40]), "a token in the log");
    }
}

/// Polls `done` every 100 ms; a generous deadline turns a hang into a failure (never a timing assertion).
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
