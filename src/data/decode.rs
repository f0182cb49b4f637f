//! Decoding image files to RGB8 and resizing them like torchvision's `Resize`.

use std::path::Path;

use fast_image_resize as fr;
use image::RgbImage;

use super::DataError;

/// Decodes an image file (JPEG or PNG; grey, grey+alpha, RGB, RGBA, CMYK JPEG, 8 or 16 bits)
/// to RGB8. Alpha is dropped (not composited), 16-bit samples are scaled to 8 bits.
///
/// `index` is the sample's index in its split, reported in errors (`usize::MAX` when there is
/// none). A missing file gives [`DataError::MissingImage`], an empty one
/// [`DataError::EmptyImage`], a corrupt or truncated one [`DataError::CorruptImage`], one of zero
/// width or height [`DataError::ZeroSizedImage`] (or [`DataError::CorruptImage`] when the decoder
/// itself rejects such dimensions, as the PNG decoder does).
pub fn load_rgb8(path: &Path, index: usize) -> Result<RgbImage, DataError> {
    let bytes = read_image_file(path, index)?;
    let img = image::load_from_memory(&bytes).map_err(|e| corrupt(path, index, e))?;
    if img.width() == 0 || img.height() == 0 {
        return Err(DataError::ZeroSizedImage {
            path: path.to_path_buf(),
            index,
            width: img.width(),
            height: img.height(),
        });
    }
    Ok(img.into_rgb8())
}

/// Reads only the header of an image file, for a quick check: its `(width, height)`, with the
/// same errors as [`load_rgb8`] for a missing, empty, unreadable-header or zero-sized file.
pub(crate) fn probe(path: &Path, index: usize) -> Result<(u32, u32), DataError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(DataError::EmptyImage {
                path: path.to_path_buf(),
                index,
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(path, index)),
        Err(e) => return Err(DataError::read(path, e)),
    }
    let reader = image::ImageReader::open(path).map_err(|e| DataError::read(path, e))?;
    let reader = reader
        .with_guessed_format()
        .map_err(|e| DataError::read(path, e))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| corrupt(path, index, e))?;
    if width == 0 || height == 0 {
        return Err(DataError::ZeroSizedImage {
            path: path.to_path_buf(),
            index,
            width,
            height,
        });
    }
    Ok((width, height))
}

fn read_image_file(path: &Path, index: usize) -> Result<Vec<u8>, DataError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(path, index)),
        Err(e) => return Err(DataError::read(path, e)),
    };
    if bytes.is_empty() {
        return Err(DataError::EmptyImage {
            path: path.to_path_buf(),
            index,
        });
    }
    Ok(bytes)
}

fn missing(path: &Path, index: usize) -> DataError {
    DataError::MissingImage {
        path: path.to_path_buf(),
        index,
        image_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

fn corrupt(path: &Path, index: usize, e: image::ImageError) -> DataError {
    DataError::CorruptImage {
        path: path.to_path_buf(),
        index,
        message: e.to_string(),
    }
}

/// Resizes an RGB8 image to `width`x`height` with an antialiased bilinear filter: the triangle
/// filter's support widens with the downscaling factor, as in Pillow's `resize(BILINEAR)`, which
/// is what torchvision's `Resize` (antialias on) computes. Returns the image unchanged when it
/// already has that size.
pub fn resize_rgb8(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    resize_into(&mut fr::Resizer::new(), image, width, height, &mut out);
    out
}

/// [`resize_rgb8`] into a caller's `width * height * 3` buffer, reusing `resizer`'s scratch space.
pub(crate) fn resize_into(
    resizer: &mut fr::Resizer,
    image: &RgbImage,
    width: u32,
    height: u32,
    out: &mut [u8],
) {
    if image.width() == width && image.height() == height {
        out.copy_from_slice(image.as_raw());
        return;
    }
    // Both views are built from buffers of the exact size and U8x3 has no alignment need, so
    // neither can fail; same pixel type on both sides, so resize cannot fail either.
    let src = fr::images::ImageRef::new(
        image.width(),
        image.height(),
        image.as_raw(),
        fr::PixelType::U8x3,
    )
    .expect("RGB8 buffer matches its dimensions");
    let mut dst = fr::images::Image::from_slice_u8(width, height, out, fr::PixelType::U8x3)
        .expect("output buffer matches its dimensions");
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear));
    resizer
        .resize(&src, &mut dst, &options)
        .expect("same pixel type on both sides");
}
