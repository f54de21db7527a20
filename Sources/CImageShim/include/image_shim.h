// PNG (libpng) and JPEG (libjpeg-turbo) decoding and encoding for DaftData.ImageCodec.
//
// Both libraries report errors by longjmp-ing out of a callback, which Swift cannot do; these functions
// set up the jump themselves, so a corrupt file becomes a return code and a one-line message. Nothing is
// ever printed: warnings are dropped (as Pillow drops them) except libjpeg's "premature end of file",
// which is an error here (as it is in Pillow).
#ifndef DAFT_IMAGE_SHIM_H
#define DAFT_IMAGE_SHIM_H

#include <stddef.h>
#include <stdint.h>

#define DAFT_IMAGE_ERROR_LENGTH 256

/// The result of a decode (an image: width × height × channels bytes, HWC, rows top to bottom) or of an
/// encode (a file: `size` bytes). `data` is allocated by the shim and released with daft_image_free;
/// on failure it is NULL and `error` holds a NUL-terminated one-line message.
typedef struct {
    int width;
    int height;
    int channels;
    unsigned char *data;
    size_t size;
    char error[DAFT_IMAGE_ERROR_LENGTH];
} daft_image_result;

/// Decodes a PNG of any colour type, bit depth and interlacing to 8 bits per sample:
/// palette → RGB, grey 1/2/4-bit → 8-bit (bit replication), tRNS → an alpha channel,
/// 16-bit grey → min(v, 255) (Pillow's I;16 → L), other 16-bit types → the high byte (Pillow's ;16B unpackers).
/// Channels: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA. Refuses images of more than max_pixels pixels before
/// allocating them. Returns 0 on success.
int daft_png_decode(const unsigned char *bytes, size_t size, uint64_t max_pixels, daft_image_result *out);

/// Decodes a baseline, extended or progressive 8-bit JPEG: greyscale → 1 channel, YCbCr/RGB → 3 channels,
/// CMYK/YCCK → 3 channels converted as Pillow does (Adobe-inverted CMYK, then Pillow's cmyk2rgb).
/// ISLOW DCT and fancy upsampling (libjpeg's and Pillow's defaults). Refuses images of more than max_pixels
/// pixels, files with fewer bytes than one bit per 8x8 block of the image their header declares (truncated or
/// corrupt; libjpeg would pad every missing block) and files of more than 1000 progressive scans. Returns 0 on
/// success.
int daft_jpeg_decode(const unsigned char *bytes, size_t size, uint64_t max_pixels, daft_image_result *out);

/// Encodes width × height × channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) 8-bit HWC pixels as a
/// non-interlaced PNG with zlib level `compression` (0-9). Returns 0 on success.
int daft_png_encode(const unsigned char *pixels, int width, int height, int channels, int compression,
                    daft_image_result *out);

/// Encodes width × height × channels (1 grey or 3 RGB) 8-bit HWC pixels as a baseline JPEG of `quality`
/// (1-100, libjpeg's quality scaling, 4:2:0 chroma subsampling for RGB as Pillow's default). Returns 0 on success.
int daft_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                     daft_image_result *out);

/// Releases result->data (safe to call on a failed or already released result).
void daft_image_free(daft_image_result *result);

#endif
