// The reference cut a fixed number of characters off the first Reshape lines and wrote the
// result into the asset folder. Here each layer line is parsed into its fields and only the
// Reshape shape parameters are replaced, checked against the layout they must have.
#include "params.h"

#include <cstdint>
#include <cstdio>
#include <sstream>
#include <vector>

#include "common.h"

namespace sdncnn {
namespace {

struct Layer {
    std::vector<std::string> head;  // type name n_in n_out blobs...
    std::vector<std::pair<std::string, std::string>> params;

    const std::string &type() const { return head[0]; }
    bool has(const char *key) const {
        for (auto &kv : params)
            if (kv.first == key) return true;
        return false;
    }
    long get(const char *key) const {
        for (auto &kv : params)
            if (kv.first == key) return std::strtol(kv.second.c_str(), nullptr, 10);
        return 0;
    }
    void set(const char *key, long value) {
        for (auto &kv : params)
            if (kv.first == key) { kv.second = std::to_string(value); return; }
        params.emplace_back(key, std::to_string(value));
    }
};

struct Param {
    std::string magic, counts;
    std::vector<Layer> layers;
};

Param parse(const std::string &text) {
    std::istringstream in(text);
    Param param;
    std::string line;
    if (!std::getline(in, param.magic) || !std::getline(in, param.counts)) fail("the .param file is truncated");
    if (!param.magic.empty() && param.magic.back() == '\r') param.magic.pop_back();
    if (param.magic != "7767517") fail("not an ncnn .param file (magic %s)", param.magic.c_str());
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::vector<std::string> tokens;
        std::string token;
        while (fields >> token) tokens.push_back(token);
        if (tokens.empty()) continue;
        if (tokens.size() < 4) fail("malformed .param layer line: %s", line.c_str());
        const size_t n_head = 4 + std::strtoul(tokens[2].c_str(), nullptr, 10) + std::strtoul(tokens[3].c_str(), nullptr, 10);
        if (tokens.size() < n_head) fail("malformed .param layer line: %s", line.c_str());
        Layer layer;
        layer.head.assign(tokens.begin(), tokens.begin() + static_cast<long>(n_head));
        for (size_t i = n_head; i < tokens.size(); i++) {
            const size_t eq = tokens[i].find('=');
            if (eq == std::string::npos) fail("malformed .param entry %s", tokens[i].c_str());
            std::string key = tokens[i].substr(0, eq);
            if (key == "-23330") continue;  // output shape hints of ncnnoptimize: only valid for the base size
            layer.params.emplace_back(key, tokens[i].substr(eq + 1));
        }
        param.layers.push_back(std::move(layer));
    }
    return param;
}

std::string render(const Param &param) {
    std::string out = param.magic + "\n" + param.counts + "\n";
    for (const auto &layer : param.layers) {
        for (size_t i = 0; i < layer.head.size(); i++) out += (i ? " " : "") + layer.head[i];
        for (const auto &kv : layer.params) out += " " + kv.first + "=" + kv.second;
        out += "\n";
    }
    return out;
}

// An Input layer that declares a latent shape (w, h, 4) gets the new one: ncnn does not read
// it at run time, but a stale shape would mislead anyone reading the cached file.
void set_latent_input_shape(Param &param, long lw, long lh) {
    for (auto &layer : param.layers) {
        if (layer.type() == "Input" && layer.has("0") && layer.has("1") && layer.has("2") && layer.get("2") == 4) {
            layer.set("0", lw);
            layer.set("1", lh);
        }
    }
}

}  // namespace

std::string rewrite_unet_param(const std::string &base, int width, int height) {
    // Scale divisor of each of the 16 transformer blocks (input 1,1,1/2,1/2,1/4,1/4, mid 1/8,
    // output 1/4 x3, 1/2 x3, 1 x3); each block has a tokens Reshape (C, h*w) and a back Reshape (C, w, h).
    static const int kDivisor[16] = {1, 1, 2, 2, 4, 4, 8, 4, 4, 4, 2, 2, 2, 1, 1, 1};
    Param param = parse(base);
    const long lw = width / 8, lh = height / 8;
    set_latent_input_shape(param, lw, lh);
    long base_side = -1;  // latent side the base param was written for, from its first back Reshape
    int k = 0;
    for (auto &layer : param.layers) {
        if (layer.type() != "Reshape" || k >= 32) continue;
        const int divisor = kDivisor[k / 2];
        const bool tokens = k % 2 == 0;
        if (tokens) {
            if (!layer.has("0") || !layer.has("1") || layer.has("2"))
                fail("UNet base param: Reshape #%d is not a (C, h*w) token reshape", k);
        } else {
            if (!layer.has("0") || !layer.has("1") || !layer.has("2") || layer.get("1") != layer.get("2"))
                fail("UNet base param: Reshape #%d is not a square (C, w, h) reshape", k);
            if (base_side < 0) base_side = layer.get("1") * divisor;
            if (layer.get("1") * divisor != base_side)
                fail("UNet base param: Reshape #%d does not match the transformer block layout", k);
        }
        if (tokens) {
            layer.set("1", (lw / divisor) * (lh / divisor));
        } else {
            layer.set("1", lw / divisor);
            layer.set("2", lh / divisor);
        }
        k++;
    }
    if (k < 32) fail("UNet base param: expected 32 transformer Reshape layers, found %d", k);
    // the token reshapes must agree with the side found on the back reshapes
    Param check = parse(base);
    int seen = 0;
    for (auto &layer : check.layers) {
        if (layer.type() != "Reshape" || seen >= 32) continue;
        const long side = base_side / kDivisor[seen / 2];
        if (seen % 2 == 0 && layer.get("1") != side * side)
            fail("UNet base param: Reshape #%d has %ld tokens, expected %ld", seen, layer.get("1"), side * side);
        seen++;
    }
    return render(param);
}

std::string rewrite_decoder_param(const std::string &base, int width, int height) {
    Param param = parse(base);
    const long lw = width / 8, lh = height / 8;
    set_latent_input_shape(param, lw, lh);
    int rewritten = 0;
    for (auto &layer : param.layers) {
        if (layer.type() != "Reshape") continue;
        if (layer.has("0") && layer.has("1") && !layer.has("2")) {
            layer.set("0", lw * lh);  // (h*w tokens, C)
        } else if (layer.has("0") && layer.has("1") && layer.has("2")) {
            layer.set("0", lw);
            layer.set("1", lh);
        } else {
            fail("decoder base param: unexpected Reshape %s", layer.head[1].c_str());
        }
        rewritten++;
    }
    if (rewritten == 0) fail("decoder base param: no attention Reshape layers found");
    return render(param);
}

std::string content_hash(const std::string &text) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : text) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

}  // namespace sdncnn
