"""cffi module over libllama: declarations come from the real llama.h (see builder.py)."""

MODULE = "_llama_cffi"
HEADER = "include/llama.h"
SOURCE = "llama_cpp"  # fetch.py source whose tree holds the headers
INCLUDE_DIRS = ("include", "ggml/include")
LIBRARIES = ("llama", "ggml", "ggml-base")

INCLUDES = """
#include <stdio.h>
#include <stdarg.h>
#include "llama.h"
"""

# Small C helpers: a log sink (llama.cpp logs to stderr at every load; we keep only
# warnings and errors unless debug logging is asked for) and a batch filler that keeps
# per-token Python work out of the decode loop.
CUSTOMIZATIONS = """
static int localai_llama_log_level = GGML_LOG_LEVEL_WARN;
static void localai_llama_log(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    if (level == GGML_LOG_LEVEL_CONT || (int) level >= localai_llama_log_level) {
        if (level != GGML_LOG_LEVEL_CONT || localai_llama_log_level <= GGML_LOG_LEVEL_INFO) {
            fputs(text, stderr);
        }
    }
}
static void localai_llama_set_log_level(int level) {
    localai_llama_log_level = level;
    llama_log_set(localai_llama_log, NULL);
}
static const char * localai_ggml_version(void) { return ggml_version(); }
/* Append n tokens of one sequence to a batch; logits only for the last one if want_last. */
static void localai_batch_add_seq(struct llama_batch * batch, const llama_token * tokens, int32_t n,
                                  llama_pos pos0, llama_seq_id seq, int want_last) {
    for (int32_t i = 0; i < n; i++) {
        int32_t k = batch->n_tokens + i;
        batch->token[k] = tokens[i];
        batch->pos[k] = pos0 + i;
        batch->n_seq_id[k] = 1;
        batch->seq_id[k][0] = seq;
        batch->logits[k] = (want_last && i == n - 1) ? 1 : 0;
    }
    batch->n_tokens += n;
}
"""

EXTRA_CDEF = """
#define LLAMA_DEFAULT_SEED ...
static const char * localai_ggml_version(void);
static void localai_llama_set_log_level(int level);
static void localai_batch_add_seq(struct llama_batch * batch, const llama_token * tokens, int32_t n,
                                  llama_pos pos0, llama_seq_id seq, int want_last);
"""
