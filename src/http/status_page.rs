//! `GET /`: the status page of issue #13. One self-contained HTML document
//! (its CSS and JavaScript inlined, nothing fetched from another host),
//! compiled into the binary and put together once at startup, when the
//! page also learns whether `--fault-injection` is on.

/// The page, with a marker for each part filled in at startup.
const TEMPLATE: &str = include_str!("status_page.html");
const STYLE: &str = include_str!("status_page.css");
const SCRIPT: &str = include_str!("status_page.js");

const FAULT_INJECTION_MARKER: &str = "{{fault-injection}}";
const STYLE_MARKER: &str = "/* status-page: style */";
const SCRIPT_MARKER: &str = "/* status-page: script */";

pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The finished page, ready to serve.
pub struct StatusPage {
    html: String,
}

impl StatusPage {
    /// Fills in the markers. The flag goes first, so that text inside the
    /// inlined CSS or JavaScript is never taken for a marker.
    pub fn new(fault_injection: bool) -> StatusPage {
        let flag = if fault_injection { "true" } else { "false" };
        let html = TEMPLATE
            .replacen(FAULT_INJECTION_MARKER, flag, 1)
            .replacen(STYLE_MARKER, STYLE, 1)
            .replacen(SCRIPT_MARKER, SCRIPT, 1);
        StatusPage { html }
    }

    pub fn body(&self) -> Vec<u8> {
        self.html.as_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_marker_is_in_the_template_once() {
        for marker in [FAULT_INJECTION_MARKER, STYLE_MARKER, SCRIPT_MARKER] {
            assert_eq!(TEMPLATE.matches(marker).count(), 1, "{marker}");
        }
    }

    #[test]
    fn the_page_is_whole_and_says_whether_faults_are_on() {
        for (flag, body) in [
            (true, "data-fault-injection=\"true\""),
            (false, "data-fault-injection=\"false\""),
        ] {
            let html = StatusPage::new(flag).html;
            assert!(html.contains(body));
            assert!(html.contains(STYLE) && html.contains(SCRIPT));
            for marker in [FAULT_INJECTION_MARKER, STYLE_MARKER, SCRIPT_MARKER] {
                assert!(!html.contains(marker), "{marker} left in the page");
            }
        }
    }

    #[test]
    fn the_inlined_parts_cannot_close_their_element() {
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        let html = StatusPage::new(true).html;
        for reference in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!html.contains(reference), "the page mentions {reference:?}");
        }
    }
}
