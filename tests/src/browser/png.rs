//! The size of a PNG image from its header (signature and `IHDR` chunk), enough to check a
//! screenshot without an image library.

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Width and height of a PNG, or `None` when `bytes` does not start like one.
pub fn size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(..8)? != SIGNATURE || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let (w, h) = (be(16)?, be(20)?);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(w: u32, h: u32) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend_from_slice(&13u32.to_be_bytes());
        b.extend_from_slice(b"IHDR");
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    #[test]
    fn reads_width_and_height() {
        assert_eq!(size(&header(390, 844)), Some((390, 844)));
    }

    #[test]
    fn refuses_what_is_not_a_png() {
        assert_eq!(size(b""), None);
        assert_eq!(size(b"GIF89a............................"), None);
        assert_eq!(size(&header(390, 844)[..20]), None);
        assert_eq!(size(&header(0, 844)), None);
        let mut jpeg_ish = header(1, 1);
        jpeg_ish[12..16].copy_from_slice(b"IDAT");
        assert_eq!(size(&jpeg_ish), None);
    }
}
