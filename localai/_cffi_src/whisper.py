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

# whisper.cpp logs through the llama module's sink (localai.bindings.whisper installs it).
CUSTOMIZATIONS = ""

EXTRA_CDEF = ""
