// generation_config.json's sampling defaults over gRPC (issue 20): `tpserve serve` on a copy of
// the qwen2_tied fixture with a generation_config.json shows its defaults in ModelInfo, applies
// them to the fields a request leaves unset (do_sample false: greedy, checked against
// transformers' greedy continuation), and leaves a request that sets every field exactly as a
// server without the file answers it.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/rpc/server_process.h"
#include "tpserve/v1/generation.grpc.pb.h"

namespace tpserve {
namespace {

namespace v1 = tpserve::v1;
namespace fs = std::filesystem;

const fs::path kModel = fs::path(TPSERVE_FIXTURES_DIR) / "qwen2_tied";

std::vector<int32_t> ids_of(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) ids.push_back(std::stoi(item));
  return ids;
}

class Stub {
 public:
  explicit Stub(const std::string& address)
      : stub_(v1::Generation::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  v1::ModelInfoResponse info() {
    grpc::ClientContext context;
    v1::ModelInfoResponse response;
    EXPECT_TRUE(stub_->ModelInfo(&context, v1::ModelInfoRequest(), &response).ok());
    return response;
  }

  std::vector<int32_t> generate(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    v1::GenerateResponse response;
    const grpc::Status status = stub_->Generate(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    if (response.choices().empty()) return {};
    return {response.choices(0).token_ids().begin(), response.choices(0).token_ids().end()};
  }

 private:
  std::unique_ptr<v1::Generation::Stub> stub_;
};

class GenerationDefaults : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tpserve-generation-defaults-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    fs::copy(kModel, dir_, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    // Greedy by default; the sampling fields below must then not matter to a request that leaves
    // temperature unset, and must not leak into one that sets everything.
    std::ofstream(dir_ / "generation_config.json")
        << R"({"do_sample": false, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
               "eos_token_id": [2, 5], "bos_token_id": 1, "transformers_version": "4.45.0"})";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(GenerationDefaults, ModelInfoShowsThemAndUnsetFieldsTakeThem) {
  std::ifstream references(kModel / "reference_greedy.txt");
  std::string prompt_text, greedy_text;
  ASSERT_TRUE(references >> prompt_text >> greedy_text);
  const std::vector<int32_t> prompt = ids_of(prompt_text), greedy = ids_of(greedy_text);

  testing::ServerProcess with_file(1, {"--model", dir_.string(), "--max-seqs", "4"});
  testing::ServerProcess without(1, {"--model", kModel.string(), "--max-seqs", "4"});
  Stub a(with_file.address()), b(without.address());

  const v1::ModelInfoResponse info = a.info();
  EXPECT_EQ(info.sampling_defaults().source(), "generation_config.json");
  EXPECT_EQ(info.sampling_defaults().temperature(), 0.0f);  // do_sample: false
  EXPECT_FLOAT_EQ(info.sampling_defaults().top_p(), 0.8f);
  EXPECT_EQ(info.sampling_defaults().top_k(), 20);
  EXPECT_EQ(info.sampling_defaults().min_p(), 0.0f);
  EXPECT_EQ(info.sampling_defaults().repetition_penalty(), 1.0f);
  const std::vector<int32_t> eos(info.eos_token_ids().begin(), info.eos_token_ids().end());
  EXPECT_NE(std::find(eos.begin(), eos.end(), 2), eos.end());
  EXPECT_NE(std::find(eos.begin(), eos.end(), 5), eos.end());
  const v1::ModelInfoResponse plain = b.info();
  EXPECT_EQ(plain.sampling_defaults().source(), "vLLM");
  EXPECT_EQ(plain.sampling_defaults().temperature(), 1.0f);
  EXPECT_EQ(plain.sampling_defaults().top_k(), 0);
  EXPECT_EQ(plain.sampling_defaults().top_p(), 1.0f);

  // Temperature unset: greedy, i.e. transformers' greedy continuation.
  v1::GenerateRequest unset;
  for (int32_t id : prompt) unset.mutable_token_ids()->add_ids(id);
  unset.mutable_sampling()->set_max_tokens(static_cast<int32_t>(greedy.size()));
  unset.mutable_sampling()->set_ignore_eos(true);
  EXPECT_EQ(a.generate(unset), greedy);

  // Every sampling field set: the file changes nothing.
  v1::GenerateRequest explicit_request = unset;
  v1::SamplingParams& s = *explicit_request.mutable_sampling();
  s.set_temperature(1.0f);
  s.set_top_k(0);
  s.set_top_p(1.0f);
  s.set_min_p(0.0f);
  s.set_repetition_penalty(1.0f);
  s.set_seed(1234);
  const std::vector<int32_t> sampled = b.generate(explicit_request);
  EXPECT_EQ(sampled.size(), greedy.size());
  EXPECT_EQ(a.generate(explicit_request), sampled);
}

}  // namespace
}  // namespace tpserve
