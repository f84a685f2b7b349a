// bert.cpp: batched sentence embeddings over llama.cpp (see bert.h for the contract).
//
// llama.cpp already runs BERT-family GGUF files; what the original bert.cpp lacked, and
// what this file adds, is batching: one llama_batch holds many inputs, each under its own
// sequence id, so one forward pass embeds all of them. A pass must be one micro-batch
// (n_ubatch == the pass size): non-causal attention cannot be split, and llama.cpp pools
// per micro-batch, so a split sequence would be pooled from half its tokens.
//
// Why passes are small and run side by side: attention in a pass is computed over ALL its
// tokens (other inputs are masked out, but the mask is still applied), so its cost grows
// with the square of the pass size while the useful work grows linearly. A few hundred
// tokens per pass keeps that overhead small. And several single-threaded passes running at
// once do at least as well as one pass split across threads, with no barrier after every
// operation; on a busy machine far better: while another process held a core, 256 short
// sentences took 1.7 s this way and 24.6 s as one 2-thread context whose threads spin at
// every barrier. So a context holds a few llama contexts ("workers") on the one loaded
// model, and a call's passes are shared out among them.

#include "bert.h"

#include "llama.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

// Tokens per forward pass unless the caller asks otherwise (measured on all-MiniLM-L6-v2:
// 128..384 are within noise of each other; attention work grows with the square of it).
constexpr int32_t DEFAULT_PASS_TOKENS = 128;
// Parallel contexts at most: each holds its own compute and output buffers (tens of MB).
constexpr int32_t MAX_WORKERS = 4;

thread_local std::string g_last_error;

int32_t fail(int32_t status, const char * fmt, ...) {
    char buf[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    g_last_error = buf;
    return status;
}

std::string meta_string(const llama_model * model, const std::string & key) {
    char buf[256];
    const int32_t n = llama_model_meta_val_str(model, key.c_str(), buf, sizeof(buf));
    return n < 0 ? std::string() : std::string(buf);
}

// One llama context on the shared model, with its own batch; used by one thread at a time.
struct worker {
    llama_context * lctx = nullptr;
    llama_batch batch = {};
    bool has_batch = false;
    int32_t n_threads = -1;  // what llama_set_n_threads was last given

    worker() = default;
    worker(const worker &) = delete;
    worker & operator=(const worker &) = delete;
    ~worker() {
        if (has_batch) {
            llama_batch_free(batch);
        }
        if (lctx) {
            llama_free(lctx);
        }
    }
};

}  // namespace

struct bert_ctx {
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    std::vector<worker *> workers;
    bool has_memory = false;  // causal models keep a KV cache that must be cleared per pass
    int32_t n_embd = 0;
    int32_t n_vocab = 0;
    int32_t n_batch = 0;      // token budget of one pass
    int32_t n_ubatch = 0;     // largest pass a context can run (a long input gets a pass of its own)
    int32_t n_seq_max = 0;
    int32_t n_max_tokens = 0;
    int32_t n_threads = 0;
    bert_pooling pooling = BERT_POOLING_MEAN;

    ~bert_ctx() {
        for (worker * w : workers) {
            delete w;  // contexts before the model they use
        }
        if (model) {
            llama_model_free(model);
        }
    }
};

extern "C" {

struct bert_ctx * bert_load_from_file(const char * path, int32_t n_threads, int32_t n_batch) {
    if (path == nullptr) {
        fail(BERT_ERR_INVALID_ARGUMENT, "path is NULL");
        return nullptr;
    }
    FILE * probe = fopen(path, "rb");
    if (probe == nullptr) {
        fail(BERT_ERR_LOAD, "cannot open model file %s: %s", path, strerror(errno));
        return nullptr;
    }
    fclose(probe);

    static std::once_flag backend_once;
    // Logging is the caller's: localai installs one sink for every native library.
    std::call_once(backend_once, [] { llama_backend_init(); });

    bert_ctx * ctx = new (std::nothrow) bert_ctx();
    if (ctx == nullptr) {
        fail(BERT_ERR_OUT_OF_MEMORY, "out of memory");
        return nullptr;
    }
    try {
        llama_model_params mparams = llama_model_default_params();
        mparams.n_gpu_layers = 0;
        ctx->model = llama_model_load_from_file(path, mparams);
        if (ctx->model == nullptr) {
            fail(BERT_ERR_LOAD, "llama.cpp could not load %s (not a GGUF model, or a damaged one)", path);
            delete ctx;
            return nullptr;
        }
        if (llama_model_has_encoder(ctx->model) && llama_model_has_decoder(ctx->model)) {
            fail(BERT_ERR_LOAD, "%s is an encoder-decoder model; embeddings need an encoder-only or decoder-only model",
                 path);
            delete ctx;
            return nullptr;
        }
        ctx->vocab = llama_model_get_vocab(ctx->model);
        ctx->n_vocab = llama_vocab_n_tokens(ctx->vocab);

        const std::string arch = meta_string(ctx->model, "general.architecture");
        // The pooling the model was trained with; a GGUF that names none (a chat model)
        // gets mean pooling, the sentence-transformers default.
        const std::string pooling_meta = meta_string(ctx->model, arch + ".pooling_type");
        int pooling = pooling_meta.empty() ? LLAMA_POOLING_TYPE_NONE : atoi(pooling_meta.c_str());
        if (pooling == LLAMA_POOLING_TYPE_NONE) {
            pooling = LLAMA_POOLING_TYPE_MEAN;
        }
        if (pooling != LLAMA_POOLING_TYPE_MEAN && pooling != LLAMA_POOLING_TYPE_CLS &&
            pooling != LLAMA_POOLING_TYPE_LAST) {
            fail(BERT_ERR_LOAD, "%s has pooling type %d (a reranker?), not a sentence-embedding pooling", path,
                 pooling);
            delete ctx;
            return nullptr;
        }
        ctx->pooling = (bert_pooling) pooling;
        const bool causal = meta_string(ctx->model, arch + ".attention.causal") != "false";

        const int32_t n_ctx_train = std::max(1, llama_model_n_ctx_train(ctx->model));
        ctx->n_batch = n_batch > 0 ? n_batch : DEFAULT_PASS_TOKENS;
        ctx->n_ubatch = std::max(ctx->n_batch, n_ctx_train);
        const unsigned hw = std::thread::hardware_concurrency();
        ctx->n_threads = n_threads > 0 ? n_threads : (int32_t) std::max(1u, hw);

        llama_context_params cparams = llama_context_default_params();
        // A causal model keeps the pass in its KV cache, which must hold all of it; an
        // encoder has no cache and its n_ctx only bounds positions (the model's own).
        cparams.n_ctx = causal ? (uint32_t) ctx->n_ubatch : 0;
        cparams.n_batch = (uint32_t) ctx->n_ubatch;
        cparams.n_ubatch = (uint32_t) ctx->n_ubatch;
        cparams.n_seq_max = (uint32_t) std::min<size_t>(llama_max_parallel_sequences(), (size_t) ctx->n_ubatch);
        cparams.n_threads = 1;
        cparams.n_threads_batch = 1;
        cparams.embeddings = true;
        cparams.pooling_type = (enum llama_pooling_type) pooling;
        cparams.kv_unified = true;  // one KV buffer shared by all sequences of a pass
        cparams.no_perf = true;
        const int32_t n_workers = std::max(1, std::min(ctx->n_threads, MAX_WORKERS));
        for (int32_t i = 0; i < n_workers; i++) {
            ctx->workers.push_back(nullptr);  // grown first, so a failing allocation below leaks nothing
            worker * w = ctx->workers.back() = new worker();
            w->lctx = llama_init_from_model(ctx->model, cparams);
            if (w->lctx == nullptr) {
                fail(BERT_ERR_LOAD, "llama.cpp could not create a context for %s (out of memory?)", path);
                delete ctx;
                return nullptr;
            }
            w->batch = llama_batch_init(ctx->n_ubatch, 0, 1);
            w->has_batch = true;
        }
        llama_context * first = ctx->workers[0]->lctx;
        ctx->has_memory = llama_get_memory(first) != nullptr;
        ctx->n_embd = llama_model_n_embd_out(ctx->model);
        ctx->n_seq_max = (int32_t) llama_n_seq_max(first);
        ctx->n_max_tokens = std::min(n_ctx_train, (int32_t) llama_n_ubatch(first));
    } catch (const std::bad_alloc &) {
        delete ctx;
        fail(BERT_ERR_OUT_OF_MEMORY, "out of memory while loading %s", path);
        return nullptr;
    } catch (const std::exception & e) {
        delete ctx;
        fail(BERT_ERR_LOAD, "loading %s failed: %s", path, e.what());
        return nullptr;
    }
    g_last_error.clear();
    return ctx;
}

void bert_free(struct bert_ctx * ctx) {
    delete ctx;
}

int32_t bert_n_embd(const struct bert_ctx * ctx) { return ctx ? ctx->n_embd : 0; }
int32_t bert_n_max_tokens(const struct bert_ctx * ctx) { return ctx ? ctx->n_max_tokens : 0; }
int32_t bert_n_vocab(const struct bert_ctx * ctx) { return ctx ? ctx->n_vocab : 0; }
int32_t bert_n_batch(const struct bert_ctx * ctx) { return ctx ? ctx->n_batch : 0; }
int32_t bert_n_seq_max(const struct bert_ctx * ctx) { return ctx ? ctx->n_seq_max : 0; }
int32_t bert_n_threads(const struct bert_ctx * ctx) { return ctx ? ctx->n_threads : 0; }
int32_t bert_n_workers(const struct bert_ctx * ctx) { return ctx ? (int32_t) ctx->workers.size() : 0; }
enum bert_pooling bert_pooling_type(const struct bert_ctx * ctx) { return ctx ? ctx->pooling : BERT_POOLING_MEAN; }

int32_t bert_tokenize(const struct bert_ctx * ctx, const char * text, int32_t * tokens, int32_t n_max_tokens,
                      int32_t * n_tokens) {
    if (ctx == nullptr || text == nullptr || n_tokens == nullptr || n_max_tokens < 0 ||
        (tokens == nullptr && n_max_tokens > 0)) {
        return fail(BERT_ERR_INVALID_ARGUMENT, "bert_tokenize: invalid argument");
    }
    const size_t len = strlen(text);
    if (len > (size_t) INT32_MAX) {
        return fail(BERT_ERR_TOO_LONG, "text of %zu bytes is too long", len);
    }
    // parse_special: "[SEP]" written in the text is the [SEP] token, as Hugging Face's
    // tokenizers (and so sentence-transformers) treat added tokens.
    const int32_t n = llama_tokenize(ctx->vocab, text, (int32_t) len, tokens, n_max_tokens, true, true);
    if (n == INT32_MIN) {
        return fail(BERT_ERR_TOO_LONG, "text of %zu bytes has too many tokens", len);
    }
    if (n < 0) {
        *n_tokens = -n;
        return fail(BERT_ERR_TOO_LONG, "%d tokens do not fit the buffer of %d", -n, n_max_tokens);
    }
    *n_tokens = n;
    return BERT_OK;
}

}  // extern "C"

namespace {

struct pass_result {
    int32_t status = BERT_OK;
    std::string error;
};

// Run one forward pass over inputs [first, last) on worker w and write their pooled rows.
pass_result encode_pass(const bert_ctx * ctx, worker & w, const int32_t * const * inputs, const int32_t * n_tokens,
                        int32_t first, int32_t last, float * embeddings, bool normalize) {
    pass_result result;
    llama_batch & batch = w.batch;
    batch.n_tokens = 0;
    for (int32_t i = first; i < last; i++) {
        const llama_seq_id seq = i - first;
        for (int32_t p = 0; p < n_tokens[i]; p++) {
            const int32_t k = batch.n_tokens++;
            batch.token[k] = inputs[i][p];
            batch.pos[k] = p;
            batch.n_seq_id[k] = 1;
            batch.seq_id[k][0] = seq;
            batch.logits[k] = 1;  // pooling reads every token
        }
    }
    if (ctx->has_memory) {
        llama_memory_clear(llama_get_memory(w.lctx), true);
    }
    const int32_t rc = llama_decode(w.lctx, batch);
    if (rc != 0) {
        result.status = BERT_ERR_COMPUTE;
        result.error = "llama_decode failed with status " + std::to_string(rc) + " on a pass of " +
                       std::to_string(last - first) + " inputs (" + std::to_string(batch.n_tokens) + " tokens)";
        return result;
    }
    const int32_t n_embd = ctx->n_embd;
    for (int32_t i = first; i < last; i++) {
        const float * pooled = llama_get_embeddings_seq(w.lctx, i - first);
        if (pooled == nullptr) {
            result.status = BERT_ERR_COMPUTE;
            result.error = "llama.cpp returned no pooled embedding for input " + std::to_string(i);
            return result;
        }
        float * row = embeddings + (size_t) i * n_embd;
        double sum = 0.0;
        for (int32_t j = 0; j < n_embd; j++) {
            sum += (double) pooled[j] * pooled[j];
        }
        // torch.nn.functional.normalize: x / max(||x||, 1e-12)
        const float scale = normalize ? (float) (1.0 / std::max(std::sqrt(sum), 1e-12)) : 1.0f;
        for (int32_t j = 0; j < n_embd; j++) {
            row[j] = pooled[j] * scale;
        }
    }
    return result;
}

int32_t encode_lists(bert_ctx * ctx, int32_t n_inputs, const int32_t * const * inputs, const int32_t * n_tokens,
                     float * embeddings, bool normalize) {
    // Check everything first: a bad input must not leave half the rows written.
    for (int32_t i = 0; i < n_inputs; i++) {
        if (n_tokens[i] <= 0) {
            return fail(BERT_ERR_EMPTY_INPUT, "input %d has no tokens", i);
        }
        if (n_tokens[i] > ctx->n_max_tokens) {
            return fail(BERT_ERR_TOO_LONG, "input %d has %d tokens; this model takes at most %d", i, n_tokens[i],
                        ctx->n_max_tokens);
        }
        for (int32_t p = 0; p < n_tokens[i]; p++) {
            const int32_t t = inputs[i][p];
            if (t < 0 || t >= ctx->n_vocab) {
                return fail(BERT_ERR_BAD_TOKEN, "input %d: token id %d is outside the vocabulary (0..%d)", i, t,
                            ctx->n_vocab - 1);
            }
        }
    }
    // Greedy packing in input order: a pass ends when the next input would overflow the
    // token budget or the sequence limit (an input longer than the budget goes alone).
    // Inputs are not padded, so packing order does not change the work done.
    std::vector<std::pair<int32_t, int32_t>> passes;
    for (int32_t first = 0; first < n_inputs;) {
        int32_t last = first + 1;
        int32_t used = n_tokens[first];
        while (last < n_inputs && last - first < ctx->n_seq_max && used + n_tokens[last] <= ctx->n_batch) {
            used += n_tokens[last];
            last++;
        }
        passes.emplace_back(first, last);
        first = last;
    }
    if (passes.empty()) {
        return BERT_OK;
    }
    // Share the passes among the workers; the threads are shared among the busy workers, so
    // a one-pass call still uses every thread.
    const int32_t n_busy = std::min((int32_t) ctx->workers.size(), (int32_t) passes.size());
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::vector<pass_result> results((size_t) n_busy);
    auto run = [&](int32_t k) {
        worker & w = *ctx->workers[(size_t) k];
        const int32_t threads = ctx->n_threads / n_busy + (k < ctx->n_threads % n_busy ? 1 : 0);
        if (w.n_threads != threads) {
            llama_set_n_threads(w.lctx, threads, threads);
            w.n_threads = threads;
        }
        for (size_t p = next++; p < passes.size() && !failed.load(); p = next++) {
            pass_result r = encode_pass(ctx, w, inputs, n_tokens, passes[p].first, passes[p].second, embeddings,
                                        normalize);
            if (r.status != BERT_OK) {
                results[(size_t) k] = std::move(r);
                failed = true;
                return;
            }
        }
    };
    std::vector<std::thread> helpers;
    try {
        helpers.reserve((size_t) n_busy - 1);
        for (int32_t k = 1; k < n_busy; k++) {
            helpers.emplace_back(run, k);
        }
    } catch (...) {  // no thread to start: stop those that did, then report
        failed = true;
        for (std::thread & t : helpers) {
            t.join();
        }
        throw;
    }
    run(0);
    for (std::thread & t : helpers) {
        t.join();
    }
    for (const pass_result & r : results) {
        if (r.status != BERT_OK) {
            return fail(r.status, "%s", r.error.c_str());
        }
    }
    return BERT_OK;
}

// Runs the body of an encode call: no C++ exception may cross the C API, and a call that
// succeeds leaves no stale message behind.
template <typename Body>
int32_t guarded_encode(Body && body) {
    try {
        const int32_t rc = body();
        if (rc == BERT_OK) {
            g_last_error.clear();
        }
        return rc;
    } catch (const std::bad_alloc &) {
        return fail(BERT_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception & e) {
        return fail(BERT_ERR_COMPUTE, "encoding failed: %s", e.what());
    }
}

}  // namespace

extern "C" {

int32_t bert_encode_tokens_batch(struct bert_ctx * ctx, int32_t n_inputs, const int32_t * tokens,
                                 const int32_t * n_tokens, float * embeddings, bool normalize) {
    if (ctx == nullptr || n_inputs < 0 || (n_inputs > 0 && (tokens == nullptr || n_tokens == nullptr ||
                                                            embeddings == nullptr))) {
        return fail(BERT_ERR_INVALID_ARGUMENT, "bert_encode_tokens_batch: invalid argument");
    }
    return guarded_encode([&]() -> int32_t {
        std::vector<const int32_t *> inputs((size_t) n_inputs);
        size_t offset = 0;
        for (int32_t i = 0; i < n_inputs; i++) {
            if (n_tokens[i] < 0) {
                return fail(BERT_ERR_INVALID_ARGUMENT, "input %d has a negative token count", i);
            }
            inputs[i] = tokens + offset;
            offset += (size_t) n_tokens[i];
        }
        return encode_lists(ctx, n_inputs, inputs.data(), n_tokens, embeddings, normalize);
    });
}

int32_t bert_encode_batch(struct bert_ctx * ctx, int32_t n_inputs, const char ** texts, float * embeddings,
                          int32_t * n_tokens, bool normalize) {
    if (ctx == nullptr || n_inputs < 0 || (n_inputs > 0 && (texts == nullptr || embeddings == nullptr))) {
        return fail(BERT_ERR_INVALID_ARGUMENT, "bert_encode_batch: invalid argument");
    }
    return guarded_encode([&]() -> int32_t {
        std::vector<std::vector<int32_t>> lists((size_t) n_inputs);
        std::vector<const int32_t *> inputs((size_t) n_inputs);
        std::vector<int32_t> counts((size_t) n_inputs);
        for (int32_t i = 0; i < n_inputs; i++) {
            if (texts[i] == nullptr) {
                return fail(BERT_ERR_INVALID_ARGUMENT, "text %d is NULL", i);
            }
            // One token per byte plus the special tokens is always enough for WordPiece;
            // retry with the exact size for tokenizers that could need more.
            std::vector<int32_t> & list = lists[i];
            list.resize(strlen(texts[i]) + 8);
            int32_t n = 0;
            int32_t rc = bert_tokenize(ctx, texts[i], list.data(), (int32_t) list.size(), &n);
            if (rc == BERT_ERR_TOO_LONG && n > (int32_t) list.size()) {
                list.resize((size_t) n);
                rc = bert_tokenize(ctx, texts[i], list.data(), (int32_t) list.size(), &n);
            }
            if (rc != BERT_OK) {
                return fail(rc, "text %d: %s", i, g_last_error.c_str());
            }
            list.resize((size_t) n);
            inputs[i] = list.data();
            counts[i] = n;
            if (n_tokens != nullptr) {
                n_tokens[i] = n;
            }
        }
        return encode_lists(ctx, n_inputs, inputs.data(), counts.data(), embeddings, normalize);
    });
}

const char * bert_last_error(void) {
    return g_last_error.c_str();
}

}  // extern "C"
