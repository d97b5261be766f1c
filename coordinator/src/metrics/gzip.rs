//! Compression of a scrape: a 10,000-host fleet is ~17 MB of text and ~1 MB gzipped, and
//! Prometheus always sends `Accept-Encoding: gzip`. Whether a request accepts gzip (pure), and
//! the compression (fast level: a scrape is compressed once and read once).

use std::io::Write as _;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Whether an `Accept-Encoding` value accepts gzip (named, or `*`, without `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&[u8]>) -> bool {
    let Some(value) = accept_encoding.and_then(|v| std::str::from_utf8(v).ok()) else {
        return false;
    };
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

/// `text` gzipped.
pub fn gzip(text: &str) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 8), Compression::fast());
    encoder.write_all(text.as_bytes())?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn gzip_accepted_when_named_or_starred_and_not_refused() {
        for yes in [
            "gzip",
            "identity, gzip",
            "GZIP;q=0.5",
            "deflate, *",
            "br, gzip ; q=1",
        ] {
            assert!(accepts_gzip(Some(yes.as_bytes())), "{yes}");
        }
        for no in ["", "identity", "deflate, br", "gzip;q=0", "x-gzip2"] {
            assert!(!accepts_gzip(Some(no.as_bytes())), "{no}");
        }
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn gzip_round_trips() {
        let text = "opsfleet_hosts{state=\"up\"} 3\n".repeat(1000);
        let packed = gzip(&text).expect("gzip");
        assert!(packed.len() < text.len() / 10, "{} bytes", packed.len());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut back)
            .expect("gunzip");
        assert_eq!(back, text);
    }
}
