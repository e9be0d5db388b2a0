#include "launch/engine_flags.h"

#include <map>
#include <string>

namespace tpserve::launch {

void add_engine_flags(CLI::App& app, runtime::EngineOptions& options) {
  const std::map<std::string, runtime::KvAdmission> admissions = {
      {"on-demand", runtime::KvAdmission::kOnDemand}, {"reserve", runtime::KvAdmission::kReserve}};
  app.add_option("--kv-admission", options.kv_admission,
                 "KV admission: on-demand (blocks as sequences grow, preempting the newest when "
                 "they run out) or reserve (prompt + max_tokens up front, never preempting)")
      ->transform(CLI::CheckedTransformer(admissions, CLI::ignore_case));
  app.add_option("--kv-watermark", options.kv_watermark,
                 "On-demand admission: fraction of KV blocks kept free for running sequences to grow")
      ->check(CLI::Range(0.0, 0.99));
  app.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", options.prefix_caching,
               "Reuse the KV blocks of prompt prefixes seen before (default on)");
  app.add_option("--speculative-ngram", options.speculative_ngram,
                 "Draft up to K tokens per decoding sequence from its own earlier tokens (prompt "
                 "lookup) and verify them in the same step (0: off)")
      ->check(CLI::Range(0, 16));
}

}  // namespace tpserve::launch
