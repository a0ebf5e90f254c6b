//! The config parser and validation (`config::Settings`). The input up to the first NUL byte is
//! a TOML document; after it, NUL-separated `NAME=value` pairs are `REPLOG_*` environment
//! variables (the prefix is added when missing). See `checks`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replog_fuzz::checks;

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    checks::check_config_toml(&String::from_utf8_lossy(toml));
    if env.is_empty() {
        return;
    }
    let vars: Vec<(String, String)> = env
        .split(|&b| b == 0)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let pair = String::from_utf8_lossy(pair);
            let (name, value) = pair.split_once('=').unwrap_or((&pair, ""));
            let name = if name.starts_with("REPLOG_") {
                name.to_string()
            } else {
                format!("REPLOG_{name}")
            };
            (name, value.to_string())
        })
        .collect();
    checks::check_config_env(&vars);
});
