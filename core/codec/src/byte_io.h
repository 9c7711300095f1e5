// SPDX-License-Identifier: Apache-2.0
#pragma once

// Little-endian byte writer and a bounds-checked reader for the bitstream.
// The reader throws Error(Format) before any out-of-range access, so parsers
// of untrusted bytes never read past their input.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kvscope/common/error.h"

namespace kvscope::codec::detail {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::uint8_t>& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    out_.push_back(std::uint8_t(v));
    out_.push_back(std::uint8_t(v >> 8));
  }
  void u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(std::uint8_t(v >> (8 * i)));
  }
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(std::uint8_t(v >> (8 * i)));
  }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void f32(float v) {
    std::uint32_t b;
    std::memcpy(&b, &v, 4);
    u32(b);
  }
  void f64(double v) {
    std::uint64_t b;
    std::memcpy(&b, &v, 8);
    u64(b);
  }
  /// LEB128 unsigned varint.
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(std::uint8_t(v | 0x80));
      v >>= 7;
    }
    out_.push_back(std::uint8_t(v));
  }
  /// u16 length + bytes.
  void str(const std::string& s) {
    if (s.size() > 0xffff) throw Error(ErrorCode::InvalidArgument, "string too long for bitstream header");
    u16(static_cast<std::uint16_t>(s.size()));
    bytes(s.data(), s.size());
  }
  void bytes(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  std::size_t size() const { return out_.size(); }

 private:
  std::vector<std::uint8_t>& out_;
};

class ByteReader {
 public:
  ByteReader(std::span<const std::uint8_t> in, std::string what) : in_(in), what_(std::move(what)) {}

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return in_.size() - pos_; }
  bool done() const { return pos_ == in_.size(); }

  void need(std::size_t n) const {
    if (n > remaining())
      throw Error(ErrorCode::Format, what_ + ": truncated (need " + std::to_string(n) + " bytes at offset " +
                                         std::to_string(pos_) + ", " + std::to_string(remaining()) +
                                         " left)");
  }
  std::uint8_t u8() {
    need(1);
    return in_[pos_++];
  }
  std::uint16_t u16() {
    need(2);
    std::uint16_t v = std::uint16_t(in_[pos_] | (in_[pos_ + 1] << 8));
    pos_ += 2;
    return v;
  }
  std::uint32_t u32() {
    need(4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t(in_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return v;
  }
  std::uint64_t u64() {
    need(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t(in_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return v;
  }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
  float f32() {
    std::uint32_t b = u32();
    float v;
    std::memcpy(&v, &b, 4);
    return v;
  }
  double f64() {
    std::uint64_t b = u64();
    double v;
    std::memcpy(&v, &b, 8);
    return v;
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      const std::uint8_t b = u8();
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Error(ErrorCode::Format, what_ + ": varint longer than 10 bytes");
  }
  std::string str() {
    const std::size_t n = u16();
    need(n);
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::span<const std::uint8_t> bytes(std::size_t n) {
    need(n);
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  const std::string& what() const { return what_; }
  [[noreturn]] void fail(const std::string& msg) const { throw Error(ErrorCode::Format, what_ + ": " + msg); }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::string what_;
};

}  // namespace kvscope::codec::detail
