// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/metrics.h"

#include <algorithm>
#include <cmath>

#include "kvscope/common/error.h"
#include "logit_rows.h"

namespace kvscope::eval {
namespace {

using detail::argmax;
using detail::log_sum_exp;

std::size_t rows_of(const std::vector<float>& logits, int vocab) {
  require(vocab > 0 && logits.size() % std::size_t(vocab) == 0, ErrorCode::InvalidArgument,
          "logits size is not a multiple of the vocabulary size");
  return logits.size() / std::size_t(vocab);
}

}  // namespace

double perplexity(const std::vector<float>& logits, int vocab, const std::vector<std::int32_t>& targets) {
  const std::size_t rows = rows_of(logits, vocab);
  require(rows == targets.size() && rows > 0, ErrorCode::InvalidArgument,
          "perplexity: rows and targets differ");
  double nll = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * std::size_t(vocab);
    require(targets[r] >= 0 && targets[r] < vocab, ErrorCode::InvalidArgument,
            "perplexity: target id out of range");
    nll += log_sum_exp(row, vocab) - double(row[targets[r]]);
  }
  return std::exp(nll / double(rows));
}

double mean_kl(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  const std::size_t rows = rows_of(a, vocab);
  require(rows == rows_of(b, vocab) && rows > 0, ErrorCode::InvalidArgument, "mean_kl: row counts differ");
  double total = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* pa = a.data() + r * std::size_t(vocab);
    const float* pb = b.data() + r * std::size_t(vocab);
    total += detail::row_kl(pa, log_sum_exp(pa, vocab), pb, log_sum_exp(pb, vocab), vocab);
  }
  return total / double(rows);
}

double top1_agreement(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  const std::size_t rows = rows_of(a, vocab);
  require(rows == rows_of(b, vocab) && rows > 0, ErrorCode::InvalidArgument,
          "top1_agreement: row counts differ");
  std::size_t same = 0;
  for (std::size_t r = 0; r < rows; ++r)
    same +=
        argmax(a.data() + r * std::size_t(vocab), vocab) == argmax(b.data() + r * std::size_t(vocab), vocab);
  return double(same) / double(rows);
}

}  // namespace kvscope::eval
