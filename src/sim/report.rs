//! The HTML report of a run (`--report out.html`): one self-contained page, inline SVG drawn here, no scripts.

use super::metrics::RunResult;

pub fn html(r: &RunResult) -> String {
    format!("<!doctype html><title>{}</title>", r.scenario)
}
