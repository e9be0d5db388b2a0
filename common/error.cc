#include "common/error.h"

#include <cstdlib>

#include "common/check.h"
#include "common/log.h"

namespace tpserve {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kOutOfRange: return "out of range";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kDataLoss: return "data loss";
    case ErrorCode::kUnimplemented: return "unimplemented";
    case ErrorCode::kResourceExhausted: return "resource exhausted";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kDeadlineExceeded: return "deadline exceeded";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

namespace {
AbortHandler g_abort_handler = nullptr;
}

void set_abort_handler(AbortHandler handler) { g_abort_handler = handler; }

void check_failed(const char* condition, const char* file, int line, const std::string& message) {
  log().critical("check failed: {} at {}:{}{}{}", condition, file, line, message.empty() ? "" : ": ",
                 message);
  log().flush();
  if (g_abort_handler != nullptr) g_abort_handler(70);
  std::abort();
}

}  // namespace tpserve
