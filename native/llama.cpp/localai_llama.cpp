// localai_llama.cpp: every llama.cpp call localai makes, guarded (see localai_llama.h).
//
// Each entry point runs its body inside guarded(): a C++ exception becomes a status and a
// message on the calling thread, never an unwind into Python's C frames. Where llama.cpp
// would abort rather than throw (accepting a token its grammar does not allow, sampling
// from nothing), the checks happen here first.

#include "localai_llama.h"

#include "ggml-cpu.h"
#ifdef LOCALAI_WITH_RPC
#include "ggml-rpc.h"
#endif

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace {

thread_local std::string g_last_error;

int32_t fail(int32_t status, const char * fmt, ...) {
    char buf[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    g_last_error = buf;
    return status;
}

// Run body; an exception becomes `on_error` (and the status it is given) with its message kept.
template <typename T, typename Body>
T guarded(T on_error, int32_t * status, const char * what, Body && body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        if (status) *status = LOCALAI_ERR_OUT_OF_MEMORY;
        fail(LOCALAI_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    } catch (const std::exception & e) {
        if (status) *status = LOCALAI_ERR_EXCEPTION;
        fail(LOCALAI_ERR_EXCEPTION, "%s: %s", what, e.what());
    } catch (...) {
        if (status) *status = LOCALAI_ERR_EXCEPTION;
        fail(LOCALAI_ERR_EXCEPTION, "%s: unknown C++ exception", what);
    }
    return on_error;
}

// The same for functions whose result is their status.
template <typename Body>
int32_t guarded_status(const char * what, Body && body) noexcept {
    int32_t status = LOCALAI_OK;
    const int32_t result = guarded<int32_t>(LOCALAI_ERR_EXCEPTION, &status, what, std::forward<Body>(body));
    return status != LOCALAI_OK ? status : result;
}

int g_log_threshold = GGML_LOG_LEVEL_WARN;
bool g_log_printing = false;  // whether the line that continuation lines extend was printed

}  // namespace

struct localai_context {
    llama_context * ctx = nullptr;
    ggml_threadpool * pool = nullptr;
    int32_t n_vocab = 0;
};

struct localai_sampler {
    llama_sampler * bias = nullptr;     // logit biases (bans included): applied first, stateless
    llama_sampler * chain = nullptr;    // penalties, truncation, temperature, dist/greedy
    llama_sampler * grammar = nullptr;  // checked against the chosen token first, applied in full if needed
    const llama_vocab * vocab = nullptr;
    std::vector<llama_token_data> candidates;

    ~localai_sampler() {
        if (bias) llama_sampler_free(bias);
        if (chain) llama_sampler_free(chain);
        if (grammar) llama_sampler_free(grammar);
    }
};

extern "C" {

const char * localai_last_error(void) {
    return g_last_error.c_str();
}

// ---- process ---------------------------------------------------------------------------------

void localai_log_sink(enum ggml_log_level level, const char * text, void * /*user_data*/) {
    if (level != GGML_LOG_LEVEL_CONT) {
        g_log_printing = (int) level >= g_log_threshold;
    }
    if (g_log_printing && text != nullptr) {
        fputs(text, stderr);
    }
}

void localai_set_log_level(int32_t threshold) {
    g_log_threshold = threshold;
    llama_log_set(localai_log_sink, nullptr);
}

void localai_backend_init(void) {
    guarded<int>(0, nullptr, "llama_backend_init", [] { llama_backend_init(); return 0; });
}

const char * localai_system_info(void) {
    return guarded<const char *>("", nullptr, "llama_print_system_info", [] { return llama_print_system_info(); });
}

const char * localai_ggml_version(void) {
    return ggml_version();
}

int32_t localai_max_parallel_sequences(void) {
    return (int32_t) llama_max_parallel_sequences();
}

uint32_t localai_default_seed(void) {
    return LLAMA_DEFAULT_SEED;
}

// ---- models ------------------------------------------------------------------------------------

llama_model * localai_model_load(const char * path, bool use_mmap, bool use_mlock, bool vocab_only) {
    if (path == nullptr) {
        fail(LOCALAI_ERR_INVALID, "the model path is NULL");
        return nullptr;
    }
    return guarded<llama_model *>(nullptr, nullptr, "loading the model", [&]() -> llama_model * {
        llama_model_params params = llama_model_default_params();
        params.n_gpu_layers = 0;
        params.vocab_only = vocab_only;
        params.load_mode = use_mmap ? (use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                                    : (use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
        llama_model * model = llama_model_load_from_file(path, params);
        if (model == nullptr) {
            fail(LOCALAI_ERR_LOAD, "llama.cpp could not load the model %s (not a GGUF file it supports, "
                 "or truncated)", path);
        }
        return model;
    });
}

bool localai_rpc_available(void) {
#ifdef LOCALAI_WITH_RPC
    return true;
#else
    return false;
#endif
}

int32_t localai_rpc_serve(const char * endpoint, const char * cache_dir, int32_t n_threads) {
    if (endpoint == nullptr || n_threads < 1) return fail(LOCALAI_ERR_INVALID, "rpc serve: bad argument");
#ifdef LOCALAI_WITH_RPC
    return guarded_status("ggml_backend_rpc_start_server", [&] {
        ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
        if (cpu == nullptr) return fail(LOCALAI_ERR_INVALID, "no CPU device to serve");
        ggml_backend_rpc_start_server(endpoint, cache_dir, (size_t) n_threads, 1, &cpu);
        // It returns only when it could not start or accept (its message is on stderr).
        return fail(LOCALAI_ERR_INVALID, "the RPC server on %s stopped: it could not listen there (a bad address, "
                    "or the port is taken)", endpoint);
    });
#else
    (void) cache_dir;
    return fail(LOCALAI_ERR_INVALID, "this build has no ggml RPC backend (built with --no-rpc)");
#endif
}

int32_t localai_rpc_add_server(const char * endpoint, uint64_t * free_mem, uint64_t * total_mem) {
    if (endpoint == nullptr || free_mem == nullptr || total_mem == nullptr) {
        return fail(LOCALAI_ERR_INVALID, "rpc add server: NULL argument");
    }
#ifdef LOCALAI_WITH_RPC
    return guarded_status("ggml_backend_rpc_add_server", [&] {
        *free_mem = *total_mem = 0;
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(endpoint);
        if (reg == nullptr) return (int32_t) 0;
        const size_t n = ggml_backend_reg_dev_count(reg);
        for (size_t i = 0; i < n; i++) {
            size_t free = 0, total = 0;
            ggml_backend_dev_memory(ggml_backend_reg_dev_get(reg, i), &free, &total);
            *free_mem += free;
            *total_mem += total;
        }
        return (int32_t) n;
    });
#else
    return fail(LOCALAI_ERR_INVALID, "this build has no ggml RPC backend (built with --no-rpc)");
#endif
}

llama_model * localai_model_load_split(const char * path, bool use_mmap, bool use_mlock,
                                       const localai_model_split * split) {
    if (path == nullptr || split == nullptr || split->n_endpoints < 0 || split->n_tensor_split < 0) {
        fail(LOCALAI_ERR_INVALID, "load split: bad argument");
        return nullptr;
    }
#ifdef LOCALAI_WITH_RPC
    return guarded<llama_model *>(nullptr, nullptr, "loading the model over RPC", [&]() -> llama_model * {
        std::vector<ggml_backend_dev_t> devices;
        for (int32_t i = 0; i < split->n_endpoints; i++) {
            ggml_backend_reg_t reg = ggml_backend_rpc_add_server(split->endpoints[i]);
            if (reg == nullptr) {
                fail(LOCALAI_ERR_LOAD, "the RPC server %s does not answer", split->endpoints[i]);
                return nullptr;
            }
            for (size_t d = 0; d < ggml_backend_reg_dev_count(reg); d++) devices.push_back(ggml_backend_reg_dev_get(reg, d));
        }
        if (split->tensor_split != nullptr && (size_t) split->n_tensor_split != devices.size()) {
            fail(LOCALAI_ERR_INVALID, "tensor_split has %d weights for %zu RPC devices", split->n_tensor_split,
                 devices.size());
            return nullptr;
        }
        devices.push_back(nullptr);
        std::vector<float> weights(llama_max_devices(), 0.0f);
        if (split->tensor_split != nullptr) {
            for (int32_t i = 0; i < split->n_tensor_split && (size_t) i < weights.size(); i++) weights[i] = split->tensor_split[i];
        }
        // The output layer stays here: computed on the last worker, its logits (n_vocab floats,
        // 192 KiB a token for a 49k vocabulary) would cross the network every token instead of
        // one hidden state (a few KiB).
        static const llama_model_tensor_buft_override keep_output_here[] = {
            {"^output\\.|^output_norm\\.|^token_embd\\.", ggml_backend_cpu_buffer_type()},
            {nullptr, nullptr},
        };
        llama_model_params params = llama_model_default_params();
        params.devices = devices.data();
        params.tensor_buft_overrides = keep_output_here;
        params.n_gpu_layers = split->n_gpu_layers;
        params.split_mode = LLAMA_SPLIT_MODE_LAYER;
        params.tensor_split = split->tensor_split != nullptr ? weights.data() : nullptr;
        params.load_mode = use_mmap ? (use_mlock ? LLAMA_LOAD_MODE_MMAP_MLOCK : LLAMA_LOAD_MODE_MMAP)
                                    : (use_mlock ? LLAMA_LOAD_MODE_MLOCK : LLAMA_LOAD_MODE_NONE);
        llama_model * model = llama_model_load_from_file(path, params);
        if (model == nullptr) {
            fail(LOCALAI_ERR_LOAD, "llama.cpp could not load the model %s over its RPC servers", path);
        }
        return model;
    });
#else
    (void) use_mmap; (void) use_mlock;
    fail(LOCALAI_ERR_INVALID, "this build has no ggml RPC backend (built with --no-rpc)");
    return nullptr;
#endif
}

void localai_model_free(llama_model * model) {
    guarded<int>(0, nullptr, "llama_model_free", [&] { llama_model_free(model); return 0; });
}

int32_t localai_model_info(const llama_model * model, struct localai_model_info * out) {
    if (model == nullptr || out == nullptr) return fail(LOCALAI_ERR_INVALID, "model info: NULL argument");
    return guarded_status("model info", [&] {
        const llama_vocab * vocab = llama_model_get_vocab(model);
        out->n_vocab = llama_vocab_n_tokens(vocab);
        out->n_ctx_train = llama_model_n_ctx_train(model);
        out->n_embd = llama_model_n_embd(model);
        out->n_embd_out = llama_model_n_embd_out(model);
        out->bos = llama_vocab_bos(vocab);
        out->eos = llama_vocab_eos(vocab);
        out->fim_pre = llama_vocab_fim_pre(vocab);
        out->fim_suf = llama_vocab_fim_suf(vocab);
        out->fim_mid = llama_vocab_fim_mid(vocab);
        out->has_encoder = llama_model_has_encoder(model);
        out->has_decoder = llama_model_has_decoder(model);
        out->is_recurrent = llama_model_is_recurrent(model) || llama_model_is_hybrid(model);
        out->n_swa = llama_model_n_swa(model);
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_model_desc(const llama_model * model, char * buf, size_t size) {
    if (model == nullptr || buf == nullptr) return fail(LOCALAI_ERR_INVALID, "model description: NULL argument");
    return guarded_status("model description", [&] { return llama_model_desc(model, buf, size); });
}

int32_t localai_model_meta(const llama_model * model, const char * key, char * buf, size_t size) {
    if (model == nullptr || key == nullptr || buf == nullptr) return fail(LOCALAI_ERR_INVALID, "metadata: NULL argument");
    return guarded_status("model metadata", [&] { return llama_model_meta_val_str(model, key, buf, size); });
}

const char * localai_model_chat_template(const llama_model * model) {
    if (model == nullptr) return nullptr;
    return guarded<const char *>(nullptr, nullptr, "chat template",
                                 [&] { return llama_model_chat_template(model, nullptr); });
}

int32_t localai_tokenize(const llama_model * model, const char * text, int32_t len, llama_token * out, int32_t n_max,
                         bool add_special, bool parse_special, int32_t * n_out) {
    if (model == nullptr || (text == nullptr && len > 0) || len < 0 || n_out == nullptr) {
        return fail(LOCALAI_ERR_INVALID, "tokenize: bad argument");
    }
    return guarded_status("tokenize", [&] {
        const int32_t n = llama_tokenize(llama_model_get_vocab(model), text, len, out, n_max, add_special,
                                         parse_special);
        *n_out = n;  // negative: minus the number of tokens needed
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_token_to_piece(const llama_model * model, llama_token token, char * buf, int32_t size, bool special,
                               int32_t * n_out) {
    if (model == nullptr || n_out == nullptr) return fail(LOCALAI_ERR_INVALID, "token_to_piece: NULL argument");
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (token < 0 || token >= llama_vocab_n_tokens(vocab)) {
        return fail(LOCALAI_ERR_INVALID, "token id %d is outside the vocabulary", token);
    }
    return guarded_status("token_to_piece", [&] {
        *n_out = llama_token_to_piece(vocab, token, buf, size, 0, special);
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_token_is_eog(const llama_model * model, llama_token token) {
    if (model == nullptr) return fail(LOCALAI_ERR_INVALID, "is_eog: NULL model");
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (token < 0 || token >= llama_vocab_n_tokens(vocab)) {
        return fail(LOCALAI_ERR_INVALID, "token id %d is outside the vocabulary", token);
    }
    return guarded_status("is_eog", [&] { return (int32_t) llama_vocab_is_eog(vocab, token); });
}

const char * localai_token_text(const llama_model * model, llama_token token) {
    if (model == nullptr) return nullptr;
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (token < 0 || token >= llama_vocab_n_tokens(vocab)) return nullptr;
    return guarded<const char *>(nullptr, nullptr, "token text", [&] { return llama_vocab_get_text(vocab, token); });
}

int32_t localai_token_attr(const llama_model * model, llama_token token) {
    if (model == nullptr) return fail(LOCALAI_ERR_INVALID, "token_attr: NULL model");
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (token < 0 || token >= llama_vocab_n_tokens(vocab)) {
        return fail(LOCALAI_ERR_INVALID, "token id %d is outside the vocabulary", token);
    }
    return guarded_status("token_attr", [&] { return (int32_t) llama_vocab_get_attr(vocab, token); });
}

// ---- contexts ----------------------------------------------------------------------------------

localai_context * localai_context_new(llama_model * model, const localai_context_params * params) {
    if (model == nullptr || params == nullptr) {
        fail(LOCALAI_ERR_INVALID, "context: NULL argument");
        return nullptr;
    }
    return guarded<localai_context *>(nullptr, nullptr, "creating a context", [&]() -> localai_context * {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = params->n_ctx;
        cp.n_batch = params->n_batch;
        cp.n_ubatch = params->n_ubatch;
        cp.n_seq_max = params->n_seq_max;
        cp.n_threads = params->n_threads;
        cp.n_threads_batch = params->n_threads;
        cp.embeddings = params->embeddings;
        cp.no_perf = true;
        // Separate KV streams per sequence (n_ctx / n_seq_max cells each) unless asked: with one
        // unified buffer, attention spans every sequence's cached cells, so prefixes kept for
        // reuse in idle slots would slow down every other request.
        cp.kv_unified = params->kv_unified;
        if (params->pooling_type != LLAMA_POOLING_TYPE_UNSPECIFIED) {
            cp.pooling_type = (enum llama_pooling_type) params->pooling_type;
        }
        auto * out = new localai_context();
        out->ctx = llama_init_from_model(model, cp);
        if (out->ctx == nullptr) {
            delete out;
            fail(LOCALAI_ERR_OUT_OF_MEMORY, "llama.cpp could not create a context of %u tokens (out of memory?)",
                 params->n_ctx);
            return nullptr;
        }
        out->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
        ggml_threadpool_params tp = ggml_threadpool_params_default(params->n_threads);
        out->pool = ggml_threadpool_new(&tp);
        if (out->pool != nullptr) {
            llama_attach_threadpool(out->ctx, out->pool, out->pool);
        }
        return out;
    });
}

void localai_context_free(localai_context * ctx) {
    if (ctx == nullptr) return;
    guarded<int>(0, nullptr, "freeing a context", [&] {
        llama_free(ctx->ctx);  // the context first: it uses the pool until freed
        if (ctx->pool != nullptr) ggml_threadpool_free(ctx->pool);
        delete ctx;
        return 0;
    });
}

int32_t localai_context_info(const localai_context * ctx, struct localai_context_info * out) {
    if (ctx == nullptr || out == nullptr) return fail(LOCALAI_ERR_INVALID, "context info: NULL argument");
    return guarded_status("context info", [&] {
        out->n_ctx = llama_n_ctx(ctx->ctx);
        out->n_batch = llama_n_batch(ctx->ctx);
        out->n_seq_max = llama_n_seq_max(ctx->ctx);
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_decode(localai_context * ctx, llama_batch * batch, int32_t * decode_status) {
    if (ctx == nullptr || batch == nullptr) return fail(LOCALAI_ERR_INVALID, "decode: NULL argument");
    return guarded_status("llama_decode", [&] {
        const int32_t status = llama_decode(ctx->ctx, *batch);
        if (decode_status) *decode_status = status;
        if (status != 0) {
            return fail(LOCALAI_ERR_DECODE, "llama_decode returned %d%s", status,
                        status == 1 ? " (no KV cache slot for the batch)" : "");
        }
        return (int32_t) LOCALAI_OK;
    });
}

const float * localai_logits(localai_context * ctx, int32_t index) {
    if (ctx == nullptr) return nullptr;
    const float * logits = guarded<const float *>(nullptr, nullptr, "logits",
                                                  [&] { return llama_get_logits_ith(ctx->ctx, index); });
    if (logits == nullptr) fail(LOCALAI_ERR_INVALID, "no logits at batch index %d", index);
    return logits;
}

int32_t localai_embeddings_seq(localai_context * ctx, llama_seq_id seq, float * out, int32_t n) {
    if (ctx == nullptr || out == nullptr) return fail(LOCALAI_ERR_INVALID, "embeddings: NULL argument");
    return guarded_status("pooled embeddings", [&] {
        const float * values = llama_get_embeddings_seq(ctx->ctx, seq);
        if (values == nullptr) return fail(LOCALAI_ERR_INVALID, "no pooled embeddings for sequence %d", seq);
        memcpy(out, values, sizeof(float) * (size_t) n);
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_embeddings_ith(localai_context * ctx, int32_t index, float * out, int32_t n) {
    if (ctx == nullptr || out == nullptr) return fail(LOCALAI_ERR_INVALID, "embeddings: NULL argument");
    return guarded_status("token embeddings", [&] {
        const float * values = llama_get_embeddings_ith(ctx->ctx, index);
        if (values == nullptr) return fail(LOCALAI_ERR_INVALID, "no embeddings at batch index %d", index);
        memcpy(out, values, sizeof(float) * (size_t) n);
        return (int32_t) LOCALAI_OK;
    });
}

int32_t localai_seq_rm(localai_context * ctx, llama_seq_id seq, llama_pos p0, llama_pos p1) {
    if (ctx == nullptr) return fail(LOCALAI_ERR_INVALID, "seq_rm: NULL context");
    return guarded_status("seq_rm", [&] {
        return (int32_t) llama_memory_seq_rm(llama_get_memory(ctx->ctx), seq, p0, p1);
    });
}

int32_t localai_seq_pos_max(localai_context * ctx, llama_seq_id seq) {
    if (ctx == nullptr) return fail(LOCALAI_ERR_INVALID, "seq_pos_max: NULL context");
    return guarded_status("seq_pos_max", [&] {
        return (int32_t) llama_memory_seq_pos_max(llama_get_memory(ctx->ctx), seq);
    });
}

int32_t localai_memory_clear(localai_context * ctx) {
    if (ctx == nullptr) return fail(LOCALAI_ERR_INVALID, "memory_clear: NULL context");
    return guarded_status("memory_clear", [&] {
        llama_memory_clear(llama_get_memory(ctx->ctx), true);
        return (int32_t) LOCALAI_OK;
    });
}

size_t localai_seq_state_size(localai_context * ctx, llama_seq_id seq) {
    if (ctx == nullptr) return 0;
    return guarded<size_t>(0, nullptr, "state size", [&] { return llama_state_seq_get_size(ctx->ctx, seq); });
}

size_t localai_seq_state_get(localai_context * ctx, llama_seq_id seq, uint8_t * dst, size_t size) {
    if (ctx == nullptr || dst == nullptr) return 0;
    return guarded<size_t>(0, nullptr, "saving a sequence",
                           [&] { return llama_state_seq_get_data(ctx->ctx, dst, size, seq); });
}

size_t localai_seq_state_set(localai_context * ctx, llama_seq_id seq, const uint8_t * src, size_t size) {
    if (ctx == nullptr || src == nullptr) return 0;
    return guarded<size_t>(0, nullptr, "restoring a sequence",
                           [&] { return llama_state_seq_set_data(ctx->ctx, src, size, seq); });
}

// ---- batches -----------------------------------------------------------------------------------

llama_batch * localai_batch_new(int32_t capacity) {
    if (capacity <= 0) {
        fail(LOCALAI_ERR_INVALID, "batch capacity %d", capacity);
        return nullptr;
    }
    return guarded<llama_batch *>(nullptr, nullptr, "creating a batch", [&] {
        auto * batch = new llama_batch(llama_batch_init(capacity, 0, 1));
        return batch;
    });
}

void localai_batch_free(llama_batch * batch) {
    if (batch == nullptr) return;
    guarded<int>(0, nullptr, "freeing a batch", [&] {
        llama_batch_free(*batch);
        delete batch;
        return 0;
    });
}

void localai_batch_clear(llama_batch * batch) {
    if (batch != nullptr) batch->n_tokens = 0;
}

int32_t localai_batch_size(const llama_batch * batch) {
    return batch == nullptr ? 0 : batch->n_tokens;
}

int32_t localai_batch_add(llama_batch * batch, int32_t capacity, const llama_token * tokens, int32_t n, llama_pos pos0,
                          llama_seq_id seq, int32_t outputs) {
    if (batch == nullptr || (tokens == nullptr && n > 0) || n < 0) return fail(LOCALAI_ERR_INVALID, "batch: bad argument");
    if (batch->n_tokens + n > capacity) {
        return fail(LOCALAI_ERR_INVALID, "batch overflow: %d + %d > %d", batch->n_tokens, n, capacity);
    }
    for (int32_t i = 0; i < n; i++) {
        const int32_t k = batch->n_tokens + i;
        batch->token[k] = tokens[i];
        batch->pos[k] = pos0 + i;
        batch->n_seq_id[k] = 1;
        batch->seq_id[k][0] = seq;
        batch->logits[k] = (outputs == 2 || (outputs == 1 && i == n - 1)) ? 1 : 0;
    }
    batch->n_tokens += n;
    return batch->n_tokens - 1;
}

// ---- sampling ----------------------------------------------------------------------------------

localai_sampler * localai_sampler_new(const llama_model * model, const localai_sampling * p, int32_t * status) {
    int32_t ignored = LOCALAI_OK;
    status = status ? status : &ignored;
    *status = LOCALAI_OK;
    if (model == nullptr || p == nullptr) {
        *status = fail(LOCALAI_ERR_INVALID, "sampler: NULL argument");
        return nullptr;
    }
    return guarded<localai_sampler *>(nullptr, status, "creating a sampler", [&]() -> localai_sampler * {
        auto * s = new localai_sampler();
        s->vocab = llama_model_get_vocab(model);
        const int32_t n_vocab = llama_vocab_n_tokens(s->vocab);
        llama_sampler_chain_params chain_params = llama_sampler_chain_default_params();
        chain_params.no_perf = true;
        s->bias = llama_sampler_chain_init(chain_params);
        s->chain = llama_sampler_chain_init(chain_params);
        for (int32_t i = 0; i < p->n_logit_bias; i++) {
            if (p->logit_bias[i].token < 0 || p->logit_bias[i].token >= n_vocab) {
                delete s;
                *status = fail(LOCALAI_ERR_INVALID, "logit_bias token %d is outside the vocabulary",
                               p->logit_bias[i].token);
                return nullptr;
            }
        }
        if (p->n_logit_bias > 0) {
            llama_sampler_chain_add(s->bias, llama_sampler_init_logit_bias(n_vocab, p->n_logit_bias, p->logit_bias));
        }
        if (p->grammar != nullptr) {
            s->grammar = llama_sampler_init_grammar(s->vocab, p->grammar, "root");
            if (s->grammar == nullptr) {
                delete s;
                *status = fail(LOCALAI_ERR_GRAMMAR, "llama.cpp could not parse the grammar");
                return nullptr;
            }
        }
        if (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f) {
            llama_sampler_chain_add(s->chain, llama_sampler_init_penalties(n_vocab, p->repeat_last_n, p->repeat_penalty,
                                                                           p->frequency_penalty,
                                                                           p->presence_penalty));
        }
        if (p->temperature <= 0.0f) {
            llama_sampler_chain_add(s->chain, llama_sampler_init_greedy());
        } else {
            if (p->top_k > 0) llama_sampler_chain_add(s->chain, llama_sampler_init_top_k(p->top_k));
            if (p->typical_p < 1.0f) llama_sampler_chain_add(s->chain, llama_sampler_init_typical(p->typical_p, 1));
            if (p->top_p < 1.0f) llama_sampler_chain_add(s->chain, llama_sampler_init_top_p(p->top_p, 1));
            if (p->min_p > 0.0f) llama_sampler_chain_add(s->chain, llama_sampler_init_min_p(p->min_p, 1));
            llama_sampler_chain_add(s->chain, llama_sampler_init_temp(p->temperature));
            llama_sampler_chain_add(s->chain, llama_sampler_init_dist(p->seed));
        }
        s->candidates.resize((size_t) n_vocab);
        return s;
    });
}

void localai_sampler_free(localai_sampler * sampler) {
    guarded<int>(0, nullptr, "freeing a sampler", [&] { delete sampler; return 0; });
}

int32_t localai_sampler_prime(localai_sampler * s, const llama_token * tokens, int32_t n) {
    if (s == nullptr || (tokens == nullptr && n > 0) || n < 0) return fail(LOCALAI_ERR_INVALID, "prime: bad argument");
    return guarded_status("priming the penalties", [&] {
        const int32_t n_vocab = (int32_t) s->candidates.size();
        for (int32_t i = 0; i < n; i++) {
            if (tokens[i] < 0 || tokens[i] >= n_vocab) return fail(LOCALAI_ERR_INVALID, "token id %d", tokens[i]);
            llama_sampler_accept(s->chain, tokens[i]);
        }
        return (int32_t) LOCALAI_OK;
    });
}

namespace {

void fill(localai_sampler * s, const float * logits, llama_token_data_array * cur) {
    const size_t n = s->candidates.size();
    for (size_t t = 0; t < n; t++) {
        s->candidates[t] = llama_token_data{(llama_token) t, logits[t], 0.0f};
    }
    *cur = llama_token_data_array{s->candidates.data(), n, -1, false};
}

size_t count_finite(const llama_token_data_array * cur) {
    size_t n = 0;
    for (size_t i = 0; i < cur->size; i++) {
        n += std::isfinite(cur->data[i].logit) ? 1 : 0;
    }
    return n;
}

// The chain picks among candidates that still have a finite logit; returns -1 for none.
llama_token pick(localai_sampler * s, llama_token_data_array * cur) {
    llama_sampler_apply(s->bias, cur);
    if (count_finite(cur) == 0) return -1;
    llama_sampler_apply(s->chain, cur);
    if (cur->selected < 0 || (size_t) cur->selected >= cur->size) return -1;
    const llama_token_data & chosen = cur->data[cur->selected];
    return std::isfinite(chosen.logit) ? chosen.id : -1;
}

}  // namespace

int32_t localai_sampler_sample(localai_sampler * s, localai_context * ctx, int32_t index, llama_token * token) {
    if (s == nullptr || ctx == nullptr || token == nullptr) return fail(LOCALAI_ERR_INVALID, "sample: NULL argument");
    return guarded_status("sampling", [&]() -> int32_t {
        const float * logits = llama_get_logits_ith(ctx->ctx, index);
        if (logits == nullptr) return fail(LOCALAI_ERR_INVALID, "no logits at batch index %d", index);
        llama_token_data_array cur;
        fill(s, logits, &cur);
        llama_token chosen = pick(s, &cur);
        if (s->grammar != nullptr) {
            bool allowed = false;
            if (chosen >= 0) {  // cheap check first: most tokens the chain picks, the grammar allows
                llama_token_data single{chosen, 1.0f, 0.0f};
                llama_token_data_array one{&single, 1, -1, false};
                llama_sampler_apply(s->grammar, &one);
                allowed = std::isfinite(single.logit);
            }
            if (!allowed) {
                fill(s, logits, &cur);
                llama_sampler_apply(s->grammar, &cur);
                bool other_than_eog = false;
                bool any = false;
                for (size_t i = 0; i < cur.size; i++) {
                    if (std::isfinite(cur.data[i].logit)) {
                        any = true;
                        other_than_eog = other_than_eog || !llama_vocab_is_eog(s->vocab, cur.data[i].id);
                    }
                }
                if (!any) return fail(LOCALAI_ERR_NO_CANDIDATE, "the grammar allows no token here");
                chosen = pick(s, &cur);
                if (chosen < 0) {
                    if (!other_than_eog) {
                        // complete: only end-of-generation may follow, and the biases ban it
                        return (int32_t) LOCALAI_GRAMMAR_COMPLETE;
                    }
                    return fail(LOCALAI_ERR_NO_CANDIDATE,
                                "logit_bias bans every token the grammar allows at this point");
                }
            }
            llama_sampler_accept(s->grammar, chosen);
        } else if (chosen < 0) {
            return fail(LOCALAI_ERR_NO_CANDIDATE, "logit_bias bans every token");
        }
        llama_sampler_accept(s->chain, chosen);
        *token = chosen;
        return (int32_t) LOCALAI_OK;
    });
}

}  // extern "C"
