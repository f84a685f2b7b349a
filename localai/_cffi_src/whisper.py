"""cffi module over libwhisper: declarations come from the real whisper.h (see builder.py)."""

MODULE = "_whisper_cffi"
HEADER = "include/whisper.h"
SOURCE = "whisper_cpp"
# whisper.cpp builds against llama.cpp's ggml (one ggml per process), so its ggml headers come from there.
INCLUDE_DIRS = ("include", "../../llama.cpp/upstream/ggml/include")
LIBRARIES = ("whisper", "ggml", "ggml-base")

INCLUDES = """
#include <stdio.h>
#include "whisper.h"
"""

CUSTOMIZATIONS = """
static int localai_whisper_log_level = GGML_LOG_LEVEL_WARN;
static void localai_whisper_log(enum ggml_log_level level, const char * text, void * user_data) {
    (void) user_data;
    if ((int) level >= localai_whisper_log_level && level != GGML_LOG_LEVEL_CONT) {
        fputs(text, stderr);
    }
}
static void localai_whisper_set_log_level(int level) {
    localai_whisper_log_level = level;
    whisper_log_set(localai_whisper_log, NULL);
}
"""

EXTRA_CDEF = """
static void localai_whisper_set_log_level(int level);
"""
