// Batch-job input lines and output resume (runtime/engine/batch_job.h): every malformed line gives an
// error naming the field, never an exception; resume reads ids and error lines and drops a line cut
// short by a kill.
#include "runtime/engine/batch_job.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_support.h"

namespace tpserve::runtime {
namespace {

BatchItem parse(std::string_view line, const BatchContext& context = {}) {
  return parse_batch_line(line, 7, context);
}

TEST(BatchLine, TokenIdsAndSamplingFields) {
  BatchContext context;
  context.defaults.max_tokens = 9;
  const BatchItem item = parse(R"({"id": 12, "prompt_ids": [1, 2, 3], "temperature": 0.5, "top_k": 4,
      "stop": "x", "seed": 3, "ignore_eos": true, "n": 2})", context);
  ASSERT_EQ(item.error, "");
  EXPECT_EQ(item.id, "12");
  EXPECT_TRUE(item.id_is_number);
  EXPECT_EQ(item.line, 7);
  EXPECT_EQ(item.request.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_FLOAT_EQ(item.request.params.temperature, 0.5f);
  EXPECT_EQ(item.request.params.top_k, 4);
  EXPECT_EQ(item.request.params.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(item.request.params.seed, 3u);
  EXPECT_TRUE(item.request.params.ignore_eos);
  EXPECT_EQ(item.request.params.n, 2);
  EXPECT_EQ(item.request.params.max_tokens, 9);  // the default, left out by the line
}

TEST(BatchLine, TextPromptUsesTheTokenizer) {
  auto tokenizer = Tokenizer::load(testing::fixtures_dir() / "qwen2_tied");
  BatchContext context;
  context.tokenizer = tokenizer.get();
  const BatchItem item = parse(R"({"id": "a", "prompt": "Hello world"})", context);
  ASSERT_EQ(item.error, "");
  EXPECT_EQ(item.request.prompt_ids, tokenizer->encode("Hello world", true));
}

TEST(BatchLine, MalformedLinesNameTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id": "a", "prompt_ids": [1)", "not valid JSON"},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"prompt_ids": [1]})", "id: missing"},
      {R"({"id": 1.5, "prompt_ids": [1]})", "id: expected a string or an integer"},
      {R"({"id": "", "prompt_ids": [1]})", "id: empty"},
      {R"({"id": "a"})", "exactly one of prompt, messages or prompt_ids, got 0"},
      {R"({"id": "a", "prompt_ids": [1], "prompt": "x"})", "got 2"},
      {R"({"id": "a", "prompt_ids": []})", "prompt_ids: empty"},
      {R"({"id": "a", "prompt_ids": [1, "2"]})", "prompt_ids[1]: expected an integer"},
      {R"({"id": "a", "prompt_ids": [1, 9999999999]})", "prompt_ids[1]: 9999999999 is out of range"},
      {R"({"id": "a", "prompt": "hi"})", "prompt: the model directory has no tokenizer"},
      {R"({"id": "a", "messages": [{"role": "user", "content": "hi"}]})", "messages: the model has no chat template"},
      {R"({"id": "a", "messages": []})", "messages: expected a non-empty list"},
      {R"({"id": "a", "prompt_ids": [1], "temperature": "hot"})", "temperature: expected a number"},
      {R"({"id": "a", "prompt_ids": [1], "seed": -1})", "seed: -1 is negative"},
      {R"({"id": "a", "prompt_ids": [1], "stop": 3})", "stop: expected a string or a list"},
      {R"({"id": "a", "prompt_ids": [1], "stop": ["x", 1]})", "stop[1]: expected a string"},
      {R"({"id": "a", "prompt_ids": [1], "ignore_eos": 1})", "ignore_eos: expected true or false"},
      {R"({"id": "a", "prompt_ids": [1], "colour": "red"})", "unknown field 'colour'"},
  };
  for (const auto& [line, expected] : cases) {
    const BatchItem item = parse(line);
    EXPECT_NE(item.error.find(expected), std::string::npos) << line << " -> '" << item.error << "'";
  }
}

// The error message used to print the offending value by recursion, one frame per level: a line
// of a million brackets crashed the job.
TEST(BatchLine, DeeplyNestedValueGivesAnErrorNotACrash) {
  const std::string nested = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  EXPECT_NE(parse(R"({"id": )" + nested + R"(, "prompt_ids": [1]})").error.find("id: expected a string"),
            std::string::npos);
  EXPECT_NE(parse(R"({"id": "a", "prompt_ids": [1], "top_p": )" + nested + "}").error.find("top_p: expected a number"),
            std::string::npos);
}

TEST(BatchLine, EmptyTextPromptAndBadMessages) {
  auto tokenizer = Tokenizer::load(testing::fixtures_dir() / "qwen2_tied");
  const ChatTemplate chat_template = chat_template_for_model(testing::fixtures_dir() / "qwen2_tied", *tokenizer);
  BatchContext context;
  context.tokenizer = tokenizer.get();
  context.chat_template = &chat_template;
  EXPECT_NE(parse(R"({"id": "a", "prompt": ""})", context).error.find("prompt: empty"), std::string::npos);
  EXPECT_NE(parse(R"({"id": "a", "messages": [{"role": "user"}]})", context).error.find("messages[0]"),
            std::string::npos);
  const BatchItem chat = parse(R"({"id": "a", "messages": [{"role": "user", "content": "hi"}]})", context);
  EXPECT_EQ(chat.error, "");
  EXPECT_FALSE(chat.request.prompt_ids.empty());
}

TEST(BatchOutput, ResumeReadsIdsAndErrorLinesAndDropsACutLine) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "batch_resume.jsonl";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << R"({"id":"a","choices":[]})" << "\n"
        << R"({"id":7,"choices":[]})" << "\n"
        << R"({"id":null,"line":4,"error":"not valid JSON"})" << "\n"
        << R"({"id":"b","line":5,"error":"temperature ..."})" << "\n"
        << R"({"id":"c","choi)";
  }
  const BatchRecorded recorded = recorded_batch_ids(path);
  EXPECT_EQ(recorded.ids, (std::set<std::string>{"a", "7", "b"}));
  EXPECT_EQ(recorded.error_lines, (std::set<int64_t>{4}));  // "b" is known by its id
  std::ifstream in(path, std::ios::binary);
  const std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rest.back(), '\n');
  EXPECT_EQ(rest.find("\"c\""), std::string::npos);
  EXPECT_TRUE(recorded_batch_ids(path.string() + ".missing").ids.empty());
}

}  // namespace
}  // namespace tpserve::runtime
