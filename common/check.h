// Internal invariants. A failed check is a bug, not bad input: it prints the condition, file:line
// and rank, then ends the whole job through the abort handler (MPI_Abort once MPI is up), so no
// peer rank is left waiting in a collective.
#pragma once

#include <fmt/format.h>

#include <string>

namespace tpserve {

using AbortHandler = void (*)(int exit_code);

// Installed by parallel/ once the communicator exists; std::abort before that.
void set_abort_handler(AbortHandler handler);

[[noreturn]] void check_failed(const char* condition, const char* file, int line,
                               const std::string& message);

}  // namespace tpserve

#define TPS_CHECK(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond)) [[unlikely]] {                                                           \
      ::tpserve::check_failed(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
    }                                                                                     \
  } while (0)
