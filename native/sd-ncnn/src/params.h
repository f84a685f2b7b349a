// ncnn .param text rewriting for image sizes the shipped -opt params were not made for.
#pragma once

#include <string>

namespace sdncnn {

// The UNet base param (UNetModel-base-MHA-fp16.param) for a W x H image: the 16 transformer
// blocks' token/back Reshapes get the latent size at their scale; ncnnoptimize's shape hints
// (-23330) are dropped since they describe the base size. Throws Error on an unexpected layout.
std::string rewrite_unet_param(const std::string &base, int width, int height);

// The VAE decoder base param for W x H: 2-D Reshapes -> (h*w, C), 3-D Reshapes -> (w, h, C).
std::string rewrite_decoder_param(const std::string &base, int width, int height);

// 16 hex digits of FNV-1a: names cache files after the text they were made from.
std::string content_hash(const std::string &text);

}  // namespace sdncnn
