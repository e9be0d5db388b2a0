// Encode throughput of the C++ tokenizer, run by hand through tests/bench/tokenizer_bench.py, which
// measures the Python `tokenizers` library on the same corpus in the same run and prints the ratio.
// Disabled in the unit suite (tests never assert timings); run alone with
//   TPSERVE_BENCH_TOKENIZER=DIR TPSERVE_BENCH_CORPUS=FILE tpserve_unit_tests
//       --gtest_also_run_disabled_tests --gtest_filter='TokenizerBench.*'
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "runtime/tokenizer/tokenizer.h"

namespace tpserve::runtime {
namespace {

// The corpus file holds documents separated by a line "\x1e" (ASCII record separator).
std::vector<std::string> read_documents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string all = buffer.str();
  std::vector<std::string> documents;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find("\n\x1e\n", pos);
    documents.push_back(all.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
    if (end == std::string::npos) break;
    pos = end + 3;
  }
  return documents;
}

TEST(TokenizerBench, DISABLED_EncodeThroughput) {
  const char* dir = std::getenv("TPSERVE_BENCH_TOKENIZER");
  const char* corpus = std::getenv("TPSERVE_BENCH_CORPUS");
  if (dir == nullptr || corpus == nullptr) GTEST_SKIP() << "set TPSERVE_BENCH_TOKENIZER and TPSERVE_BENCH_CORPUS";
  auto load_start = std::chrono::steady_clock::now();
  auto tokenizer = Tokenizer::load(dir);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  std::vector<std::string> documents = read_documents(corpus);
  size_t bytes = 0;
  for (const auto& d : documents) bytes += d.size();
  size_t tokens = 0;
  for (const auto& d : documents) tokens += tokenizer->encode(d, false).size();  // warm-up
  double best = 1e30;
  for (int round = 0; round < 3; ++round) {
    auto start = std::chrono::steady_clock::now();
    for (const auto& d : documents) tokens = tokenizer->encode(d, false).size() + tokens * 0;
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  // With TPSERVE_BENCH_IDS_OUT the ids go to that file, one document per line, for the script to
  // compare with the Python library's.
  if (const char* ids_out = std::getenv("TPSERVE_BENCH_IDS_OUT")) {
    std::ofstream out(ids_out);
    for (const auto& d : documents) {
      std::vector<int32_t> ids = tokenizer->encode(d, false);
      for (size_t i = 0; i < ids.size(); ++i) out << (i ? "," : "") << ids[i];
      out << "\n";
    }
  }
  std::printf("BENCH cpp_load_s=%.3f documents=%zu bytes=%zu seconds=%.4f mb_per_s=%.2f\n", load_s, documents.size(),
              bytes, best, bytes / best / 1e6);
}

}  // namespace
}  // namespace tpserve::runtime
