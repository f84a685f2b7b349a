// CLIP BPE tokenizer over the asset folder's vocab.txt, with A1111-style prompt attention.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace sdncnn {

// A prompt fragment and its attention multiplier; `is_break` marks an explicit BREAK.
struct WeightedText {
    std::string text;
    double weight = 1.0;
    bool is_break = false;
};

// A1111's parse_prompt_attention: (x) x1.1, [x] /1.1, (x:w), \( \) \[ \] escapes, BREAK.
// Unclosed brackets apply to the rest; unmatched closers stay literal text.
std::vector<WeightedText> parse_prompt_attention(const std::string &text);

class Tokenizer {
public:
    static constexpr int kChunkBody = 75;          // tokens between BOS and EOS
    static constexpr int kCommaBacktrack = 20;     // A1111's comma_padding_backtrack

    explicit Tokenizer(const std::string &vocab_path);

    // CLIP tokens of plain text (no BOS/EOS): lower-cased, split like CLIP, byte-level BPE.
    std::vector<int32_t> encode(const std::string &text) const;

    // The text encoder's input: 77-token chunks [BOS, 75 tokens or EOS padding, EOS] and the
    // per-token attention weights (1 for BOS/EOS/padding). Never empty.
    void encode_prompt(const std::string &prompt, std::vector<int32_t> &ids, std::vector<float> &weights) const;

    int bos() const { return bos_; }
    int eos() const { return eos_; }

private:
    void bpe(const std::string &piece, std::vector<int32_t> &out) const;
    int rank(const std::string &a, const std::string &b) const;

    std::unordered_map<std::string, int> vocab_;
    int bos_ = -1;
    int eos_ = -1;
    int comma_ = -1;
    int merges_begin_ = 512;  // ids of merged symbols follow the 256 bytes and 256 bytes+</w>
    int merges_end_ = 0;
    std::string byte_symbol_[256];
};

}  // namespace sdncnn
