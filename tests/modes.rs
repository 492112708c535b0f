//! The API cases of `tests/common/api_cases.rs` against the in-process nodes
//! (the same cases run against a Redis Cluster in `tests/scaleout_http.rs`).

mod common;

use common::Server;
use common::api_cases::CASES;

#[test]
fn every_api_case_holds_with_in_process_nodes() {
    let server = Server::start(&[]);
    for (name, case) in CASES {
        eprintln!("case {name}");
        case(&server);
    }
}
