"""cffi module over localai_whisper (native/whisper.cpp/localai_whisper.h), our guarded C API on
whisper.cpp: only its functions are declared, whisper.h and ggml.h contribute types."""

MODULE = "_whisper_cffi"
HEADER = "localai_whisper.h"
SOURCE_DIR = "native/whisper.cpp"
# whisper.cpp builds against llama.cpp's ggml (one ggml per process), so its ggml headers come from there.
INCLUDE_DIRS = (".", "upstream/include", "../llama.cpp/upstream/ggml/include")
LIBRARIES = ("localai_whisper",)

INCLUDES = """
#include "localai_whisper.h"
"""

CUSTOMIZATIONS = ""

# The segment callback is a Python function (extern "Python": no per-call ffi.callback objects).
EXTRA_CDEF = '''
extern "Python" void localai_whisper_py_segments(void * user, int32_t n_new);
'''
