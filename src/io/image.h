/* image.h — PNG read/write (libpng) and the pixel conventions shared with Self-Forcing:
 * u8 [H, W, C] images and f32 [C, H, W] in [-1, 1]. */
#ifndef SF_IO_IMAGE_H
#define SF_IO_IMAGE_H

#include <stddef.h>

#include "core/tensor.h"

/* u8 [H, W, 3] RGB. Grayscale is replicated to 3 channels, palettes expanded, alpha dropped,
 * 16-bit samples reduced to their high byte. Errors name the file and what is wrong. */
sf_tensor *sf_png_read(const char *path);
sf_tensor *sf_png_read_mem(const void *data, size_t n, const char *what);
/* u8 [H, W, C] with C in {1, 3, 4} (gray, RGB, RGBA), any strides/device; atomic write */
int sf_png_write(const char *path, sf_tensor *img);

/* u8 [H, W, C] -> f32 [C, H, W] in [-1, 1] exactly as torchvision to_tensor(x).sub_(0.5).div_(0.5):
 * ((v / 255) - 0.5) / 0.5 in f32 */
sf_tensor *sf_image_u8_to_float(sf_tensor *hwc);
/* f32/bf16/f16 [C, H, W] in [-1, 1] -> u8 [H, W, C]: clamp(x * 0.5 + 0.5, 0, 1) * 255 truncated to an
 * integer, as Self-Forcing's video export does (255 * video, then a uint8 cast) */
sf_tensor *sf_image_float_to_u8(sf_tensor *chw);

#endif
