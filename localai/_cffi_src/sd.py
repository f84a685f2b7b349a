"""cffi module over libsdncnn, our Stable Diffusion pipeline (native/sd-ncnn/include/sdncnn.h).

Built only when the library was (``python3 build.py --stablediffusion``): builder.py skips a
module whose REQUIRES_LIBRARY is absent from the native library folder.
"""

MODULE = "_sd_cffi"
HEADER = "include/sdncnn.h"
SOURCE_DIR = "native/sd-ncnn"  # our own code: the header lives in the repository
INCLUDE_DIRS = ("include",)
LIBRARIES = ("sdncnn",)
REQUIRES_LIBRARY = "sdncnn"

INCLUDES = """
#include "sdncnn.h"
"""

CUSTOMIZATIONS = ""

EXTRA_CDEF = ""
