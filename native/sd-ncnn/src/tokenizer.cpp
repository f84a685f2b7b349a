// CLIP tokenizer and prompt attention parsing.
//
// The reference pipeline looked whole space/comma-separated words up in vocab.txt (so any word
// that is not a single CLIP token became id 0, and capitals always did). This is the real CLIP
// tokenizer instead: lower-case, CLIP's pre-tokenizer pattern, byte-level BPE. vocab.txt is CLIP's
// vocabulary in id order, whose merged symbols appear in merge order, so a pair's merge rank is
// the id of its concatenation (checked against the merges list itself in the tests).
#include "tokenizer.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>

#include "common.h"

namespace sdncnn {
namespace {

// ---- UTF-8 and character classes (an approximation of Unicode's L / N / White_Space) ----------

std::vector<uint32_t> decode_utf8(const std::string &s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
        uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        bool ok = len > 0 && i + len <= s.size();
        for (int k = 1; ok && k < len; k++) {
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            ok = (cc & 0xC0) == 0x80;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (!ok) {  // invalid byte: U+FFFD, as Python's decode(errors="replace")
            out.push_back(0xFFFD);
            i += 1;
            continue;
        }
        out.push_back(cp);
        i += len;
    }
    return out;
}

void append_utf8(std::string &out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

bool is_space(uint32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x1F ||
           c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_number(uint32_t c) {
    return (c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0xBC && c <= 0xBE) ||
           (c >= 0x660 && c <= 0x669) || (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F) ||
           (c >= 0x2070 && c <= 0x2079) || (c >= 0x2080 && c <= 0x2089) || (c >= 0x2150 && c <= 0x2189) ||
           (c >= 0x2460 && c <= 0x249B) || (c >= 0xFF10 && c <= 0xFF19);
}

bool is_letter(uint32_t c) {
    if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return c == 0xAA || c == 0xB5 || c == 0xBA || (c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xF6) ||
           (c >= 0xF8 && c <= 0x2C1) || (c >= 0x2C6 && c <= 0x2D1) || (c >= 0x370 && c <= 0x373) ||
           (c >= 0x386 && c <= 0x3FF && c != 0x387) || (c >= 0x400 && c <= 0x481) ||
           (c >= 0x48A && c <= 0x52F) || (c >= 0x531 && c <= 0x587) || (c >= 0x5D0 && c <= 0x5F2) ||
           (c >= 0x620 && c <= 0x64A) || (c >= 0x671 && c <= 0x6D3) || (c >= 0x904 && c <= 0x939) ||
           (c >= 0xE01 && c <= 0xE30) || (c >= 0x10A0 && c <= 0x10FF) || (c >= 0x1100 && c <= 0x11FF) ||
           (c >= 0x1E00 && c <= 0x1FBC) || (c >= 0x3041 && c <= 0x3096) || (c >= 0x309D && c <= 0x309F) ||
           (c >= 0x30A1 && c <= 0x30FA) || (c >= 0x30FC && c <= 0x30FF) || (c >= 0x3131 && c <= 0x318E) ||
           (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7A3) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFF21 && c <= 0xFF3A) || (c >= 0xFF41 && c <= 0xFF5A) ||
           (c >= 0xFF66 && c <= 0xFF9D) || (c >= 0x20000 && c <= 0x2FA1F);
}

uint32_t to_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x138 && c != 0x149 && c != 0x178 && c != 0x17F) {
        bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
        if (odd_upper ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
        return c;
    }
    if (c == 0x178) return 0xFF;
    if ((c >= 0x391 && c <= 0x3A9 && c != 0x3A2)) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

// GPT-2/CLIP's reversible byte -> printable character map.
void build_byte_symbols(std::string (&symbols)[256]) {
    int next = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + next++);
        symbols[b].clear();
        append_utf8(symbols[b], cp);
    }
}

bool starts_with(const std::vector<uint32_t> &text, size_t at, const char *ascii) {
    for (size_t k = 0; ascii[k]; k++) {
        if (at + k >= text.size() || text[at + k] != static_cast<unsigned char>(ascii[k])) return false;
    }
    return true;
}

// CLIP's pre-tokenizer: <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
std::vector<std::string> split_pieces(const std::vector<uint32_t> &text) {
    std::vector<std::string> pieces;
    size_t i = 0;
    auto take = [&](size_t end) {
        std::string piece;
        for (size_t k = i; k < end; k++) append_utf8(piece, text[k]);
        pieces.push_back(piece);
        i = end;
    };
    while (i < text.size()) {
        uint32_t c = text[i];
        if (starts_with(text, i, "<|startoftext|>")) { take(i + 15); continue; }
        if (starts_with(text, i, "<|endoftext|>")) { take(i + 13); continue; }
        if (c == '\'') {
            if (starts_with(text, i, "'re") || starts_with(text, i, "'ve") || starts_with(text, i, "'ll")) { take(i + 3); continue; }
            if (starts_with(text, i, "'s") || starts_with(text, i, "'t") || starts_with(text, i, "'m") || starts_with(text, i, "'d")) { take(i + 2); continue; }
        }
        if (is_letter(c)) {
            size_t end = i;
            while (end < text.size() && is_letter(text[end])) end++;
            take(end);
            continue;
        }
        if (is_number(c)) { take(i + 1); continue; }
        if (is_space(c)) { i++; continue; }
        size_t end = i;
        while (end < text.size() && !is_space(text[end]) && !is_letter(text[end]) && !is_number(text[end])) end++;
        take(end);
    }
    return pieces;
}

}  // namespace

// ---- prompt attention ---------------------------------------------------------------------------

std::vector<WeightedText> parse_prompt_attention(const std::string &text) {
    std::vector<WeightedText> res;
    std::vector<size_t> round, square;
    auto multiply = [&](size_t start, double m) {
        for (size_t p = start; p < res.size(); p++) res[p].weight *= m;
    };
    // Plain text may contain BREAK (a word on its own) which forces a new chunk.
    auto add_text = [&](const std::string &chunk) {
        size_t start = 0;
        while (true) {
            size_t pos = chunk.find("BREAK", start);
            bool found = false;
            while (pos != std::string::npos) {
                bool left_ok = pos == 0 || !(isalnum(static_cast<unsigned char>(chunk[pos - 1])) || chunk[pos - 1] == '_');
                size_t after = pos + 5;
                bool right_ok = after >= chunk.size() ||
                                !(isalnum(static_cast<unsigned char>(chunk[after])) || chunk[after] == '_');
                if (left_ok && right_ok) { found = true; break; }
                pos = chunk.find("BREAK", pos + 1);
            }
            if (!found) {
                res.push_back({chunk.substr(start), 1.0, false});
                return;
            }
            // trim the whitespace around BREAK, as A1111's \s*\bBREAK\b\s*
            size_t left = pos;
            while (left > start && isspace(static_cast<unsigned char>(chunk[left - 1]))) left--;
            size_t right = pos + 5;
            while (right < chunk.size() && isspace(static_cast<unsigned char>(chunk[right]))) right++;
            res.push_back({chunk.substr(start, left - start), 1.0, false});
            res.push_back({"BREAK", -1.0, true});
            start = right;
        }
    };

    size_t i = 0;
    const size_t n = text.size();
    while (i < n) {
        char c = text[i];
        if (c == '\\') {
            if (i + 1 < n && (text[i + 1] == '(' || text[i + 1] == ')' || text[i + 1] == '[' || text[i + 1] == ']' ||
                              text[i + 1] == '\\')) {
                res.push_back({std::string(1, text[i + 1]), 1.0, false});
                i += 2;
            } else {
                res.push_back({"", 1.0, false});  // a lone backslash is dropped, as in A1111
                i += 1;
            }
            continue;
        }
        if (c == '(') { round.push_back(res.size()); i++; continue; }
        if (c == '[') { square.push_back(res.size()); i++; continue; }
        if (c == ':') {
            // ":" \s* [+-]?[.\d]+ \s* ")"  -> explicit weight of the innermost (
            size_t j = i + 1;
            while (j < n && isspace(static_cast<unsigned char>(text[j]))) j++;
            size_t num_start = j;
            if (j < n && (text[j] == '+' || text[j] == '-')) j++;
            size_t digits_start = j;
            while (j < n && (isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.')) j++;
            size_t num_end = j;
            while (j < n && isspace(static_cast<unsigned char>(text[j]))) j++;
            if (num_end > digits_start && j < n && text[j] == ')') {
                std::string number = text.substr(num_start, num_end - num_start);
                char *end = nullptr;
                double w = std::strtod(number.c_str(), &end);
                bool valid = end && *end == '\0' && std::isfinite(w);
                if (valid && !round.empty()) {
                    multiply(round.back(), w);
                    round.pop_back();
                } else {
                    res.push_back({text.substr(i, j + 1 - i), 1.0, false});
                }
                i = j + 1;
                continue;
            }
            res.push_back({":", 1.0, false});
            i++;
            continue;
        }
        if (c == ')') {
            if (!round.empty()) { multiply(round.back(), 1.1); round.pop_back(); }
            else res.push_back({")", 1.0, false});
            i++;
            continue;
        }
        if (c == ']') {
            if (!square.empty()) { multiply(square.back(), 1.0 / 1.1); square.pop_back(); }
            else res.push_back({"]", 1.0, false});
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && text[j] != '\\' && text[j] != '(' && text[j] != ')' && text[j] != '[' && text[j] != ']' &&
               text[j] != ':')
            j++;
        add_text(text.substr(i, j - i));
        i = j;
    }
    for (size_t pos : round) multiply(pos, 1.1);
    for (size_t pos : square) multiply(pos, 1.0 / 1.1);
    if (res.empty()) res.push_back({"", 1.0, false});

    // Merge neighbours of equal weight (never across a BREAK).
    std::vector<WeightedText> merged;
    for (auto &part : res) {
        if (!merged.empty() && !part.is_break && !merged.back().is_break && merged.back().weight == part.weight) {
            merged.back().text += part.text;
        } else {
            merged.push_back(part);
        }
    }
    return merged;
}

// ---- tokenizer -------------------------------------------------------------------------------------

Tokenizer::Tokenizer(const std::string &vocab_path) {
    std::ifstream in(vocab_path, std::ios::binary);
    if (!in) fail("cannot open the CLIP vocabulary %s", vocab_path.c_str());
    std::string line;
    int id = 0;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        vocab_.emplace(line, id);  // first occurrence wins; CLIP's vocabulary has no duplicates
        id++;
    }
    auto find = [&](const char *token) {
        auto it = vocab_.find(token);
        if (it == vocab_.end()) fail("%s is not a CLIP vocabulary: %s is missing", vocab_path.c_str(), token);
        return it->second;
    };
    bos_ = find("<|startoftext|>");
    eos_ = find("<|endoftext|>");
    comma_ = find(",</w>");
    merges_end_ = std::min(bos_, eos_);
    if (id < merges_begin_ || merges_end_ < merges_begin_)
        fail("%s is not a CLIP vocabulary (%d lines)", vocab_path.c_str(), id);
    build_byte_symbols(byte_symbol_);
}

int Tokenizer::rank(const std::string &a, const std::string &b) const {
    auto it = vocab_.find(a + b);
    if (it == vocab_.end() || it->second < merges_begin_ || it->second >= merges_end_) return -1;
    return it->second;
}

void Tokenizer::bpe(const std::string &piece, std::vector<int32_t> &out) const {
    if (piece == "<|startoftext|>" || piece == "<|endoftext|>") {
        out.push_back(vocab_.at(piece));
        return;
    }
    std::vector<std::string> word;
    for (unsigned char byte : piece) word.push_back(byte_symbol_[byte]);
    if (word.empty()) return;
    word.back() += "</w>";
    while (word.size() > 1) {
        int best = std::numeric_limits<int>::max();
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < word.size(); i++) {
            int r = rank(word[i], word[i + 1]);
            if (r >= 0 && r < best) { best = r; best_at = i; }
        }
        if (best == std::numeric_limits<int>::max()) break;
        const std::string first = word[best_at], second = word[best_at + 1];
        std::vector<std::string> merged;
        merged.reserve(word.size());
        for (size_t i = 0; i < word.size();) {
            if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
                merged.push_back(first + second);
                i += 2;
            } else {
                merged.push_back(word[i]);
                i += 1;
            }
        }
        word.swap(merged);
    }
    for (const auto &symbol : word) {
        auto it = vocab_.find(symbol);
        // Every single byte symbol is in the vocabulary, so this only fails on a damaged vocab.txt.
        if (it == vocab_.end()) fail("vocab.txt lacks the BPE symbol %s", symbol.c_str());
        out.push_back(it->second);
    }
}

std::vector<int32_t> Tokenizer::encode(const std::string &text) const {
    // CLIP's whitespace_clean(...).lower(): collapse whitespace runs, strip, lower-case.
    std::vector<uint32_t> cps;
    for (uint32_t c : decode_utf8(text)) {
        if (is_space(c)) {
            if (!cps.empty() && cps.back() != ' ') cps.push_back(' ');
        } else {
            cps.push_back(to_lower(c));
        }
    }
    while (!cps.empty() && cps.back() == ' ') cps.pop_back();
    std::vector<int32_t> ids;
    for (const auto &piece : split_pieces(cps)) bpe(piece, ids);
    return ids;
}

void Tokenizer::encode_prompt(const std::string &prompt, std::vector<int32_t> &ids, std::vector<float> &weights) const {
    ids.clear();
    weights.clear();
    std::vector<int32_t> chunk;
    std::vector<float> chunk_w;
    int last_comma = -1;

    auto next_chunk = [&]() {
        while (static_cast<int>(chunk.size()) < kChunkBody) {
            chunk.push_back(eos_);
            chunk_w.push_back(1.0f);
        }
        ids.push_back(bos_);
        weights.push_back(1.0f);
        ids.insert(ids.end(), chunk.begin(), chunk.end());
        weights.insert(weights.end(), chunk_w.begin(), chunk_w.end());
        ids.push_back(eos_);  // the reference closed chunks with BOS again; CLIP was trained with EOS
        weights.push_back(1.0f);
        chunk.clear();
        chunk_w.clear();
        last_comma = -1;
    };

    for (const auto &part : parse_prompt_attention(prompt)) {
        if (part.is_break) {
            next_chunk();
            continue;
        }
        const float weight = static_cast<float>(part.weight);
        for (int32_t token : encode(part.text)) {
            if (token == comma_) {
                last_comma = static_cast<int>(chunk.size());
            } else if (static_cast<int>(chunk.size()) == kChunkBody && last_comma != -1 &&
                       static_cast<int>(chunk.size()) - last_comma <= kCommaBacktrack) {
                // A full chunk whose last comma is near its end: move the words after that comma
                // to the next chunk so a phrase is not cut in two.
                const size_t cut = static_cast<size_t>(last_comma) + 1;
                std::vector<int32_t> moved(chunk.begin() + cut, chunk.end());
                std::vector<float> moved_w(chunk_w.begin() + cut, chunk_w.end());
                chunk.resize(cut);
                chunk_w.resize(cut);
                next_chunk();
                chunk = moved;
                chunk_w = moved_w;
            }
            if (static_cast<int>(chunk.size()) == kChunkBody) next_chunk();
            chunk.push_back(token);
            chunk_w.push_back(weight);
        }
    }
    if (!chunk.empty() || ids.empty()) next_chunk();
}

}  // namespace sdncnn
