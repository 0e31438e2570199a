//! QR codes for the web app and scripts: a text (an invite's URL, a
//! safety number's payload) drawn as SVG and handed back as a
//! `data:image/svg+xml;base64,…` URL, which an `<img>` shows under the
//! page's `img-src 'self' data:` policy, with no request of its own. Dark
//! modules on white with the quiet zone, so a phone reads it in a dark
//! theme too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use qrcode::QrCode;
use qrcode::render::svg;

/// The media type and encoding every URL this module makes starts with.
pub const DATA_URL_PREFIX: &str = "data:image/svg+xml;base64,";

/// Smallest side of the image, in pixels (the code scales up to it).
const MIN_SIDE: u32 = 256;

/// Why a text could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the text cannot be drawn as a QR code: {0}")]
pub struct QrError(#[from] qrcode::types::QrError);

/// The SVG of `text`'s QR code.
pub fn svg(text: &str) -> Result<String, QrError> {
    let code = QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<svg::Color<'_>>()
        .min_dimensions(MIN_SIDE, MIN_SIDE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
}

/// `text`'s QR code as a `data:image/svg+xml;base64,…` URL.
pub fn data_url(text: &str) -> Result<String, QrError> {
    Ok(format!("{DATA_URL_PREFIX}{}", STANDARD.encode(svg(text)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_becomes_an_svg_data_url() {
        let url = data_url("claudemesh-sn:1:0123456789").unwrap();
        let b64 = url.strip_prefix(DATA_URL_PREFIX).unwrap();
        let svg = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
        // Longer texts make bigger codes; a text over a QR code's capacity
        // is an error, not a panic.
        assert!(data_url(&"x".repeat(3000)).is_err());
    }
}
