//! The status page (`GET /`) in a real headless chromium, driven through
//! chromedriver. Each test is skipped (with a line saying so) when chromium
//! or chromedriver is not installed.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use common::{PATIENCE, Server, items};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use webdriver::Browser;

/// The promise: a crashed master shows as dead, and another node
/// as master, within this long after the click.
const FAILOVER_SHOWN_WITHIN: Duration = Duration::from_secs(2);

/// One browser at a time: on a 2-core box, parallel chromiums would make
/// the timing checks measure the machine instead of the page.
static ONE_BROWSER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A fresh browser showing the page of `server`, once its `nodes` cards are
/// drawn; `None` when the test is skipped.
fn open_page(server: &Server, nodes: usize) -> Option<(MutexGuard<'static, ()>, Browser)> {
    open_page_in(server, nodes, || Browser::start(1100, 1000))
}

fn open_page_in(
    server: &Server,
    nodes: usize,
    start: impl FnOnce() -> Option<Browser>,
) -> Option<(MutexGuard<'static, ()>, Browser)> {
    let turn = ONE_BROWSER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let browser = start()?;
    browser.goto(&format!("http://{}/", server.addr));
    browser.wait_for(
        "a card per node",
        PATIENCE,
        "return document.querySelectorAll('article[data-node-id]').length === arguments[0]",
        &[json!(nodes)],
    );
    Some((turn, browser))
}

/// Role, state and text of node `id`'s card.
fn card(browser: &Browser, id: usize) -> Value {
    browser.execute(
        "const card = document.querySelector(`article[data-node-id=\"${arguments[0]}\"]`);
         return { role: card.dataset.role, state: card.dataset.state, text: card.textContent,
                  items: card.querySelector('[data-field=items]').textContent,
                  addr: card.querySelector('[data-field=addr]').textContent };",
        &[json!(id)],
    )
}

fn button(id: usize, action: &str) -> String {
    format!("article[data-node-id=\"{id}\"] button[data-action=\"{action}\"]")
}

/// Waits until the fault-injection status region says each of `words`.
fn wait_for_action_status(browser: &Browser, words: &[&str]) -> String {
    let text = browser.wait_for(
        &format!("the action status says {words:?}"),
        PATIENCE,
        "const text = document.getElementById('action-status').textContent;
         return arguments[0].every((word) => text.includes(word)) && text;",
        &[json!(words)],
    );
    text.as_str().unwrap_or_default().to_string()
}

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(PathBuf::from).unwrap_or(tmp)
}

#[test]
fn shows_one_card_per_node_with_the_master() {
    let server = Server::start(&["--nodes", "3"]);
    let Some((_turn, browser)) = open_page(&server, 3) else {
        return;
    };
    let nodes = server.nodes();
    for (id, node) in nodes.iter().enumerate() {
        let card = card(&browser, id);
        let (role, word) = if id == 0 {
            ("master", "MASTER")
        } else {
            ("replica", "replica")
        };
        assert_eq!(card["role"], role, "{card}");
        assert!(card["text"].as_str().unwrap().contains(word), "{card}");
        assert_eq!(card["state"], "alive", "{card}");
        assert!(card["text"].as_str().unwrap().contains("alive"), "{card}");
        assert_eq!(card["addr"], node["addr"], "{card}");
    }
    let masters = browser.execute(
        "return [...document.querySelectorAll('article')].filter((a) => a.textContent.includes('MASTER')).length",
        &[],
    );
    assert_eq!(masters, 1);
    assert_eq!(browser.text("#master"), "node 0");
    assert!(browser.text("#health").starts_with("OK"));
    assert!(browser.text("#master-changed").contains("never"));
    assert!(browser.text("#connection").contains("Connected"));
    let other_hosts = browser.execute(
        "return performance.getEntriesByType('resource').map((r) => r.name)
           .filter((url) => !url.startsWith(location.origin + '/'))",
        &[],
    );
    assert_eq!(
        other_hosts,
        json!([]),
        "the page loads only from its server"
    );
}

#[test]
fn posted_items_show_in_node_counts_and_in_a_tenant_lookup() {
    let server = Server::start(&[]);
    let Some((_turn, browser)) = open_page(&server, 4) else {
        return;
    };
    let tenant = "acme corp/ü";
    let batch = items((1..=10).map(|id| (id, if id <= 7 { tenant } else { "other" })));
    assert_eq!(server.post_items(&batch).status, 200);

    browser.wait_for(
        "every card shows 10 items",
        PATIENCE,
        "return [...document.querySelectorAll('article[data-node-id]')]
           .every((card) => card.querySelector('[data-field=items]').textContent === '10')",
        &[],
    );
    let received = browser.execute(
        "return [...document.querySelectorAll('article[data-node-id]')]
           .reduce((sum, card) => sum + Number(card.querySelector('[data-field=received]').textContent), 0)",
        &[],
    );
    assert_eq!(
        received, 10,
        "the chunks the nodes received add up to the batch"
    );
    browser.wait_for(
        "the ingest sparkline shows the batch",
        PATIENCE,
        "const peak = /peak ([0-9.]+)/.exec(document.getElementById('ingest-peak').textContent);
         return peak !== null && Number(peak[1]) > 0
           && document.getElementById('sparkline-line').getAttribute('points') !== '';",
        &[],
    );

    // The tenant has a space, a slash and a non-ASCII letter: it must be
    // percent-encoded as one path segment.
    browser.type_into("#tenant", tenant);
    browser.click("#lookup button[type=submit]");
    browser.wait_for(
        "the lookup shows 7 items",
        PATIENCE,
        "return document.getElementById('lookup-result').textContent
           === 'Tenant “acme corp/ü” has 7 items.'",
        &[],
    );
    browser.type_into("#tenant", "nobody");
    browser.click("#lookup button[type=submit]");
    browser.wait_for(
        "an unknown tenant counts 0",
        PATIENCE,
        "return document.getElementById('lookup-result').textContent.includes('has 0 items')",
        &[],
    );
}

#[test]
fn crash_fails_the_master_over_and_restart_brings_it_back() {
    let server = Server::start(&["--fault-injection"]);
    let Some((_turn, browser)) = open_page_in(&server, 4, || Browser::start(1100, 1300)) else {
        return;
    };
    // Two batches, each seen by the page, so the ingest sparkline has a shape.
    for (first, last) in [(1, 15), (16, 40)] {
        let batch = items((first..=last).map(|id| (id, "t")));
        assert_eq!(server.post_items(&batch).status, 200);
        browser.wait_for(
            "the cards show the batch",
            PATIENCE,
            "return [...document.querySelectorAll('[data-field=items]')]
               .every((items) => items.textContent === String(arguments[0]))",
            &[json!(last)],
        );
    }

    browser.click(&button(0, "crash"));
    let clicked = Instant::now();
    let master = browser.wait_for(
        "node 0 shows dead and another node master",
        FAILOVER_SHOWN_WITHIN,
        "const cards = [...document.querySelectorAll('article[data-node-id]')];
         const dead = cards[0].dataset.state === 'dead' && cards[0].textContent.includes('dead');
         const masters = cards.filter((card) => card.dataset.role === 'master'
           && card.dataset.state === 'alive' && card.textContent.includes('MASTER'));
         return dead && masters.length === 1 && masters[0].dataset.nodeId;",
        &[],
    );
    println!("failover shown {:?} after the click", clicked.elapsed());
    let master = master.as_str().unwrap().to_string();
    assert_ne!(master, "0");
    assert_eq!(browser.text("#master"), format!("node {master}"));
    wait_for_action_status(&browser, &["Crash node 0: 200 OK"]);
    browser.wait_for(
        "the master change is shown with its time and in the events",
        PATIENCE,
        "return document.getElementById('master-changed').textContent.includes('1 change')
           && document.getElementById('events').textContent.includes(`Master changed: node 0 → node ${arguments[0]}`);",
        &[json!(master)],
    );
    browser.screenshot(&target_dir().join("status-page-failover.png"));

    browser.click(&button(0, "restart"));
    wait_for_action_status(&browser, &["Restart node 0: 200 OK"]);
    browser.wait_for(
        "node 0 shows alive again, as a replica",
        PATIENCE,
        "const card = document.querySelector('article[data-node-id=\"0\"]');
         return card.dataset.state === 'alive' && card.dataset.role === 'replica'
           && card.querySelector('[data-field=items]').textContent === '40';",
        &[],
    );
    assert_eq!(browser.text("#master"), format!("node {master}"));
}

#[test]
fn conflicts_stalls_and_disconnects_show_their_answers() {
    let server = Server::start(&["--fault-injection", "--nodes", "2"]);
    let Some((_turn, browser)) = open_page(&server, 2) else {
        return;
    };

    // 409 with the server's message.
    browser.click(&button(1, "restart"));
    wait_for_action_status(&browser, &["Restart node 1", "409", "node 1 is alive"]);
    assert_eq!(
        browser.execute(
            "return document.getElementById('action-status').dataset.outcome",
            &[]
        ),
        "error"
    );

    // Stall for the number of ms typed in; the card says so, then recovers.
    browser.type_into("#stall-ms-1", "1500");
    browser.click(&button(1, "stall"));
    wait_for_action_status(&browser, &["Stall node 1 for 1500 ms: 200 OK"]);
    browser.wait_for(
        "node 1 shows stalled",
        PATIENCE,
        "const card = document.querySelector('article[data-node-id=\"1\"]');
         return card.dataset.state === 'stalled' && card.textContent.includes('stalled');",
        &[],
    );
    browser.wait_for(
        "node 1 shows alive after the stall",
        PATIENCE,
        "return document.querySelector('article[data-node-id=\"1\"]').dataset.state === 'alive'",
        &[],
    );

    // A disconnect moves the node to another port.
    let before = card(&browser, 1)["addr"].clone();
    browser.click(&button(1, "disconnect"));
    wait_for_action_status(&browser, &["Disconnect node 1: 200 OK"]);
    browser.wait_for(
        "node 1 shows its new address",
        PATIENCE,
        "const addr = document.querySelector('article[data-node-id=\"1\"] [data-field=addr]').textContent;
         return addr !== arguments[0] && addr.startsWith('127.0.0.1:');",
        &[before],
    );

    // A bad stall value is the server's 400, shown as such.
    browser.type_into("#stall-ms-0", "-5");
    browser.click(&button(0, "stall"));
    wait_for_action_status(&browser, &["Stall node 0", "400", "ms must be"]);

    browser.click(&button(1, "crash"));
    wait_for_action_status(&browser, &["Crash node 1: 200 OK"]);
    browser.click(&button(1, "crash"));
    wait_for_action_status(&browser, &["Crash node 1", "409", "node 1 is already dead"]);

    // Every node dead: the service answers 503, and the page says so.
    browser.click(&button(0, "crash"));
    wait_for_action_status(&browser, &["Crash node 0: 200 OK"]);
    browser.wait_for(
        "the page shows the 503 of /health with its message",
        PATIENCE,
        "return document.getElementById('health').textContent
             === 'Degraded: 503 Service Unavailable: no master is alive'
           && document.getElementById('master').textContent.startsWith('none')",
        &[],
    );
    browser.type_into("#tenant", "t");
    browser.click("#lookup button[type=submit]");
    browser.wait_for(
        "the lookup shows its 503",
        PATIENCE,
        "return document.getElementById('lookup-result').textContent
           .startsWith('Could not count “t”: 503 Service Unavailable: ')",
        &[],
    );
    browser.click(&button(0, "restart"));
    wait_for_action_status(&browser, &["Restart node 0: 200 OK"]);
    browser.wait_for(
        "the service is healthy again",
        PATIENCE,
        "return document.getElementById('health').textContent === 'OK: node 0 is master'",
        &[],
    );
}

#[test]
fn without_fault_injection_there_are_no_fault_buttons() {
    let server = Server::start(&["--nodes", "2"]);
    let Some((_turn, browser)) = open_page(&server, 2) else {
        return;
    };
    let controls = browser.execute(
        "return {
           flag: document.body.dataset.faultInjection,
           faultButtons: document.querySelectorAll('[data-action], input[type=number], .faults').length,
           buttons: [...document.querySelectorAll('button')].map((b) => b.textContent),
         }",
        &[],
    );
    assert_eq!(
        controls,
        json!({"flag": "false", "faultButtons": 0, "buttons": ["Count"]})
    );
}

#[test]
fn fits_a_360_px_wide_phone_screen() {
    let server = Server::start(&["--fault-injection"]);
    let Some((_turn, browser)) = open_page_in(&server, 4, || Browser::start_phone(360, 800)) else {
        return;
    };
    assert_eq!(
        browser.execute("return window.innerWidth", &[]),
        360,
        "the viewport is a phone's width"
    );
    assert_no_sideways_scroll(&browser, 360, "as loaded");
    let unlabelled = browser.execute(
        "return [...document.querySelectorAll('input')].filter((i) => i.labels.length === 0).length",
        &[],
    );
    assert_eq!(unlabelled, 0, "every input has a label");
    // Long words are the usual cause of sideways scrolling: a long tenant
    // name, a dead node, an error message.
    let long_tenant = "x".repeat(300);
    browser.type_into("#tenant", &long_tenant);
    browser.click("#lookup button[type=submit]");
    browser.wait_for(
        "the lookup answers",
        PATIENCE,
        "return document.getElementById('lookup-result').textContent.includes('has 0 items')",
        &[],
    );
    assert_no_sideways_scroll(&browser, 360, "with a long tenant name");
    browser.click(&button(3, "crash"));
    wait_for_action_status(&browser, &["Crash node 3: 200 OK"]);
    browser.click(&button(3, "crash"));
    wait_for_action_status(&browser, &["Crash node 3", "409"]);
    browser.wait_for(
        "node 3 shows dead",
        PATIENCE,
        "return document.querySelector('article[data-node-id=\"3\"]').dataset.state === 'dead'",
        &[],
    );
    assert_no_sideways_scroll(&browser, 360, "with a dead node and an error");
    browser.screenshot(&target_dir().join("status-page-phone.png"));
}

fn assert_no_sideways_scroll(browser: &Browser, width: u64, when: &str) {
    let widths = browser.execute(
        "return { document: document.documentElement.scrollWidth, body: document.body.scrollWidth }",
        &[],
    );
    assert!(
        widths["document"].as_u64().unwrap() <= width && widths["body"].as_u64().unwrap() <= width,
        "the page scrolls sideways at {width} px {when}: {widths}"
    );
}

#[test]
fn says_when_the_server_is_gone_and_when_it_is_back() {
    let server = Server::start(&["--nodes", "2"]);
    let addr = server.addr;
    let Some((_turn, browser)) = open_page(&server, 2) else {
        return;
    };
    browser.wait_for(
        "the page is connected",
        PATIENCE,
        "return document.body.dataset.connection === 'up'",
        &[],
    );

    server.kill9();
    browser.wait_for(
        "the page says the server is gone",
        PATIENCE,
        "return document.body.dataset.connection === 'down'
           && document.getElementById('connection').textContent.includes('not answering')",
        &[],
    );
    assert_eq!(
        browser.execute(
            "return document.querySelectorAll('article[data-node-id]').length",
            &[]
        ),
        2,
        "the last data stays on the page"
    );

    // The same address again, as after a restart of the service.
    let listen = addr.to_string();
    let _again = Server::try_start(&["--nodes", "2", "--listen", &listen])
        .unwrap_or_else(|log| panic!("cannot start again on {listen}:\n{log}"));
    browser.wait_for(
        "the page says the server is back",
        PATIENCE,
        "return document.body.dataset.connection === 'up'
           && document.getElementById('connection').textContent.includes('back')",
        &[],
    );
    assert!(browser.text("#events").contains("stopped answering"));
}
