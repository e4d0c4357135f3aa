/* vae_model.h — the Wan2.1 video VAE (causal 3-D conv encoder/decoder with chunked feature caches). */
#ifndef SF_VAE_MODEL_H
#define SF_VAE_MODEL_H

#include <stdint.h>

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

/* builds the VAE from the state dict (keys of Wan2.1_VAE.pth); mean/std may be NULL for the Wan
 * constants (z_dim 16) or zeros/ones (other z_dim) */
sf_vae *sf_vae_new(sf_weight_getter get, void *ctx, const float *mean, const float *std);
void sf_vae_free(sf_vae *v);
const sf_vae_config *sf_vae_config_of(const sf_vae *v);

/* video [3, T, H, W] (channel-major, one sample) -> normalised latent mu, frame-major [F][z][H/8][W/8];
 * F = 1 + (T - 1) / 4 (trailing frames dropped as the reference); *F_out receives F */
int sf_vae_encode1(sf_vae *v, const float *video, int T, int H, int W, float **latent, int *F_out);
/* normalised latent frame-major [F][z][h][w] -> pixels frame-major [T'][3][8h][8w] (unclamped);
 * stream < 0: fresh caches (decode); stream >= 0: the persistent caches of that stream (cached_decode) */
int sf_vae_decode1(sf_vae *v, const float *latent, int F, int h, int w, int stream, float **video, int *T_out);
void sf_vae_clear_stream(sf_vae *v);
/* compute dtype "f32" (default, upstream Wan) or "bf16" (Self-Forcing's bf16 VAE: weights and every
 * activation rounded to bf16 at the reference's op outputs, sums in f32); -1 + sf_error otherwise */
int sf_vae_set_dtype(sf_vae *v, const char *dtype);
const char *sf_vae_dtype(const sf_vae *v);

#ifdef __cplusplus
}
#endif
#endif
