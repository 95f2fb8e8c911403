//! `kiln dashboard`: the URL of the running `kiln up`'s dashboard, from `.kiln/api.json`.
//! Opened once, it signs the browser in (a cookie) and takes the token out of the address
//! bar. With `--json`: `{"url": …, "address": …}`.

use kiln_config::Config;
use kiln_engine::Layout;

use crate::api_client::info;
use crate::commands::control::fail;
use crate::exit;
use crate::out::outln;

pub fn run(config: &Config, json: bool) -> u8 {
    let info = match info(&Layout::new(&config.root).kiln) {
        Ok(info) => info,
        Err(e) => return fail(&e),
    };
    if json {
        outln!("{}", serde_json::json!({ "url": info.dashboard_url(), "address": info.address }));
    } else {
        outln!("{}", info.dashboard_url());
    }
    exit::SUCCESS
}
