//! The dashboard in a real browser (headless Chromium through WebDriver).

use crate::browser_support::Browser;
use crate::worker_support::TempDir;

/// The harness itself: a page loads, its title and text are read, typing
/// and a click change it, and a screenshot is written.
#[tokio::test]
async fn browser_reads_types_clicks_and_screenshots_a_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let page = "data:text/html;charset=utf-8,<title>harness</title><p id=out>before</p>\
                <input id=in><button id=go onclick=\"out.textContent=document.getElementById('in').value\">go</button>";
    browser.goto(page).await;
    assert_eq!(browser.client().title().await.unwrap(), "harness");
    assert_eq!(browser.text("#out").await, "before");
    browser.type_into("#in", "after").await;
    browser.click("#go").await;
    browser.wait_text("#out", "`after`", |t| t == "after").await;
    assert_eq!(
        browser
            .find("#in")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("after")
    );
    let dir = TempDir::new("screenshot");
    let png = dir.path().join("page.png");
    browser.screenshot(&png).await;
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {} bytes",
        bytes.len()
    );
    browser.close().await;
}
