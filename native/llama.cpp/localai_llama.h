/*
 * localai_llama.h: the only door from Python into llama.cpp.
 *
 * llama.cpp is C++ behind a C header: some of its functions throw (a grammar that rejects
 * the token being accepted, a tokenizer fed invalid UTF-8, std::bad_alloc anywhere) and
 * some abort (accepting end-of-generation into a grammar that does not allow it, sampling
 * from an empty candidate list). A C++ exception that reaches Python's C frames ends the
 * whole process. Every function here catches everything, records why on the calling
 * thread (localai_last_error), and returns a status; the Python bindings declare only this
 * header's functions (llama.h contributes types), so no unguarded call is possible.
 *
 * The sampler is ours too: it checks before it samples, so a request whose constraints
 * leave no token (a grammar that is complete while end-of-generation is banned, logit
 * biases that ban everything the grammar allows) ends that request, never the process.
 *
 * Threads: as llama.cpp's: a context, a batch or a sampler is used by one thread at a time;
 * model getters and the tokenizer may be called from any thread.
 */
#ifndef LOCALAI_LLAMA_H
#define LOCALAI_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#define LOCALAI_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

enum localai_status {
    LOCALAI_OK                =  0,
    LOCALAI_ERR_INVALID       = -1,  /* a bad argument: NULL, out of range, wrong size */
    LOCALAI_ERR_LOAD          = -2,  /* the model file could not be loaded */
    LOCALAI_ERR_OUT_OF_MEMORY = -3,
    LOCALAI_ERR_GRAMMAR       = -4,  /* the grammar does not parse */
    LOCALAI_ERR_DECODE        = -5,  /* llama_decode failed (the message has its status) */
    LOCALAI_ERR_EXCEPTION     = -6,  /* llama.cpp threw; the message says what */
    LOCALAI_ERR_NO_CANDIDATE  = -7,  /* sampling: the constraints leave no token at all */
    /* sampling: the grammar is complete (only end-of-generation may follow) but
       end-of-generation is banned: the sequence is over, by its grammar */
    LOCALAI_GRAMMAR_COMPLETE  =  1
};

/* Why the last failing call on this thread failed ("" if none did). */
LOCALAI_API const char * localai_last_error(void);

/* ---- process ---------------------------------------------------------------------------- */

/* The process's one native log sink: lines below the threshold (a ggml_log_level) are
   dropped, continuation lines follow the line they continue. */
LOCALAI_API void localai_log_sink(enum ggml_log_level level, const char * text, void * user_data);
/* Set the threshold and point ggml and llama.cpp at the sink. */
LOCALAI_API void localai_set_log_level(int32_t threshold);
LOCALAI_API void localai_backend_init(void);
LOCALAI_API const char * localai_system_info(void);
LOCALAI_API const char * localai_ggml_version(void);
LOCALAI_API int32_t localai_max_parallel_sequences(void);
LOCALAI_API uint32_t localai_default_seed(void);

/* ---- ggml RPC: distributed inference over llama.cpp's own RPC backend -------------------- */

/* Whether this build has the ggml RPC backend (build.py --no-rpc leaves it out). */
LOCALAI_API bool localai_rpc_available(void);
/* Serve this machine's CPU to ggml RPC clients on "host:port" (cache_dir: a folder for the
   tensor cache, or NULL). Returns only when it cannot (a status: bad endpoint, port taken). */
LOCALAI_API int32_t localai_rpc_serve(const char * endpoint, const char * cache_dir, int32_t n_threads);
/* Connect to an RPC server and register its devices: their count (0: it does not answer), or
   a status. *free_mem / *total_mem: its memory over all its devices, in bytes. */
LOCALAI_API int32_t localai_rpc_add_server(const char * endpoint, uint64_t * free_mem, uint64_t * total_mem);

/* ---- models ----------------------------------------------------------------------------- */

struct localai_model_info {
    int32_t n_vocab;
    int32_t n_ctx_train;
    int32_t n_embd;
    int32_t n_embd_out;        /* what pooled embeddings have */
    llama_token bos, eos;      /* -1 where the model has none */
    llama_token fim_pre, fim_suf, fim_mid;
    bool has_encoder, has_decoder;
    bool is_recurrent;         /* recurrent or hybrid state: a sequence cannot be cut at any position */
    int32_t n_swa;             /* sliding-window attention span (0: none) */
};

/* NULL on failure (localai_last_error says why). */
LOCALAI_API struct llama_model * localai_model_load(const char * path, bool use_mmap, bool use_mlock, bool vocab_only);
LOCALAI_API void localai_model_free(struct llama_model * model);
LOCALAI_API int32_t localai_model_info(const struct llama_model * model, struct localai_model_info * out);
/* A model whose layers are split between this process's CPU and ggml RPC servers (devices
   registered with localai_rpc_add_server): the last n_gpu_layers layers go to the devices,
   shared by tensor_split (n_devices weights; NULL: by their free memory). */
struct localai_model_split {
    const char * const * endpoints;   /* "host:port" of each server, registered already */
    int32_t n_endpoints;
    int32_t n_gpu_layers;             /* layers on the devices (-1: all) */
    const float * tensor_split;       /* one weight per device of the servers, in order; NULL: free memory */
    int32_t n_tensor_split;
};
LOCALAI_API struct llama_model * localai_model_load_split(const char * path, bool use_mmap, bool use_mlock,
                                                          const struct localai_model_split * split);
/* Text into buf (NUL-terminated); returns its full length, -1 when the key is absent, or a status. */
LOCALAI_API int32_t localai_model_desc(const struct llama_model * model, char * buf, size_t size);
LOCALAI_API int32_t localai_model_meta(const struct llama_model * model, const char * key, char * buf, size_t size);
/* The GGUF's chat template, or NULL when it has none. */
LOCALAI_API const char * localai_model_chat_template(const struct llama_model * model);

/* Tokens of text[0..len) into out: a status, with the count (or minus the count needed when
   out is too small) in *n_out. */
LOCALAI_API int32_t localai_tokenize(const struct llama_model * model, const char * text, int32_t len,
                                     llama_token * out, int32_t n_max, bool add_special, bool parse_special,
                                     int32_t * n_out);
/* The bytes of one token into buf: a status, with their count (or minus the size needed) in *n_out. */
LOCALAI_API int32_t localai_token_to_piece(const struct llama_model * model, llama_token token, char * buf,
                                           int32_t size, bool special, int32_t * n_out);
/* 1 for an end-of-generation token, 0 for another, a status for an invalid one. */
LOCALAI_API int32_t localai_token_is_eog(const struct llama_model * model, llama_token token);
LOCALAI_API const char * localai_token_text(const struct llama_model * model, llama_token token);
/* The token's llama_token_attr bits, or a status for an invalid one. */
LOCALAI_API int32_t localai_token_attr(const struct llama_model * model, llama_token token);

/* ---- contexts --------------------------------------------------------------------------- */

struct localai_context_params {
    uint32_t n_ctx;
    uint32_t n_batch;
    uint32_t n_ubatch;
    uint32_t n_seq_max;
    int32_t n_threads;
    bool embeddings;
    int32_t pooling_type;  /* LLAMA_POOLING_TYPE_UNSPECIFIED: the model's */
    bool kv_unified;
};

/* A llama context with its own persistent thread pool (as llama-server attaches one: without
   it ggml creates and joins its worker threads on every decode). */
struct localai_context;

struct localai_context_info {
    uint32_t n_ctx;
    uint32_t n_batch;
    uint32_t n_seq_max;
};

LOCALAI_API struct localai_context * localai_context_new(struct llama_model * model,
                                                         const struct localai_context_params * params);
LOCALAI_API void localai_context_free(struct localai_context * ctx);
LOCALAI_API int32_t localai_context_info(const struct localai_context * ctx, struct localai_context_info * out);
/* LOCALAI_OK, or LOCALAI_ERR_DECODE with llama_decode's status in *decode_status. */
LOCALAI_API int32_t localai_decode(struct localai_context * ctx, struct llama_batch * batch, int32_t * decode_status);
/* The n_vocab logits at a batch index, valid until the next decode; NULL when there are none. */
LOCALAI_API const float * localai_logits(struct localai_context * ctx, int32_t index);
/* Copy n floats of pooled (per sequence) or per-token embeddings out; a status. */
LOCALAI_API int32_t localai_embeddings_seq(struct localai_context * ctx, llama_seq_id seq, float * out, int32_t n);
LOCALAI_API int32_t localai_embeddings_ith(struct localai_context * ctx, int32_t index, float * out, int32_t n);

/* KV memory of one sequence. seq_rm returns 1 when removed, 0 when the memory cannot cut there. */
LOCALAI_API int32_t localai_seq_rm(struct localai_context * ctx, llama_seq_id seq, llama_pos p0, llama_pos p1);
LOCALAI_API int32_t localai_seq_pos_max(struct localai_context * ctx, llama_seq_id seq);
LOCALAI_API int32_t localai_memory_clear(struct localai_context * ctx);
/* A sequence's state (its KV cells) as bytes, and back: size 0 / a status on failure. */
LOCALAI_API size_t localai_seq_state_size(struct localai_context * ctx, llama_seq_id seq);
LOCALAI_API size_t localai_seq_state_get(struct localai_context * ctx, llama_seq_id seq, uint8_t * dst, size_t size);
LOCALAI_API size_t localai_seq_state_set(struct localai_context * ctx, llama_seq_id seq, const uint8_t * src,
                                         size_t size);

/* ---- batches ---------------------------------------------------------------------------- */

LOCALAI_API struct llama_batch * localai_batch_new(int32_t capacity);
LOCALAI_API void localai_batch_free(struct llama_batch * batch);
LOCALAI_API void localai_batch_clear(struct llama_batch * batch);
LOCALAI_API int32_t localai_batch_size(const struct llama_batch * batch);
/* Append n tokens of one sequence at positions pos0...; outputs: 0 none, 1 the last token's,
   2 every token's. Returns the batch index of the last token, or a status (full batch). */
LOCALAI_API int32_t localai_batch_add(struct llama_batch * batch, int32_t capacity, const llama_token * tokens,
                                      int32_t n, llama_pos pos0, llama_seq_id seq, int32_t outputs);

/* ---- sampling --------------------------------------------------------------------------- */

/* What one sequence samples with: every value already validated by the caller. */
struct localai_sampling {
    float temperature;  /* <= 0: greedy */
    float top_p;
    int32_t top_k;      /* 0: off */
    float min_p;
    float typical_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    float presence_penalty;
    float frequency_penalty;
    uint32_t seed;
    int32_t n_logit_bias;
    const llama_logit_bias * logit_bias;
    const char * grammar;  /* GBNF with a "root" rule, or NULL */
};

struct localai_sampler;

/* NULL on failure: LOCALAI_ERR_GRAMMAR for a grammar llama.cpp cannot parse (see localai_last_error). */
LOCALAI_API struct localai_sampler * localai_sampler_new(const struct llama_model * model,
                                                         const struct localai_sampling * params, int32_t * status);
LOCALAI_API void localai_sampler_free(struct localai_sampler * sampler);
/* Feed tokens the sequence already holds (its prompt) to the penalties, as llama-server does, so
   presence, frequency and repeat penalties count the text so far; the grammar does not see them. */
LOCALAI_API int32_t localai_sampler_prime(struct localai_sampler * sampler, const llama_token * tokens, int32_t n);
/* Sample and accept the next token from the logits at batch index `index`: LOCALAI_OK with
   the token, LOCALAI_GRAMMAR_COMPLETE, LOCALAI_ERR_NO_CANDIDATE, or another status. */
LOCALAI_API int32_t localai_sampler_sample(struct localai_sampler * sampler, struct localai_context * ctx,
                                           int32_t index, llama_token * token);

#ifdef __cplusplus
}
#endif

#endif /* LOCALAI_LLAMA_H */
