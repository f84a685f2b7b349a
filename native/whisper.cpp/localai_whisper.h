/*
 * localai_whisper.h: the only door from Python into whisper.cpp (see localai_llama.h for why).
 *
 * Every function catches C++ exceptions, records why on the calling thread
 * (localai_whisper_last_error) and returns a status. A transcription runs on a whisper_state
 * of its own; one state is used by one thread at a time, a model by any number of states.
 * whisper.cpp logs through localai_llama's sink (the process has one).
 */
#ifndef LOCALAI_WHISPER_H
#define LOCALAI_WHISPER_H

#include <stdbool.h>
#include <stdint.h>

#include "whisper.h"

#define LOCALAI_WHISPER_API __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

enum localai_whisper_status {
    LOCALAI_WHISPER_OK            =  0,
    LOCALAI_WHISPER_ERR_INVALID   = -1,
    LOCALAI_WHISPER_ERR_LOAD      = -2,
    LOCALAI_WHISPER_ERR_MEMORY    = -3,
    LOCALAI_WHISPER_ERR_FAILED    = -4,  /* whisper_full failed (the message has its status) */
    LOCALAI_WHISPER_ERR_EXCEPTION = -5,
    LOCALAI_WHISPER_CANCELLED     = -6   /* the cancel flag was set while it ran */
};

LOCALAI_WHISPER_API const char * localai_whisper_last_error(void);
/* Point whisper.cpp's log at the process's one sink (localai_log_sink). */
LOCALAI_WHISPER_API void localai_whisper_use_log_sink(void);
LOCALAI_WHISPER_API const char * localai_whisper_version(void);
LOCALAI_WHISPER_API const char * localai_whisper_system_info(void);

/* Languages: max id, and the code ("en") / full name ("english") of an id (NULL when none). */
LOCALAI_WHISPER_API int32_t localai_whisper_lang_max_id(void);
LOCALAI_WHISPER_API const char * localai_whisper_lang_code(int32_t id);
LOCALAI_WHISPER_API const char * localai_whisper_lang_name(int32_t id);

struct localai_whisper_model_info {
    bool multilingual;
    int32_t n_vocab;
    int32_t n_text_ctx;
    whisper_token token_eot;
    whisper_token token_beg;
};

/* A model without a decoding state; NULL on failure. */
LOCALAI_WHISPER_API struct whisper_context * localai_whisper_load(const char * path, bool flash_attn);
LOCALAI_WHISPER_API void localai_whisper_free(struct whisper_context * ctx);
LOCALAI_WHISPER_API int32_t localai_whisper_info(struct whisper_context * ctx, struct localai_whisper_model_info * out);
/* Tokens of text; the count, minus the count needed when out is too small, or a status below -n_max. */
LOCALAI_WHISPER_API int32_t localai_whisper_tokenize(struct whisper_context * ctx, const char * text,
                                                     whisper_token * out, int32_t n_max, int32_t * n_out);

LOCALAI_WHISPER_API struct whisper_state * localai_whisper_state_new(struct whisper_context * ctx);
LOCALAI_WHISPER_API void localai_whisper_state_free(struct whisper_state * state);

/* How to decode, already validated by the caller. */
struct localai_whisper_options {
    int32_t n_threads;
    const char * language;   /* ISO 639-1 code, or "auto" */
    bool translate;
    const char * initial_prompt;  /* NULL: none */
    bool token_timestamps;
    int32_t beam_size;       /* > 1: beam search of that width; else greedy */
    int32_t best_of;         /* greedy: candidates per fallback temperature */
    float temperature;
    float temperature_inc;   /* 0: no fallback */
    float entropy_thold;     /* whisper.cpp's compression-ratio stand-in */
    float logprob_thold;
    float no_speech_thold;
    const int32_t * cancel;  /* non-zero: stop as soon as possible (NULL: never); read while it runs */
    /* Called on the transcribing thread each time segments are final (NULL: never), with the
     * count of new ones; localai_whisper_segment may read them from inside the call. */
    void (*on_segments)(void * user, int32_t n_new);
    void * on_segments_user;
};

/* Transcribe 16 kHz mono float samples on a state: a status (LOCALAI_WHISPER_CANCELLED when cancelled). */
LOCALAI_WHISPER_API int32_t localai_whisper_transcribe(struct whisper_context * ctx, struct whisper_state * state,
                                                       const struct localai_whisper_options * options,
                                                       const float * samples, int32_t n_samples);

/* Results of the last transcription on a state. */
struct localai_whisper_segment {
    int64_t t0, t1;          /* 10 ms units */
    float no_speech_prob;
    int32_t n_tokens;
    const char * text;
};

struct localai_whisper_token {
    whisper_token id;
    float p, plog;
    int64_t t0, t1;          /* 10 ms units, with token timestamps */
    const char * text;
};

LOCALAI_WHISPER_API int32_t localai_whisper_n_segments(struct whisper_state * state);
LOCALAI_WHISPER_API int32_t localai_whisper_lang_id(struct whisper_state * state);
LOCALAI_WHISPER_API int32_t localai_whisper_segment(struct whisper_state * state, int32_t i,
                                                    struct localai_whisper_segment * out);
LOCALAI_WHISPER_API int32_t localai_whisper_token(struct whisper_context * ctx, struct whisper_state * state,
                                                  int32_t i_segment, int32_t i_token,
                                                  struct localai_whisper_token * out);

#ifdef __cplusplus
}
#endif

#endif /* LOCALAI_WHISPER_H */
