#include "rpc/api_key.h"

namespace tpserve::rpc {

bool authorized(std::string_view authorization, const std::string& key) {
  if (key.empty()) return true;
  constexpr std::string_view kScheme = "Bearer ";
  if (!authorization.starts_with(kScheme)) return false;
  const std::string_view given = authorization.substr(kScheme.size());
  // Length is not secret; the bytes are.
  if (given.size() != key.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < key.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ key[i]);
  }
  return difference == 0;
}

}  // namespace tpserve::rpc
