/* sd-ncnn: Stable Diffusion 1.x text-to-image on the CPU through ncnn, behind a small C API.
 *
 * Reads the asset folder of EdVince's Stable-Diffusion-NCNN (the one LocalAI's `stablediffusion`
 * backend used): vocab.txt, log_sigmas.bin, FrozenCLIPEmbedder-fp16.param/.bin,
 * UNetModel-{256-256,512-512}-MHA-fp16-opt.param + UNetModel-base-MHA-fp16.param + UNetModel-MHA-fp16.bin,
 * AutoencoderKL-{256-256,512-512}-fp16-opt.param + AutoencoderKL-base-fp16.param + AutoencoderKL-fp16.bin.
 *
 * Conventions: a latent is float[4][H/8][W/8] (channel-major), a text context is float[rows][768]
 * (rows = 77 per prompt chunk), an image is uint8 RGB row-major (H x W x 3). Every function that
 * can fail returns a negative number (SD_ERR_*) or NULL and leaves a message for sd_last_error()
 * on the calling thread. A pipeline serialises its own calls; different pipelines run independently.
 */
#ifndef SDNCNN_H
#define SDNCNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SDNCNN_BUILDING) && defined(__GNUC__)
#define SDNCNN_API __attribute__((visibility("default")))
#else
#define SDNCNN_API
#endif

enum {
    SD_LATENT_CHANNELS = 4,
    SD_CHUNK_TOKENS = 77,     /* token ids per text-encoder run: BOS + 75 + EOS */
    SD_CONTEXT_DIM = 768,     /* width of one text-context row */
    SD_TRAIN_STEPS = 1000,    /* entries of log_sigmas.bin */
    SD_MAX_CHUNKS = 16,       /* longest prompt: 16 x 75 tokens */
    SD_MIN_SIDE = 256,
    SD_MAX_SIDE = 1024,
    SD_SIDE_MULTIPLE = 64,    /* the UNet halves the 1/8 latent three times */
    SD_MAX_STEPS = 150
};

enum {
    SD_OK = 0,
    SD_ERR_FAILED = -1,     /* loading or running a net failed, out of memory, ... */
    SD_ERR_INVALID = -2,    /* the caller's arguments: size, steps, mode, a prompt too long */
    SD_ERR_CANCELLED = -3   /* the request's cancel flag was set: it stopped between two steps */
};

typedef struct sd_pipeline sd_pipeline;
typedef struct sd_tokenizer sd_tokenizer;

typedef struct sd_request {
    int width;                      /* pixels; see sd_size_supported */
    int height;
    int steps;                      /* sampler steps, 1..SD_MAX_STEPS */
    int mode;                       /* 0: low memory (no winograd/sgemm convolutions), 1: fast, more memory */
    uint64_t seed;                  /* full 64 bits; the same seed and request give the same image */
    float guidance;                 /* classifier-free guidance scale; <= 0 means 7.5 */
    const char *prompt;             /* UTF-8, A1111 attention syntax: (x) [x] (x:1.3) \( BREAK */
    const char *negative_prompt;    /* UTF-8, may be NULL or "" */
    const int32_t *cancel;          /* may be NULL; non-zero: stop before the next step (SD_ERR_CANCELLED) */
} sd_request;

typedef struct sd_timings {
    double load_ms;                 /* loading nets this call needed (0 when already loaded) */
    double encode_ms;               /* tokenizer + text encoder, both prompts */
    double sample_ms;               /* all sampler steps (two UNet runs each) */
    double decode_ms;               /* VAE decoder + pixel conversion */
    int unet_runs;
} sd_timings;

/* Library and ncnn versions, e.g. "sd-ncnn 1.0 (ncnn 1.0.20260526)". */
SDNCNN_API const char *sd_version(void);
/* The message of the last failure on this thread ("" if none). */
SDNCNN_API const char *sd_last_error(void);
/* 1 when width x height can be generated: each side a multiple of 64 in [256, 1024]. */
SDNCNN_API int sd_size_supported(int width, int height);

/* Open the asset folder; nets load lazily (the UNet and decoder per size and mode).
 * cache_dir receives size-rewritten .param files (never the asset folder); threads <= 0: all cores. */
SDNCNN_API sd_pipeline *sd_pipeline_open(const char *asset_dir, const char *cache_dir, int threads);
SDNCNN_API void sd_pipeline_close(sd_pipeline *pipeline);

/* Text to image: writes width*height*3 bytes to rgb. Returns 0 or a negative error. */
SDNCNN_API int sd_generate(sd_pipeline *pipeline, const sd_request *request, uint8_t *rgb, sd_timings *timings);

/* The stages of sd_generate, for tests and tools. */
/* Text context rows of a prompt (77 per chunk); with out == NULL only counts. Returns rows or < 0. */
SDNCNN_API int sd_encode_prompt(sd_pipeline *pipeline, const char *prompt, float *out, int max_rows);
/* One UNet evaluation: the denoised estimate of latent x at noise level sigma. */
SDNCNN_API int sd_denoise(sd_pipeline *pipeline, int width, int height, int mode, const float *x, float sigma,
                          const float *context, int context_rows, float *denoised);
/* VAE decoder: latent (already in sampler scale; divided by 0.18215 inside) to RGB bytes. */
SDNCNN_API int sd_decode(sd_pipeline *pipeline, int width, int height, const float *latent, uint8_t *rgb);
/* The 1000 log-sigmas the pipeline loaded from log_sigmas.bin. */
SDNCNN_API int sd_log_sigmas(sd_pipeline *pipeline, float *out);

/* Sampler arithmetic (pure functions). */
/* steps+1 noise levels: k-diffusion's discrete schedule over log_sigmas, then 0. Returns 0 or < 0. */
SDNCNN_API int sd_sigmas(const float *log_sigmas, int steps, float *sigmas);
/* The fractional training timestep of a noise level (k-diffusion sigma_to_t). */
SDNCNN_API float sd_sigma_to_t(const float *log_sigmas, float sigma);
/* n standard normal floats of stream `stream` of `seed` (stream 0: the initial latent, k+1: step k). */
SDNCNN_API void sd_noise(uint64_t seed, uint32_t stream, float *out, size_t n);
/* One Euler-ancestral step (eta 1) on classifier-free guided denoised estimates, in place on x:
 * denoised = uncond + guidance * (cond - uncond). noise may be NULL when sigma_next == 0. */
SDNCNN_API void sd_euler_ancestral_step(float *x, const float *cond_denoised, const float *uncond_denoised,
                                        size_t n, float guidance, float sigma, float sigma_next,
                                        const float *noise);

/* The CLIP tokenizer alone (vocab.txt of the asset folder). */
SDNCNN_API sd_tokenizer *sd_tokenizer_open(const char *vocab_path);
SDNCNN_API void sd_tokenizer_close(sd_tokenizer *tokenizer);
/* Token ids and attention weights of a prompt, laid out in 77-token chunks. Returns the count
 * (a multiple of 77); writes only when it fits in capacity (ids/weights may be NULL to count). */
SDNCNN_API int sd_tokenize(sd_tokenizer *tokenizer, const char *text, int32_t *ids, float *weights, int capacity);

#ifdef __cplusplus
}
#endif

#endif /* SDNCNN_H */
