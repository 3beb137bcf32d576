//! A real browser for the dashboard tests: headless Chromium driven through
//! chromedriver (WebDriver) with fantoccini. chromedriver runs on a free
//! loopback port in its own process group, killed with everything it started
//! on drop. Every lookup waits (bounded, generously) rather than assuming how
//! fast the page renders.
//!
//! Without Debian's `chromium` and `chromium-driver` the browser tests print
//! why and pass, unless `BEANBOX_REQUIRE_BROWSER=1` (scripts/test.sh, where
//! setup.sh installed them): then they fail.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::worker_support::{TempDir, eventually};

/// How long any wait for the page lasts before the test fails: generous,
/// as a loaded 2-core machine starts Chromium and renders slowly.
pub const WAIT: Duration = Duration::from_secs(60);

/// Set to `1` where the browser must be there (CI): a missing one fails.
const REQUIRE: &str = "BEANBOX_REQUIRE_BROWSER";

/// What a browser test prints when it cannot run.
pub const SKIPPED: &str =
    "skipped: chromium and chromium-driver not installed (scripts/setup.sh installs them)";

/// The window: wide enough for the dashboard's tables.
const WINDOW: (u32, u32) = (1400, 1000);

/// A headless Chromium session; chromedriver and the browser die on drop.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. `None` (after
    /// printing [`SKIPPED`]) when they are not installed, unless
    /// `BEANBOX_REQUIRE_BROWSER=1`, which makes that a failure.
    pub async fn start() -> Option<Browser> {
        let Some((chromium, chromedriver)) = installed() else {
            assert!(
                std::env::var_os(REQUIRE).is_none_or(|v| v != "1"),
                "{REQUIRE}=1 but chromium or chromedriver is not on PATH; \
                 scripts/setup.sh installs them (Debian: chromium, chromium-driver)"
            );
            eprintln!("{SKIPPED}");
            return None;
        };
        let driver = Driver::start(&chromedriver);
        let profile = driver.dir.path().join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={},{}", WINDOW.0, WINDOW.1),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open a Chromium session through chromedriver: {e}\n\
                     --- chromedriver log ---\n{}",
                    driver.log()
                )
            });
        Some(Browser {
            client,
            _driver: driver,
        })
    }

    /// Opens `url` (waits for the load event).
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Polls `probe` until it returns `Some`, for at most [`WAIT`]; fails
    /// naming `what` otherwise.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut probe: impl AsyncFnMut(&Client) -> Option<T>,
    ) -> T {
        let client = &self.client;
        eventually(WAIT, what, async || {
            let found = probe(client).await;
            if found.is_none() {
                // The page refreshes every 2 s: no need to poll at 25 ms.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            found
        })
        .await
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_until(&format!("an element matching `{css}`"), async |c| {
            c.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// The rendered text of the first element matching `css`, once there
    /// is one.
    pub async fn text(&self, css: &str) -> String {
        self.wait_text(css, "any text", |_| true).await
    }

    /// The rendered text of the first element matching `css`, once it
    /// satisfies `check` (described by `what`, for the failure message).
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let what = format!("`{css}` to show {what}");
        self.wait_until(&what, async |c| {
            // The element may be replaced between the lookup and the read.
            let text = c.find(Locator::Css(css)).await.ok()?.text().await.ok()?;
            check(&text).then_some(text)
        })
        .await
    }

    /// Clicks the first element matching `css`, once it is there and enabled.
    pub async fn click(&self, css: &str) {
        let what = format!("`{css}` to be there and enabled");
        self.wait_until(&what, async |c| {
            let element = c.find(Locator::Css(css)).await.ok()?;
            if !element.is_enabled().await.ok()? {
                return None;
            }
            element.click().await.ok()
        })
        .await;
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear `{css}`: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into `{css}`: {e}"));
    }

    /// Saves a PNG of the whole page (the window grows to the page's
    /// height, up to 4000 px) to `path`.
    pub async fn screenshot(&self, path: &Path) {
        // The page's height plus what the window adds around the viewport.
        let script = "return document.documentElement.scrollHeight \
                      + window.outerHeight - window.innerHeight;";
        let height = self
            .client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .map_or(WINDOW.1, |h| {
                u32::try_from(h).unwrap_or(4000).clamp(WINDOW.1, 4000)
            });
        self.client
            .set_window_size(WINDOW.0, height)
            .await
            .unwrap_or_else(|e| panic!("cannot resize the window: {e}"));
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take a screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Ends the session (Chromium quits); chromedriver is killed on drop.
    pub async fn close(self) {
        let Browser { client, _driver } = self;
        // A failure here leaves Chromium to the process-group kill below.
        let _ = client.close().await;
    }
}

/// Chromium and chromedriver, when both are on `PATH`.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    Some((
        on_path(&["chromium", "chromium-browser"])?,
        on_path(&["chromedriver"])?,
    ))
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|file| file.is_file())
}

/// chromedriver on a free loopback port, leading its own process group so
/// that the browsers it starts die with it.
#[derive(Debug)]
struct Driver {
    child: Child,
    port: u16,
    /// Its log and the browser profile; removed after the processes are gone.
    dir: TempDir,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let deadline = Instant::now() + WAIT;
        loop {
            let dir = TempDir::new("chromedriver");
            // Another process may take the port between the probe and
            // chromedriver's bind: it then exits, and we try another.
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("cannot bind a loopback port")
                .port();
            let log = std::fs::File::create(dir.path().join("chromedriver.log"))
                .expect("cannot create the chromedriver log");
            let child = Command::new(program)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cannot share the log file"))
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let mut driver = Driver { child, port, dir };
            match driver.wait_answering(deadline) {
                Ok(()) => return driver,
                // Dropping it kills what is left of it.
                Err(why) => assert!(
                    Instant::now() < deadline,
                    "chromedriver did not start: {why}"
                ),
            }
        }
    }

    /// Waits until the port accepts connections; `Err` when chromedriver
    /// exited or the deadline passed.
    fn wait_answering(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}):\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "port {} never answered:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// Kills chromedriver and every process of its group, and reaps it.
    fn kill(&mut self) {
        // Fails only when the group is already gone.
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::KILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}
