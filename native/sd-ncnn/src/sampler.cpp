#include "sampler.h"

#include <algorithm>
#include <cmath>

namespace sdncnn {

namespace {
constexpr int kTrainSteps = 1000;

float log_sigma_at(const float *log_sigmas, double t) {
    const int low = static_cast<int>(std::floor(t));
    const int high = static_cast<int>(std::ceil(t));
    const double w = t - low;
    return static_cast<float>((1.0 - w) * log_sigmas[low] + w * log_sigmas[high]);
}

uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
}  // namespace

std::vector<float> sigma_schedule(const float *log_sigmas, int steps) {
    std::vector<float> sigmas;
    sigmas.reserve(static_cast<size_t>(steps) + 1);
    for (int i = 0; i < steps; i++) {
        // One step samples from the largest sigma straight to 0 (the reference divided by zero).
        const double t = steps == 1 ? kTrainSteps - 1
                                    : (kTrainSteps - 1) - static_cast<double>(i) * (kTrainSteps - 1) / (steps - 1);
        sigmas.push_back(std::exp(log_sigma_at(log_sigmas, std::clamp(t, 0.0, double(kTrainSteps - 1)))));
    }
    sigmas.push_back(0.0f);
    return sigmas;
}

float sigma_to_t(const float *log_sigmas, float sigma) {
    const float log_sigma = std::log(sigma);
    // last index whose log-sigma is <= log(sigma) (0 when none), capped so idx+1 exists
    int low = 0;
    for (int i = 0; i < kTrainSteps; i++) {
        if (log_sigma - log_sigmas[i] >= 0.0f) low = i;
    }
    low = std::min(low, kTrainSteps - 2);
    const float lo = log_sigmas[low], hi = log_sigmas[low + 1];
    float w = (lo - log_sigma) / (lo - hi);
    w = std::clamp(w, 0.0f, 1.0f);
    return (1.0f - w) * static_cast<float>(low) + w * static_cast<float>(low + 1);
}

void normal_noise(uint64_t seed, uint32_t stream, float *out, size_t n) {
    const uint64_t key = splitmix64(seed ^ splitmix64(kGolden * (static_cast<uint64_t>(stream) + 1)));
    auto uniform = [&](uint64_t index) {  // in (0, 1): never 0, so log() is finite
        const uint64_t bits = splitmix64(key + kGolden * (index + 1)) >> 11;
        return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
    };
    for (size_t i = 0; i < n; i += 2) {
        const uint64_t pair = i / 2;
        const double radius = std::sqrt(-2.0 * std::log(uniform(2 * pair)));
        const double angle = 2.0 * M_PI * uniform(2 * pair + 1);
        out[i] = static_cast<float>(radius * std::cos(angle));
        if (i + 1 < n) out[i + 1] = static_cast<float>(radius * std::sin(angle));
    }
}

void euler_ancestral_step(float *x, const float *cond, const float *uncond, size_t n, float guidance, float sigma,
                          float sigma_next, const float *noise) {
    // k-diffusion get_ancestral_step with eta = 1
    float sigma_up = 0.0f;
    if (sigma_next > 0.0f) {
        sigma_up = std::min(sigma_next, std::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                                                  (sigma * sigma)));
    }
    const float sigma_down = std::sqrt(std::max(0.0f, sigma_next * sigma_next - sigma_up * sigma_up));
    const float dt = sigma_down - sigma;
    for (size_t i = 0; i < n; i++) {
        const float denoised = uncond[i] + guidance * (cond[i] - uncond[i]);
        const float d = (x[i] - denoised) / sigma;
        float value = x[i] + d * dt;
        if (sigma_up > 0.0f && noise) value += noise[i] * sigma_up;
        x[i] = value;
    }
}

}  // namespace sdncnn
