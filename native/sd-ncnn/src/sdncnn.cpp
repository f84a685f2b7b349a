// The sd-ncnn pipeline and its C API: text encoder -> Euler-ancestral sampling with
// classifier-free guidance over the UNet -> VAE decoder -> RGB bytes.
#include "sdncnn.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include "common.h"
#include "cpu.h"
#include "net.h"
#include "params.h"
#include "platform.h"
#include "sampler.h"
#include "tokenizer.h"

namespace sdncnn {

// ---- errors ------------------------------------------------------------------------------------

namespace {
thread_local std::string g_last_error;
}

namespace {
std::string vformat(const char *fmt, va_list args) {
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, fmt, args);
    return buf;
}
}  // namespace

std::string format(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string text = vformat(fmt, args);
    va_end(args);
    return text;
}

void fail(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string text = vformat(fmt, args);
    va_end(args);
    throw Error(text);
}

void reject(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::string text = vformat(fmt, args);
    va_end(args);
    throw InvalidArgument(text);
}

void set_last_error(const std::string &message) { g_last_error = message; }
void clear_last_error() { g_last_error.clear(); }

namespace {

// Run `body` at the C boundary: exceptions become a message and `on_error`
// (SD_ERR_INVALID instead for the caller's mistakes, where the result is a status).
template <typename T, typename F>
T guarded(T on_error, F &&body) {
    clear_last_error();
    try {
        return body();
    } catch (const InvalidArgument &e) {
        set_last_error(e.what());
        if constexpr (std::is_same_v<T, int>) return SD_ERR_INVALID;
        return on_error;
    } catch (const std::bad_alloc &) {
        set_last_error("out of memory");
    } catch (const std::exception &e) {
        set_last_error(e.what());
    } catch (...) {
        set_last_error("unknown error");
    }
    return on_error;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// ---- files ---------------------------------------------------------------------------------------

bool file_exists(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_file(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot read %s", path.c_str());
    std::ostringstream buf;
    buf << in.rdbuf();
    return buf.str();
}

void make_dirs(const std::string &path) {
    std::string partial;
    std::istringstream parts(path);
    std::string part;
    if (!path.empty() && path[0] == '/') partial = "/";
    while (std::getline(parts, part, '/')) {
        if (part.empty()) continue;
        partial += part + "/";
        if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) fail("cannot create %s", partial.c_str());
    }
}

// Write next to the destination and rename: a crash never leaves a half-written param behind.
void write_file_atomic(const std::string &path, const std::string &text) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) fail("cannot write %s", tmp.c_str());
        out << text;
        out.flush();
        if (!out) fail("cannot write %s", tmp.c_str());
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail("cannot write %s", path.c_str());
    }
}

// ---- ncnn Mats <-> flat arrays ------------------------------------------------------------------

ncnn::Mat latent_mat(const float *data, int w, int h) {
    ncnn::Mat m(w, h, SD_LATENT_CHANNELS);
    if (m.empty()) throw std::bad_alloc();
    for (int c = 0; c < SD_LATENT_CHANNELS; c++) std::memcpy(m.channel(c), data + static_cast<size_t>(c) * w * h, sizeof(float) * w * h);
    return m;
}

void check_shape(const ncnn::Mat &m, int w, int h, int c, const char *what) {
    if (m.dims != 3 || m.w != w || m.h != h || m.c != c || m.elemsize != 4)
        fail("%s produced a %dx%dx%d blob (dims %d), expected %dx%dx%d: do the .param files match the image size?",
             what, m.w, m.h, m.c, m.dims, w, h, c);
}

void copy_out(const ncnn::Mat &m, float *out) {
    const size_t plane = static_cast<size_t>(m.w) * m.h;
    for (int c = 0; c < m.c; c++) std::memcpy(out + c * plane, m.channel(c), sizeof(float) * plane);
}

ncnn::Option base_options(int threads) {
    ncnn::Option opt;
    opt.lightmode = true;
    opt.num_threads = threads;
    opt.use_packing_layout = true;
    opt.use_vulkan_compute = false;
    return opt;
}

}  // namespace
}  // namespace sdncnn

using namespace sdncnn;

struct sd_pipeline {
    std::string asset_dir;
    std::string cache_dir;
    int threads = 1;
    std::unique_ptr<Tokenizer> tokenizer;
    std::vector<float> log_sigmas;
    std::unique_ptr<ncnn::Net> clip;
    std::unique_ptr<ncnn::Net> unet;  // one size/mode loaded at a time: the real UNet is ~3.4 GB
    int unet_w = 0, unet_h = 0, unet_mode = -1;
    std::unique_ptr<ncnn::Net> decoder;
    int decoder_w = 0, decoder_h = 0;
    std::mutex mutex;

    std::string asset(const char *name) const { return asset_dir + "/" + name; }

    // The .param for a size: the shipped -opt file for 256/512 squares, else the base param
    // rewritten for that size into the cache folder.
    std::string param_for(const char *kind, int w, int h) {
        const bool unet_kind = std::strcmp(kind, "unet") == 0;
        if (w == h && (w == 256 || w == 512)) {
            const std::string opt = unet_kind ? format("UNetModel-%d-%d-MHA-fp16-opt.param", w, h)
                                              : format("AutoencoderKL-%d-%d-fp16-opt.param", w, h);
            if (file_exists(asset(opt.c_str()))) return asset(opt.c_str());
        }
        const std::string base = read_file(asset(unet_kind ? "UNetModel-base-MHA-fp16.param" : "AutoencoderKL-base-fp16.param"));
        const std::string text = unet_kind ? rewrite_unet_param(base, w, h) : rewrite_decoder_param(base, w, h);
        if (cache_dir.empty()) fail("no cache folder for size-rewritten .param files");
        make_dirs(cache_dir);
        const std::string path = cache_dir + "/" +
                                 format("%s-%dx%d-%s.param", unet_kind ? "UNetModel" : "AutoencoderKL", w, h,
                                        content_hash(base).c_str());
        if (!file_exists(path) || read_file(path) != text) write_file_atomic(path, text);
        return path;
    }

    std::unique_ptr<ncnn::Net> load_net(const ncnn::Option &opt, const std::string &param, const std::string &bin) {
        auto net = std::make_unique<ncnn::Net>();
        net->opt = opt;
        if (net->load_param(param.c_str()) != 0)
            fail("ncnn cannot load %s (an unsupported layer type or a damaged file; ncnn's message is on stderr)", param.c_str());
        if (net->load_model(bin.c_str()) != 0)
            fail("ncnn cannot load the weights %s (missing, truncated, or not matching %s)", bin.c_str(), param.c_str());
        return net;
    }

    void ensure_clip() {
        if (clip) return;
        ncnn::Option opt = base_options(threads);
        opt.use_winograd_convolution = false;
        opt.use_sgemm_convolution = false;
        opt.use_fp16_packed = true;
        opt.use_fp16_storage = true;
        opt.use_fp16_arithmetic = true;
        clip = load_net(opt, asset("FrozenCLIPEmbedder-fp16.param"), asset("FrozenCLIPEmbedder-fp16.bin"));
    }

    void ensure_unet(int w, int h, int mode) {
        if (unet && unet_w == w && unet_h == h && unet_mode == mode) return;
        unet.reset();  // free the old one first: two real UNets need ~7 GB
        ncnn::Option opt = base_options(threads);
        // mode 1 trades memory for speed: winograd and im2col-sgemm convolutions
        opt.use_winograd_convolution = mode == 1;
        opt.use_sgemm_convolution = mode == 1;
        opt.use_fp16_packed = true;
        opt.use_fp16_storage = true;
        opt.use_fp16_arithmetic = true;
        unet = load_net(opt, param_for("unet", w, h), asset("UNetModel-MHA-fp16.bin"));
        unet_w = w;
        unet_h = h;
        unet_mode = mode;
    }

    void ensure_decoder(int w, int h) {
        if (decoder && decoder_w == w && decoder_h == h) return;
        decoder.reset();
        ncnn::Option opt = base_options(threads);
        opt.use_winograd_convolution = false;
        opt.use_sgemm_convolution = false;
        opt.use_fp16_packed = false;
        opt.use_fp16_storage = false;
        opt.use_fp16_arithmetic = false;
        opt.use_bf16_storage = true;  // honoured only when ncnn is built with bf16 kernels
        decoder = load_net(opt, param_for("decoder", w, h), asset("AutoencoderKL-fp16.bin"));
        decoder_w = w;
        decoder_h = h;
    }

    // Text context rows (77 per chunk): each chunk runs the encoder once, which appends its
    // 77 rows to the running `cond` (the graph also applies the attention weights).
    ncnn::Mat encode(const char *prompt) {
        ensure_clip();
        std::vector<int32_t> ids;
        std::vector<float> weights;
        tokenizer->encode_prompt(prompt ? prompt : "", ids, weights);
        const int chunks = static_cast<int>(ids.size()) / SD_CHUNK_TOKENS;
        if (chunks > SD_MAX_CHUNKS)
            reject("the prompt is %d tokens long; at most %d fit", chunks * 75, SD_MAX_CHUNKS * 75);
        ncnn::Mat cond(SD_CONTEXT_DIM, 0);
        for (int chunk = 0; chunk < chunks; chunk++) {
            ncnn::Mat token(SD_CHUNK_TOKENS), multiplier(SD_CHUNK_TOKENS);
            if (token.empty() || multiplier.empty()) throw std::bad_alloc();
            std::memcpy(token.data, ids.data() + chunk * SD_CHUNK_TOKENS, sizeof(int32_t) * SD_CHUNK_TOKENS);
            std::memcpy(multiplier.data, weights.data() + chunk * SD_CHUNK_TOKENS, sizeof(float) * SD_CHUNK_TOKENS);
            ncnn::Extractor ex = clip->create_extractor();
            ex.input("token", token);
            ex.input("multiplier", multiplier);
            ex.input("cond", cond);
            ncnn::Mat conds;
            if (ex.extract("conds", conds) != 0) fail("the text encoder failed");
            if (conds.dims != 2 || conds.w != SD_CONTEXT_DIM || conds.h != (chunk + 1) * SD_CHUNK_TOKENS)
                fail("the text encoder produced %dx%d, expected %dx%d", conds.w, conds.h, SD_CONTEXT_DIM,
                     (chunk + 1) * SD_CHUNK_TOKENS);
            cond = conds.clone();
        }
        return cond;
    }

    // One UNet evaluation; the graph computes x + c_out * eps(x * c_in, t, context).
    void denoise(int w, int h, const float *x, float sigma, const ncnn::Mat &context, float *out) {
        const int lw = w / 8, lh = h / 8;
        ncnn::Mat in0 = latent_mat(x, lw, lh);
        ncnn::Mat t(1), c_in(1), c_out(1);
        t[0] = sigma_to_t(log_sigmas.data(), sigma);
        c_in[0] = 1.0f / std::sqrt(sigma * sigma + 1.0f);
        c_out[0] = -sigma;
        ncnn::Extractor ex = unet->create_extractor();
        ex.input("in0", in0);
        ex.input("in1", t);
        ex.input("in2", context);
        ex.input("c_in", c_in);
        ex.input("c_out", c_out);
        ncnn::Mat denoised;
        if (ex.extract("outout", denoised) != 0) fail("the UNet failed");
        check_shape(denoised, lw, lh, SD_LATENT_CHANNELS, "the UNet");
        copy_out(denoised, out);
    }

    void decode(int w, int h, const float *latent, uint8_t *rgb) {
        const int lw = w / 8, lh = h / 8;
        const size_t n = static_cast<size_t>(lw) * lh * SD_LATENT_CHANNELS;
        std::vector<float> scaled(latent, latent + n);
        for (float &v : scaled) v /= 0.18215f;  // SD 1.x latent scale factor
        ncnn::Mat in = latent_mat(scaled.data(), lw, lh);
        ncnn::Extractor ex = decoder->create_extractor();
        ex.input("input.1", in);
        ncnn::Mat image;
        if (ex.extract("815", image) != 0) fail("the VAE decoder failed");
        check_shape(image, w, h, 3, "the VAE decoder");
        for (int c = 0; c < 3; c++) {
            const float *plane = image.channel(c);
            for (size_t i = 0; i < static_cast<size_t>(w) * h; i++) {
                // [-1, 1] -> [0, 255], rounded (the reference truncated)
                const float v = std::round((plane[i] + 1.0f) * 127.5f);
                rgb[i * 3 + c] = static_cast<uint8_t>(std::clamp(v, 0.0f, 255.0f));
            }
        }
    }
};

namespace {

void check_size(int width, int height) {
    if (!sd_size_supported(width, height))
        reject("unsupported image size %dx%d: each side must be a multiple of %d between %d and %d", width, height,
             SD_SIDE_MULTIPLE, SD_MIN_SIDE, SD_MAX_SIDE);
}

void check_mode(int mode) {
    if (mode != 0 && mode != 1) reject("mode must be 0 (low memory) or 1 (fast), got %d", mode);
}

}  // namespace

extern "C" {

const char *sd_version(void) {
    static const std::string version = std::string("sd-ncnn 1.0 (ncnn ") + NCNN_VERSION_STRING + ")";
    return version.c_str();
}

const char *sd_last_error(void) { return g_last_error.c_str(); }

int sd_size_supported(int width, int height) {
    auto ok = [](int side) { return side >= SD_MIN_SIDE && side <= SD_MAX_SIDE && side % SD_SIDE_MULTIPLE == 0; };
    return ok(width) && ok(height) ? 1 : 0;
}

sd_pipeline *sd_pipeline_open(const char *asset_dir, const char *cache_dir, int threads) {
    return guarded<sd_pipeline *>(nullptr, [&]() -> sd_pipeline * {
        if (!asset_dir || !*asset_dir) fail("no asset folder given");
        auto p = std::make_unique<sd_pipeline>();
        p->asset_dir = asset_dir;
        p->cache_dir = cache_dir ? cache_dir : "";
        p->threads = threads > 0 ? threads : ncnn::get_physical_big_cpu_count();
        static const char *kRequired[] = {
            "vocab.txt", "log_sigmas.bin", "FrozenCLIPEmbedder-fp16.param", "FrozenCLIPEmbedder-fp16.bin",
            "UNetModel-base-MHA-fp16.param", "UNetModel-MHA-fp16.bin", "AutoencoderKL-base-fp16.param",
            "AutoencoderKL-fp16.bin"};
        std::string missing;
        for (const char *name : kRequired)
            if (!file_exists(p->asset(name))) missing += std::string(missing.empty() ? "" : ", ") + name;
        if (!missing.empty()) fail("the asset folder %s lacks %s", asset_dir, missing.c_str());
        const std::string sigmas = read_file(p->asset("log_sigmas.bin"));
        if (sigmas.size() != sizeof(float) * SD_TRAIN_STEPS)
            fail("log_sigmas.bin holds %zu bytes, expected %d float32 values", sigmas.size(), SD_TRAIN_STEPS);
        p->log_sigmas.resize(SD_TRAIN_STEPS);
        std::memcpy(p->log_sigmas.data(), sigmas.data(), sigmas.size());
        p->tokenizer = std::make_unique<Tokenizer>(p->asset("vocab.txt"));
        return p.release();
    });
}

void sd_pipeline_close(sd_pipeline *pipeline) { delete pipeline; }

int sd_generate(sd_pipeline *p, const sd_request *r, uint8_t *rgb, sd_timings *timings) {
    return guarded(-1, [&]() {
        if (!p || !r || !rgb) reject("sd_generate: a NULL argument");
        check_size(r->width, r->height);
        check_mode(r->mode);
        if (r->steps < 1 || r->steps > SD_MAX_STEPS) reject("steps must be between 1 and %d, got %d", SD_MAX_STEPS, r->steps);
        std::lock_guard<std::mutex> lock(p->mutex);
        sd_timings t{};
        auto start = Clock::now();
        p->ensure_clip();
        p->ensure_unet(r->width, r->height, r->mode);
        p->ensure_decoder(r->width, r->height);
        t.load_ms = ms_since(start);

        start = Clock::now();
        const ncnn::Mat cond = p->encode(r->prompt);
        const ncnn::Mat uncond = p->encode(r->negative_prompt);
        t.encode_ms = ms_since(start);

        start = Clock::now();
        const float guidance = r->guidance > 0.0f ? r->guidance : 7.5f;
        const std::vector<float> sigmas = sigma_schedule(p->log_sigmas.data(), r->steps);
        const size_t n = static_cast<size_t>(r->width / 8) * (r->height / 8) * SD_LATENT_CHANNELS;
        std::vector<float> x(n), den_cond(n), den_uncond(n), noise(n);
        normal_noise(r->seed, 0, x.data(), n);
        for (float &v : x) v *= sigmas[0];
        for (int i = 0; i < r->steps; i++) {
            if (r->cancel != nullptr && *static_cast<const volatile int32_t *>(r->cancel) != 0) {
                set_last_error("cancelled");
                return static_cast<int>(SD_ERR_CANCELLED);
            }
            p->denoise(r->width, r->height, x.data(), sigmas[i], cond, den_cond.data());
            p->denoise(r->width, r->height, x.data(), sigmas[i], uncond, den_uncond.data());
            t.unet_runs += 2;
            const bool last = sigmas[i + 1] <= 0.0f;
            if (!last) normal_noise(r->seed, static_cast<uint32_t>(i + 1), noise.data(), n);
            euler_ancestral_step(x.data(), den_cond.data(), den_uncond.data(), n, guidance, sigmas[i], sigmas[i + 1],
                                 last ? nullptr : noise.data());
        }
        t.sample_ms = ms_since(start);

        start = Clock::now();
        p->decode(r->width, r->height, x.data(), rgb);
        t.decode_ms = ms_since(start);
        if (timings) *timings = t;
        return 0;
    });
}

int sd_encode_prompt(sd_pipeline *p, const char *prompt, float *out, int max_rows) {
    return guarded(-1, [&]() {
        if (!p) fail("sd_encode_prompt: no pipeline");
        std::lock_guard<std::mutex> lock(p->mutex);
        const ncnn::Mat cond = p->encode(prompt);
        if (out) {
            if (cond.h > max_rows) reject("the context has %d rows, the buffer %d", cond.h, max_rows);
            std::memcpy(out, cond.data, sizeof(float) * cond.w * cond.h);
        }
        return cond.h;
    });
}

int sd_denoise(sd_pipeline *p, int width, int height, int mode, const float *x, float sigma, const float *context,
               int context_rows, float *denoised) {
    return guarded(-1, [&]() {
        if (!p || !x || !context || !denoised) fail("sd_denoise: a NULL argument");
        check_size(width, height);
        check_mode(mode);
        if (context_rows <= 0 || context_rows % SD_CHUNK_TOKENS != 0)
            reject("context rows must be a positive multiple of %d, got %d", SD_CHUNK_TOKENS, context_rows);
        if (!(sigma > 0.0f)) reject("sigma must be positive");
        std::lock_guard<std::mutex> lock(p->mutex);
        p->ensure_unet(width, height, mode);
        ncnn::Mat ctx(SD_CONTEXT_DIM, context_rows);
        if (ctx.empty()) throw std::bad_alloc();
        std::memcpy(ctx.data, context, sizeof(float) * SD_CONTEXT_DIM * context_rows);
        p->denoise(width, height, x, sigma, ctx, denoised);
        return 0;
    });
}

int sd_decode(sd_pipeline *p, int width, int height, const float *latent, uint8_t *rgb) {
    return guarded(-1, [&]() {
        if (!p || !latent || !rgb) fail("sd_decode: a NULL argument");
        check_size(width, height);
        std::lock_guard<std::mutex> lock(p->mutex);
        p->ensure_decoder(width, height);
        p->decode(width, height, latent, rgb);
        return 0;
    });
}

int sd_log_sigmas(sd_pipeline *p, float *out) {
    return guarded(-1, [&]() {
        if (!p || !out) fail("sd_log_sigmas: a NULL argument");
        std::memcpy(out, p->log_sigmas.data(), sizeof(float) * SD_TRAIN_STEPS);
        return 0;
    });
}

int sd_sigmas(const float *log_sigmas, int steps, float *sigmas) {
    return guarded(-1, [&]() {
        if (!log_sigmas || !sigmas) fail("sd_sigmas: a NULL argument");
        if (steps < 1 || steps > SD_MAX_STEPS) reject("steps must be between 1 and %d, got %d", SD_MAX_STEPS, steps);
        const std::vector<float> s = sigma_schedule(log_sigmas, steps);
        std::copy(s.begin(), s.end(), sigmas);
        return 0;
    });
}

float sd_sigma_to_t(const float *log_sigmas, float sigma) { return sigma_to_t(log_sigmas, sigma); }

void sd_noise(uint64_t seed, uint32_t stream, float *out, size_t n) { normal_noise(seed, stream, out, n); }

void sd_euler_ancestral_step(float *x, const float *cond_denoised, const float *uncond_denoised, size_t n,
                             float guidance, float sigma, float sigma_next, const float *noise) {
    euler_ancestral_step(x, cond_denoised, uncond_denoised, n, guidance, sigma, sigma_next, noise);
}

sd_tokenizer *sd_tokenizer_open(const char *vocab_path) {
    return guarded<sd_tokenizer *>(nullptr, [&]() {
        if (!vocab_path) fail("no vocabulary path");
        return reinterpret_cast<sd_tokenizer *>(new Tokenizer(vocab_path));
    });
}

void sd_tokenizer_close(sd_tokenizer *tokenizer) { delete reinterpret_cast<Tokenizer *>(tokenizer); }

int sd_tokenize(sd_tokenizer *tokenizer, const char *text, int32_t *ids, float *weights, int capacity) {
    return guarded(-1, [&]() {
        if (!tokenizer || !text) fail("sd_tokenize: a NULL argument");
        std::vector<int32_t> out_ids;
        std::vector<float> out_weights;
        reinterpret_cast<Tokenizer *>(tokenizer)->encode_prompt(text, out_ids, out_weights);
        const int count = static_cast<int>(out_ids.size());
        if (count <= capacity) {
            if (ids) std::copy(out_ids.begin(), out_ids.end(), ids);
            if (weights) std::copy(out_weights.begin(), out_weights.end(), weights);
        }
        return count;
    });
}

}  // extern "C"
