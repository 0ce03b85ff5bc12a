//! Paths of the plugin components built from `plugins/` for the tests:
//! one `&str` constant per component, named after its crate in upper case
//! (`PASSTHROUGH`, `HMAC_VERIFY`, `SPIN_FOREVER`, ...).

include!(concat!(env!("OUT_DIR"), "/components.rs"));
