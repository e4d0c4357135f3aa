/* vae_model.h — the Wan2.1 video VAE (causal 3-D conv encoder/decoder with chunked feature caches). */
#ifndef SF_VAE_MODEL_H
#define SF_VAE_MODEL_H

#include <stdint.h>

#include "core/tensor.h"
#include "models/t5_encoder.h" /* sf_weight_getter */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int z_dim, base_dim;      /* 16 and 96 for Wan2.1_VAE.pth */
  int enc_mods, dec_mods;   /* modules in encoder.downsamples / decoder.upsamples */
  int temporal_down[8];     /* per encoder resample: 1 when it is downsample3d */
  int n_resample;
  float mean[64], std[64];  /* latent normalisation (z_dim values) */
} sf_vae_config;

typedef struct sf_vae sf_vae;

/* builds the VAE on device dev (weights converted to f32 there; a CPU f32 checkpoint's tensors are used in place)
 * from the state dict (keys of Wan2.1_VAE.pth); mean/std may be NULL for the Wan constants (z_dim 16) or
 * zeros/ones (other z_dim) */
sf_vae *sf_vae_new(sf_weight_getter get, void *ctx, const float *mean, const float *std, sf_device dev);
void sf_vae_free(sf_vae *v);
const sf_vae_config *sf_vae_config_of(const sf_vae *v);

/* video [B, 3, T, H, W] (any device, float) -> normalised latent mu [B, F, z, H/8, W/8] f32 on the VAE's device;
 * F = 1 + (T - 1) / 4 (trailing frames dropped as the reference). NULL + sf_error on failure. */
sf_tensor *sf_vae_encode(sf_vae *v, sf_tensor *video);
/* normalised latents [B, F, z, h, w] -> pixels [B, T', 3, 8h, 8w] clamped to [-1, 1], on the VAE's device;
 * streaming 0: fresh caches (decode); 1: the persistent caches of stream b for batch row b (cached_decode) */
sf_tensor *sf_vae_decode(sf_vae *v, sf_tensor *latents, int streaming);
void sf_vae_clear_stream(sf_vae *v);
/* compute dtype "f32" (default, upstream Wan) or "bf16" (Self-Forcing's bf16 VAE: weights and every
 * activation rounded to bf16 at the reference's op outputs, sums in f32); -1 + sf_error otherwise */
int sf_vae_set_dtype(sf_vae *v, const char *dtype);
const char *sf_vae_dtype(const sf_vae *v);

#ifdef __cplusplus
}
#endif
#endif
