// SPDX-License-Identifier: Apache-2.0
#pragma once

// Comparisons of next-token logits (pure arithmetic; no model needed).

#include <cstdint>
#include <vector>

namespace kvscope::eval {

/// Perplexity of `targets` under logit rows [targets.size() x vocab]:
/// exp(mean negative log-likelihood), computed in double. Error(InvalidArgument)
/// on a size mismatch or a target out of range.
double perplexity(const std::vector<float>& logits, int vocab, const std::vector<std::int32_t>& targets);

/// Mean KL(P_a || P_b) in nats over rows of two [rows x vocab] logit arrays.
double mean_kl(const std::vector<float>& a, const std::vector<float>& b, int vocab);

/// Fraction of rows whose argmax agrees (first maximum on ties).
double top1_agreement(const std::vector<float>& a, const std::vector<float>& b, int vocab);

}  // namespace kvscope::eval
