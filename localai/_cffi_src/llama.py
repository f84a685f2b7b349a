"""cffi module over localai_llama (native/llama.cpp/localai_llama.h), our guarded C API on llama.cpp.

Only the functions of our header are declared; llama.h and ggml.h contribute their types and
constants. So no llama.cpp function can be called from Python without the exception guard.
"""

MODULE = "_llama_cffi"
HEADER = "localai_llama.h"
SOURCE_DIR = "native/llama.cpp"  # our shim lives in the repository; llama.h comes from upstream/
INCLUDE_DIRS = (".", "upstream/include", "upstream/ggml/include")
LIBRARIES = ("localai_llama",)

INCLUDES = """
#include "localai_llama.h"
"""

CUSTOMIZATIONS = ""

EXTRA_CDEF = ""
