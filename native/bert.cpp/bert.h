/*
 * bert.h: batched sentence embeddings on llama.cpp, with a small C API in the spirit of bert.cpp.
 *
 * A bert_ctx owns one model and a few llama.cpp contexts on it, created with embeddings on.
 * An encode call packs as many inputs as fit its token budget (n_batch) into ONE forward
 * pass (each input is its own sequence id in the batch, so attention never crosses inputs),
 * pools each sequence the way the model's GGUF says (sentence-transformers models: mean
 * over all tokens, [CLS] and [SEP] included; a GGUF without a pooling type gets mean
 * pooling) and optionally L2-normalises the result, as sentence-transformers' Normalize
 * module does. A call splits into several passes only when its inputs exceed the token
 * budget or the number of sequences of a pass; those passes then run side by side on the
 * contexts, the threads shared among them.
 *
 * Errors: functions return a bert_status (or NULL for the loader); bert_last_error() then
 * says what went wrong in words. The error text is per thread.
 *
 * Threads: bert_tokenize and the getters may be called from any thread at any time; the
 * encode functions must not run concurrently on the same bert_ctx (serialise them).
 */
#ifndef LOCALAI_BERT_H
#define LOCALAI_BERT_H

#include <stdbool.h>
#include <stdint.h>

#if defined(_WIN32)
#    if defined(BERT_BUILD)
#        define BERT_API __declspec(dllexport)
#    else
#        define BERT_API __declspec(dllimport)
#    endif
#else
#    define BERT_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum bert_status {
    BERT_OK                   =  0,
    BERT_ERR_INVALID_ARGUMENT = -1,  /* NULL pointer, negative count, closed context */
    BERT_ERR_LOAD             = -2,  /* the file is missing or not a usable embedding model */
    BERT_ERR_EMPTY_INPUT      = -3,  /* an input has no tokens */
    BERT_ERR_TOO_LONG         = -4,  /* an input has more tokens than bert_n_max_tokens() */
    BERT_ERR_BAD_TOKEN        = -5,  /* a token id outside the vocabulary */
    BERT_ERR_TOKENIZE         = -6,  /* the tokenizer failed */
    BERT_ERR_COMPUTE          = -7,  /* llama.cpp failed to run a batch */
    BERT_ERR_OUT_OF_MEMORY    = -8
};

enum bert_pooling {
    BERT_POOLING_MEAN = 1,
    BERT_POOLING_CLS  = 2,
    BERT_POOLING_LAST = 3
};

struct bert_ctx;

/* Load a GGUF embedding model (BERT family, or any model llama.cpp can pool).
 * n_threads <= 0: all cores. n_batch: token budget of one forward pass (<= 0: 128); an
 * input longer than that still fits, in a pass of its own, up to the model's context.
 * Returns NULL on failure; bert_last_error() says why. */
BERT_API struct bert_ctx * bert_load_from_file(const char * path, int32_t n_threads, int32_t n_batch);

/* Free the context and the model; NULL is ignored. */
BERT_API void bert_free(struct bert_ctx * ctx);

BERT_API int32_t bert_n_embd(const struct bert_ctx * ctx);       /* floats per embedding */
BERT_API int32_t bert_n_max_tokens(const struct bert_ctx * ctx); /* most tokens in one input */
BERT_API int32_t bert_n_vocab(const struct bert_ctx * ctx);
BERT_API int32_t bert_n_batch(const struct bert_ctx * ctx);      /* token budget of one forward pass */
BERT_API int32_t bert_n_seq_max(const struct bert_ctx * ctx);    /* inputs in one forward pass */
BERT_API int32_t bert_n_threads(const struct bert_ctx * ctx);
BERT_API int32_t bert_n_workers(const struct bert_ctx * ctx);    /* passes that can run at once */
BERT_API enum bert_pooling bert_pooling_type(const struct bert_ctx * ctx);

/* Tokenize one NUL-terminated UTF-8 text as the encoder sees it (special tokens such as
 * [CLS] ... [SEP] added). On BERT_OK *n_tokens is the count written to tokens; on
 * BERT_ERR_TOO_LONG the buffer was too small and *n_tokens is the count needed. */
BERT_API int32_t bert_tokenize(const struct bert_ctx * ctx, const char * text, int32_t * tokens,
                               int32_t n_max_tokens, int32_t * n_tokens);

/* Embed n_inputs texts into embeddings[n_inputs * bert_n_embd(ctx)] (row i = texts[i]).
 * n_tokens, when not NULL, receives the token count of each input (n_inputs values).
 * normalize: L2-normalise each row. */
BERT_API int32_t bert_encode_batch(struct bert_ctx * ctx, int32_t n_inputs, const char ** texts,
                                   float * embeddings, int32_t * n_tokens, bool normalize);

/* Embed n_inputs token lists, given back to back in tokens[] with n_tokens[i] ids each,
 * exactly as given (no special tokens are added). */
BERT_API int32_t bert_encode_tokens_batch(struct bert_ctx * ctx, int32_t n_inputs, const int32_t * tokens,
                                          const int32_t * n_tokens, float * embeddings, bool normalize);

/* Why the last failing call on this thread failed ("" if none did). */
BERT_API const char * bert_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* LOCALAI_BERT_H */
