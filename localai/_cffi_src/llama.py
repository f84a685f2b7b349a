"""cffi module over libllama: declarations come from the real llama.h (see builder.py)."""

MODULE = "_llama_cffi"
HEADER = "include/llama.h"
SOURCE = "llama_cpp"  # fetch.py source whose tree holds the headers
INCLUDE_DIRS = ("include", "ggml/include")
LIBRARIES = ("llama", "ggml", "ggml-base", "ggml-cpu")

INCLUDES = """
#include <math.h>
#include <stdio.h>
#include <stdarg.h>
#include "llama.h"
#include "ggml-cpu.h"
"""

# Small C helpers: the process's one native log sink (llama.cpp logs to stderr at every
# load; we keep only warnings and errors unless debug logging is asked for; whisper.cpp is
# pointed at the same sink) and a batch filler that keeps per-token Python work out of the
# decode loop.
CUSTOMIZATIONS = """
static int localai_log_threshold = GGML_LOG_LEVEL_WARN;
static int localai_log_printing = 0;  /* whether the line that continuation lines extend was printed */
static void localai_log_sink(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    if (level != GGML_LOG_LEVEL_CONT) {
        localai_log_printing = (int) level >= localai_log_threshold;
    }
    if (localai_log_printing) {
        fputs(text, stderr);
    }
}
static void localai_set_log_level(int threshold) {
    localai_log_threshold = threshold;
    llama_log_set(localai_log_sink, NULL);
}
/* Grammar-constrained sampling without paying the grammar on every candidate: sample with
   the chain alone, check only the chosen token against the grammar, and resample with the
   grammar applied first only when it was rejected (what llama.cpp's own server does). */
static void localai_fill_candidates(const float * logits, int32_t n_vocab, llama_token_data * buf) {
    for (int32_t t = 0; t < n_vocab; t++) {
        buf[t].id = t;
        buf[t].logit = logits[t];
        buf[t].p = 0.0f;
    }
}
static llama_token localai_sample_constrained(struct llama_sampler * chain, struct llama_sampler * grammar,
                                              struct llama_context * ctx, int32_t idx, llama_token_data * buf) {
    const struct llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const float * logits = llama_get_logits_ith(ctx, idx);
    localai_fill_candidates(logits, n_vocab, buf);
    llama_token_data_array cur = { buf, (size_t) n_vocab, -1, false };
    llama_sampler_apply(chain, &cur);
    llama_token token = cur.data[cur.selected].id;
    llama_token_data single = { token, 1.0f, 0.0f };
    llama_token_data_array one = { &single, 1, -1, false };
    llama_sampler_apply(grammar, &one);
    if (isinf(single.logit) && single.logit < 0) {
        localai_fill_candidates(logits, n_vocab, buf);
        llama_token_data_array full = { buf, (size_t) n_vocab, -1, false };
        llama_sampler_apply(grammar, &full);
        llama_sampler_apply(chain, &full);
        token = full.data[full.selected].id;
    }
    llama_sampler_accept(grammar, token);
    llama_sampler_accept(chain, token);
    return token;
}
static const char * localai_ggml_version(void) { return ggml_version(); }
/* A persistent thread pool per context, as llama-server attaches one: without it ggml
   creates and joins its worker threads on every llama_decode. */
static void * localai_attach_threadpool(struct llama_context * ctx, int n_threads) {
    struct ggml_threadpool_params params = ggml_threadpool_params_default(n_threads);
    struct ggml_threadpool * pool = ggml_threadpool_new(&params);
    if (pool != NULL) {
        llama_attach_threadpool(ctx, pool, pool);
    }
    return pool;
}
static void localai_free_threadpool(void * pool) {
    if (pool != NULL) {
        ggml_threadpool_free((struct ggml_threadpool *) pool);
    }
}
/* Append n tokens of one sequence to a batch. want: 0 no logits, 1 the last token's, 2 every token's. */
static void localai_batch_add_seq(struct llama_batch * batch, const llama_token * tokens, int32_t n,
                                  llama_pos pos0, llama_seq_id seq, int want) {
    for (int32_t i = 0; i < n; i++) {
        int32_t k = batch->n_tokens + i;
        batch->token[k] = tokens[i];
        batch->pos[k] = pos0 + i;
        batch->n_seq_id[k] = 1;
        batch->seq_id[k][0] = seq;
        batch->logits[k] = (want == 2 || (want == 1 && i == n - 1)) ? 1 : 0;
    }
    batch->n_tokens += n;
}
"""

EXTRA_CDEF = """
#define LLAMA_DEFAULT_SEED ...
static const char * localai_ggml_version(void);
static void * localai_attach_threadpool(struct llama_context * ctx, int n_threads);
static void localai_free_threadpool(void * pool);
static llama_token localai_sample_constrained(struct llama_sampler * chain, struct llama_sampler * grammar,
                                              struct llama_context * ctx, int32_t idx, llama_token_data * buf);
static void localai_set_log_level(int threshold);
static void localai_log_sink(enum ggml_log_level level, const char * text, void * user_data);
static void localai_batch_add_seq(struct llama_batch * batch, const llama_token * tokens, int32_t n,
                                  llama_pos pos0, llama_seq_id seq, int want);
"""
