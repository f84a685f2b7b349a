// k-diffusion's Euler-ancestral sampler for the CompVis (SD 1.x) discrete noise schedule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sdncnn {

// steps+1 sigmas: exp of log_sigmas interpolated at linspace(999, 0, steps), then 0.
std::vector<float> sigma_schedule(const float *log_sigmas, int steps);

// k-diffusion DiscreteSchedule.sigma_to_t: fractional timestep of a noise level.
float sigma_to_t(const float *log_sigmas, float sigma);

// Standard normal noise; stream 0 is the initial latent, stream k+1 the noise of step k.
// Counter-based (SplitMix64 + Box-Muller in double), so any stream is reproducible on its own.
void normal_noise(uint64_t seed, uint32_t stream, float *out, size_t n);

// x <- x + (x - d)/sigma * (sigma_down - sigma) + noise * sigma_up with d = u + g (c - u).
void euler_ancestral_step(float *x, const float *cond, const float *uncond, size_t n, float guidance, float sigma,
                          float sigma_next, const float *noise);

}  // namespace sdncnn
