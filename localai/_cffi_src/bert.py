"""cffi module over libbert, our batched sentence-embedding library (native/bert.cpp/bert.h)."""

MODULE = "_bert_cffi"
HEADER = "bert.h"
SOURCE_DIR = "native/bert.cpp"  # our own code: the header lives in the repository, nothing is fetched
INCLUDE_DIRS = (".",)
LIBRARIES = ("bert",)

INCLUDES = """
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "bert.h"
"""

# JSON text of float32 rows in C: json.dumps of 100k floats (one response of 256 vectors)
# takes ~110 ms here, this ~50 ms. "%.9g" is enough digits to read back the same float32.
CUSTOMIZATIONS = """
static int64_t localai_rows_to_json(const float * values, int32_t rows, int32_t cols, char * out, int64_t capacity) {
    int64_t pos = 0;
    char tmp[32];
    for (int32_t r = 0; r < rows; r++) {
        if (pos + 2 > capacity) return -1;
        if (r) out[pos++] = '\\n';
        out[pos++] = '[';
        for (int32_t c = 0; c < cols; c++) {
            const float v = values[(int64_t) r * cols + c];
            int k = isfinite(v) ? snprintf(tmp, sizeof(tmp), "%.9g", (double) v) : (int) (memcpy(tmp, "null", 4), 4);
            if (pos + k + 2 > capacity) return -1;
            if (c) out[pos++] = ',';
            memcpy(out + pos, tmp, (size_t) k);
            pos += k;
        }
        out[pos++] = ']';
    }
    return pos;
}
"""

EXTRA_CDEF = """
static int64_t localai_rows_to_json(const float * values, int32_t rows, int32_t cols, char * out, int64_t capacity);
"""
