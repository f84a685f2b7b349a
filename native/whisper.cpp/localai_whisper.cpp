// localai_whisper.cpp: every whisper.cpp call localai makes, guarded (see localai_whisper.h).

#include "localai_whisper.h"

#include "localai_llama.h"

#include <cstdarg>
#include <cstdio>
#include <new>
#include <string>

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

template <typename T, typename Body>
T guarded(T on_error, int32_t * status, const char * what, Body && body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        if (status) *status = LOCALAI_WHISPER_ERR_MEMORY;
        fail(LOCALAI_WHISPER_ERR_MEMORY, "%s: out of memory", what);
    } catch (const std::exception & e) {
        if (status) *status = LOCALAI_WHISPER_ERR_EXCEPTION;
        fail(LOCALAI_WHISPER_ERR_EXCEPTION, "%s: %s", what, e.what());
    } catch (...) {
        if (status) *status = LOCALAI_WHISPER_ERR_EXCEPTION;
        fail(LOCALAI_WHISPER_ERR_EXCEPTION, "%s: unknown C++ exception", what);
    }
    return on_error;
}

template <typename Body>
int32_t guarded_status(const char * what, Body && body) noexcept {
    int32_t status = LOCALAI_WHISPER_OK;
    const int32_t result = guarded<int32_t>(LOCALAI_WHISPER_ERR_EXCEPTION, &status, what, body);
    return status != LOCALAI_WHISPER_OK ? status : result;
}

bool cancel_requested(void * user_data) {
    const auto * flag = static_cast<const volatile int32_t *>(user_data);
    return flag != nullptr && *flag != 0;
}

// whisper.cpp's new-segment hook, forwarded to the caller's plain C callback.
void forward_new_segments(whisper_context *, whisper_state *, int n_new, void * user_data) {
    const auto * o = static_cast<const localai_whisper_options *>(user_data);
    o->on_segments(o->on_segments_user, n_new);
}

}  // namespace

extern "C" {

const char * localai_whisper_last_error(void) {
    return g_last_error.c_str();
}

void localai_whisper_use_log_sink(void) {
    whisper_log_set(localai_log_sink, nullptr);
}

const char * localai_whisper_version(void) {
    return guarded<const char *>("", nullptr, "whisper_version", [] { return whisper_version(); });
}

const char * localai_whisper_system_info(void) {
    return guarded<const char *>("", nullptr, "whisper_print_system_info", [] { return whisper_print_system_info(); });
}

int32_t localai_whisper_lang_max_id(void) {
    return guarded_status("whisper_lang_max_id", [] { return (int32_t) whisper_lang_max_id(); });
}

const char * localai_whisper_lang_code(int32_t id) {
    if (id < 0 || id > whisper_lang_max_id()) return nullptr;
    return guarded<const char *>(nullptr, nullptr, "whisper_lang_str", [&] { return whisper_lang_str(id); });
}

const char * localai_whisper_lang_name(int32_t id) {
    if (id < 0 || id > whisper_lang_max_id()) return nullptr;
    return guarded<const char *>(nullptr, nullptr, "whisper_lang_str_full", [&] { return whisper_lang_str_full(id); });
}

whisper_context * localai_whisper_load(const char * path, bool flash_attn) {
    if (path == nullptr) {
        fail(LOCALAI_WHISPER_ERR_INVALID, "the model path is NULL");
        return nullptr;
    }
    return guarded<whisper_context *>(nullptr, nullptr, "loading the whisper model", [&]() -> whisper_context * {
        whisper_context_params params = whisper_context_default_params();
        params.use_gpu = false;
        params.flash_attn = flash_attn;
        whisper_context * ctx = whisper_init_from_file_with_params_no_state(path, params);
        if (ctx == nullptr) {
            fail(LOCALAI_WHISPER_ERR_LOAD, "whisper.cpp could not load the model %s (not a ggml whisper model, "
                 "or truncated)", path);
        }
        return ctx;
    });
}

void localai_whisper_free(whisper_context * ctx) {
    if (ctx == nullptr) return;
    guarded<int>(0, nullptr, "whisper_free", [&] { whisper_free(ctx); return 0; });
}

int32_t localai_whisper_info(whisper_context * ctx, struct localai_whisper_model_info * out) {
    if (ctx == nullptr || out == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "info: NULL argument");
    return guarded_status("whisper model info", [&] {
        out->multilingual = whisper_is_multilingual(ctx) != 0;
        out->n_vocab = whisper_n_vocab(ctx);
        out->n_text_ctx = whisper_n_text_ctx(ctx);
        out->token_eot = whisper_token_eot(ctx);
        out->token_beg = whisper_token_beg(ctx);
        return (int32_t) LOCALAI_WHISPER_OK;
    });
}

int32_t localai_whisper_tokenize(whisper_context * ctx, const char * text, whisper_token * out, int32_t n_max,
                                 int32_t * n_out) {
    if (ctx == nullptr || text == nullptr || n_out == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "tokenize: NULL argument");
    return guarded_status("whisper_tokenize", [&] {
        *n_out = whisper_tokenize(ctx, text, out, n_max);
        return (int32_t) LOCALAI_WHISPER_OK;
    });
}

whisper_state * localai_whisper_state_new(whisper_context * ctx) {
    if (ctx == nullptr) return nullptr;
    return guarded<whisper_state *>(nullptr, nullptr, "allocating a whisper state", [&]() -> whisper_state * {
        whisper_state * state = whisper_init_state(ctx);
        if (state == nullptr) fail(LOCALAI_WHISPER_ERR_MEMORY, "whisper.cpp could not allocate a decoding state");
        return state;
    });
}

void localai_whisper_state_free(whisper_state * state) {
    if (state == nullptr) return;
    guarded<int>(0, nullptr, "whisper_free_state", [&] { whisper_free_state(state); return 0; });
}

int32_t localai_whisper_transcribe(whisper_context * ctx, whisper_state * state, const localai_whisper_options * o,
                                   const float * samples, int32_t n_samples) {
    if (ctx == nullptr || state == nullptr || o == nullptr || (samples == nullptr && n_samples > 0) || n_samples < 0) {
        return fail(LOCALAI_WHISPER_ERR_INVALID, "transcribe: bad argument");
    }
    return guarded_status("whisper_full", [&] {
        const bool beam = o->beam_size > 1;
        whisper_full_params params =
            whisper_full_default_params(beam ? WHISPER_SAMPLING_BEAM_SEARCH : WHISPER_SAMPLING_GREEDY);
        params.n_threads = o->n_threads;
        params.print_progress = false;
        params.print_realtime = false;
        params.print_timestamps = false;
        params.print_special = false;
        params.no_context = true;  // never condition on a previous request's text
        params.translate = o->translate;
        params.language = o->language;
        params.detect_language = false;  // true would only detect the language and stop
        params.initial_prompt = o->initial_prompt;
        params.token_timestamps = o->token_timestamps;
        params.temperature = o->temperature;
        params.temperature_inc = o->temperature_inc;
        params.entropy_thold = o->entropy_thold;
        params.logprob_thold = o->logprob_thold;
        params.no_speech_thold = o->no_speech_thold;
        if (beam) {
            params.beam_search.beam_size = o->beam_size;
        }
        if (o->best_of > 0) {
            params.greedy.best_of = o->best_of;
        }
        if (o->on_segments != nullptr) {
            params.new_segment_callback = forward_new_segments;
            params.new_segment_callback_user_data = const_cast<localai_whisper_options *>(o);
        }
        params.abort_callback = cancel_requested;
        params.abort_callback_user_data = const_cast<int32_t *>(o->cancel);
        const int status = whisper_full_with_state(ctx, state, params, samples, n_samples);
        if (cancel_requested(const_cast<int32_t *>(o->cancel))) {
            return fail(LOCALAI_WHISPER_CANCELLED, "the transcription was cancelled");
        }
        if (status != 0) return fail(LOCALAI_WHISPER_ERR_FAILED, "whisper_full failed with status %d", status);
        return (int32_t) LOCALAI_WHISPER_OK;
    });
}

int32_t localai_whisper_n_segments(whisper_state * state) {
    if (state == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "n_segments: NULL state");
    return guarded_status("n_segments", [&] { return (int32_t) whisper_full_n_segments_from_state(state); });
}

int32_t localai_whisper_lang_id(whisper_state * state) {
    if (state == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "lang_id: NULL state");
    return guarded_status("lang_id", [&] { return (int32_t) whisper_full_lang_id_from_state(state); });
}

int32_t localai_whisper_segment(whisper_state * state, int32_t i, struct localai_whisper_segment * out) {
    if (state == nullptr || out == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "segment: NULL argument");
    return guarded_status("segment", [&] {
        if (i < 0 || i >= whisper_full_n_segments_from_state(state)) {
            return fail(LOCALAI_WHISPER_ERR_INVALID, "no segment %d", i);
        }
        out->t0 = whisper_full_get_segment_t0_from_state(state, i);
        out->t1 = whisper_full_get_segment_t1_from_state(state, i);
        out->no_speech_prob = whisper_full_get_segment_no_speech_prob_from_state(state, i);
        out->n_tokens = whisper_full_n_tokens_from_state(state, i);
        out->text = whisper_full_get_segment_text_from_state(state, i);
        return (int32_t) LOCALAI_WHISPER_OK;
    });
}

int32_t localai_whisper_token(whisper_context * ctx, whisper_state * state, int32_t i_segment, int32_t i_token,
                              struct localai_whisper_token * out) {
    if (ctx == nullptr || state == nullptr || out == nullptr) return fail(LOCALAI_WHISPER_ERR_INVALID, "token: NULL argument");
    return guarded_status("token", [&] {
        if (i_segment < 0 || i_segment >= whisper_full_n_segments_from_state(state) || i_token < 0 ||
            i_token >= whisper_full_n_tokens_from_state(state, i_segment)) {
            return fail(LOCALAI_WHISPER_ERR_INVALID, "no token %d in segment %d", i_token, i_segment);
        }
        const whisper_token_data data = whisper_full_get_token_data_from_state(state, i_segment, i_token);
        out->id = data.id;
        out->p = data.p;
        out->plog = data.plog;
        out->t0 = data.t0;
        out->t1 = data.t1;
        out->text = whisper_full_get_token_text_from_state(ctx, state, i_segment, i_token);
        return (int32_t) LOCALAI_WHISPER_OK;
    });
}

}  // extern "C"
