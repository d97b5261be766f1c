//! Tells a coordinator's lease entries from foreign ones: JetStream answers or direct-get
//! copies that any credential can aim at the lease key with a chosen reply subject.

use async_nats::HeaderMap;

use opsfleet_proto::kv::LeaderRecord;
use opsfleet_proto::relay::relay_header;

/// True for an entry no coordinator wrote: any relay header, or a put whose value is not a
/// `LeaderRecord`. A genuine delete or purge marker (`KV-Operation`, no relay header) is not
/// foreign.
pub fn is_foreign(headers: Option<&HeaderMap>, payload: &[u8]) -> bool {
    if let Some(h) = headers {
        let names = h.iter().map(|(name, _)| AsRef::<str>::as_ref(name));
        if relay_header(names).is_some() {
            return true;
        }
        match h.get("KV-Operation").map(|v| v.as_str()) {
            Some("DEL") | Some("PURGE") => return false,
            Some(_) => return true,
            None => {}
        }
    }
    serde_json::from_slice::<LeaderRecord>(payload).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::relay::RELAY_HEADERS;

    fn record() -> Vec<u8> {
        br#"{"holder":"blue","color":"blue"}"#.to_vec()
    }

    #[test]
    fn a_coordinator_record_and_a_genuine_delete_are_not_foreign() {
        assert!(!is_foreign(None, &record()));
        let mut h = HeaderMap::new();
        h.insert("KV-Operation", "DEL");
        assert!(!is_foreign(Some(&h), b""));
    }

    #[test]
    fn a_jetstream_answer_and_a_direct_get_copy_are_foreign() {
        let api = br#"{"type":"io.nats.jetstream.api.v1.stream_info_response"}"#;
        assert!(is_foreign(None, api));
        // A crafted delete marker or record delivered by a direct get carries relay headers.
        for name in RELAY_HEADERS {
            let mut h = HeaderMap::new();
            h.insert("KV-Operation", "DEL");
            h.insert(name, "x");
            assert!(is_foreign(Some(&h), b""), "{name}");
            assert!(is_foreign(Some(&h), &record()), "{name}");
        }
    }
}
