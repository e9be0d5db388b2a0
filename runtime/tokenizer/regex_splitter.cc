#include "runtime/tokenizer/regex_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/error.h"

namespace tpserve::runtime {
namespace {

// Per-thread match data and JIT stack, shared by every splitter: a long run of one character class
// (1 MB of spaces) may need more than PCRE2's default 32 KiB JIT stack when a look-ahead backtracks.
struct ThreadScratch {
  pcre2_match_data* match_data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* jit_stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  ThreadScratch() { pcre2_jit_stack_assign(context, nullptr, jit_stack); }
  ~ThreadScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
    pcre2_match_data_free(match_data);
  }
};

ThreadScratch& thread_scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
};

RegexSplitter::RegexSplitter(std::string_view pattern, std::string_view where, bool use_pcre2_only)
    : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  if (!use_pcre2_only) known_ = known_split_pattern(pattern_);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (compiled_->code == nullptr) {
    raise(ErrorCode::kDataLoss, "{}: split regex does not compile at offset {}: {}", where, error_offset,
          pcre2_message(error_code));
  }
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() { pcre2_code_free(compiled_->code); }

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  if (known_) {
    split_known_pattern(*known_, text, pieces);
    return;
  }
  ThreadScratch& scratch = thread_scratch();
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0, offset = 0;
  while (offset < text.size()) {
    // The text was validated once up front, so PCRE2 need not check it again on every call.
    int rc = compiled_->jit
                 ? pcre2_jit_match(compiled_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK,
                                   scratch.match_data, scratch.context)
                 : pcre2_match(compiled_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK,
                               scratch.match_data, scratch.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      raise(ErrorCode::kResourceExhausted, "tokenizer split regex failed on {} bytes of text: {}",
            text.size(), pcre2_message(rc));
    }
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.match_data);
    size_t begin = ovector[0], end = ovector[1];
    if (begin > gap_start) pieces.push_back(text.substr(gap_start, begin - gap_start));
    if (end > begin) {
      pieces.push_back(text.substr(begin, end - begin));
      offset = end;
    } else {
      // An empty match: step over one whole character so the search moves on.
      offset = begin + 1;
      while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    gap_start = end;
  }
  if (gap_start < text.size()) pieces.push_back(text.substr(gap_start));
}

}  // namespace tpserve::runtime
