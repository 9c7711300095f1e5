// SPDX-License-Identifier: Apache-2.0
#pragma once

// Text <-> token ids: byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2/3)
// and SentencePiece BPE with byte fallback (Llama 2, Mistral, Phi-3, Gemma).
// Pure C++ (PCRE2 for the pre-tokenizer regex); no torch, no Qt.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope::model {

/// What a tokenizer is built from: the vocabulary, merges and special tokens
/// as GGUF (`tokenizer.ggml.*`) or tokenizer.json store them.
struct TokenizerSpec {
  enum class Kind {
    ByteLevelBpe,      ///< GPT-2 style (SmolLM2, Llama 3, Qwen2): bytes mapped to printable chars, regex
                       ///< pre-split
    SentencePieceBpe,  ///< Llama 2 / Mistral / Phi-3 / Gemma: "▁" for spaces, score/merge BPE, <0xXX>
                       ///< byte fallback
  };
  Kind kind = Kind::ByteLevelBpe;
  std::vector<std::string> tokens;  ///< id -> token text (in the model's internal alphabet)
  std::vector<float> scores;        ///< SentencePiece scores (may be empty)
  std::vector<std::int32_t>
      token_types;  ///< GGUF token types: 1 normal, 2 unknown, 3 control, 4 user, 6 byte (may be empty)
  std::vector<std::string> merges;  ///< "a b" pairs, highest priority first (may be empty for SentencePiece)
  /// Pre-tokenizer regexes applied in sequence (byte-level only). Empty = GPT-2's.
  std::vector<std::string> pre_split_regexes;
  std::int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false;          ///< whether encode(text) should prepend BOS by default
  bool add_space_prefix = true;  ///< SentencePiece: prepend "▁" to the text
  /// Ids matched verbatim in the input text before BPE (control/user tokens).
  std::vector<std::int32_t> special_ids;
};

/// The tokenizer of a Hugging Face tokenizer.json (BPE: byte-level, or
/// SentencePiece-style with byte fallback), with BOS/EOS ids from the model's
/// config.json when `config_json` is given. Error(Io) unreadable,
/// Error(Format) malformed, Error(Unsupported) a tokenizer model or
/// pre-tokenizer outside those (the message names it).
TokenizerSpec tokenizer_spec_from_hf(const std::filesystem::path& tokenizer_json,
                                     const std::filesystem::path& config_json = {});

/// A BPE tokenizer. Immutable after construction: all const calls are safe to
/// make concurrently from several threads.
class Tokenizer {
 public:
  /// Builds the tokenizer. Throws Error(Format) on an inconsistent spec
  /// (ids out of range, malformed merges, a regex that does not compile) and
  /// Error(InvalidArgument) on an empty vocabulary.
  explicit Tokenizer(TokenizerSpec spec);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  /// Token ids of `text` (UTF-8; invalid UTF-8 bytes are encoded as bytes).
  /// Special tokens written literally in the text (e.g. "<|im_start|>") map to
  /// their ids. Prepends BOS when `add_bos` and the model has one.
  std::vector<std::int32_t> encode(std::string_view text, bool add_bos = false) const;
  /// Text of `ids`. Control tokens (BOS/EOS...) are skipped unless
  /// `keep_special`. Ids out of range throw Error(InvalidArgument).
  std::string decode(std::span<const std::int32_t> ids, bool keep_special = false) const;
  /// Text of one token as the vocabulary stores it (internal alphabet).
  const std::string& token_text(std::int32_t id) const;

  std::int32_t bos_id() const;  ///< -1 if none
  std::int32_t eos_id() const;  ///< -1 if none
  /// Whether the model expects BOS before a text (Llama 2/3: yes, SmolLM2: no).
  bool adds_bos() const;
  int vocab_size() const;
  const TokenizerSpec& spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope::model
