// SPDX-License-Identifier: Apache-2.0
#include "kvscope/model/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <functional>
#include <limits>
#include <queue>
#include <unordered_map>

#include "kvscope/common/error.h"

namespace kvscope::model {
namespace {

// GPT-2's pre-tokenizer regex as Hugging Face's ByteLevel(use_regex=true) uses it.
constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581 "▁"

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Length of the UTF-8 sequence starting at s[i], or 1 for an invalid byte
// (which then stands alone, like a byte).
std::size_t utf8_len(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 1;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  }
  return n;
}

// Decodes one UTF-8 code point at s[i] (advancing i); invalid bytes yield 0xFFFFFFFF.
std::uint32_t next_codepoint(std::string_view s, std::size_t& i) {
  const std::size_t n = utf8_len(s, i);
  const auto c = static_cast<unsigned char>(s[i]);
  std::uint32_t cp;
  if (n == 1) {
    cp = c < 0x80 ? c : 0xFFFFFFFFu;
  } else {
    cp = c & (0xFF >> (n + 1));
    for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  }
  i += n;
  return cp;
}

// GPT-2's reversible byte -> printable code point table.
std::array<std::uint32_t, 256> make_byte_to_cp() {
  std::array<std::uint32_t, 256> t{};
  std::array<bool, 256> direct{};
  for (int b = '!'; b <= '~'; ++b) direct[b] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
  std::uint32_t next = 256;
  for (int b = 0; b < 256; ++b) t[b] = direct[b] ? static_cast<std::uint32_t>(b) : next++;
  return t;
}

struct Regex {
  pcre2_code* code = nullptr;
  Regex() = default;
  Regex(const Regex&) = delete;
  Regex(Regex&& o) noexcept : code(o.code) { o.code = nullptr; }
  ~Regex() {
    if (code) pcre2_code_free(code);
  }
};

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  std::unordered_map<std::string, std::int32_t> ids;
  std::unordered_map<std::string, int> merge_rank;
  std::vector<std::pair<std::string, std::int32_t>> specials;  // longest first
  std::vector<bool> is_control;
  std::array<std::string, 256> byte_to_text;  // byte-level alphabet
  std::unordered_map<std::uint32_t, std::uint8_t> cp_to_byte;
  std::vector<Regex> regexes;
  std::array<std::int32_t, 256> byte_token{};  // SentencePiece <0xXX> ids, -1 if absent

  void split_regex(const Regex& re, std::string_view text, std::vector<std::string_view>& out) const;
  void bpe(std::string_view piece, std::vector<std::int32_t>& out) const;
  double pair_rank(std::string_view a, std::string_view b) const;
  void encode_segment(std::string_view text, bool at_start, std::vector<std::int32_t>& out) const;
};

Tokenizer::Tokenizer(TokenizerSpec spec) : impl_(std::make_unique<Impl>()) {
  auto& im = *impl_;
  im.spec = std::move(spec);
  const auto& s = im.spec;
  const auto n = static_cast<std::int64_t>(s.tokens.size());
  if (n == 0) throw Error(ErrorCode::InvalidArgument, "tokenizer has an empty vocabulary");
  if (n > std::numeric_limits<std::int32_t>::max())
    throw Error(ErrorCode::Format, "tokenizer vocabulary too large");
  if (!s.scores.empty() && static_cast<std::int64_t>(s.scores.size()) != n) {
    throw Error(ErrorCode::Format, "tokenizer scores do not match the vocabulary size");
  }
  if (!s.token_types.empty() && static_cast<std::int64_t>(s.token_types.size()) != n) {
    throw Error(ErrorCode::Format, "tokenizer token types do not match the vocabulary size");
  }
  for (auto id : {s.bos_id, s.eos_id, s.unk_id, s.pad_id}) {
    if (id < -1 || id >= n)
      throw Error(ErrorCode::Format, "tokenizer special token id " + std::to_string(id) + " out of range");
  }
  im.ids.reserve(s.tokens.size());
  for (std::int32_t i = 0; i < n; ++i) im.ids.emplace(s.tokens[i], i);  // first id wins on duplicates
  im.merge_rank.reserve(s.merges.size());
  for (std::size_t r = 0; r < s.merges.size(); ++r) {
    const auto& m = s.merges[r];
    const auto sp = m.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= m.size())
      throw Error(ErrorCode::Format, "tokenizer merge '" + m + "' is malformed");
    im.merge_rank.emplace(m, static_cast<int>(r));
  }
  im.is_control.assign(s.tokens.size(), false);
  std::vector<bool> special(s.tokens.size(), false);
  for (std::int32_t i = 0; i < n; ++i) {
    const int type = s.token_types.empty() ? 1 : s.token_types[i];
    if (type == 3) im.is_control[i] = special[i] = true;
    if (type == 4) special[i] = true;
  }
  for (auto id : s.special_ids) {
    if (id < 0 || id >= n)
      throw Error(ErrorCode::Format, "tokenizer special token id " + std::to_string(id) + " out of range");
    special[id] = true;
  }
  for (auto id : {s.bos_id, s.eos_id}) {
    if (id >= 0) im.is_control[id] = special[id] = true;
  }
  for (std::int32_t i = 0; i < n; ++i) {
    if (special[i] && !s.tokens[i].empty()) im.specials.emplace_back(s.tokens[i], i);
  }
  std::stable_sort(im.specials.begin(), im.specials.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });

  const auto table = make_byte_to_cp();
  for (int b = 0; b < 256; ++b) {
    append_utf8(im.byte_to_text[b], table[b]);
    im.cp_to_byte.emplace(table[b], static_cast<std::uint8_t>(b));
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = im.ids.find(name);
    im.byte_token[b] = it == im.ids.end() ? -1 : it->second;
  }

  if (s.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    std::vector<std::string> patterns = s.pre_split_regexes;
    if (patterns.empty()) patterns.emplace_back(kGpt2Regex);
    for (const auto& p : patterns) {
      int err = 0;
      PCRE2_SIZE off = 0;
      Regex re;
      re.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
      if (!re.code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw Error(ErrorCode::Format, "tokenizer pre-tokenizer regex does not compile (" +
                                           std::string(reinterpret_cast<char*>(msg)) + "): " + p);
      }
      pcre2_jit_compile(re.code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back to the interpreter
      im.regexes.push_back(std::move(re));
    }
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

void Tokenizer::Impl::split_regex(const Regex& re, std::string_view text,
                                  std::vector<std::string_view>& out) const {
  // "Isolated" splitting: each match is a piece, and so is each gap between matches.
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re.code, nullptr);
  if (!md) throw Error(ErrorCode::Internal, "out of memory for regex match data");
  std::size_t pos = 0, last = 0;
  while (pos < text.size()) {
    const int rc =
        pcre2_match(re.code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    std::size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step one character to avoid looping
      pos = b + utf8_len(text, b);
      continue;
    }
    if (b > last) out.push_back(text.substr(last, b - last));
    out.push_back(text.substr(b, e - b));
    last = pos = e;
  }
  if (last < text.size()) out.push_back(text.substr(last));
  pcre2_match_data_free(md);
}

double Tokenizer::Impl::pair_rank(std::string_view a, std::string_view b) const {
  constexpr double kNone = std::numeric_limits<double>::infinity();
  std::string key(a);
  if (!merge_rank.empty()) {
    key += ' ';
    key += b;
    auto it = merge_rank.find(key);
    return it == merge_rank.end() ? kNone : it->second;
  }
  // SentencePiece without merges: merge the pair whose result has the
  // highest score (lower rank wins, so negate).
  key += b;
  auto it = ids.find(key);
  if (it == ids.end() || spec.scores.empty()) return kNone;
  return -static_cast<double>(spec.scores[it->second]);
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<std::int32_t>& out) const {
  if (piece.empty()) return;
  const bool byte_level = spec.kind == TokenizerSpec::Kind::ByteLevelBpe;
  // Symbols are ranges of `text` (the piece in the model's alphabet) in a
  // linked list; candidate merges of neighbours wait in a priority queue
  // ordered by rank, then position (as Hugging Face tokenizers, SentencePiece
  // and llama.cpp order them). Stale entries (a side merged meanwhile) are
  // skipped when popped: O(n log n) instead of rescanning every pair per merge.
  std::string text;
  struct Symbol {
    std::size_t start, len;
    int prev, next;
  };
  std::vector<Symbol> sym;
  if (byte_level) {
    for (unsigned char c : piece) {
      sym.push_back({text.size(), byte_to_text[c].size(), static_cast<int>(sym.size()) - 1,
                     static_cast<int>(sym.size()) + 1});
      text += byte_to_text[c];
    }
  } else {
    text.assign(piece);
    for (std::size_t i = 0; i < piece.size();) {
      const std::size_t n = utf8_len(piece, i);
      sym.push_back({i, n, static_cast<int>(sym.size()) - 1, static_cast<int>(sym.size()) + 1});
      i += n;
    }
  }
  sym.back().next = -1;
  struct Candidate {
    double rank;
    std::size_t start;  // of the left symbol: ties go to the leftmost pair
    int left, right;
    std::size_t len;  // merged length, to detect stale entries
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int l) {
    if (l < 0 || sym[l].next < 0) return;
    const Symbol &a = sym[l], &b = sym[a.next];
    const double r = pair_rank(std::string_view(text).substr(a.start, a.len),
                               std::string_view(text).substr(b.start, b.len));
    if (r != std::numeric_limits<double>::infinity()) queue.push({r, a.start, l, a.next, a.len + b.len});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& a = sym[c.left];
    if (a.len == 0 || a.next != c.right || a.len + sym[c.right].len != c.len) continue;  // stale
    Symbol& b = sym[c.right];
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (b.next >= 0) sym[b.next].prev = c.left;
    consider(a.prev);
    consider(c.left);
  }
  std::vector<std::string> merged;
  for (int i = 0; i >= 0; i = sym[i].next) merged.push_back(text.substr(sym[i].start, sym[i].len));
  for (const auto& s : merged) {
    auto it = ids.find(s);
    if (it != ids.end()) {
      out.push_back(it->second);
      continue;
    }
    // Byte fallback (SentencePiece <0xXX>), else per-byte-level char, else unknown.
    bool done = true;
    for (unsigned char c : s) {
      if (!byte_level && byte_token[c] >= 0) {
        out.push_back(byte_token[c]);
      } else if (byte_level && ids.count(byte_to_text[c])) {
        out.push_back(ids.at(byte_to_text[c]));
      } else {
        done = false;
        break;
      }
    }
    if (!done) {
      if (spec.unk_id < 0)
        throw Error(ErrorCode::InvalidArgument, "text contains a symbol the vocabulary cannot encode");
      out.push_back(spec.unk_id);
    }
  }
}

void Tokenizer::Impl::encode_segment(std::string_view text, bool at_start,
                                     std::vector<std::int32_t>& out) const {
  if (text.empty()) return;
  if (spec.kind == TokenizerSpec::Kind::ByteLevelBpe) {
    std::vector<std::string_view> pieces{text};
    for (const auto& re : regexes) {
      std::vector<std::string_view> next;
      for (auto p : pieces) split_regex(re, p, next);
      pieces.swap(next);
    }
    for (auto p : pieces) bpe(p, out);
    return;
  }
  // SentencePiece: spaces become "▁", and the text gets a leading "▁".
  std::string s;
  if (spec.add_space_prefix && at_start) s += kSpaceMarker;
  for (char c : text) {
    if (c == ' ')
      s += kSpaceMarker;
    else
      s.push_back(c);
  }
  bpe(s, out);
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  const auto& im = *impl_;
  std::vector<std::int32_t> out;
  if (add_bos && im.spec.bos_id >= 0) out.push_back(im.spec.bos_id);
  std::size_t start = 0, i = 0;
  while (i < text.size()) {
    const std::pair<std::string, std::int32_t>* hit = nullptr;
    for (const auto& sp : im.specials) {
      if (text.compare(i, sp.first.size(), sp.first) == 0) {
        hit = &sp;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    im.encode_segment(text.substr(start, i - start), start == 0, out);
    out.push_back(hit->second);
    i += hit->first.size();
    start = i;
  }
  im.encode_segment(text.substr(start), start == 0, out);
  return out;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool keep_special) const {
  const auto& im = *impl_;
  const auto n = static_cast<std::int32_t>(im.spec.tokens.size());
  std::string out;
  bool first = true;
  for (auto id : ids) {
    if (id < 0 || id >= n)
      throw Error(ErrorCode::InvalidArgument, "token id " + std::to_string(id) + " out of range");
    if (im.is_control[id] && !keep_special) continue;
    const std::string& t = im.spec.tokens[id];
    if (im.spec.kind == TokenizerSpec::Kind::ByteLevelBpe) {
      for (std::size_t i = 0; i < t.size();) {
        const std::size_t b = i;
        const std::uint32_t cp = next_codepoint(t, i);
        auto it = im.cp_to_byte.find(cp);
        if (it != im.cp_to_byte.end() && !im.is_control[id])
          out.push_back(static_cast<char>(it->second));
        else
          out.append(t, b, i - b);
      }
    } else {
      const int type = im.spec.token_types.empty() ? 1 : im.spec.token_types[id];
      unsigned v = 0;
      if ((type == 6 || type == 1) && t.size() == 6 && std::sscanf(t.c_str(), "<0x%02X>", &v) == 1) {
        out.push_back(static_cast<char>(v));
      } else {
        std::string piece;
        for (std::size_t i = 0; i < t.size();) {
          if (t.compare(i, 3, kSpaceMarker) == 0) {
            piece.push_back(' ');
            i += 3;
          } else {
            piece.push_back(t[i++]);
          }
        }
        if (first && im.spec.add_space_prefix && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        out += piece;
      }
    }
    first = false;
  }
  return out;
}

const std::string& Tokenizer::token_text(std::int32_t id) const {
  if (id < 0 || id >= static_cast<std::int32_t>(impl_->spec.tokens.size())) {
    throw Error(ErrorCode::InvalidArgument, "token id " + std::to_string(id) + " out of range");
  }
  return impl_->spec.tokens[id];
}

std::int32_t Tokenizer::bos_id() const {
  return impl_->spec.bos_id;
}
std::int32_t Tokenizer::eos_id() const {
  return impl_->spec.eos_id;
}
bool Tokenizer::adds_bos() const {
  return impl_->spec.add_bos;
}
int Tokenizer::vocab_size() const {
  return static_cast<int>(impl_->spec.tokens.size());
}
const TokenizerSpec& Tokenizer::spec() const {
  return impl_->spec;
}

}  // namespace kvscope::model
