// libpng and libjpeg calls with the setjmp/longjmp error handling Swift cannot express (see image_shim.h).
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

#include "image_shim.h"

// More progressive scans than any real encoder writes; a crafted file with thousands of tiny scans
// would otherwise make decoding take minutes (libjpeg-turbo's djpeg -maxscans guards the same way).
#define DAFT_JPEG_MAX_SCANS 1000

static void set_error(daft_image_result *out, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(out->error, DAFT_IMAGE_ERROR_LENGTH, format, args);
    va_end(args);
    for (char *p = out->error; *p; p++) {
        if (*p == '\n' || *p == '\r') *p = ' ';
    }
}

static void start_result(daft_image_result *out) {
    memset(out, 0, sizeof *out);
}

void daft_image_free(daft_image_result *result) {
    free(result->data);
    result->data = NULL;
    result->size = 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* PNG                                                                                             */
/* ---------------------------------------------------------------------------------------------- */

// Heap-allocated so nothing the error path reads is an automatic variable changed after setjmp.
typedef struct {
    jmp_buf jump;
    daft_image_result *out;
    const unsigned char *bytes;  // decoding: the file
    size_t size;
    size_t position;
    unsigned char *pixels;       // decoding: the image being filled
    png_bytep *rows;
    unsigned char *encoded;      // encoding: the file being written
    size_t encoded_size;
    size_t encoded_capacity;
} png_context;

static void png_fail(png_structp png, png_const_charp message) {
    png_context *c = (png_context *)png_get_error_ptr(png);
    set_error(c->out, "%s", message);
    longjmp(c->jump, 1);
}

static void png_drop_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_bytes(png_structp png, png_bytep data, size_t length) {
    png_context *c = (png_context *)png_get_io_ptr(png);
    if (length > c->size - c->position) {
        png_error(png, "truncated: the file ends before the image data does");
    }
    memcpy(data, c->bytes + c->position, length);
    c->position += length;
}

int daft_png_decode(const unsigned char *bytes, size_t size, uint64_t max_pixels, daft_image_result *out) {
    start_result(out);
    if (size < 8 || png_sig_cmp(bytes, 0, 8) != 0) {
        set_error(out, "not a PNG file (bad signature)");
        return 1;
    }
    png_context *c = calloc(1, sizeof *c);
    if (!c) {
        set_error(out, "out of memory");
        return 1;
    }
    c->out = out;
    c->bytes = bytes;
    c->size = size;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_fail, png_drop_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        free(c);
        set_error(out, "out of memory");
        return 1;
    }
    if (setjmp(c->jump)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(c->rows);
        free(c->pixels);
        free(c);
        return 1;
    }
    png_set_read_fn(png, c, png_read_bytes);
    // The pixel limit below replaces libpng's 1,000,000-pixel-per-side default, and a CRC error in any
    // chunk is an error (Pillow refuses bad checksums too).
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);

    png_uint_32 width = 0, height = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    if ((uint64_t)width * height > max_pixels) {
        set_error(out, "image of %u x %u = %llu pixels is over the limit of %llu pixels (refused as a possible decompression bomb)",
                  (unsigned)width, (unsigned)height, (unsigned long long)width * height, (unsigned long long)max_pixels);
        longjmp(c->jump, 1);
    }
    // Pillow opens 16-bit greyscale as mode I;16 and converts it to L or RGB by clipping at 255; every other
    // 16-bit type it unpacks by keeping the high byte (png_set_strip_16).
    int grey16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth == 16 && !grey16) png_set_strip_16(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    size_t sample_bytes = grey16 ? 2 : 1;
    if (channels < 1 || channels > 4 || row_bytes != (size_t)width * channels * sample_bytes) {
        set_error(out, "unexpected decoded row layout (%d channels, %zu bytes per row)", channels, row_bytes);
        longjmp(c->jump, 1);
    }
    c->pixels = malloc(row_bytes * height);
    c->rows = malloc(sizeof(png_bytep) * height);
    if (!c->pixels || !c->rows) {
        set_error(out, "out of memory for a %u x %u image", (unsigned)width, (unsigned)height);
        longjmp(c->jump, 1);
    }
    for (png_uint_32 y = 0; y < height; y++) c->rows[y] = c->pixels + (size_t)y * row_bytes;
    png_read_image(png, c->rows);

    if (grey16) {
        // Big-endian 16-bit samples → 8 bits in place: grey clipped at 255, alpha (from tRNS) its high byte.
        size_t samples = (size_t)width * height * channels;
        unsigned char *p = c->pixels;
        for (size_t i = 0; i < samples; i++) {
            unsigned v = ((unsigned)p[2 * i] << 8) | p[2 * i + 1];
            p[i] = (i % channels == 0) ? (unsigned char)(v > 255 ? 255 : v) : p[2 * i];
        }
    }
    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->data = c->pixels;
    out->size = (size_t)width * height * channels;
    c->pixels = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    free(c->rows);
    free(c);
    return 0;
}

static void png_write_bytes(png_structp png, png_bytep data, size_t length) {
    png_context *c = (png_context *)png_get_io_ptr(png);
    if (length > c->encoded_capacity - c->encoded_size) {
        size_t capacity = c->encoded_capacity ? c->encoded_capacity * 2 : 4096;
        while (capacity - c->encoded_size < length) capacity *= 2;
        unsigned char *grown = realloc(c->encoded, capacity);
        if (!grown) png_error(png, "out of memory");
        c->encoded = grown;
        c->encoded_capacity = capacity;
    }
    memcpy(c->encoded + c->encoded_size, data, length);
    c->encoded_size += length;
}

static void png_flush_nothing(png_structp png) {
    (void)png;
}

int daft_png_encode(const unsigned char *pixels, int width, int height, int channels, int compression,
                    daft_image_result *out) {
    start_result(out);
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                       PNG_COLOR_TYPE_RGB_ALPHA};
    if (width <= 0 || height <= 0 || channels < 1 || channels > 4 || compression < 0 || compression > 9) {
        set_error(out, "cannot write a PNG of %d x %d pixels with %d channels at compression %d", width, height,
                  channels, compression);
        return 1;
    }
    png_context *c = calloc(1, sizeof *c);
    if (!c) {
        set_error(out, "out of memory");
        return 1;
    }
    c->out = out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, png_fail, png_drop_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        free(c);
        set_error(out, "out of memory");
        return 1;
    }
    if (setjmp(c->jump)) {
        png_destroy_write_struct(&png, &info);
        free(c->encoded);
        free(c);
        return 1;
    }
    png_set_write_fn(png, c, png_write_bytes, png_flush_nothing);
    png_set_compression_level(png, compression);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_types[channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * channels;
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->data = c->encoded;
    out->size = c->encoded_size;
    png_destroy_write_struct(&png, &info);
    free(c);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* JPEG                                                                                            */
/* ---------------------------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr manager;  // first, so a j_common_ptr's err can be cast to this struct
    jmp_buf jump;
    daft_image_result *out;
} jpeg_failure;

// Heap-allocated for the same reason as png_context.
typedef struct {
    jpeg_failure failure;
    struct jpeg_progress_mgr progress;
    struct jpeg_decompress_struct decompress;
    struct jpeg_compress_struct compress;
    unsigned char *pixels;
    unsigned char *encoded;
    unsigned long encoded_size;
} jpeg_context;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    set_error(f->out, "%s", message);
    longjmp(f->jump, 1);
}

// Warnings (corrupt entropy data libjpeg resynchronises past, extraneous bytes) are dropped, as Pillow drops
// them; a premature end of the file is an error, as in Pillow ("image file is truncated").
static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        set_error(f->out, "truncated: premature end of JPEG file");
        longjmp(f->jump, 1);
    }
    cinfo->err->num_warnings++;
}

static void jpeg_print_nothing(j_common_ptr cinfo) {
    (void)cinfo;
}

static void jpeg_scan_limit(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    int scan = ((j_decompress_ptr)cinfo)->input_scan_number;
    if (scan > DAFT_JPEG_MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        set_error(f->out, "more than %d progressive scans (refused as a possible decompression bomb)", DAFT_JPEG_MAX_SCANS);
        longjmp(f->jump, 1);
    }
}

static jpeg_context *jpeg_context_new(daft_image_result *out) {
    jpeg_context *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->failure.out = out;
    jpeg_std_error(&c->failure.manager);
    c->failure.manager.error_exit = jpeg_fail;
    c->failure.manager.emit_message = jpeg_message;
    c->failure.manager.output_message = jpeg_print_nothing;
    return c;
}

// Pillow's MULDIV255: a·b/255 rounded, in integers.
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

int daft_jpeg_decode(const unsigned char *bytes, size_t size, uint64_t max_pixels, daft_image_result *out) {
    start_result(out);
    jpeg_context *c = jpeg_context_new(out);
    if (!c) {
        set_error(out, "out of memory");
        return 1;
    }
    struct jpeg_decompress_struct *cinfo = &c->decompress;
    cinfo->err = &c->failure.manager;
    if (setjmp(c->failure.jump)) {
        jpeg_destroy_decompress(cinfo);
        free(c->pixels);
        free(c);
        return 1;
    }
    jpeg_create_decompress(cinfo);
    c->progress.progress_monitor = jpeg_scan_limit;
    cinfo->progress = &c->progress;
    jpeg_mem_src(cinfo, bytes, (unsigned long)size);
    jpeg_read_header(cinfo, TRUE);
    if ((uint64_t)cinfo->image_width * cinfo->image_height > max_pixels) {
        set_error(out, "image of %u x %u = %llu pixels is over the limit of %llu pixels (refused as a possible decompression bomb)",
                  cinfo->image_width, cinfo->image_height,
                  (unsigned long long)cinfo->image_width * cinfo->image_height, (unsigned long long)max_pixels);
        longjmp(c->failure.jump, 1);
    }
    // Every 8x8 block of every component costs at least one bit of entropy-coded data in a complete file (a DC
    // code in a sequential or a progressive DC scan; Huffman codes are at least one bit long). A file with fewer
    // bits than its header's blocks is truncated or corrupt, and decoding it would pad the missing blocks: a few
    // hundred bytes claiming 16384 x 16384 pixels took minutes and 2 GB. (Arithmetic coding, SOF9-11, which
    // common encoders never write, can go below one bit per block for flat images; the same rule refuses those.)
    unsigned long long blocks = 0;
    for (int ci = 0; ci < cinfo->num_components; ci++) {
        blocks += (unsigned long long)cinfo->comp_info[ci].width_in_blocks * cinfo->comp_info[ci].height_in_blocks;
    }
    if (blocks > 8ULL * size) {
        set_error(out, "truncated or corrupt: a %u x %u image of %d components needs at least %llu bytes of coded data, the file has %zu",
                  cinfo->image_width, cinfo->image_height, cinfo->num_components, (blocks + 7) / 8, size);
        longjmp(c->failure.jump, 1);
    }
    int cmyk = 0;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; cmyk = 1; break;
    default: cinfo->out_color_space = JCS_RGB; break;
    }
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(cinfo);

    int components = cinfo->output_components;
    size_t width = cinfo->output_width, height = cinfo->output_height;
    size_t stride = width * (size_t)components;
    c->pixels = malloc(stride * height);
    if (!c->pixels) {
        set_error(out, "out of memory for a %zu x %zu image", width, height);
        longjmp(c->failure.jump, 1);
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = c->pixels + (size_t)cinfo->output_scanline * stride;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
            set_error(out, "truncated: no more scanlines after row %u", cinfo->output_scanline);
            longjmp(c->failure.jump, 1);
        }
    }
    jpeg_finish_decompress(cinfo);

    int channels = components;
    if (cmyk) {
        // Pillow reads 4-component JPEGs as Adobe-inverted CMYK ("CMYK;I": c = 255 − stored) and converts to
        // RGB with cmyk2rgb: nk = 255 − k, channel = nk − c·nk/255 (MULDIV255). In place, 4 → 3 bytes per pixel.
        unsigned char *p = c->pixels;
        for (size_t i = 0; i < width * height; i++) {
            int nk = p[4 * i + 3];  // 255 − (255 − stored k)
            int r = nk - muldiv255(255 - p[4 * i + 0], nk);
            int g = nk - muldiv255(255 - p[4 * i + 1], nk);
            int b = nk - muldiv255(255 - p[4 * i + 2], nk);
            p[3 * i + 0] = (unsigned char)r;
            p[3 * i + 1] = (unsigned char)g;
            p[3 * i + 2] = (unsigned char)b;
        }
        channels = 3;
    }
    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->data = c->pixels;
    out->size = width * height * (size_t)channels;
    c->pixels = NULL;
    jpeg_destroy_decompress(cinfo);
    free(c);
    return 0;
}

int daft_jpeg_encode(const unsigned char *pixels, int width, int height, int channels, int quality,
                     daft_image_result *out) {
    start_result(out);
    if (width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION ||
        (channels != 1 && channels != 3) || quality < 1 || quality > 100) {
        set_error(out, "cannot write a JPEG of %d x %d pixels with %d channels at quality %d (JPEG takes 1 or 3 channels, quality 1-100, sides up to %d)",
                  width, height, channels, quality, JPEG_MAX_DIMENSION);
        return 1;
    }
    jpeg_context *c = jpeg_context_new(out);
    if (!c) {
        set_error(out, "out of memory");
        return 1;
    }
    struct jpeg_compress_struct *cinfo = &c->compress;
    cinfo->err = &c->failure.manager;
    if (setjmp(c->failure.jump)) {
        jpeg_destroy_compress(cinfo);
        free(c->encoded);
        free(c);
        return 1;
    }
    jpeg_create_compress(cinfo);
    jpeg_mem_dest(cinfo, &c->encoded, &c->encoded_size);
    cinfo->image_width = (JDIMENSION)width;
    cinfo->image_height = (JDIMENSION)height;
    cinfo->input_components = channels;
    cinfo->in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    size_t stride = (size_t)width * channels;
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo->next_scanline * stride);
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->data = c->encoded;
    out->size = c->encoded_size;
    c->encoded = NULL;
    jpeg_destroy_compress(cinfo);
    free(c);
    return 0;
}
