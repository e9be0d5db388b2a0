// config.json through the family adapters (runtime/families/load_config.cc, read_config_file): any
// bytes either give a ModelConfig or raise tpserve::Error. Divisions, shapes and sizes computed
// from the fields run under UBSan, so an overflow or a division by zero is a crash here.
#include "common/error.h"
#include "runtime/families/load_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tpserve;
  const auto path = fuzz::write_input("config.json", data, size);
  try {
    (void)runtime::read_config_file(path);
  } catch (const Error&) {
  }
  return 0;
}
