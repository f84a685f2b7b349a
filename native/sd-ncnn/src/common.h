// Shared helpers of the sd-ncnn sources: the per-thread error message behind sd_last_error().
#pragma once

#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace sdncnn {

// A failure with a message meant for the API user; caught at the C boundary.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// The caller asked for something that cannot be done (SD_ERR_INVALID), as opposed to a failure.
struct InvalidArgument : Error {
    using Error::Error;
};

std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
[[noreturn]] void reject(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void set_last_error(const std::string &message);
void clear_last_error();

}  // namespace sdncnn
