// SPDX-License-Identifier: Apache-2.0
#include "kvscope/eval/report.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kvscope/common/error.h"

namespace kvscope::eval {

std::vector<codec::CodecConfig> expand_grid(const std::vector<std::string>& codecs,
                                            const codec::ParamSet& base,
                                            const std::map<std::string, std::vector<std::string>>& vary) {
  require(!codecs.empty(), ErrorCode::InvalidArgument, "sweep: no codec given");
  std::vector<codec::CodecConfig> out;
  for (const auto& name : codecs) {
    const auto& c = codec::find_codec(name);
    std::map<std::string, std::vector<std::string>> mine;
    std::map<std::string, bool> known;
    for (const auto& spec : c.params()) known[spec.name] = true;
    for (const auto& [k, v] : vary)
      if (known.count(k)) mine[k] = v;
    codec::ParamSet own_base;
    for (const auto& [k, v] : base)
      if (known.count(k)) own_base[k] = v;
    std::vector<codec::ParamSet> sets{own_base};
    for (const auto& [k, values] : mine) {
      std::vector<codec::ParamSet> next;
      for (const auto& s : sets)
        for (const auto& v : values) {
          auto t = s;
          t[k] = v;
          next.push_back(std::move(t));
        }
      sets = std::move(next);
    }
    for (auto& s : sets) out.push_back(codec::CodecConfig{name, std::move(s)});
  }
  return out;
}

std::vector<QualityResult> run_sweep(Evaluator& evaluator, const Reference& ref,
                                     const std::vector<codec::CodecConfig>& configs,
                                     const std::vector<const std::vector<TaskReference>*>& tasks) {
  std::vector<QualityResult> out;
  const auto outer = evaluator.config().progress;
  for (std::size_t i = 0; i < configs.size(); ++i) {
    report_progress(outer, double(i) / double(configs.size()), "sweep point " + std::to_string(i + 1));
    out.push_back(evaluator.evaluate(ref, configs[i], tasks));
  }
  report_progress(outer, 1.0, "sweep done");
  return out;
}

namespace {

std::string params_text(const codec::ParamSet& p) {
  std::string s;
  for (const auto& [k, v] : p) s += (s.empty() ? "" : ";") + k + "=" + v;
  return s;
}

nlohmann::json to_json(const QualityResult& r) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const auto& t : r.tasks)
    tasks.push_back({{"id", t.id},
                     {"correct", t.correct},
                     {"reference_correct", t.reference_correct},
                     {"output", t.output}});
  nlohmann::json layer_bytes = r.size.layer_bytes;
  return {{"context", r.context},
          {"codec", r.config.codec},
          {"params", r.config.params},
          {"context_tokens", r.context_tokens},
          {"continuation_tokens", r.continuation_tokens},
          {"elements", r.size.elements},
          {"encoded_bytes", r.size.encoded_bytes},
          {"header_bytes", r.size.header_bytes},
          {"table_bytes", r.size.table_bytes},
          {"step_bytes", r.size.step_bytes},
          {"payload_bytes", r.size.payload_bytes},
          {"entropy_bits_per_element", r.size.entropy_bits_per_element},
          {"bits_per_element", r.bits_per_element},
          {"ratio_vs_fp16", r.ratio_vs_fp16},
          {"ratio_vs_int8", r.ratio_vs_int8},
          {"ppl_ref", r.ppl_ref},
          {"ppl", r.ppl},
          {"delta_ppl_pct", r.delta_ppl_pct},
          {"top1_agreement", r.top1_agreement},
          {"kl", r.kl},
          {"greedy_match", r.greedy_match},
          {"max_abs_error", r.max_abs_error},
          {"task_count", r.tasks.size()},
          {"task_accuracy", r.task_accuracy},
          {"task_accuracy_ref", r.task_accuracy_ref},
          {"tasks", tasks},
          {"encode_seconds", r.encode_seconds},
          {"decode_seconds", r.decode_seconds},
          {"eval_seconds", r.eval_seconds}};
}

std::string csv_quote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::string result_json(const QualityResult& r, int indent) {
  return to_json(r).dump(indent);
}

std::string results_json(const std::vector<QualityResult>& rs, int indent) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& r : rs) a.push_back(to_json(r));
  return a.dump(indent);
}

std::string results_csv(const std::vector<QualityResult>& rs) {
  std::string out =
      "context,codec,params,context_tokens,continuation_tokens,encoded_bytes,bits_per_element,ratio_vs_fp16,"
      "ratio_vs_int8,ppl_ref,ppl,delta_ppl_pct,top1_agreement,kl,greedy_match,task_accuracy,task_accuracy_"
      "ref,"
      "task_count,header_bytes,table_bytes,step_bytes,payload_bytes\n";
  char buf[512];
  for (const auto& r : rs) {
    std::snprintf(buf, sizeof buf,
                  ",%d,%d,%zu,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.8f,%.6f,%.6f,%.6f,%zu,%zu,%zu,%zu,%zu\n",
                  r.context_tokens, r.continuation_tokens, r.size.encoded_bytes, r.bits_per_element,
                  r.ratio_vs_fp16, r.ratio_vs_int8, r.ppl_ref, r.ppl, r.delta_ppl_pct, r.top1_agreement, r.kl,
                  r.greedy_match, r.task_accuracy, r.task_accuracy_ref, r.tasks.size(), r.size.header_bytes,
                  r.size.table_bytes, r.size.step_bytes, r.size.payload_bytes);
    out += csv_quote(r.context) + "," + csv_quote(r.config.codec) + "," +
           csv_quote(params_text(r.config.params)) + buf;
  }
  return out;
}

std::vector<SweepPoint> summarize_sweep(const std::vector<QualityResult>& results) {
  std::vector<SweepPoint> points;
  for (const auto& r : results) {
    auto it = std::find_if(points.begin(), points.end(), [&](const SweepPoint& p) {
      return p.config.codec == r.config.codec && p.config.params == r.config.params;
    });
    if (it == points.end()) {
      points.push_back(SweepPoint{r.config});
      it = points.end() - 1;
      it->worst_top1 = 1.0;
    }
    SweepPoint& p = *it;
    const double el = r.size.elements ? double(r.size.elements) : 1.0;
    p.contexts += 1;
    p.bits_per_element += r.bits_per_element;
    p.ratio_vs_int8 += r.ratio_vs_int8;
    p.header_bpe += 8.0 * double(r.size.header_bytes) / el;
    p.table_bpe += 8.0 * double(r.size.table_bytes) / el;
    p.step_bpe += 8.0 * double(r.size.step_bytes) / el;
    p.payload_bpe += 8.0 * double(r.size.payload_bytes) / el;
    p.kl += r.kl;
    p.top1_agreement += r.top1_agreement;
    p.delta_ppl_pct += r.delta_ppl_pct;
    p.greedy_match += r.greedy_match;
    p.worst_kl = std::max(p.worst_kl, r.kl);
    p.worst_top1 = std::min(p.worst_top1, r.top1_agreement);
  }
  for (auto& p : points) {
    const double n = double(p.contexts);
    for (double* v : {&p.bits_per_element, &p.ratio_vs_int8, &p.header_bpe, &p.table_bpe, &p.step_bpe,
                      &p.payload_bpe, &p.kl, &p.top1_agreement, &p.delta_ppl_pct, &p.greedy_match})
      *v /= n;
  }
  for (auto& p : points) {
    p.pareto = std::none_of(points.begin(), points.end(), [&](const SweepPoint& q) {
      return &q != &p && q.bits_per_element <= p.bits_per_element && q.kl <= p.kl &&
             (q.bits_per_element < p.bits_per_element || q.kl < p.kl);
    });
  }
  return points;
}

std::string sweep_points_csv(const std::vector<SweepPoint>& points) {
  std::string out =
      "codec,params,contexts,bits_per_element,ratio_vs_int8,header_bpe,table_bpe,step_bpe,payload_bpe,kl,"
      "worst_kl,top1_agreement,worst_top1,delta_ppl_pct,greedy_match,pareto\n";
  char buf[512];
  for (const auto& p : points) {
    std::snprintf(buf, sizeof buf, ",%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.8f,%.8f,%.6f,%.6f,%.6f,%.6f,%d\n",
                  p.contexts, p.bits_per_element, p.ratio_vs_int8, p.header_bpe, p.table_bpe, p.step_bpe,
                  p.payload_bpe, p.kl, p.worst_kl, p.top1_agreement, p.worst_top1, p.delta_ppl_pct,
                  p.greedy_match, p.pareto ? 1 : 0);
    out += csv_quote(p.config.codec) + "," + csv_quote(params_text(p.config.params)) + buf;
  }
  return out;
}

}  // namespace kvscope::eval
