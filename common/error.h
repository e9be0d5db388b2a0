// Errors at the edges of tpserve: exceptions that carry their context (file, tensor, field, rank)
// and a category the front ends map onto a gRPC status or an exit line.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace tpserve {

enum class ErrorCode {
  kInvalidArgument,    // the caller sent something malformed (a field, a flag)
  kOutOfRange,         // a value outside its allowed range (token id, length)
  kNotFound,           // a file, tensor or model that does not exist
  kDataLoss,           // a file that exists but is corrupt or truncated
  kUnimplemented,      // a valid request for something tpserve does not support
  kResourceExhausted,  // memory, queue or size limits
  kUnavailable,        // a peer rank or the engine is gone
  kDeadlineExceeded,   // the caller's deadline passed first
  kInternal,           // a broken invariant
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Args>
[[noreturn]] void raise(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace tpserve
